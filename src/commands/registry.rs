//! `kindload registry up|status|down|ca|manifests` and `kindload load --via-registry`.

use std::time::{Duration, Instant};

use super::Context;
use crate::error::{Error, Result, EXIT_FAILED};
use crate::exec::{Cmd, Runner};
use crate::registry::ca::{self, Store};
use crate::registry::client::Client;
use crate::registry::container::{self, Found, RunSpec};
use crate::registry::hosts;
use crate::registry::manifests;
use crate::registry::{NodeTrust, Status, CONTAINER_PORT, DEFAULT_PORT};
use crate::request::cli::{
    ClusterArgs, OutputFormat, RegistryCommand, RegistryDownArgs, RegistryManifestsArgs, RegistryNameArgs,
    RegistryStatusArgs, RegistryUpArgs,
};
use crate::resolve::engine::EngineKind;
use crate::resolve::holdings::Depth;
use crate::resolve::node::Node;
use crate::resolve::provider::Provider;

const READY_TIMEOUT: Duration = Duration::from_secs(30);

pub fn registry(ctx: &Context, command: RegistryCommand) -> Result<i32> {
    match command {
        RegistryCommand::Up(args) => up(ctx, args),
        RegistryCommand::Status(args) => status(ctx, args),
        RegistryCommand::Down(args) => down(ctx, args),
        RegistryCommand::Ca(args) => print_ca(args),
        RegistryCommand::Manifests(args) => print_manifests(ctx, args),
    }
}

pub(super) fn store() -> Result<Store> {
    crate::registry::state_dir().map(|d| Store::new(&d)).ok_or_else(|| {
        Error::usage("no state directory for kindload's CA", "set HOME, XDG_STATE_HOME or KINDLOAD_STATE_DIR")
    })
}

fn check_name(name: &str) -> Result<()> {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.len() <= 63;
    if ok {
        Ok(())
    } else {
        Err(Error::usage(
            format!("{name:?} cannot name a registry: nodes reach it by this name, so it must be a host name"),
            "use lowercase letters, digits, '-' and '.', starting with a letter or digit (e.g. --name kindload-registry)",
        ))
    }
}

pub(super) fn cluster_address(name: &str) -> String {
    format!("{name}:{CONTAINER_PORT}")
}

pub(super) fn host_address(port: u16) -> String {
    format!("localhost:{port}")
}

