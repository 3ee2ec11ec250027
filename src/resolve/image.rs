//! A local image: which engine holds it, its identity, and the names nodes must answer to.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::exec::Runner;
use crate::resolve::engine::{Engine, EngineKind, Engines};
use crate::resolve::inspect::{parse_image_inspect, EngineImage};
use crate::resolve::reach::{self, diagnose, Cause, NoAnswer};
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
    /// Every name the engine gives it (its RepoTags); empty for archive input.
    pub engine_names: Vec<String>,
    /// Uncompressed layer digests, bottom first, where known before the export.
    pub layers: Vec<String>,
    /// Bytes an export is expected to carry, where known.
    pub size: Option<u64>,
    /// `os/arch[/variant]` it was built for, where one platform is known.
    pub platform: Option<String>,
    /// For an image of several platforms, where known up front: each platform's blobs.
    pub by_platform: Vec<(String, Vec<String>)>,
}

impl Image {
    /// An image known only by name and identity, as unit tests describe one.
    #[cfg(test)]
    pub fn for_tests(name: &str, identity: Identity) -> Image {
        Image {
            requested: name.into(),
            names: vec![ImageRef::parse(name).expect("a valid test reference")],
            identity,
            engine: None,
            engine_ref: name.into(),
            engine_names: Vec::new(),
            layers: vec![],
            size: None,
            platform: None,
            by_platform: vec![],
        }
    }

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
/// is the engine's own error, shown as it is (or, when the engine stopped answering, which
/// one, where, and the fix).
pub fn find(runner: &dyn Runner, engines: &Engines, requested: &str) -> Result<Image> {
    find_noting(runner, engines, requested, &|_| {})
}

/// As [`find`]; when the image is found after an engine that did not answer, `note` is
/// told which engine and why (the image may have been meant to come from there).
pub fn find_noting(runner: &dyn Runner, engines: &Engines, requested: &str, note: &dyn Fn(String)) -> Result<Image> {
    let reference = ImageRef::parse(requested)?;
    let env = |k: &str| std::env::var(k).ok();
    let mut answered = Vec::new();
    let mut silent = engines.silent.clone();
    for engine in engines {
        if !runner.installed(engine.program()) {
            silent.push(NoAnswer::not_installed(engine.kind));
            continue;
        }
        let out = match runner.output(&engine.cmd().args(["image", "inspect", requested])) {
            Ok(out) => out,
            Err(e) => {
                silent.push(NoAnswer::from_exec(engine.kind, &e, &env));
                continue;
            }
        };
        if !out.success() {
            if says_no_such_image(&out.stderr) {
                answered.push((engine.kind, last_line(&out.stderr).to_string()));
                continue;
            }
            let why = diagnose(engine.kind, &out.stderr, &env);
            if why.cause == Cause::Other {
                return Err(Error::failed(
                    format!("`{} image inspect {requested}` failed: {}", engine.kind, out.stderr.trim()),
                    format!("check that {} works (`{} info`)", engine.kind, engine.kind),
                ));
            }
            silent.push(why);
            continue;
        }
        let found = parse_image_inspect(&out.stdout)
            .map_err(|e| Error::failed(format!("unexpected `{} image inspect` output: {e}", engine.kind), ""))?;
        let Some(found) = found.into_iter().next() else {
            answered.push((engine.kind, "no such image".to_string()));
            continue;
        };
        for silent in silent.iter().filter(|s| s.is_unreachable()) {
            note(format!("note: {silent}; {requested} was taken from {}", engine.kind));
        }
        // Podman stores a short name as `localhost/<name>`: a name on the node too, as its
        // archives carry it.
        let podman_name = format!("localhost/{requested}");
        let mut names = vec![reference];
        if engine.kind == EngineKind::Podman && found.repo_tags.contains(&podman_name) {
            names.extend(ImageRef::parse(&podman_name).ok().filter(|n| !names.contains(n)));
        }
        // Docker's containerd store knows an image by its manifest: the image tells the store
        // without a `docker info`, which a load does not run.
        let mut engine = engine.clone();
        engine.containerd_store |= engine.kind == EngineKind::Docker && found.id_is_manifest_digest();
        return Ok(Image {
            requested: requested.to_string(),
            names,
            identity: Identity::from_engine(&found),
            engine: Some(engine),
            engine_ref: requested.to_string(),
            engine_names: found.repo_tags.clone(),
            layers: found.diff_ids.clone(),
            size: found.size,
            platform: crate::resolve::platform::join(
                found.os.as_deref(),
                found.architecture.as_deref(),
                found.variant.as_deref(),
            )
            .filter(|_| !found.is_index()),
            by_platform: Vec::new(),
        });
    }
    // Whichever engine was asked first: one that did not answer is named, not skipped over.
    if answered.is_empty() || (engines.chosen_by.is_some() && !silent.is_empty()) {
        return Err(reach::no_engine("engine", engines.chosen_by.as_deref(), &silent));
    }
    Err(reach::image_not_found(requested, &answered, &silent))
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
    use crate::resolve::reach::NoAnswer;

    fn both() -> Engines {
        Engines {
            answering: vec![engine(EngineKind::Docker), engine(EngineKind::Podman)],
            silent: Vec::new(),
            chosen_by: None,
        }
    }

    fn engine(kind: EngineKind) -> Engine {
        Engine {
            kind,
            detected_by: "test".into(),
            server_version: None,
            podman_backend: kind == EngineKind::Podman,
            rootless: false,
            containerd_store: false,
            locality: crate::resolve::engine::Locality::Unasked,
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
        let image = find(&runner, &both(), "app:dev").unwrap();
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
        let image = find(&runner, &Engines::only(engine(EngineKind::Docker)), "example.com/app/bb28:dev").unwrap();
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
        let err = find(&runner, &both(), "nope:1").unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let text = err.to_string();
        assert!(text.contains("not found in docker or podman: docker and podman both answered"), "{text}");
        assert!(text.contains("podman: Error: nope:1: image not known"), "{text}");
        let fix = err.fix().unwrap();
        assert!(fix.contains("check its name with `docker images` and `podman images`"), "{fix}");
        assert!(fix.contains("--engine docker|podman"), "{fix}");
    }

    #[test]
    fn missing_where_it_was_looked_for_names_the_engine_that_did_not_answer() {
        let runner = FakeRunner::new().on(&["podman", "image", "inspect"], 125, "[]", "Error: app:v1: image not known");
        let silent = NoAnswer {
            kind: EngineKind::Docker,
            address: Some("unix:///nonexistent.sock".into()),
            address_from: Some("DOCKER_HOST"),
            cause: Cause::NoSocket,
            detail: "Cannot connect to the Docker daemon at unix:///nonexistent.sock.".into(),
        };
        let engines = Engines { answering: vec![engine(EngineKind::Podman)], silent: vec![silent], chosen_by: None };
        let err = find(&runner, &engines, "app:v1").unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let text = err.to_string();
        assert!(text.contains("not found in podman: podman answered, the only engine that did"), "{text}");
        assert!(
            text.contains("not searched: docker does not answer at unix:///nonexistent.sock (from DOCKER_HOST)"),
            "{text}"
        );
        let fix = err.fix().unwrap();
        assert!(
            fix.starts_with("if docker has it, start what should serve DOCKER_HOST=unix:///nonexistent.sock"),
            "{fix}"
        );
        assert!(fix.contains("`unset DOCKER_HOST`") && fix.contains("`podman images`"), "{fix}");
        assert!(!fix.contains("`docker images`"), "docker did not answer: {fix}");
    }

    #[test]
    fn an_engine_that_stops_answering_is_named_with_its_socket() {
        let runner = FakeRunner::new().on(
            &["docker", "image", "inspect"],
            1,
            "",
            "permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock: Get \"http://%2Fvar%2Frun%2Fdocker.sock/v1.50/images/app:1/json\": dial unix /var/run/docker.sock: connect: permission denied",
        );
        let err = find(&runner, &Engines::only(engine(EngineKind::Docker)), "app:1").unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("docker does not answer at unix:///var/run/docker.sock"), "{err}");
        assert!(err.fix().unwrap().contains("usermod -aG docker"), "{:?}", err.fix());
    }

    #[test]
    fn an_engine_failure_is_shown_as_it_is() {
        let runner = FakeRunner::new().on(&["docker", "image", "inspect"], 1, "", "Error: layer store is corrupt");
        let err = find(&runner, &Engines::only(engine(EngineKind::Docker)), "app:1").unwrap_err();
        assert_eq!(err.exit_code(), 1);
        assert!(err.to_string().contains("layer store is corrupt"), "{err}");
    }
}
