//! `registry up`: the registry container running on the nodes' network, answering over TLS,
//! and every node of the cluster trusting it. A failed `up` leaves no container behind.

use super::kube::apply_manifests;
use super::start::{adopt, start_new, Started};
use super::trust::ensure_trust;
use super::{check_name, cluster_address, hold_lock, host_address, registry_image, store};
use crate::commands::Context;
use crate::error::{Error, Result};
use crate::exec::{Cmd, Runner};
use crate::registry::ca::Store;
use crate::registry::container::{self, Found, RunSpec};
use crate::registry::{hosts, DEFAULT_PORT};
use crate::request::cli::RegistryUpArgs;
use crate::resolve::holdings::Depth;
use crate::resolve::node::Node;
use crate::resolve::provider::Provider;

pub(super) fn up(ctx: &Context, args: RegistryUpArgs) -> Result<i32> {
    let name = args.target.name.clone();
    check_name(&name)?;
    let (cluster, provider, nodes) = ctx.nodes(&args.target.cluster, Depth::Full, &[])?;
    let runner = ctx.runner();
    let network = network_of(runner, provider, &cluster.name, &nodes)?;
    let running: Vec<&Node> = nodes.iter().filter(|n| n.running).collect();
    if !running.is_empty() && running.iter().all(|n| n.config_path.is_none()) {
        // No node could trust it: refuse before anything is started or written.
        return Err(no_config_path_error(&running, &name));
    }
    // From here on this run reads and changes shared state: one `up` or `down` at a time.
    let _lock = hold_lock(ctx, &format!("registry up for cluster {}", cluster.name))?;
    let store = store()?;
    let mut existing = container::find(runner, provider, &name);
    if let Some(found) = existing.as_ref().filter(|f| !f.ours) {
        return Err(not_ours(provider, &name, found));
    }
    let remembered = remembered_port(&store, &name);
    let mut port = port_to_use(&name, existing.as_ref(), args.port, remembered)?;
    let (files, cert_made) = store
        .ensure_server(&name, &cert_names(&name))
        .map_err(|e| Error::failed(format!("cannot make the registry's certificate: {e}"), ""))?;
    let ca_pem = store.ca_pem().ok_or_else(|| Error::failed("kindload's CA could not be read back", ""))?;
    let mut changes: Vec<String> = Vec::new();
    if let Some(found) = existing.as_ref().filter(|f| never_started(f)) {
        // Left by an `up` that failed before this one could clean up: make it anew.
        runner.run(&Cmd::new(provider.name()).args(["rm", "--force", &name]))?;
        changes.push(format!("removed {name}, which was {} and never started", found.state));
        existing = None;
    }
    if existing.is_none() {
        let image = registry_image(provider, &args.image);
        let spec = RunSpec {
            name: &name,
            port,
            image: &image,
            network: &network,
            certs_dir: &files.dir.to_string_lossy(),
            volume: container::volume_name(&name),
        };
        match start_new(ctx, provider, &spec, &ca_pem)? {
            Started::Here => {
                remember_port(&store, &name, port);
                changes.push(format!("started {name} ({image}) on network {network}, published on 127.0.0.1:{port}"))
            }
            Started::ByAnother(found) => {
                // Another kindload (without this state directory's lock) ran it first: use it.
                changes.push(format!("{name} was started meanwhile by another kindload: using it"));
                port = port_to_use(&name, Some(&found), args.port, None)?;
                existing = Some(found);
            }
        }
    }
    if let Some(found) = existing {
        changes.extend(adopt(ctx, provider, &found, &network, port, cert_made, &ca_pem)?);
    }
    let (trust, node_changes, untouchable) = ensure_trust(runner, provider, &nodes, &name, port, &ca_pem);
    changes.extend(node_changes);
    let applied = apply_manifests(runner, &cluster.name, &host_address(port), &cluster_address(&name), &ca_pem);
    if changes.is_empty() {
        ctx.say(format!("registry {name}: already up, nothing changed"));
    }
    for change in &changes {
        ctx.say(change);
    }
    ctx.say(applied);
    let trusted = trust.iter().filter(|t| t.trusted).count();
    println!(
        "registry {name} runs at {} (nodes and pods: {}); {trusted} of {} node(s) trust it; CA: {}",
        host_address(port),
        cluster_address(&name),
        trust.len(),
        store.ca_path().display()
    );
    if !untouchable.is_empty() {
        return Err(no_config_path_error(&untouchable, &name));
    }
    let failed: Vec<String> = trust
        .iter()
        .filter(|t| !t.trusted)
        .map(|t| format!("{}: {}", t.name, t.problem.as_deref().unwrap_or("not trusted")))
        .collect();
    if !failed.is_empty() {
        return Err(Error::failed(
            format!("not every node trusts registry {name}: {}", failed.join("; ")),
            "fix what is named, then run `kindload registry up` again",
        ));
    }
    Ok(0)
}