/// Where kindload itself connects: the published address, not whatever `localhost`
/// resolves to first (the certificate covers both).
pub(super) fn loopback(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// Podman asks which registry a short name means (or refuses, without a terminal): the
/// default image is named in full there.
fn registry_image(provider: Provider, image: &str) -> String {
    if provider.kind == EngineKind::Podman && image == crate::registry::DEFAULT_IMAGE {
        format!("docker.io/library/{image}")
    } else {
        image.to_string()
    }
}

/// The names and addresses the registry is reached by: its certificate must cover them all.
fn cert_names(name: &str) -> Vec<String> {
    vec![name.to_string(), "localhost".into(), "127.0.0.1".into(), "::1".into()]
}

// ---------------------------------------------------------------- up

fn up(ctx: &Context, args: RegistryUpArgs) -> Result<i32> {
    let name = args.registry.name.clone();
    check_name(&name)?;
    let (cluster, provider, nodes) = ctx.nodes(&args.cluster, Depth::Full, &[])?;
    let runner = ctx.runner();
    let network = network_of(runner, provider, &cluster.name, &nodes)?;
    let store = store()?;
    let existing = container::find(runner, provider, &name);
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
    let port = match (&existing, args.port) {
        (Some(found), Some(asked)) if found.port.is_some_and(|p| p != asked) => {
            return Err(Error::input(
                format!("registry {name} already runs on port {}, not {asked}", found.port.unwrap_or_default()),
                format!(
                    "use --port {} (or leave it out), or `kindload registry down --name {name}` first to move it",
                    found.port.unwrap_or_default()
                ),
            ))
        }
        (_, Some(asked)) => asked,
        (Some(found), None) => found.port.unwrap_or(DEFAULT_PORT),
        (None, None) => DEFAULT_PORT,
    };
    let (files, cert_made) = store
        .ensure_server(&name, &cert_names(&name))
        .map_err(|e| Error::failed(format!("cannot make the registry's certificate: {e}"), ""))?;
    let ca_pem = store.ca_pem().ok_or_else(|| Error::failed("kindload's CA could not be read back", ""))?;
    let mut changes: Vec<String> = Vec::new();
    match existing {
        None => {
            if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", port)) {
                return Err(Error::input(
                    format!("port {port} on 127.0.0.1 is in use ({e}): the registry cannot be published there"),
                    format!("pick a free port with --port (e.g. --port {}), or stop what listens on {port}", port + 1),
                ));
            }
            let image = registry_image(provider, &args.image);
            let spec = RunSpec {
                name: &name,
                port,
                image: &image,
                network: &network,
                certs_dir: &files.dir.to_string_lossy(),
                volume: container::volume_name(&name),
            };
            runner.run(&container::run_cmd(provider, &spec)).map_err(|e| {
                Error::failed(
                    format!("starting the registry container failed: {e}"),
                    format!(
                        "make sure {} can run {} (`{} pull {}`, or pass a local image with --image)",
                        provider.name(),
                        image,
                        provider.name(),
                        image
                    ),
                )
            })?;
            changes.push(format!("started {name} ({}) on network {network}, published on 127.0.0.1:{port}", image));
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
        }
    }
    let client = Client::new(&loopback(port), &ca_pem).map_err(|e| Error::failed(e, ""))?;
    wait_ready(ctx, provider, &name, &client)?;
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

/// Writes the hosts.toml files every node lacks. Returns each node's trust, what changed,
/// and the nodes that cannot be configured (no config_path).
pub(super) fn ensure_trust<'a>(
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
fn read_trust(
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

/// `kubectl apply` of the manifests when the cluster's API server answers; says what happened.
fn apply_manifests(runner: &dyn Runner, cluster: &str, host: &str, in_cluster: &str, ca_pem: &str) -> String {
    let context = format!("kind-{cluster}");
    let ready = runner.output(&Cmd::new("kubectl").args(["--context", &context, "get", "--raw", "/readyz"]));
    match ready {
        Err(_) => return "kubectl is not installed: not applied the local-registry-hosting and CA ConfigMaps (`kindload registry manifests | kubectl apply -f -` does it later)".into(),
        Ok(out) if !out.success() => {
            return format!("the API server of context {context} does not answer: not applied the local-registry-hosting and CA ConfigMaps (`kindload registry manifests | kubectl apply -f -` does it later)")
        }
        Ok(_) => {}
    }
    let yaml = manifests::render(host, in_cluster, ca_pem, "kube-public");
    let apply = Cmd::new("kubectl").args(["--context", &context, "apply", "-f", "-"]).stdin_bytes(yaml.into_bytes());
    match runner.run(&apply) {
        Ok(out) => format!("applied with kubectl ({context}): {}", out.stdout.trim().replace('\n', "; ")),
        Err(e) => format!("kubectl apply failed: {e}"),
    }
}

// ---------------------------------------------------------------- status / down / ca / manifests

/// The registry container: on the cluster's provider when the cluster is found, else on
/// whichever provider has it.
fn locate(ctx: &Context, cluster: &ClusterArgs, name: &str) -> Result<(Provider, Option<Found>, Option<Vec<Node>>)> {
    match ctx.nodes(cluster, Depth::Full, &[]) {
        Ok((_, provider, nodes)) => Ok((provider, container::find(ctx.runner(), provider, name), Some(nodes))),
        Err(Error::ClusterNotFound { .. }) => {
            for kind in [EngineKind::Docker, EngineKind::Podman] {
                let provider = Provider::new(kind);
                if let Some(found) = container::find(ctx.runner(), provider, name) {
                    return Ok((provider, Some(found), None));
                }
            }
            Ok((Provider::new(EngineKind::Docker), None, None))
        }
        Err(e) => Err(e),
    }
}

fn status_of(ctx: &Context, cluster: &ClusterArgs, name: &str) -> Result<Status> {
    let (provider, found, nodes) = locate(ctx, cluster, name)?;
    let store = store()?;
    let port = found.as_ref().and_then(|f| f.port).unwrap_or(DEFAULT_PORT);
    let ca_pem = store.ca_pem();
    let cert = std::fs::read_to_string(store.server_files(name).cert).ok();
    let running = found.as_ref().is_some_and(|f| f.ours && f.running);
    Ok(Status {
        name: name.to_string(),
        running,
        state: match &found {
            None => "absent".into(),
            Some(f) if !f.ours => format!("{} (not made by kindload)", f.state),
            Some(f) => f.state.clone(),
        },
        host_address: host_address(port),
        cluster_address: cluster_address(name),
        ca_path: store.ca_path().display().to_string(),
        certificate_days_left: cert.as_deref().and_then(ca::days_left),
        nodes: nodes.map(|n| read_trust(ctx.runner(), provider, &n, name, port, ca_pem.as_deref())).unwrap_or_default(),
    })
}

fn status(ctx: &Context, args: RegistryStatusArgs) -> Result<i32> {
    let status = status_of(ctx, &args.cluster, &args.registry.name)?;
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

fn down(ctx: &Context, args: RegistryDownArgs) -> Result<i32> {
    let name = &args.registry.name;
    let (provider, found, nodes) = locate(ctx, &args.cluster, name)?;
    let runner = ctx.runner();
    if let Some(found) = found.as_ref().filter(|f| !f.ours) {
        return Err(Error::input(
            format!("the container named {name:?} was not made by kindload (it runs {}): left alone", found.image),
            "name kindload's registry with --name",
        ));
    }
    let port = found.as_ref().and_then(|f| f.port).unwrap_or(DEFAULT_PORT);
    for node in nodes.iter().flatten().filter(|n| n.running) {
        if let Some(cp) = &node.config_path {
            hosts::remove(runner, provider, &node.name, &hosts::dirs(cp, name, port))
                .map_err(|e| Error::failed(format!("cannot undo the registry's files on {}: {e}", node.name), ""))?;
            ctx.say(format!(
                "{}: removed the hosts.toml files for {} and {}",
                node.name,
                host_address(port),
                cluster_address(name)
            ));
        }
    }
    match found {
        Some(_) => {
            runner.run(&Cmd::new(provider.name()).args(["rm", "--force", name]))?;
            ctx.say(format!("removed container {name}"));
        }
        None => ctx.say(format!("no registry container {name} on {}", provider.name())),
    }
    if !args.keep_data {
        let volume = container::volume_name(name);
        let out = runner.output(&Cmd::new(provider.name()).args(["volume", "rm", &volume]))?;
        if out.success() {
            ctx.say(format!("removed volume {volume} (its images)"));
        }
    }
    Ok(0)
}

fn print_ca(_args: RegistryNameArgs) -> Result<i32> {
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

fn print_manifests(ctx: &Context, args: RegistryManifestsArgs) -> Result<i32> {
    let name = &args.registry.name;
    let pem = store()?
        .ca_pem()
        .ok_or_else(|| Error::usage("kindload has made no CA yet", "run `kindload registry up` first"))?;
    let (_, found, _) = locate(ctx, &args.cluster, name)?;
    let port = found.and_then(|f| f.port).unwrap_or(DEFAULT_PORT);
    print!("{}", manifests::render(&host_address(port), &cluster_address(name), &pem, &args.ca_namespace));
    Ok(0)
}

// ---------------------------------------------------------------- doctor

/// What `doctor` says about the registry: lines to print (`None`) or problems with their
/// exit status and fix. No registry is no problem: it is optional.
pub fn doctor(ctx: &Context, provider: Provider, nodes: &[Node]) -> Vec<(Option<i32>, String, Option<String>)> {
    let name = super::context::env("KINDLOAD_REGISTRY").unwrap_or_else(|| crate::registry::DEFAULT_NAME.to_string());
    let mut lines = Vec::new();
    let Some(found) = container::find(ctx.runner(), provider, &name) else {
        lines.push((
            None,
            format!("note  no kindload registry {name} on {} (optional: `kindload registry up`)", provider.name()),
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

// ---------------------------------------------------------------- load --via-registry

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::via_registry::{registry_repo, verify_pull};
    use crate::exec::fake::FakeRunner;
    use crate::registry::push::Pushed;
    use crate::resolve::reference::ImageRef;

    const CONFIG: &str = "sha256:441c29fcf848420af9478385aa2c50f1aed261136929dd5df71cc8bd05f30e83";

    fn node(crictl: bool, config_path: Option<&str>) -> Node {
        Node {
            name: "kind-worker".into(),
            role: "worker".into(),
            provider: "docker",
            running: true,
            state: "running".into(),
            containerd_version: Some("2.1.9".into()),
            config_version: Some(3),
            snapshotter: Some("overlayfs".into()),
            config_path: config_path.map(str::to_string),
            crictl,
            platform: None,
            warnings: vec![],
            holds: None,
            cri_answers: vec![],
        }
    }

    fn pushed() -> Pushed {
        Pushed {
            repo: "app".into(),
            tag: "dev".into(),
            manifest: "sha256:50fd1c54b129cd11eed7c33c2f001f4bb5b9fe7e4490e9235007c687fcd22e28".into(),
            config: Some(CONFIG.into()),
            blobs_sent: 2,
            blobs_had: 0,
            bytes_sent: 10,
        }
    }

    #[test]
    fn crictl_pulls_through_cri_and_checks_the_id() {
        let inspecti = include_str!("../../tests/fixtures/containerd-2.1/crictl-inspecti-present.json");
        let runner = FakeRunner::new()
            .on(&["docker", "exec", "kind-worker", "crictl", "pull"], 0, "Image is up to date for sha256:441c\n", "")
            .on(&["docker", "exec", "kind-worker", "crictl", "inspecti"], 0, inspecti, "");
        let provider = Provider::new(EngineKind::Docker);
        let refs = ["localhost:5001/app:dev", "kindload-registry:5000/app:dev"];
        let row = verify_pull(&runner, provider, &node(true, Some("/etc/containerd/certs.d")), &refs, &pushed());
        assert!(row.verified, "{row:?}");
        assert_eq!(row.with, "crictl");
        assert_eq!(row.id.as_deref(), Some(CONFIG));
        let seen = runner.seen.lock().unwrap();
        assert_eq!(seen[0], ["docker", "exec", "kind-worker", "crictl", "pull", "localhost:5001/app:dev"]);
        assert_eq!(
            seen[1],
            ["docker", "exec", "kind-worker", "crictl", "inspecti", "-o", "json", "localhost:5001/app:dev"]
        );
        assert_eq!(seen[2][5], "kindload-registry:5000/app:dev");
    }

    #[test]
    fn crictl_finding_another_image_fails_the_node() {
        let inspecti = include_str!("../../tests/fixtures/containerd-2.1/crictl-inspecti-present.json");
        let runner = FakeRunner::new().on(&["docker", "exec", "kind-worker", "crictl", "pull"], 0, "", "").on(
            &["docker", "exec", "kind-worker", "crictl", "inspecti"],
            0,
            inspecti,
            "",
        );
        let mut other = pushed();
        other.config = Some("sha256:0000000000000000000000000000000000000000000000000000000000000000".into());
        let row = verify_pull(
            &runner,
            Provider::new(EngineKind::Docker),
            &node(true, Some("/c")),
            &["localhost:5001/app:dev"],
            &other,
        );
        assert!(!row.verified);
        assert!(row.detail.contains("not the pushed"), "{}", row.detail);
    }

    #[test]
    fn a_failed_pull_and_a_node_without_config_path_say_why() {
        let missing = include_str!("../../tests/fixtures/containerd-2.1/crictl-inspecti-missing.txt");
        let runner = FakeRunner::new().on(&["docker", "exec", "kind-worker", "crictl", "pull"], 1, "", missing);
        let provider = Provider::new(EngineKind::Docker);
        let row = verify_pull(&runner, provider, &node(true, Some("/c")), &["localhost:5001/app:dev"], &pushed());
        assert!(!row.verified);
        assert!(row.detail.starts_with("pulling localhost:5001/app:dev failed"), "{}", row.detail);
        let row = verify_pull(&runner, provider, &node(false, None), &["localhost:5001/app:dev"], &pushed());
        assert!(!row.verified);
        assert!(row.detail.contains("containerdConfigPatches:"), "{}", row.detail);
        assert!(row.detail.contains("[plugins.\"io.containerd.cri.v1.images\".registry]"), "{}", row.detail);
    }

    #[test]
    fn manifests_are_applied_only_when_the_api_server_answers() {
        let absent = FakeRunner::new();
        assert!(apply_manifests(&absent, "dev", "localhost:5001", "r:5000", "PEM").contains("kubectl is not installed"));
        let down = FakeRunner::new().on(&["kubectl", "--context", "kind-dev", "get"], 1, "", "connection refused");
        assert!(
            apply_manifests(&down, "dev", "localhost:5001", "r:5000", "PEM").contains("does not answer: not applied")
        );
        let up = FakeRunner::new().on(&["kubectl", "--context", "kind-dev", "get"], 0, "ok", "").on(
            &["kubectl", "--context", "kind-dev", "apply", "-f", "-"],
            0,
            "configmap/local-registry-hosting created\n",
            "",
        );
        let said = apply_manifests(&up, "dev", "localhost:5001", "r:5000", "PEM");
        assert!(said.contains("applied with kubectl (kind-dev): configmap/local-registry-hosting created"), "{said}");
    }

    #[test]
    fn repositories_drop_docker_hub_library_and_the_registry_host() {
        let r = |s: &str| ImageRef::parse(s).unwrap();
        assert_eq!(registry_repo(&r("app:dev")), "app");
        assert_eq!(registry_repo(&r("team/app:dev")), "team/app");
        assert_eq!(registry_repo(&r("localhost:5001/team/app:dev")), "team/app");
        assert_eq!(registry_repo(&r("ghcr.io/org/app:v1")), "org/app");
    }

    #[test]
    fn podman_gets_the_default_image_by_its_full_name() {
        assert_eq!(registry_image(Provider::new(EngineKind::Podman), "registry:2"), "docker.io/library/registry:2");
        assert_eq!(registry_image(Provider::new(EngineKind::Docker), "registry:2"), "registry:2");
        assert_eq!(registry_image(Provider::new(EngineKind::Podman), "mirror.lan/registry:2"), "mirror.lan/registry:2");
    }

    #[test]
    fn registry_names_are_host_names() {
        assert!(check_name("kindload-registry").is_ok());
        assert!(check_name("Bad_Name").is_err());
        assert!(check_name("-x").is_err());
    }
}
