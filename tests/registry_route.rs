//! `kindload load` through the cluster's registry once `kindload registry up` has run for it:
//! the engine pushes what the registry lacks, every trusting node pulls what it lacks and
//! answers to the user's names with the right id; a node without `config_path` is sideloaded
//! and named; nothing is left behind; an unreachable registry fails a local engine's load
//! before any node changes, and sideloads the nodes of an engine behind DOCKER_HOST.

mod support;

use support::*;

/// kindload with the source engine's environment: Docker's containerd store is the docker
/// CLI pointed at its daemon.
fn kindload_for(registry: &TestRegistry, source: &str) -> assert_cmd::Command {
    let mut cmd = registry.kindload();
    if source == CONTAINERD_STORE {
        cmd.env("DOCKER_HOST", &engine_cmd(CONTAINERD_STORE)[2]);
    }
    cmd
}

fn engine_flag(source: &str) -> &'static str {
    if source == "podman" {
        "podman"
    } else {
        "docker"
    }
}

fn load_json(
    registry: &TestRegistry,
    cluster: &TestCluster,
    source: &str,
    image: &str,
    extra: &[&str],
) -> serde_json::Value {
    load_report(kindload_for(registry, source), cluster, engine_flag(source), image, extra)
}

/// Blob uploads the registry has answered so far (its access log): POST, PATCH or PUT on
/// `/v2/.../blobs/uploads/`.
fn blob_uploads(registry: &TestRegistry) -> usize {
    let text = registry.log();
    let uploads = text
        .lines()
        .filter(|l| ["\"POST ", "\"PATCH ", "\"PUT "].iter().any(|m| l.contains(m)) && l.contains("/blobs/uploads/"))
        .count();
    assert!(text.contains("\"HEAD /v2/"), "the registry's access log is not there:\n{text}");
    uploads
}

fn node_report<'a>(json: &'a serde_json::Value, node: &str) -> &'a serde_json::Value {
    json["images"][0]["nodes"].as_array().unwrap().iter().find(|n| n["name"] == node).unwrap()
}