/// The port asked for, else the one the registry has, else the one it last had (its
/// container was removed), else the default.
fn port_to_use(name: &str, existing: Option<&Found>, asked: Option<u16>, remembered: Option<u16>) -> Result<u16> {
    let has = existing.and_then(|f| f.port);
    match (has, asked) {
        (Some(has), Some(asked)) if has != asked => Err(Error::input(
            format!("registry {name} already runs on port {has}, not {asked}"),
            format!(
                "use --port {has} (or leave it out), or `kindload registry down --all --name {name}` first to move it"
            ),
        )),
        (_, Some(asked)) => Ok(asked),
        (Some(has), None) => Ok(has),
        (None, None) => Ok(remembered.unwrap_or(DEFAULT_PORT)),
    }
}

/// The port the registry was last started on, kept beside its certificate: a container
/// removed by hand is made again where the nodes' files and the engines' names point.
fn remembered_port(store: &Store, name: &str) -> Option<u16> {
    std::fs::read_to_string(store.server_files(name).dir.join(PORT_FILE)).ok()?.trim().parse().ok()
}

fn remember_port(store: &Store, name: &str, port: u16) {
    // Best effort: without it, a re-made container takes --port or the default.
    let _ = std::fs::write(store.server_files(name).dir.join(PORT_FILE), port.to_string());
}

const PORT_FILE: &str = "port";

/// Created but never run: what `run` leaves when the engine refuses to start the container.
fn never_started(found: &Found) -> bool {
    !found.running && matches!(found.state.as_str(), "created" | "configured")
}

fn not_ours(provider: Provider, name: &str, found: &Found) -> Error {
    Error::input(
        format!("a container named {name:?} already exists on {} and kindload did not make it", provider.name()),
        format!(
            "pick another name with --name, or remove that container (`{} rm -f {name}`) if it is not needed (it runs {})",
            provider.name(),
            found.image
        ),
    )
}

/// The names and addresses the registry is reached by: its certificate must cover them all.
fn cert_names(name: &str) -> Vec<String> {
    vec![name.to_string(), "localhost".into(), "127.0.0.1".into(), "::1".into()]
}

fn no_config_path_error(nodes: &[&Node], name: &str) -> Error {
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    Error::input(
        format!(
            "node(s) {} read no hosts.toml files (their containerd sets no registry config_path, as kind node images before v0.27 do), so they cannot be told to trust registry {name}; they were left untouched",
            names.join(", ")
        ),
        format!(
            "recreate the cluster with a kind node image v0.27 or later, or add to its kind config:\n{}",
            hosts::config_patch(nodes[0])
        ),
    )
}

/// The nodes' network: where the registry must be for nodes to reach it by name.
fn network_of(runner: &dyn Runner, provider: Provider, cluster: &str, nodes: &[Node]) -> Result<String> {
    let first = nodes.first().ok_or_else(|| Error::usage(format!("cluster {cluster} has no nodes"), ""))?;
    match container::node_network(runner, provider, &first.name).map_err(|e| Error::failed(e, ""))? {
        Some(net) => Ok(net),
        None => Err(Error::input(
            format!(
                "the nodes of cluster {cluster} are on no container network (node {} runs with --network none), so no registry can reach them",
                first.name
            ),
            format!(
                "create the cluster with kind, which puts its nodes on the `kind` network (`kind create cluster --name {cluster}`)"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_is_the_one_asked_else_held_else_remembered_else_the_default() {
        let json = r#"[{"Name":"/r","Config":{"Labels":{"io.kindload.registry":"r","io.kindload.registry.port":"6001"}},"State":{"Running":true,"Status":"running"}}]"#;
        let held = container::parse_inspect(json).remove(0);
        assert_eq!(port_to_use("r", Some(&held), None, Some(7001)).unwrap(), 6001, "the container's port wins");
        assert_eq!(port_to_use("r", Some(&held), Some(6001), None).unwrap(), 6001);
        assert_eq!(port_to_use("r", Some(&held), Some(6002), None).unwrap_err().exit_code(), 2);
        assert_eq!(port_to_use("r", None, Some(6002), Some(7001)).unwrap(), 6002, "asked beats remembered");
        assert_eq!(port_to_use("r", None, None, Some(7001)).unwrap(), 7001, "a removed container comes back there");
        assert_eq!(port_to_use("r", None, None, None).unwrap(), DEFAULT_PORT);
    }
}
