//! The registry route. When `kindload registry up` has run for the cluster, an engine image
//! reaches the nodes that trust the registry by the engine's own push (it sends only the
//! layers the registry lacks and compresses only those) and one pull per node (containerd
//! fetches only what the node lacks, sideloaded layers included), then takes the user's
//! names there. Nodes that do not trust it, and images the route cannot carry, are
//! sideloaded, and the report says why.

use std::path::PathBuf;
use std::time::Instant;

use super::{Outcome, Outcomes, Pipeline};
use crate::commands::via_registry::registry_repo;
use crate::error::{Error, Result};
use crate::exec::Runner;
use crate::plan::Action;
use crate::registry::{container, hosts, CONTAINER_PORT, DEFAULT_NAME, DEFAULT_PORT};
use crate::report::Transport;
use crate::resolve::engine::EngineKind;
use crate::resolve::image::Image;
use crate::resolve::node::Node;
use crate::resolve::provider::Provider;
use crate::resolve::reference::ImageRef;

/// The cluster's registry, running and made by kindload.
pub(super) struct Route {
    pub name: String,
    pub port: u16,
    ca_pem: String,
    /// A directory holding only the CA as `ca.crt`, for `podman push --cert-dir`.
    cert_dir: PathBuf,
}

/// Pulls (unpacked for the node's CRI snapshotter; `--local` on containerd 2.x, whose
/// transfer service unpacks only for the default one), then moves every name onto the
/// image. The names move only once the pull has succeeded: a failed pull leaves the node
/// as it was. Everything the user named arrives as arguments, never inside the script.
const PULL: &str = r#"set -e; hosts=$1; ref=$2; snapshotter=$3; local=$4; shift 4
if [ "$local" = yes ]; then
  ctr -n k8s.io images pull --local --snapshotter "$snapshotter" --hosts-dir "$hosts" "$ref" >/dev/null
else
  ctr -n k8s.io images pull --snapshotter "$snapshotter" --hosts-dir "$hosts" "$ref" >/dev/null
fi
for name; do ctr -n k8s.io images tag --force "$ref" "$name" >/dev/null; done"#;

/// Per image and node, whether the registry route handled it; per image, the registry name
/// it was pushed under.
type Routed = (Vec<Vec<bool>>, Vec<Option<String>>);

