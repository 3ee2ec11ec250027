//! `kindload load --via-registry` and `kindload build` with PUSH_IMAGE=true into the
//! cluster's registry: push over TLS with kindload's CA, then prove every node pulls it.

use serde::Serialize;

use super::registry::{cluster_address, ensure_trust, host_address, loopback, store};
use super::Context;
use crate::error::{Error, Result, EXIT_FAILED};
use crate::exec::{Cmd, Runner};
use crate::registry::client::Client;
use crate::registry::push::{self, Pushed};
use crate::registry::DEFAULT_PORT;
use crate::registry::{container, hosts};
use crate::request::cli::{LoadArgs, OutputFormat};
use crate::resolve::engine::{EngineKind, Engines};
use crate::resolve::holdings::Depth;
use crate::resolve::image::{self, Image};
use crate::resolve::node::Node;
use crate::resolve::provider::Provider;
use crate::resolve::records::{config_digest_for_target, parse_ctr_images};
use crate::resolve::reference::ImageRef;
use crate::transfer::export::Source;
use crate::verify::cri::parse_crictl_inspecti;

/// One node's proof that it pulls the image.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct NodePull {
    pub name: String,
    pub verified: bool,
    /// `crictl` (crictl pull + inspecti) or `ctr` (ctr images pull --hosts-dir).
    pub with: String,
    pub id: Option<String>,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ImagePush {
    pub image: String,
    /// The reference to use in manifests.
    pub reference: String,
    pub cluster_reference: String,
    pub manifest: String,
    pub id: Option<String>,
    pub blobs_sent: usize,
    pub blobs_present: usize,
    pub nodes: Vec<NodePull>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ViaRegistryReport {
    pub registry: String,
    pub ok: bool,
    pub images: Vec<ImagePush>,
}

/// The registry `name` on `provider`, running and answering; its port and a client.
fn reach(ctx: &Context, provider: Provider, name: &str) -> Result<(u16, String, Client)> {
    let found = container::find(ctx.runner(), provider, name).ok_or_else(|| {
        Error::usage(
            format!("there is no registry {name} on {}", provider.name()),
            "start one with `kindload registry up` (or name yours with --registry)",
        )
    })?;
    if !found.ours {
        return Err(Error::input(
            format!("the container {name} was not made by kindload"),
            "name kindload's registry with --registry",
        ));
    }
    if !found.running {
        return Err(Error::failed(
            format!("registry {name} is not running (it is {}): nothing was pushed", found.state),
            "start it with `kindload registry up`",
        ));
    }
    let port = found.port.unwrap_or(DEFAULT_PORT);
    let store = store()?;
    let ca = store.ca_pem().ok_or_else(|| {
        Error::failed(
            format!("kindload's CA ({}) is gone", store.ca_path().display()),
            "run `kindload registry up` to make it again",
        )
    })?;
    let client = Client::new(&loopback(port), &ca).map_err(|e| Error::failed(e, ""))?;
    client.ping().map_err(|e| {
        Error::failed(
            format!("registry {name} does not answer: {e}"),
            format!("see `{} logs {name}`; `kindload registry up` restarts it", provider.name()),
        )
    })?;
    Ok((port, ca, client))
}

/// `repo` in the registry for an image: its path, Docker Hub's `library/` left out (an
/// image already named for the registry keeps its path).
pub fn registry_repo(reference: &ImageRef) -> String {
    match reference.domain() {
        "docker.io" => reference.path().strip_prefix("library/").unwrap_or(reference.path()).to_string(),
        _ => reference.path().to_string(),
    }
}

pub fn load_via_registry(ctx: &Context, args: &LoadArgs) -> Result<i32> {
    if args.images.is_empty() {
        return Err(Error::usage(
            "--via-registry needs the images to push",
            "name them: `kindload load --via-registry app:dev`",
        ));
    }
    let name = &args.registry_name;
    let (_, provider, nodes) = ctx.nodes(&args.select.cluster, Depth::Full, &[])?;
    let nodes: Vec<Node> = if args.select.nodes.is_empty() {
        nodes
    } else {
        nodes.into_iter().filter(|n| args.select.nodes.contains(&n.name)).collect()
    };
    let (port, ca, client) = reach(ctx, provider, name)?;
    let (_, changes, _) = ensure_trust(ctx.runner(), provider, &nodes, name, port, &ca);
    for change in changes {
        ctx.say(change);
    }
    let engines = ctx.engines(&args.engine)?;
    let mut report = ViaRegistryReport { registry: name.clone(), ok: true, images: Vec::new() };
    for requested in &args.images {
        let found = image::find(ctx.runner(), &engines, requested)?;
        let pushed = push_image(ctx, &client, &found, port)?;
        let reference = format!("{}/{}:{}", host_address(port), pushed.repo, pushed.tag);
        let cluster_reference = format!("{}/{}:{}", cluster_address(name), pushed.repo, pushed.tag);
        let pulls = verify_pulls(ctx.runner(), provider, &nodes, &[&reference, &cluster_reference], &pushed);
        report.ok &= pulls.iter().all(|p| p.verified);
        report.images.push(ImagePush {
            image: requested.clone(),
            reference,
            cluster_reference,
            manifest: pushed.manifest.clone(),
            id: pushed.config.clone(),
            blobs_sent: pushed.blobs_sent,
            blobs_present: pushed.blobs_had,
            nodes: pulls,
        });
    }
    match args.select.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report).expect("report serialises")),
        OutputFormat::Human => {
            for image in &report.images {
                println!(
                    "{}: pushed to {} ({} blob(s) sent, {} already there); use `{}` in manifests",
                    image.image, name, image.blobs_sent, image.blobs_present, image.reference
                );
                for node in &image.nodes {
                    let mark = if node.verified { "ok" } else { "FAILED" };
                    println!("  {} {mark}: {}", node.name, node.detail);
                }
            }
        }
    }
    Ok(if report.ok { 0 } else { EXIT_FAILED })
}

