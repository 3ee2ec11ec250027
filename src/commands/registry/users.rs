//! Which clusters use the registry: those with a node whose containerd holds a hosts.toml
//! kindload wrote for it. Read from the nodes themselves, so the answer holds however the
//! clusters came and went.

use crate::error::Result;
use crate::exec::Runner;
use crate::registry::hosts;
use crate::resolve::holdings::Depth;
use crate::resolve::node::{self, Node};
use crate::resolve::provider::Provider;

/// A cluster that uses the registry, or may: `unsure` says why its nodes could not be read.
#[derive(Debug, Clone)]
pub(super) struct User {
    pub cluster: String,
    pub unsure: Option<String>,
    pub nodes: Vec<Node>,
}

impl User {
    pub fn describe(&self) -> String {
        match &self.unsure {
            None => self.cluster.clone(),
            Some(why) => format!("{} ({why})", self.cluster),
        }
    }
}

/// The clusters on `provider`, other than `except`, that use registry `name`. A cluster
/// whose nodes cannot be read (stopped) counts: its images are not deleted on a guess.
pub(super) fn clusters_using(
    runner: &dyn Runner,
    provider: Provider,
    name: &str,
    port: u16,
    except: Option<&str>,
) -> Result<Vec<User>> {
    let mut users = Vec::new();
    for cluster in provider.clusters(runner)?.into_iter().filter(|c| Some(c.as_str()) != except) {
        // A cluster being deleted while we look fails one listing: the second tells what is left.
        let containers = match provider.nodes(runner, &cluster).or_else(|_| provider.nodes(runner, &cluster))? {
            gone if gone.is_empty() => continue,
            containers => containers,
        };
        let nodes = node::probe_all(runner, provider, containers, Depth::Full, &[]);
        if let Some(unsure) = uses(runner, provider, &nodes, name, port) {
            users.push(User { cluster, unsure, nodes });
        }
    }
    Ok(users)
}

/// Some(None) when a node trusts the registry, Some(why) when no running node could say
/// and some are stopped, None when no node uses it.
fn uses(runner: &dyn Runner, provider: Provider, nodes: &[Node], name: &str, port: u16) -> Option<Option<String>> {
    let mut unreadable = Vec::new();
    for node in nodes {
        let Some(cp) = node.config_path.as_deref().filter(|_| node.running) else {
            if !node.running {
                unreadable.push(format!("{} is {}", node.name, node.state));
            }
            continue;
        };
        match hosts::written_for(runner, provider, &node.name, &hosts::dirs(cp, name, port), name) {
            Ok(true) => return Some(None),
            Ok(false) => {}
            Err(e) => unreadable.push(format!("{}: {e}", node.name)),
        }
    }
    (!unreadable.is_empty()).then(|| Some(format!("cannot tell: {}", unreadable.join("; "))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::fake::FakeRunner;
    use crate::resolve::engine::EngineKind;

    fn node(name: &str, running: bool) -> Node {
        let state = if running { "running" } else { "exited" };
        Node { running, state: state.into(), ..Node::for_tests(name) }
    }

    #[test]
    fn a_node_holding_our_hosts_file_makes_its_cluster_a_user() {
        let ours = "@@kindload-file /etc/containerd/certs.d/localhost:5001/hosts.toml\n# written by kindload registry reg\nserver = \"https://reg:5000\"\n";
        let provider = Provider::new(EngineKind::Docker);
        let runner = FakeRunner::new().on(&["docker", "exec", "a-worker"], 0, ours, "");
        assert_eq!(uses(&runner, provider, &[node("a-worker", true)], "reg", 5001), Some(None));
        let none = FakeRunner::new().on(&["docker", "exec", "b-worker"], 0, "", "");
        assert_eq!(uses(&none, provider, &[node("b-worker", true)], "reg", 5001), None);
        let stopped = uses(&none, provider, &[node("c-worker", false)], "reg", 5001);
        assert_eq!(stopped, Some(Some("cannot tell: c-worker is exited".into())));
    }
}
