//! The provider: the container engine that hosts a kind cluster's nodes. Running a command
//! on a node is building a `<provider> exec` command, run through the same runner as any other.

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::exec::{Cmd, Runner};
use crate::resolve::engine::EngineKind;

pub const CLUSTER_LABEL: &str = "io.x-k8s.kind.cluster";
pub const ROLE_LABEL: &str = "io.x-k8s.kind.role";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Provider {
    pub kind: EngineKind,
}

/// A node container as the provider sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeContainer {
    pub name: String,
    pub role: String,
    pub running: bool,
    pub state: String,
}

impl Provider {
    pub fn new(kind: EngineKind) -> Self {
        Provider { kind }
    }

    pub fn name(&self) -> &'static str {
        self.kind.program()
    }

    pub fn inspect_cmd(&self, names: &[String]) -> Cmd {
        Cmd::new(self.name()).args(["container", "inspect"]).args(names)
    }

    /// A command run on the node, no stdin.
    pub fn exec(&self, node: &str, argv: &[&str]) -> Cmd {
        Cmd::new(self.name()).arg("exec").arg(node).args(argv)
    }

    /// A command run on the node, reading our stdin. Never `--privileged`: imports do not need it.
    pub fn exec_stdin(&self, node: &str, argv: &[&str]) -> Cmd {
        Cmd::new(self.name()).args(["exec", "-i", node]).args(argv)
    }

    /// The names of the containers, running or not, that carry `label` (`key` or `key=value`).
    pub fn labelled(&self, runner: &dyn Runner, label: &str) -> Result<Vec<String>> {
        let list = Cmd::new(self.name()).args([
            "ps",
            "--all",
            "--filter",
            &format!("label={label}"),
            "--format",
            "{{.Names}}",
        ]);
        Ok(runner.stdout(&list)?.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect())
    }

    /// The cluster's control-plane and worker nodes, control-plane first, then by name.
    pub fn nodes(&self, runner: &dyn Runner, cluster: &str) -> Result<Vec<NodeContainer>> {
        let names = self.labelled(runner, &format!("{CLUSTER_LABEL}={cluster}"))?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let json = runner.stdout(&self.inspect_cmd(&names))?;
        let mut nodes = parse_node_inspect(&json, cluster)
            .map_err(|e| Error::failed(format!("could not read `{} inspect` output: {e}", self.name()), ""))?;
        nodes.sort_by(|a, b| (a.role != "control-plane", &a.name).cmp(&(b.role != "control-plane", &b.name)));
        Ok(nodes)
    }
}

impl Provider {
    /// Every kind cluster with a node container on this provider, sorted.
    pub fn clusters(&self, runner: &dyn Runner) -> Result<Vec<String>> {
        let names = self.labelled(runner, CLUSTER_LABEL)?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        // A container removed between the listing and the inspect (a cluster being deleted)
        // fails the inspect; the others are still printed.
        let out = runner.output(&self.inspect_cmd(&names))?;
        Ok(parse_cluster_labels(&out.stdout))
    }
}

/// The distinct cluster labels of inspected containers, sorted.
pub fn parse_cluster_labels(json: &str) -> Vec<String> {
    let items: Vec<Value> = serde_json::from_str(json.trim()).unwrap_or_default();
    let mut clusters: Vec<String> = items
        .iter()
        .filter_map(|item| item.pointer("/Config/Labels").and_then(|l| l.get(CLUSTER_LABEL)).and_then(Value::as_str))
        .map(str::to_string)
        .collect();
    clusters.sort();
    clusters.dedup();
    clusters
}

/// `docker inspect` / `podman inspect` of node containers: name, role label, running state.
/// Other roles (kind's external load balancer) are not nodes with a kubelet and are left out.
pub fn parse_node_inspect(json: &str, cluster: &str) -> std::result::Result<Vec<NodeContainer>, String> {
    let items: Vec<Value> = serde_json::from_str(json.trim()).map_err(|e| e.to_string())?;
    let mut nodes = Vec::new();
    for item in items {
        let label = |key: &str| item.pointer("/Config/Labels").and_then(|l| l.get(key)).and_then(Value::as_str);
        if label(CLUSTER_LABEL) != Some(cluster) {
            continue;
        }
        let role = label(ROLE_LABEL).unwrap_or("").to_string();
        if role != "control-plane" && role != "worker" {
            continue;
        }
        let name = item.get("Name").and_then(Value::as_str).unwrap_or("").trim_start_matches('/').to_string();
        let running = item.pointer("/State/Running").and_then(Value::as_bool).unwrap_or(false);
        let state = item.pointer("/State/Status").and_then(Value::as_str).unwrap_or("unknown").to_string();
        nodes.push(NodeContainer { name, role, running, state });
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::fake::FakeRunner;

    const INSPECT: &str = r#"[
      {"Name":"/dev-worker","Config":{"Labels":{"io.x-k8s.kind.cluster":"dev","io.x-k8s.kind.role":"worker"}},"State":{"Running":false,"Status":"exited"}},
      {"Name":"dev-control-plane","Config":{"Labels":{"io.x-k8s.kind.cluster":"dev","io.x-k8s.kind.role":"control-plane"}},"State":{"Running":true,"Status":"running"}},
      {"Name":"/dev-external-load-balancer","Config":{"Labels":{"io.x-k8s.kind.cluster":"dev","io.x-k8s.kind.role":"external-load-balancer"}},"State":{"Running":true,"Status":"running"}}
    ]"#;

    #[test]
    fn clusters_are_the_distinct_labels() {
        let json = INSPECT.replace(
            "/dev-worker\",\"Config\":{\"Labels\":{\"io.x-k8s.kind.cluster\":\"dev\"",
            "/b-worker\",\"Config\":{\"Labels\":{\"io.x-k8s.kind.cluster\":\"b\"",
        );
        assert_eq!(parse_cluster_labels(&json), ["b", "dev"]);
        assert!(parse_cluster_labels("[]").is_empty());
    }

    #[test]
    fn inspect_keeps_kubelet_nodes_with_state() {
        let nodes = parse_node_inspect(INSPECT, "dev").unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].name, "dev-worker");
        assert!(!nodes[0].running);
        assert_eq!(nodes[0].state, "exited");
        assert_eq!((nodes[1].role.as_str(), nodes[1].running), ("control-plane", true));
    }

    #[test]
    fn nodes_lists_by_label_then_inspects_control_plane_first() {
        let runner = FakeRunner::new().on(&["podman", "ps"], 0, "dev-worker\ndev-control-plane\n", "").on(
            &["podman", "container", "inspect"],
            0,
            INSPECT,
            "",
        );
        let nodes = Provider::new(EngineKind::Podman).nodes(&runner, "dev").unwrap();
        assert_eq!(nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["dev-control-plane", "dev-worker"]);
        let seen = runner.seen.lock().unwrap();
        assert_eq!(
            seen[0],
            ["podman", "ps", "--all", "--filter", "label=io.x-k8s.kind.cluster=dev", "--format", "{{.Names}}"]
        );
        assert_eq!(seen[1], ["podman", "container", "inspect", "dev-worker", "dev-control-plane"]);
    }

    #[test]
    fn exec_never_asks_for_privileges() {
        let cmd = Provider::new(EngineKind::Docker).exec_stdin("n1", &["ctr", "images", "import", "-"]);
        assert_eq!(cmd.argv(), ["docker", "exec", "-i", "n1", "ctr", "images", "import", "-"]);
    }
}
