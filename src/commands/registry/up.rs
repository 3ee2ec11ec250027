//! `registry up`: the registry container running on the nodes' network, answering over TLS,
//! and every node of the cluster trusting it. A failed `up` leaves no container behind.

use std::time::{Duration, Instant};

use super::kube::apply_manifests;
use super::trust::ensure_trust;
use super::{check_name, cluster_address, host_address, loopback, registry_image, store};
use crate::commands::Context;
use crate::error::{Error, Result};
use crate::exec::{Cmd, Runner};
use crate::registry::client::Client;
use crate::registry::container::{self, Found, RunSpec};
use crate::registry::{hosts, DEFAULT_PORT};
use crate::request::cli::RegistryUpArgs;
use crate::resolve::holdings::Depth;
use crate::resolve::node::Node;
use crate::resolve::provider::Provider;

const READY_TIMEOUT: Duration = Duration::from_secs(30);

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
    let store = store()?;
    let mut existing = container::find(runner, provider, &name);
    if let Some(found) = existing.as_ref().filter(|f| !f.ours) {
        return Err(Error::input(
            format!("a container named {name:?} already exists on {} and kindload did not make it", provider.name()),
            format!(
                "pick another name with --name, or remove that container (`{} rm -f {name}`) if it is not needed (it runs {})",
                provider.name(),
                found.image
            ),
        ));
    }
    let port = port_to_use(&name, existing.as_ref(), args.port)?;
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
    let client = Client::new(&loopback(port), &ca_pem).map_err(|e| Error::failed(e, ""))?;
    match existing {
        None => {
            let image = registry_image(provider, &args.image);
            let spec = RunSpec {
                name: &name,
                port,
                image: &image,
                network: &network,
                certs_dir: &files.dir.to_string_lossy(),
                volume: container::volume_name(&name),
            };
            start_new(ctx, provider, &spec, &client)?;
            changes.push(format!("started {name} ({image}) on network {network}, published on 127.0.0.1:{port}"));
        }
        Some(found) => {
            if !found.networks.contains(&network) {
                runner.run(&Cmd::new(provider.name()).args(["network", "connect", &network, &name]))?;
                changes.push(format!("connected {name} to network {network}"));
            }
            if !found.running {
                runner.run(&Cmd::new(provider.name()).args(["start", &name]))?;
                changes.push(format!("started {name} again (it was {})", found.state));
            } else if cert_made {
                runner.run(&Cmd::new(provider.name()).args(["restart", &name]))?;
                changes.push(format!("restarted {name} with a new certificate"));
            }
            wait_ready(ctx, provider, &name, &client)?;
        }
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

/// The port asked for, else the one the registry has, else the default.
fn port_to_use(name: &str, existing: Option<&Found>, asked: Option<u16>) -> Result<u16> {
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
        (None, None) => Ok(DEFAULT_PORT),
    }
}

/// Created but never run: what `run` leaves when the engine refuses to start the container.
fn never_started(found: &Found) -> bool {
    !found.running && matches!(found.state.as_str(), "created" | "configured")
}

/// Runs a new registry container and waits for it to answer; on any failure removes the
/// container and the volume this run made, so the next `up` starts clean.
fn start_new(ctx: &Context, provider: Provider, spec: &RunSpec, client: &Client) -> Result<()> {
    let runner = ctx.runner();
    let port = spec.port;
    if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", port)) {
        return Err(Error::input(
            format!("port {port} on 127.0.0.1 is in use ({e}): the registry cannot be published there"),
            format!("pick a free port with --port (e.g. --port {}), or stop what listens on {port}", port + 1),
        ));
    }
    let volume_existed =
        runner.output(&Cmd::new(provider.name()).args(["volume", "inspect", &spec.volume])).is_ok_and(|o| o.success());
    let started = runner.run(&container::run_cmd(provider, spec)).map_err(|e| {
        Error::failed(
            format!("starting the registry container failed: {e}"),
            format!(
                "make sure {} can run {} (`{} pull {}`, or pass a local image with --image)",
                provider.name(),
                spec.image,
                provider.name(),
                spec.image
            ),
        )
    });
    let result = started.and_then(|_| wait_ready(ctx, provider, spec.name, client));
    if let Err(e) = result {
        let mut removed = Vec::new();
        if runner.run(&Cmd::new(provider.name()).args(["rm", "--force", spec.name])).is_ok() {
            removed.push(format!("container {}", spec.name));
        }
        if !volume_existed
            && runner.run(&Cmd::new(provider.name()).args(["volume", "rm", "--force", &spec.volume])).is_ok()
        {
            removed.push(format!("volume {}", spec.volume));
        }
        if !removed.is_empty() {
            ctx.say(format!("removed what the failed start left: {}", removed.join(" and ")));
        }
        return Err(e);
    }
    Ok(())
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

fn wait_ready(ctx: &Context, provider: Provider, name: &str, client: &Client) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let last = match client.ping() {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            let logs = ctx
                .runner()
                .output(&Cmd::new(provider.name()).args(["logs", "--tail", "20", name]))
                .map(|o| format!("{}{}", o.stdout, o.stderr))
                .unwrap_or_default();
            return Err(Error::failed(
                format!("registry {name} did not answer within {}s: {last}\n{}", READY_TIMEOUT.as_secs(), logs.trim()),
                format!("see `{} logs {name}`", provider.name()),
            ));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}