impl Pipeline<'_> {
    /// The registry to use, or why none: `--sideload`, none made by `registry up`, or one
    /// that is not running (said, and the load sideloads).
    fn route(&self) -> std::result::Result<Route, Option<String>> {
        if self.options.sideload {
            return Err(None);
        }
        let name = crate::commands::context::env("KINDLOAD_REGISTRY").unwrap_or_else(|| DEFAULT_NAME.to_string());
        let found = container::find(self.runner(), self.provider, &name).filter(|f| f.ours).ok_or(None)?;
        if !found.running {
            return Err(Some(format!(
                "registry {name} is {}, so this load sideloads; `kindload registry up` starts it again",
                found.state
            )));
        }
        let store = crate::registry::state_dir().map(|d| crate::registry::ca::Store::new(&d));
        let ca_pem = store.as_ref().and_then(|s| s.ca_pem()).ok_or_else(|| {
            Some(format!(
                "kindload's CA is gone, so registry {name} cannot be trusted; `kindload registry up` makes it again"
            ))
        })?;
        let cert_dir = crate::registry::state_dir().unwrap_or_default().join("registry").join("engine-certs");
        Ok(Route { name, port: found.port.unwrap_or(DEFAULT_PORT), ca_pem, cert_dir })
    }

    /// Sends what it can through the cluster's registry: for each engine image, to the nodes
    /// in `targets[i]` that trust the registry. Returns, per image and node, whether it was
    /// handled here (loaded, or failed for good; the rest are sideloaded), and per image the
    /// registry name it was pushed under.
    pub(super) fn through_registry(
        &self,
        images: &[Image],
        targets: &[Vec<usize>],
        outcomes: &mut Outcomes,
    ) -> Result<Routed> {
        let mut handled = vec![vec![false; self.nodes.len()]; images.len()];
        let mut pushed = vec![None; images.len()];
        if targets.iter().all(Vec::is_empty) {
            return Ok((handled, pushed));
        }
        let route = match self.route() {
            Ok(route) => route,
            Err(why) => {
                for (i, row) in targets.iter().enumerate() {
                    for &n in row {
                        outcomes[i][n].note = why.clone();
                    }
                }
                return Ok((handled, pushed));
            }
        };
        let receiving: Vec<usize> = (0..self.nodes.len()).filter(|n| targets.iter().any(|t| t.contains(n))).collect();
        let distrust = self.distrust(&route, &receiving);
        for (i, image) in images.iter().enumerate() {
            let (trusting, other): (Vec<usize>, Vec<usize>) = targets[i].iter().partition(|&&n| distrust[n].is_none());
            for n in other {
                outcomes[i][n].note = distrust[n].clone();
            }
            if trusting.is_empty() {
                continue;
            }
            if let Some(why) = unroutable(image) {
                for &n in &trusting {
                    outcomes[i][n].note = Some(why.clone());
                }
                continue;
            }
            let reference = self.push(&route, image)?;
            for (n, outcome) in self.pull_all(&route, image, &reference, &trusting) {
                outcomes[i][n] = outcome;
                handled[i][n] = true;
            }
            pushed[i] = Some(reference);
        }
        Ok((handled, pushed))
    }

    /// Per node: why it cannot pull from the registry (None when it can). One read of its
    /// hosts.toml files each, concurrently.
    fn distrust(&self, route: &Route, receiving: &[usize]) -> Vec<Option<String>> {
        let runner = self.runner();
        let provider = self.provider;
        let mut distrust: Vec<Option<String>> = vec![None; self.nodes.len()];
        std::thread::scope(|scope| {
            let handles: Vec<_> = receiving
                .iter()
                .map(|&n| {
                    let node = &self.nodes[n];
                    (n, scope.spawn(move || why_not_trusted(runner, provider, node, route)))
                })
                .collect();
            for (n, handle) in handles {
                distrust[n] = handle.join().expect("trust check panicked");
            }
        });
        distrust
    }

    /// The engine's own push to the registry's loopback address: it skips the layers the
    /// registry holds. The push name is the registry's, added for the push and then removed
    /// from the engine unless the image already had it.
    fn push(&self, route: &Route, image: &Image) -> Result<String> {
        let engine = image.engine.as_ref().expect("unroutable() keeps engine images only");
        let first = &image.names[0];
        let tag = first.tag().unwrap_or("latest");
        let reference = format!("localhost:{}/{}:{tag}", route.port, registry_repo(first));
        let ours = image.names.iter().any(|n| n.normalized() == reference) || image.engine_ref == reference;
        let runner = self.runner();
        if !ours {
            runner.run(&engine.cmd().args(["tag", &image.engine_ref, &reference]))?;
        }
        let mut push = engine.cmd().arg("push");
        if engine.kind == EngineKind::Podman {
            std::fs::create_dir_all(&route.cert_dir)
                .and_then(|_| std::fs::write(route.cert_dir.join("ca.crt"), &route.ca_pem))
                .map_err(|e| Error::failed(format!("cannot write kindload's CA for podman push: {e}"), ""))?;
            push = push.arg("--cert-dir").arg(route.cert_dir.to_string_lossy().as_ref());
        }
        let pushed = runner.run(&push.arg(&reference));
        if !ours {
            let untag = match engine.kind {
                EngineKind::Podman => engine.cmd().args(["untag", &image.engine_ref, &reference]),
                EngineKind::Docker => engine.cmd().args(["rmi", &reference]),
            };
            let _ = runner.output(&untag);
        }
        pushed.map_err(|e| {
            Error::failed(
                format!("pushing {} to registry {} failed, so no node was changed: {e}", image.requested, route.name),
                "check it with `kindload registry status`; `kindload registry up` starts it again, or load with --sideload",
            )
        })?;
        Ok(reference)
    }

    /// Every trusting node pulls, concurrently, then answers to the image's names.
    fn pull_all(&self, route: &Route, image: &Image, reference: &str, nodes: &[usize]) -> Vec<(usize, Outcome)> {
        let runner = self.runner();
        let provider = self.provider;
        let names: Vec<String> = image.names.iter().map(ImageRef::normalized).collect();
        std::thread::scope(|scope| {
            let handles: Vec<_> = nodes
                .iter()
                .map(|&n| {
                    let node = &self.nodes[n];
                    let names = &names;
                    (n, scope.spawn(move || pull(runner, provider, node, route, reference, names)))
                })
                .collect();
            handles.into_iter().map(|(n, h)| (n, h.join().expect("pull panicked"))).collect()
        })
    }
}

/// Why an image cannot take the registry route, or None when it can.
fn unroutable(image: &Image) -> Option<String> {
    if image.engine.is_none() {
        return Some("an archive is sideloaded: the registry route pushes from an engine".into());
    }
    if image.identity.config.is_none() {
        return Some(
            "Docker's containerd image store names the image by its manifest, which the registry route cannot check on the node before the pull: sideloaded".into(),
        );
    }
    None
}