/// Control plane and first worker trust the registry, the last worker has no `config_path`.
/// `source` is the engine the image is built in, `provider` the one hosting the nodes.
fn route(source: &'static str, provider: &'static str, containerd: &'static str) {
    let network = TestNetwork::create(provider, "route");
    let spec = ClusterSpec { provider, containerd, workers: 2, snapshotter: None };
    let cluster =
        TestCluster::start_on_network(&format!("route{}", containerd.replace('.', "")), spec, &network, &[0, 1]);
    let registry =
        TestRegistry::new(provider, format!("klroute-{}-{source}-{}", std::process::id(), containerd.replace('.', "")));
    let port = registry.port;
    let up = registry.up(&cluster).output().unwrap();
    assert_eq!(up.status.code(), Some(2), "the last worker has no config_path: {}", text(&up));
    let (trusting, plain) = (&cluster.nodes[..2], &cluster.nodes[2]);

    // Two tests share a source and a containerd version: the provider keeps their images apart.
    let tag = format!("kl-route/app-{source}-on-{provider}-{}-{}:v1", containerd.replace('.', ""), std::process::id());
    let normalized = if source == "podman" { format!("localhost/{tag}") } else { format!("docker.io/{tag}") };
    let id = |built: String| sha256_id(&built);
    let first = id(build_image(source, &tag, "first version"));
    let json = load_json(&registry, &cluster, source, &tag, &[]);
    assert_eq!(json["images"][0]["transport"], "registry+sideload", "{json:#}");
    for node in trusting {
        assert_eq!(node_report(&json, node)["transport"], "registry", "{json:#}");
    }
    assert_eq!(node_report(&json, plain)["transport"], "sideload", "{json:#}");
    assert!(node_report(&json, plain)["note"].as_str().unwrap().contains("config_path"), "{json:#}");
    for node in &cluster.nodes {
        assert!(holds(&cluster, node, &normalized, source, &first), "{node}: {normalized}\n{json:#}");
    }

    // a changed reload goes the same way, and the version it replaces is gone
    let second = id(build_image(source, &tag, "second version"));
    let json = load_json(&registry, &cluster, source, &tag, &[]);
    for node in trusting {
        assert_eq!(node_report(&json, node)["transport"], "registry", "{json:#}");
        assert_eq!(node_report(&json, node)["verified"], true, "{json:#}");
    }
    for node in &cluster.nodes {
        assert!(holds(&cluster, node, &normalized, source, &second), "{node}\n{json:#}");
        let listing = cluster.ctr_images(node);
        assert!(!listing.contains(&first), "{node} still holds the first version:\n{listing}");
        assert!(!listing.contains("import-"), "{node}:\n{listing}");
    }

    // unchanged: nothing moves
    let json = load_json(&registry, &cluster, source, &tag, &[]);
    for node in &cluster.nodes {
        assert_eq!(node_report(&json, node)["action"], "skipped", "{json:#}");
    }

    // a node that lost the image pulls it again; the push that precedes it sends no blob
    let lost = &trusting[1];
    let cri = cri_id(&cluster, lost, &normalized).expect("CRI indexed it");
    // as `crictl rmi` does: every name of the image, the registry's included
    let names = [normalized.clone(), cri, format!("localhost:{port}/{tag}")];
    for name in &names {
        cluster.exec(lost, &["ctr", "-n", "k8s.io", "images", "rm", "--sync", name]);
    }
    let uploads_before = blob_uploads(&registry);
    let json = load_json(&registry, &cluster, source, &tag, &[]);
    assert_eq!(node_report(&json, lost)["transport"], "registry", "{json:#}");
    assert!(holds(&cluster, lost, &normalized, source, &second), "{lost}\n{json:#}");
    assert_eq!(blob_uploads(&registry), uploads_before, "the unchanged image's blobs were sent again");

    // the registry cut off from the host mid-loop: exit 1, every node keeps what it had. A
    // daemon reached through DOCKER_HOST may run elsewhere (a VM, rootless Docker's own
    // network), where no registry route may work: its nodes are sideloaded, with the note.
    let third = sha256_id(&build_image(source, &tag, "third version"));
    registry.cut_off(&network);
    if source == CONTAINERD_STORE {
        let json = load_json(&registry, &cluster, source, &tag, &[]);
        for node in trusting {
            assert_eq!(node_report(&json, node)["transport"], "sideload", "{json:#}");
            let note = node_report(&json, node)["note"].as_str().unwrap_or_default();
            assert!(note.contains("docker runs elsewhere (DOCKER_HOST=unix://"), "{json:#}");
        }
        for node in &cluster.nodes {
            assert!(holds(&cluster, node, &normalized, source, &third), "{node}\n{json:#}");
        }
        remove_images(source, &[&tag, &format!("localhost:{port}/{tag}")]);
        return;
    }
    let failed = kindload_for(&registry, source)
        .args(["load", "--cluster", &cluster.name, "--provider", provider, "--engine", engine_flag(source), &tag])
        .output()
        .unwrap();
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    assert!(text(&failed).contains("no node was changed"), "{}", text(&failed));
    for node in trusting {
        assert!(holds(&cluster, node, &normalized, source, &second), "{node} half-updated");
    }
    // --sideload does without it
    let json = load_json(&registry, &cluster, source, &tag, &["--sideload"]);
    for node in &cluster.nodes {
        assert_eq!(node_report(&json, node)["transport"], "sideload", "{json:#}");
        assert!(holds(&cluster, node, &normalized, source, &third), "{node}\n{json:#}");
    }
    remove_images(source, &[&tag, &format!("localhost:{port}/{tag}")]);
}

/// What `node` holds under `name` is the built image: CRI's id is the engine's id, except
/// under Docker's containerd store, whose id is the digest of what it pushed (the record's
/// target), CRI then indexing it by the config that names.
fn holds(cluster: &TestCluster, node: &str, name: &str, source: &str, built: &str) -> bool {
    if source != CONTAINERD_STORE {
        return cri_id(cluster, node, name).as_deref() == Some(built);
    }
    let listing = kindload::resolve::records::parse_ctr_images(&cluster.ctr_images(node));
    listing.iter().any(|r| r.name == name && r.target == built) && cri_id(cluster, node, name).is_some()
}

#[test]
fn docker_source_docker_nodes_containerd_2_1() {
    if !engine_available("docker") {
        return;
    }
    route("docker", "docker", "2.1");
}

#[test]
fn docker_source_docker_nodes_containerd_1_6() {
    if !engine_available("docker") {
        return;
    }
    route("docker", "docker", "1.6");
}

#[test]
fn podman_source_podman_nodes_containerd_1_7() {
    if !engine_available("podman") {
        return;
    }
    route("podman", "podman", "1.7");
}

#[test]
fn docker_source_podman_nodes_containerd_2_1() {
    if !engine_available("docker") || !engine_available("podman") {
        return;
    }
    route("docker", "podman", "2.1");
}

#[test]
fn containerd_store_source_podman_nodes_containerd_1_6() {
    if !engine_available(CONTAINERD_STORE) || !engine_available("podman") {
        return;
    }
    route(CONTAINERD_STORE, "podman", "1.6");
}

#[test]
fn podman_source_docker_nodes_containerd_1_7() {
    if !engine_available("podman") || !engine_available("docker") {
        return;
    }
    route("podman", "docker", "1.7");
}
