//! `registry status`, `registry ca` and `registry manifests`: what the registry is, where
//! it is reached, which clusters and nodes trust it. Nothing is changed.

use super::trust::read_trust;
use super::users::clusters_using;
use super::{cluster_address, host_address, store};
use crate::commands::Context;
use crate::error::{Error, Result, EXIT_FAILED};
use crate::registry::ca;
use crate::registry::container::{self, Found};
use crate::registry::manifests;
use crate::registry::{Status, DEFAULT_PORT};
use crate::request::cli::{OutputFormat, RegistryManifestsArgs, RegistryStatusArgs, RegistryTarget};
use crate::resolve::engine::EngineKind;
use crate::resolve::holdings::Depth;
use crate::resolve::node::Node;
use crate::resolve::provider::Provider;

/// The registry's container and the cluster asked about, when it exists.
pub(super) struct Located {
    pub provider: Provider,
    pub found: Option<Found>,
    /// The cluster's name and nodes; None when the cluster is not found.
    pub cluster: Option<(String, Vec<Node>)>,
}

impl Located {
    pub fn port(&self) -> u16 {
        self.found.as_ref().and_then(|f| f.port).unwrap_or(DEFAULT_PORT)
    }
}

/// The registry container: on the cluster's provider when the cluster is found, else on
/// whichever provider has it.
pub(super) fn locate(ctx: &Context, target: &RegistryTarget) -> Result<Located> {
    let name = &target.name;
    match ctx.nodes(&target.cluster, Depth::Full, &[]) {
        Ok((cluster, provider, nodes)) => Ok(Located {
            provider,
            found: container::find(ctx.runner(), provider, name),
            cluster: Some((cluster.name, nodes)),
        }),
        Err(Error::ClusterNotFound { .. }) => Ok(find_anywhere(ctx, target)),
        Err(e) => Err(e),
    }
}

/// The registry container on the provider asked for, else on Docker, then Podman.
pub(super) fn find_anywhere(ctx: &Context, target: &RegistryTarget) -> Located {
    let kinds = match target.cluster.provider {
        Some(kind) => vec![kind],
        None => vec![EngineKind::Docker, EngineKind::Podman],
    };
    for kind in &kinds {
        let provider = Provider::new(*kind);
        if let Some(found) = container::find(ctx.runner(), provider, &target.name) {
            return Located { provider, found: Some(found), cluster: None };
        }
    }
    Located { provider: Provider::new(kinds[0]), found: None, cluster: None }
}

fn status_of(ctx: &Context, target: &RegistryTarget) -> Result<Status> {
    let name = &target.name;
    let located = locate(ctx, target)?;
    let port = located.port();
    let store = store()?;
    let ca_pem = store.ca_pem();
    let cert = std::fs::read_to_string(store.server_files(name).cert).ok();
    let running = located.found.as_ref().is_some_and(|f| f.ours && f.running);
    let clusters = match &located.found {
        Some(f) if f.ours => clusters_using(ctx.runner(), located.provider, name, port, None)?
            .into_iter()
            .map(|u| u.describe())
            .collect(),
        _ => Vec::new(),
    };
    let nodes = match &located.cluster {
        Some((_, nodes)) => read_trust(ctx.runner(), located.provider, nodes, name, port, ca_pem.as_deref()),
        None => Vec::new(),
    };
    Ok(Status {
        name: name.to_string(),
        running,
        state: match &located.found {
            None => "absent".into(),
            Some(f) if !f.ours => format!("{} (not made by kindload)", f.state),
            Some(f) => f.state.clone(),
        },
        host_address: host_address(port),
        cluster_address: cluster_address(name),
        ca_path: store.ca_path().display().to_string(),
        certificate_days_left: cert.as_deref().and_then(ca::days_left),
        clusters,
        nodes,
    })
}

pub(super) fn status(ctx: &Context, args: RegistryStatusArgs) -> Result<i32> {
    let status = status_of(ctx, &args.target)?;
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&status).expect("status serialises")),
        OutputFormat::Human => {
            println!(
                "registry {}: {}",
                status.name,
                if status.running { "running".to_string() } else { status.state.clone() }
            );
            println!("  push to:        {}", status.host_address);
            println!("  nodes and pods: {}", status.cluster_address);
            println!("  CA:             {}", status.ca_path);
            if let Some(days) = status.certificate_days_left {
                println!("  certificate:    expires in {days} day(s)");
            }
            let clusters = if status.clusters.is_empty() { "none".to_string() } else { status.clusters.join(", ") };
            println!("  used by:        {clusters}");
            for node in &status.nodes {
                match &node.problem {
                    None => println!("  {}: trusts it", node.name),
                    Some(p) => println!("  {}: does not trust it: {p}", node.name),
                }
            }
        }
    }
    Ok(if status.running { 0 } else { EXIT_FAILED })
}

/// The CA is one per machine: the target flags are accepted and change nothing.
pub(super) fn print_ca() -> Result<i32> {
    let store = store()?;
    let pem = store.ca_pem().ok_or_else(|| {
        Error::usage(
            format!("kindload has made no CA yet ({} does not exist)", store.ca_path().display()),
            "run `kindload registry up` first",
        )
    })?;
    print!("{pem}");
    Ok(0)
}

pub(super) fn print_manifests(ctx: &Context, args: RegistryManifestsArgs) -> Result<i32> {
    let name = &args.target.name;
    let pem = store()?
        .ca_pem()
        .ok_or_else(|| Error::usage("kindload has made no CA yet", "run `kindload registry up` first"))?;
    let port = locate(ctx, &args.target)?.port();
    print!("{}", manifests::render(&host_address(port), &cluster_address(name), &pem, &args.ca_namespace));
    Ok(0)
}
