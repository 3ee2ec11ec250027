//! A node's trust in the registry: the hosts.toml files under containerd's `config_path`,
//! written where missing, read back, and removed on `down`.

use crate::exec::Runner;
use crate::registry::{hosts, NodeTrust};
use crate::resolve::node::Node;
use crate::resolve::provider::Provider;

/// Writes the hosts.toml files every node lacks. Returns each node's trust, what changed,
/// and the nodes that cannot be configured (no config_path).
pub(crate) fn ensure_trust<'a>(
    runner: &dyn Runner,
    provider: Provider,
    nodes: &'a [Node],
    name: &str,
    port: u16,
    ca_pem: &str,
) -> (Vec<NodeTrust>, Vec<String>, Vec<&'a Node>) {
    let mut trust = Vec::new();
    let mut changes = Vec::new();
    let mut untouchable = Vec::new();
    for node in nodes {
        let mut row =
            NodeTrust { name: node.name.clone(), trusted: false, config_path: node.config_path.clone(), problem: None };
        if !node.running {
            row.problem = Some(format!("node is {}: start it, then run `kindload registry up` again", node.state));
        } else if let Some(config_path) = &node.config_path {
            let wanted = hosts::wanted(config_path, name, port, ca_pem);
            let result = hosts::stale(runner, provider, &node.name, &wanted).and_then(|stale| {
                for file in &stale {
                    hosts::write(runner, provider, &node.name, file)?;
                }
                Ok(stale.len())
            });
            match result {
                Ok(0) => row.trusted = true,
                Ok(n) => {
                    row.trusted = true;
                    changes.push(format!("{}: wrote {n} file(s) under {}", node.name, hosts::hosts_dir(config_path)));
                }
                Err(e) => row.problem = Some(format!("cannot write hosts.toml: {e}")),
            }
        } else {
            row.problem = Some(
                "containerd sets no registry config_path: recreate the cluster with it (see `kindload registry up`)"
                    .into(),
            );
            untouchable.push(node);
        }
        trust.push(row);
    }
    (trust, changes, untouchable)
}

/// Each node's trust, read only.
pub(super) fn read_trust(
    runner: &dyn Runner,
    provider: Provider,
    nodes: &[Node],
    name: &str,
    port: u16,
    ca_pem: Option<&str>,
) -> Vec<NodeTrust> {
    nodes
        .iter()
        .map(|node| {
            let mut row = NodeTrust {
                name: node.name.clone(),
                trusted: false,
                config_path: node.config_path.clone(),
                problem: None,
            };
            match (&node.config_path, ca_pem) {
                _ if !node.running => row.problem = Some(format!("node is {}", node.state)),
                (None, _) => row.problem = Some("containerd sets no registry config_path".into()),
                (Some(_), None) => {
                    row.problem = Some("kindload's CA was never made: run `kindload registry up`".into())
                }
                (Some(cp), Some(ca)) => {
                    match hosts::stale(runner, provider, &node.name, &hosts::wanted(cp, name, port, ca)) {
                        Ok(stale) if stale.is_empty() => row.trusted = true,
                        Ok(_) => {
                            row.problem = Some("hosts.toml missing or outdated: run `kindload registry up`".into())
                        }
                        Err(e) => row.problem = Some(e),
                    }
                }
            }
            row
        })
        .collect()
}

/// Removes the registry's hosts.toml files from every running node that has a
/// `config_path`; returns a line per node changed.
pub(super) fn remove_trust(
    runner: &dyn Runner,
    provider: Provider,
    nodes: &[Node],
    name: &str,
    port: u16,
) -> Result<Vec<String>, String> {
    let mut said = Vec::new();
    for node in nodes.iter().filter(|n| n.running) {
        let Some(cp) = &node.config_path else { continue };
        let dirs = hosts::dirs(cp, name, port);
        if !hosts::written_for(runner, provider, &node.name, &dirs, name)? {
            continue;
        }
        hosts::remove(runner, provider, &node.name, &dirs)
            .map_err(|e| format!("cannot undo the registry's files on {}: {e}", node.name))?;
        said.push(format!("{}: removed the hosts.toml files for localhost:{port} and {name}", node.name));
    }
    Ok(said)
}