fn push_image(ctx: &Context, client: &Client, found: &Image, port: u16) -> Result<Pushed> {
    let reference = &found.names[0];
    let repo = registry_repo(reference);
    let tag = reference.tag().unwrap_or("latest").to_string();
    let engine = found.engine.clone().ok_or_else(|| Error::usage("--via-registry pushes images from an engine", ""))?;
    ctx.say(format!("pushing {} to {}/{repo}:{tag}", found.requested, host_address(port)));
    let source = Source::Engine { engine, refs: vec![found.engine_ref.clone()] };
    push::push(client, &source, &found.identity, &repo, &tag)
}

/// Every node pulls each reference through its containerd (CRI where crictl exists), and
/// what it pulled is the pushed image.
fn verify_pulls(
    runner: &dyn Runner,
    provider: Provider,
    nodes: &[Node],
    refs: &[&str],
    pushed: &Pushed,
) -> Vec<NodePull> {
    std::thread::scope(|scope| {
        let handles: Vec<_> =
            nodes.iter().map(|n| scope.spawn(move || verify_pull(runner, provider, n, refs, pushed))).collect();
        handles.into_iter().map(|h| h.join().expect("verification panicked")).collect()
    })
}

pub(super) fn verify_pull(
    runner: &dyn Runner,
    provider: Provider,
    node: &Node,
    refs: &[&str],
    pushed: &Pushed,
) -> NodePull {
    let mut row = NodePull {
        name: node.name.clone(),
        verified: false,
        with: if node.crictl { "crictl" } else { "ctr" }.into(),
        id: None,
        detail: String::new(),
    };
    if !node.running {
        row.detail = format!("node is {}", node.state);
        return row;
    }
    let Some(config_path) = &node.config_path else {
        row.detail = format!(
            "containerd sets no registry config_path, so this node cannot pull from the registry; recreate the cluster with:\n{}",
            hosts::config_patch(node)
        );
        return row;
    };
    let mut seen = Vec::new();
    for reference in refs {
        let result = if node.crictl {
            pull_with_crictl(runner, provider, &node.name, reference)
        } else {
            pull_with_ctr(runner, provider, &node.name, hosts::hosts_dir(config_path), reference, &pushed.manifest)
        };
        match result {
            Ok(id) => {
                if let (Some(want), Some(got)) = (&pushed.config, &id) {
                    if want != got {
                        row.detail = format!("{reference} pulled as {got}, not the pushed {want}");
                        return row;
                    }
                }
                row.id = id.or(row.id);
                seen.push(*reference);
            }
            Err(e) => {
                row.detail = format!("pulling {reference} failed: {e}");
                return row;
            }
        }
    }
    row.verified = true;
    row.detail = match node.crictl {
        true => format!("crictl pull + inspecti: {} is {}", seen.join(" and "), row.id.as_deref().unwrap_or("?")),
        false => format!(
            "no crictl: ctr images pull --hosts-dir {}: {} is manifest {}{}",
            hosts::hosts_dir(config_path),
            seen.join(" and "),
            pushed.manifest,
            row.id.as_deref().map(|id| format!(", id {id}")).unwrap_or_default()
        ),
    };
    row
}

