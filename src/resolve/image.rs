//! A local image: which engine holds it, its identity, and the names nodes must answer to.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::exec::Runner;
use crate::resolve::engine::Engine;
use crate::resolve::inspect::{parse_image_inspect, EngineImage};
use crate::resolve::reference::ImageRef;

/// What makes two images the same: the config digest (what CRI reports as the image id) and,
/// where known, the manifest digest (Docker's containerd store reports only that as `.Id`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub config: Option<String>,
    pub manifest: Option<String>,
}

impl Identity {
    pub fn from_engine(image: &EngineImage) -> Self {
        if image.id_is_manifest_digest() {
            Identity { config: None, manifest: Some(image.id.clone()) }
        } else {
            Identity { config: Some(image.id.clone()), manifest: None }
        }
    }

    /// The id to report: the config digest when known, as crictl shows it.
    pub fn id(&self) -> String {
        self.config.clone().or_else(|| self.manifest.clone()).unwrap_or_default()
    }

    /// True when what a node holds (a manifest digest and, if CRI indexed it, a config
    /// digest) is this image.
    pub fn matches(&self, node_manifest: &str, node_config: Option<&str>) -> bool {
        self.manifest.as_deref() == Some(node_manifest)
            || (self.config.is_some() && self.config.as_deref() == node_config)
    }

    /// Learns what the other side knows (e.g. the config digest from an exported archive).
    pub fn merge(&mut self, other: &Identity) {
        if self.config.is_none() {
            self.config = other.config.clone();
        }
        if self.manifest.is_none() {
            self.manifest = other.manifest.clone();
        }
    }
}

/// One image to load: found in an engine (or described by an archive), with the names
/// every node must answer to.
#[derive(Debug, Clone)]
pub struct Image {
    /// What the user typed (or the archive named).
    pub requested: String,
    /// Names the kubelet will look up, normalised; the first is the requested one.
    pub names: Vec<ImageRef>,
    pub identity: Identity,
    /// The engine holding it; None for archive input.
    pub engine: Option<Engine>,
    /// The name to hand the engine when exporting.
    pub engine_ref: String,
    /// Uncompressed layer digests, bottom first, where known before the export.
    pub layers: Vec<String>,
    /// Bytes an export is expected to carry, where known.
    pub size: Option<u64>,
}

impl Image {
    pub fn normalized(&self) -> String {
        self.names[0].normalized()
    }

    pub fn add_name(&mut self, name: ImageRef) {
        if !self.names.contains(&name) {
            self.names.push(name);
        }
    }
}

/// Finds `requested` in the first engine that has it. A failure other than "no such image"
/// is the engine's own error, shown as it is.
pub fn find(runner: &dyn Runner, engines: &[Engine], requested: &str) -> Result<Image> {
    let reference = ImageRef::parse(requested)?;
    let mut misses = Vec::new();
    for engine in engines {
        let out = runner.output(&engine.cmd().args(["image", "inspect", requested]))?;
        if !out.success() {
            if says_no_such_image(&out.stderr) {
                misses.push(format!("{}: {}", engine.kind, last_line(&out.stderr)));
                continue;
            }
            return Err(Error::failed(
                format!("`{} image inspect {requested}` failed: {}", engine.kind, out.stderr.trim()),
                format!("check that {} works (`{} info`)", engine.kind, engine.kind),
            ));
        }
        let found = parse_image_inspect(&out.stdout)
            .map_err(|e| Error::failed(format!("unexpected `{} image inspect` output: {e}", engine.kind), ""))?;
        let Some(found) = found.into_iter().next() else {
            misses.push(format!("{}: no such image", engine.kind));
            continue;
        };
        return Ok(Image {
            requested: requested.to_string(),
            names: vec![reference],
            identity: Identity::from_engine(&found),
            engine: Some(engine.clone()),
            engine_ref: requested.to_string(),
            layers: found.diff_ids.clone(),
            size: found.size,
        });
    }
    let engine_names: Vec<String> = engines.iter().map(|e| e.kind.to_string()).collect();
    Err(Error::ImageNotFound {
        image: requested.to_string(),
        engine: engine_names.join(" or "),
        detail: misses.join("; "),
    })
}

fn last_line(s: &str) -> &str {
    s.trim().lines().last().unwrap_or("")
}

/// Docker: "No such image"; Podman: "image not known" / "failed to find image".
pub fn says_no_such_image(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    s.contains("no such image") || s.contains("image not known") || s.contains("failed to find image")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::fake::FakeRunner;
    use crate::resolve::engine::EngineKind;

    fn engine(kind: EngineKind) -> Engine {
        Engine {
            kind,
            detected_by: "test".into(),
            server_version: None,
            podman_backend: kind == EngineKind::Podman,
            rootless: false,
            containerd_store: false,
        }
    }

    #[test]
    fn falls_through_to_the_engine_that_has_it() {
        let runner = FakeRunner::new()
            .on(&["docker", "image", "inspect"], 1, "[]", "Error response from daemon: No such image: app:dev")
            .on(
                &["podman", "image", "inspect", "app:dev"],
                0,
                include_str!("../../tests/fixtures/engines/podman-4.3-image-inspect.json"),
                "",
            );
        let image = find(&runner, &[engine(EngineKind::Docker), engine(EngineKind::Podman)], "app:dev").unwrap();
        assert_eq!(image.engine.as_ref().unwrap().kind, EngineKind::Podman);
        assert_eq!(image.normalized(), "docker.io/library/app:dev");
        assert_eq!(
            image.identity.config.as_deref(),
            Some("sha256:b21546368a959dcf24dcfaf1b90e72f199d5fac6eaff83cf4b329f97e366b7bd")
        );
    }

    #[test]
    fn containerd_store_identity_is_the_manifest_digest() {
        let runner = FakeRunner::new().on(
            &["docker", "image", "inspect"],
            0,
            include_str!("../../tests/fixtures/engines/docker-28.5-containerd-store-image-inspect.json"),
            "",
        );
        let image = find(&runner, &[engine(EngineKind::Docker)], "example.com/app/bb28:dev").unwrap();
        let manifest = "sha256:a9940815d560e628155cff1f71b3a2bcf161d299fc35b245424532a959f92d52";
        assert_eq!(image.identity, Identity { config: None, manifest: Some(manifest.into()) });
        assert!(image.identity.matches(manifest, None));
    }

    #[test]
    fn missing_everywhere_is_an_input_error_naming_each_engine() {
        let runner = FakeRunner::new().on(&["docker", "image", "inspect"], 1, "[]", "Error: No such image: nope:1").on(
            &["podman", "image", "inspect"],
            125,
            "[]",
            "Error: nope:1: image not known",
        );
        let err = find(&runner, &[engine(EngineKind::Docker), engine(EngineKind::Podman)], "nope:1").unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let text = err.to_string();
        assert!(text.contains("docker or podman") && text.contains("image not known"), "{text}");
    }

    #[test]
    fn an_engine_failure_is_shown_as_it_is() {
        let runner =
            FakeRunner::new().on(&["docker", "image", "inspect"], 1, "", "permission denied while trying to connect");
        let err = find(&runner, &[engine(EngineKind::Docker)], "app:1").unwrap_err();
        assert_eq!(err.exit_code(), 1);
        assert!(err.to_string().contains("permission denied"), "{err}");
    }
}
