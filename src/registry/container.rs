//! The registry's container on the provider that hosts the nodes: found by name, told
//! apart from other containers by kindload's label, attached to the nodes' network.

use serde_json::Value;

use crate::exec::{Cmd, Runner};
use crate::resolve::provider::Provider;

pub const LABEL: &str = "io.kindload.registry";
pub const PORT_LABEL: &str = "io.kindload.registry.port";

/// A container as `inspect` tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub name: String,
    pub running: bool,
    pub state: String,
    /// kindload's label: the registry name, when kindload made it.
    pub ours: bool,
    pub port: Option<u16>,
    pub networks: Vec<String>,
    pub image: String,
}

/// The container named `name`, or None when there is none.
pub fn find(runner: &dyn Runner, provider: Provider, name: &str) -> Option<Found> {
    let out = runner.output(&Cmd::new(provider.name()).args(["container", "inspect", name])).ok()?;
    if !out.success() {
        return None;
    }
    parse_inspect(&out.stdout).into_iter().next()
}

/// Every registry container kindload made on `provider`.
pub fn find_ours(runner: &dyn Runner, provider: Provider) -> Vec<Found> {
    let names = provider.labelled(runner, LABEL).unwrap_or_default();
    if names.is_empty() {
        return Vec::new();
    }
    let out = runner.output(&Cmd::new(provider.name()).args(["container", "inspect"]).args(&names));
    out.ok()
        .filter(|o| o.success())
        .map(|o| parse_inspect(&o.stdout))
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f.ours)
        .collect()
}

pub fn parse_inspect(json: &str) -> Vec<Found> {
    let items: Vec<Value> = serde_json::from_str(json.trim()).unwrap_or_default();
    items
        .iter()
        .map(|item| {
            let label = |key: &str| {
                item.pointer("/Config/Labels").and_then(|l| l.get(key)).and_then(Value::as_str).map(str::to_string)
            };
            Found {
                name: item.get("Name").and_then(Value::as_str).unwrap_or("").trim_start_matches('/').to_string(),
                running: item.pointer("/State/Running").and_then(Value::as_bool).unwrap_or(false),
                state: item.pointer("/State/Status").and_then(Value::as_str).unwrap_or("unknown").to_string(),
                ours: label(LABEL).is_some(),
                port: label(PORT_LABEL).and_then(|p| p.parse().ok()),
                networks: networks(item),
                image: item.pointer("/Config/Image").and_then(Value::as_str).unwrap_or("").to_string(),
            }
        })
        .collect()
}

/// The networks a container is attached to (not `none`/`host`), sorted.
fn networks(item: &Value) -> Vec<String> {
    let mut names: Vec<String> = item
        .pointer("/NetworkSettings/Networks")
        .and_then(Value::as_object)
        .map(|m| m.keys().filter(|k| !matches!(k.as_str(), "none" | "host" | "")).cloned().collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// The network a node container is on: `kind` when it is one of them, else the first.
pub fn node_network(runner: &dyn Runner, provider: Provider, node: &str) -> Result<Option<String>, String> {
    let out = runner.run(&Cmd::new(provider.name()).args(["container", "inspect", node])).map_err(|e| e.to_string())?;
    let found = parse_inspect(&out.stdout);
    let nets = found.first().map(|f| f.networks.clone()).unwrap_or_default();
    Ok(nets.iter().find(|n| *n == "kind").or_else(|| nets.first()).cloned())
}

/// What `registry up` runs.
#[derive(Debug, Clone)]
pub struct RunSpec<'a> {
    pub name: &'a str,
    pub port: u16,
    pub image: &'a str,
    pub network: &'a str,
    pub certs_dir: &'a str,
    pub volume: String,
}

pub fn run_cmd(provider: Provider, spec: &RunSpec) -> Cmd {
    let port = super::CONTAINER_PORT;
    Cmd::new(provider.name())
        .args(["run", "--detach", "--name", spec.name, "--hostname", spec.name])
        .args(["--restart", "always"])
        .args(["--label", &format!("{LABEL}={}", spec.name)])
        .args(["--label", &format!("{PORT_LABEL}={}", spec.port)])
        .args(["--network", spec.network])
        .args(["--publish", &format!("127.0.0.1:{}:{port}", spec.port)])
        .args(["--volume", &format!("{}:/certs:ro", spec.certs_dir)])
        .args(["--volume", &format!("{}:/var/lib/registry", spec.volume)])
        .args(["--env", &format!("REGISTRY_HTTP_ADDR=0.0.0.0:{port}")])
        .args(["--env", "REGISTRY_HTTP_TLS_CERTIFICATE=/certs/tls.crt"])
        .args(["--env", "REGISTRY_HTTP_TLS_KEY=/certs/tls.key"])
        .args(["--env", "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=/var/lib/registry"])
        .args(["--env", "REGISTRY_STORAGE_DELETE_ENABLED=true"])
        .arg(spec.image)
}

/// The named volume holding the registry's images.
pub fn volume_name(name: &str) -> String {
    format!("{name}-data")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::engine::EngineKind;

    #[test]
    fn inspect_tells_ours_port_and_networks() {
        let json = r#"[{"Name":"/kindload-registry","Config":{"Image":"registry:2","Labels":{"io.kindload.registry":"kindload-registry","io.kindload.registry.port":"5001"}},
            "State":{"Running":true,"Status":"running"},"NetworkSettings":{"Networks":{"kind":{},"none":{}}}}]"#;
        let found = &parse_inspect(json)[0];
        assert!(found.ours && found.running);
        assert_eq!(found.port, Some(5001));
        assert_eq!(found.networks, ["kind"]);
        let other = r#"[{"Name":"/web","Config":{"Labels":null},"State":{"Running":false,"Status":"exited"},"NetworkSettings":{"Networks":{"none":{}}}}]"#;
        let found = &parse_inspect(other)[0];
        assert!(!found.ours && !found.running && found.networks.is_empty());
    }

    #[test]
    fn runs_with_tls_on_the_nodes_network_published_on_loopback() {
        let spec = RunSpec {
            name: "kindload-registry",
            port: 5001,
            image: "registry:2",
            network: "kind",
            certs_dir: "/s/registry/kindload-registry",
            volume: volume_name("kindload-registry"),
        };
        let argv = run_cmd(Provider::new(EngineKind::Docker), &spec).argv().join(" ");
        assert!(argv.contains("--network kind --publish 127.0.0.1:5001:5000"), "{argv}");
        assert!(argv.contains("--volume /s/registry/kindload-registry:/certs:ro"), "{argv}");
        assert!(argv.contains("--env REGISTRY_HTTP_TLS_KEY=/certs/tls.key"), "{argv}");
        assert!(argv.ends_with("registry:2"), "{argv}");
        assert!(!argv.contains("--privileged"));
    }
}
