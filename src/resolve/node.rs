//! A node and the facts about its containerd that loading depends on.

use serde::Serialize;

use crate::exec::Runner;
use crate::resolve::containerd::{lenient_version, parse_config_dump, parse_containerd_version};
use crate::resolve::provider::{NodeContainer, Provider};

/// What kindload needs to know about one node; also a row of `kindload nodes --output json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Node {
    pub name: String,
    pub role: String,
    pub provider: &'static str,
    pub running: bool,
    pub state: String,
    pub containerd_version: Option<String>,
    pub config_version: Option<i64>,
    pub snapshotter: Option<String>,
    pub crictl: bool,
    /// Problems found while probing, each a sentence with its fix.
    pub warnings: Vec<String>,
}

/// Probes every running node concurrently; stopped nodes are returned with no facts.
pub fn probe_all(runner: &dyn Runner, provider: Provider, containers: Vec<NodeContainer>) -> Vec<Node> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = containers.into_iter().map(|c| scope.spawn(move || probe(runner, provider, c))).collect();
        handles.into_iter().map(|h| h.join().expect("node probe panicked")).collect()
    })
}

pub fn probe(runner: &dyn Runner, provider: Provider, container: NodeContainer) -> Node {
    let mut node = Node {
        name: container.name,
        role: container.role,
        provider: provider.name(),
        running: container.running,
        state: container.state,
        containerd_version: None,
        config_version: None,
        snapshotter: None,
        crictl: false,
        warnings: Vec::new(),
    };
    if !node.running {
        node.warnings.push(format!(
            "node {} is {}: start it with `{} start {}`",
            node.name,
            node.state,
            provider.name(),
            node.name
        ));
        return node;
    }
    match runner.run(&provider.exec(&node.name, &["containerd", "--version"])) {
        Ok(out) => node.containerd_version = parse_containerd_version(&out.stdout),
        Err(e) => node.warnings.push(format!("could not ask containerd its version: {e}")),
    }
    match runner.run(&provider.exec(&node.name, &["containerd", "config", "dump"])) {
        Ok(out) => match parse_config_dump(&out.stdout) {
            Ok(facts) => {
                node.config_version = facts.version;
                node.snapshotter = facts.snapshotter;
                node.warnings.extend(facts.warnings);
            }
            Err(e) => node.warnings.push(format!("could not read `containerd config dump`: {e}")),
        },
        Err(e) => node.warnings.push(format!("`containerd config dump` failed: {e}")),
    }
    node.crictl =
        runner.output(&provider.exec(&node.name, &["crictl", "--version"])).map(|o| o.success()).unwrap_or(false);
    node
}

impl Node {
    /// The snapshotter to import with: the node's CRI snapshotter, or containerd's default.
    pub fn import_snapshotter(&self) -> &str {
        self.snapshotter.as_deref().unwrap_or("overlayfs")
    }

    /// containerd's major version, from its version output or else its config version
    /// (3 and later are 2.x configs).
    pub fn containerd_major(&self) -> Option<u64> {
        self.containerd_version
            .as_deref()
            .and_then(lenient_version)
            .map(|v| v.major)
            .or_else(|| self.config_version.filter(|&v| v >= 3).map(|_| 2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::fake::FakeRunner;
    use crate::resolve::engine::EngineKind;

    fn container(running: bool) -> NodeContainer {
        NodeContainer {
            name: "kind-control-plane".into(),
            role: "control-plane".into(),
            running,
            state: if running { "running" } else { "exited" }.into(),
        }
    }

    #[test]
    fn probes_containerd_2_without_crictl() {
        let runner = FakeRunner::new()
            .on(
                &["docker", "exec", "kind-control-plane", "containerd", "--version"],
                0,
                include_str!("../../tests/fixtures/containerd-2.1/containerd--version.txt"),
                "",
            )
            .on(
                &["docker", "exec", "kind-control-plane", "containerd", "config", "dump"],
                0,
                include_str!("../../tests/fixtures/containerd-2.1/containerd-config-dump.toml"),
                "",
            )
            .on(
                &["docker", "exec", "kind-control-plane", "crictl"],
                127,
                "",
                "exec: \"crictl\": executable file not found in $PATH",
            );
        let node = probe(&runner, Provider::new(EngineKind::Docker), container(true));
        assert_eq!(node.containerd_version.as_deref(), Some("2.1.9+unknown"));
        assert_eq!(node.config_version, Some(3));
        assert_eq!(node.snapshotter.as_deref(), Some("overlayfs"));
        assert_eq!(node.containerd_major(), Some(2));
        assert!(!node.crictl);
        assert!(node.warnings.is_empty(), "{:?}", node.warnings);
    }

    #[test]
    fn stopped_node_is_not_probed_and_says_how_to_start_it() {
        let runner = FakeRunner::new();
        let node = probe(&runner, Provider::new(EngineKind::Podman), container(false));
        assert!(runner.seen.lock().unwrap().is_empty());
        assert_eq!(
            node.warnings,
            ["node kind-control-plane is exited: start it with `podman start kind-control-plane`"]
        );
    }
}