/// Why `node` cannot pull from the registry, or None.
fn why_not_trusted(runner: &dyn Runner, provider: Provider, node: &Node, route: &Route) -> Option<String> {
    let Some(config_path) = &node.config_path else {
        return Some(format!(
            "sideloaded: containerd on {} sets no registry config_path, so it cannot pull from registry {} (see `kindload registry up`)",
            node.name, route.name
        ));
    };
    let wanted = hosts::wanted(config_path, &route.name, route.port, &route.ca_pem);
    match hosts::stale(runner, provider, &node.name, &wanted) {
        Ok(stale) if stale.is_empty() => None,
        Ok(_) => Some(format!(
            "sideloaded: {} does not trust registry {} yet; `kindload registry up` configures it",
            node.name, route.name
        )),
        Err(e) => Some(format!("sideloaded: cannot read {}'s hosts.toml files: {e}", node.name)),
    }
}

fn pull(
    runner: &dyn Runner,
    provider: Provider,
    node: &Node,
    route: &Route,
    reference: &str,
    names: &[String],
) -> Outcome {
    let started = Instant::now();
    let config_path = node.config_path.as_deref().unwrap_or_default();
    let argv = pull_argv(node, hosts::hosts_dir(config_path), reference, names);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    match runner.run(&provider.exec(&node.name, &argv)) {
        Ok(_) => Outcome {
            seconds: started.elapsed().as_secs_f64(),
            transport: Some(Transport::Registry),
            ..Outcome::new(Action::Loaded)
        },
        Err(e) => Outcome {
            transport: Some(Transport::Registry),
            ..Outcome::failed(format!(
                "pulling {reference} from registry {} ({}) failed: {e}; the node keeps what it had",
                route.name,
                format_args!("{}:{CONTAINER_PORT}", route.name)
            ))
        },
    }
}

fn pull_argv(node: &Node, hosts_dir: &str, reference: &str, names: &[String]) -> Vec<String> {
    let local = if node.containerd_major() >= Some(2) { "yes" } else { "no" };
    let mut argv: Vec<String> = ["sh", "-c", PULL, "kindload-pull"].map(String::from).to_vec();
    argv.extend([hosts_dir, reference, node.import_snapshotter(), local].map(String::from));
    argv.extend(names.iter().cloned());
    argv
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::image::Identity;

    fn node(version: &str, snapshotter: &str) -> Node {
        Node {
            name: "kind-worker".into(),
            role: "worker".into(),
            provider: "docker",
            running: true,
            state: "running".into(),
            containerd_version: Some(version.into()),
            config_version: Some(3),
            snapshotter: Some(snapshotter.into()),
            config_path: Some("/etc/containerd/certs.d".into()),
            crictl: false,
            platform: None,
            warnings: vec![],
            holds: None,
            cri_answers: vec![],
        }
    }

    #[test]
    fn the_pull_takes_user_input_as_arguments_only() {
        let names = ["docker.io/library/app:dev".to_string(), "docker.io/library/app:$(reboot)".to_string()];
        let argv = pull_argv(&node("2.1.9", "native"), "/etc/containerd/certs.d", "localhost:5001/app:dev", &names);
        assert_eq!(argv[..4], ["sh", "-c", PULL, "kindload-pull"]);
        assert_eq!(argv[4..8], ["/etc/containerd/certs.d", "localhost:5001/app:dev", "native", "yes"]);
        assert_eq!(argv[8..], names);
        assert!(!PULL.contains("app"), "the script is constant");
        let old = pull_argv(&node("1.6.20", "overlayfs"), "/c", "localhost:5001/app:dev", &names);
        assert_eq!(old[6..8], ["overlayfs", "no"], "no --local before containerd 2");
    }

    #[test]
    fn only_engine_images_with_a_config_digest_take_the_route() {
        let id = |config: Option<&str>| Identity { config: config.map(String::from), manifest: Some("sha256:m".into()) };
        let archived = Image::for_tests("app:dev", id(Some("sha256:c")));
        assert!(unroutable(&archived).unwrap().contains("archive"));
        let mut engine = archived.clone();
        engine.engine = Some(crate::resolve::engine::Engine::unprobed(EngineKind::Docker, "test"));
        assert_eq!(unroutable(&engine), None);
        engine.identity = id(None);
        assert!(unroutable(&engine).unwrap().contains("containerd image store"));
    }
}