fn pull_with_crictl(
    runner: &dyn Runner,
    provider: Provider,
    node: &str,
    reference: &str,
) -> std::result::Result<Option<String>, String> {
    runner.run(&provider.exec(node, &["crictl", "pull", reference])).map_err(|e| e.to_string())?;
    let out = runner
        .run(&provider.exec(node, &["crictl", "inspecti", "-o", "json", reference]))
        .map_err(|e| e.to_string())?;
    parse_crictl_inspecti(&out.stdout).map(|i| Some(i.id))
}

fn pull_with_ctr(
    runner: &dyn Runner,
    provider: Provider,
    node: &str,
    hosts_dir: &str,
    reference: &str,
    manifest: &str,
) -> std::result::Result<Option<String>, String> {
    let pull = ["ctr", "--namespace=k8s.io", "images", "pull", "--hosts-dir", hosts_dir, reference];
    runner.run(&provider.exec(node, &pull)).map_err(|e| e.to_string())?;
    let listing = parse_ctr_images(
        &runner
            .stdout(&provider.exec(node, &crate::resolve::holdings::list_images_argv()))
            .map_err(|e| e.to_string())?,
    );
    let record = listing
        .iter()
        .find(|r| r.name == reference)
        .ok_or_else(|| format!("{reference} is not listed after the pull"))?;
    if record.target != manifest {
        return Err(format!("{reference} points at {}, not the pushed manifest {manifest}", record.target));
    }
    Ok(config_digest_for_target(&listing, &record.target))
}

/// For `kindload build` with PUSH_IMAGE=true: when `reference` names a running kindload
/// registry's host address, push there with kindload's own client (no engine needs the CA).
pub fn push_built(ctx: &Context, engines: &Engines, reference: &ImageRef) -> Result<Option<Pushed>> {
    let Some(port) = reference.domain().strip_prefix("localhost:").and_then(|p| p.parse::<u16>().ok()) else {
        return Ok(None);
    };
    for kind in [EngineKind::Docker, EngineKind::Podman] {
        let provider = Provider::new(kind);
        let out = ctx.runner().output(&Cmd::new(provider.name()).args([
            "ps",
            "--filter",
            &format!("label={}={port}", container::PORT_LABEL),
            "--format",
            "{{.Names}}",
        ]));
        let Some(name) =
            out.ok().filter(|o| o.success()).and_then(|o| o.stdout.lines().next().map(str::trim).map(str::to_string))
        else {
            continue;
        };
        if name.is_empty() {
            continue;
        }
        let (port, _, client) = reach(ctx, provider, &name)?;
        let found = image::find(ctx.runner(), engines, &reference.normalized())?;
        return push_image(ctx, &client, &found, port).map(Some);
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::fake::FakeRunner;
    use crate::registry::push::Pushed;
    use crate::resolve::engine::EngineKind;
    use crate::resolve::reference::ImageRef;

    const CONFIG: &str = "sha256:441c29fcf848420af9478385aa2c50f1aed261136929dd5df71cc8bd05f30e83";

    fn node(crictl: bool, config_path: Option<&str>) -> Node {
        Node { crictl, config_path: config_path.map(str::to_string), ..Node::for_tests("kind-worker") }
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
    fn repositories_drop_docker_hub_library_and_the_registry_host() {
        let r = |s: &str| ImageRef::parse(s).unwrap();
        assert_eq!(registry_repo(&r("app:dev")), "app");
        assert_eq!(registry_repo(&r("team/app:dev")), "team/app");
        assert_eq!(registry_repo(&r("localhost:5001/team/app:dev")), "team/app");
        assert_eq!(registry_repo(&r("ghcr.io/org/app:v1")), "org/app");
    }
}
