//! What `doctor` says about the registry.

use super::trust::read_trust;
use super::{cluster_address, host_address, store};
use crate::commands::context::env;
use crate::commands::Context;
use crate::error::EXIT_FAILED;
use crate::registry::{ca, container, DEFAULT_PORT};
use crate::resolve::node::Node;
use crate::resolve::provider::Provider;

/// What `doctor` says about the registry: lines to print (`None`) or problems with their
/// exit status and fix. No registry is no problem: it is optional.
pub fn doctor(ctx: &Context, provider: Provider, nodes: &[Node]) -> Vec<(Option<i32>, String, Option<String>)> {
    let name = env("KINDLOAD_REGISTRY").unwrap_or_else(|| crate::registry::DEFAULT_NAME.to_string());
    let mut lines = Vec::new();
    let Some(found) = container::find(ctx.runner(), provider, &name) else {
        lines.push((
            None,
            format!(
                "note  no kindload registry {name} on {} (optional: `kindload registry up` makes loads go through it, a reload costing what changed)",
                provider.name()
            ),
            None,
        ));
        return lines;
    };
    if !found.ours {
        lines.push((None, format!("note  a container named {name} exists but kindload did not make it"), None));
        return lines;
    }
    let port = found.port.unwrap_or(DEFAULT_PORT);
    if !found.running {
        lines.push((
            Some(EXIT_FAILED),
            format!("registry {name} is {}: pushes and pulls through it fail", found.state),
            Some("`kindload registry up`".into()),
        ));
        return lines;
    }
    lines.push((
        None,
        format!("ok    registry {name} running at {} (nodes and pods: {})", host_address(port), cluster_address(&name)),
        None,
    ));
    let Ok(store) = store() else { return lines };
    let ca = store.ca_pem();
    if let Some(days) = std::fs::read_to_string(store.server_files(&name).cert).ok().as_deref().and_then(ca::days_left)
    {
        if days < 30 {
            lines.push((
                Some(EXIT_FAILED),
                format!("registry {name}'s certificate expires in {days} day(s)"),
                Some("`kindload registry up` renews it".into()),
            ));
        } else {
            lines.push((None, format!("ok    registry {name}'s certificate expires in {days} day(s)"), None));
        }
    }
    for trust in read_trust(ctx.runner(), provider, nodes, &name, port, ca.as_deref()) {
        match trust.problem {
            None => lines.push((None, format!("ok    node {} trusts registry {name}", trust.name), None)),
            Some(problem) => lines.push((
                Some(EXIT_FAILED),
                format!("node {} does not trust registry {name}: {problem}", trust.name),
                Some("`kindload registry up`".into()),
            )),
        }
    }
    lines.push((
        None,
        format!(
            "note  to send Skaffold's images there: `skaffold dev --default-repo={host}` (or SKAFFOLD_DEFAULT_REPO={host}) with `build.local.push: true`",
            host = host_address(port)
        ),
        None,
    ));
    lines
}
