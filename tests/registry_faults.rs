//! The registry's faults of a day of development, on Docker- and Podman-hosted nodes: the
//! registry container restarted, stopped and started, or removed and made again between
//! loads keeps its images (a named volume) and is pushed only what it lacks, as its own
//! access log shows; two `registry up` run at once end with one registry, both succeeding,
//! beside a load that is not broken by them.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use support::*;

/// Every kindload run of these tests is bounded: a hung one fails the test instead of the suite.
const RUN_LIMIT: Duration = Duration::from_secs(240);

/// A registry of this test whose every kindload run is bounded by RUN_LIMIT.
fn test_registry(provider: &str, tag: &str) -> TestRegistry {
    TestRegistry::new(provider, format!("klfault-{tag}-{}", std::process::id())).with_run_limit(RUN_LIMIT)
}

/// `registry up` with `--provider` given.
fn up_args(registry: &TestRegistry, cluster: &TestCluster) -> Vec<String> {
    let mut args = registry.up_args(cluster);
    args.extend(["--provider".to_string(), registry.provider.clone()]);
    args
}

fn up(registry: &TestRegistry, cluster: &TestCluster) -> assert_cmd::Command {
    let mut cmd = registry.kindload();
    cmd.args(up_args(registry, cluster));
    cmd
}

/// The digests of the blobs whose upload the registry completed (`PUT .../blobs/uploads/...
/// ?digest=...` answered 201), in the order of its log.
fn uploaded(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("\"PUT /v2/") && l.contains("/blobs/uploads/") && l.contains("\" 201 "))
        .filter_map(|l| {
            let at = l.find("digest=")? + "digest=".len();
            let digest: String = l[at..].chars().take_while(|c| !matches!(c, '&' | ' ' | '"')).collect();
            Some(digest.replace("%3A", ":").replace("%3a", ":"))
        })
        .collect()
}

/// Blobs the registry served (`GET /v2/.../blobs/sha256:...` answered 200).
fn blobs_served(log: &str) -> usize {
    log.lines().filter(|l| l.contains("\"GET /v2/") && l.contains("/blobs/sha256") && l.contains("\" 200 ")).count()
}

/// An image of two layers, the first the same in every version (the build reuses it), the
/// second holding `top`; returns its id.
fn build_two_layers(engine: &str, context: &Path, tag: &str, top: &str) -> String {
    if !context.join("base.txt").exists() {
        let base = format!("the base layer of {tag}, {}", std::process::id()).repeat(2000);
        std::fs::write(context.join("base.txt"), base).unwrap();
        std::fs::write(context.join("Dockerfile"), "FROM scratch\nCOPY base.txt /base.txt\nCOPY top.txt /top.txt\n")
            .unwrap();
    }
    std::fs::write(context.join("top.txt"), top).unwrap();
    build_ok(engine, &["-t", tag], context);
    sha256_id(&run_ok(engine_command(engine).args(["image", "inspect", "--format", "{{.Id}}", tag])))
}

fn load(registry: &TestRegistry, cluster: &TestCluster, source: &str, image: &str) -> serde_json::Value {
    load_report(registry.kindload(), cluster, source, image, &[])
}

/// Every node of the report went by the registry and was verified, and CRI there knows the
/// image by its normalized name with the built id.
fn assert_through_registry(json: &serde_json::Value, cluster: &TestCluster, normalized: &str, id: &str) {
    let nodes = json["images"][0]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), cluster.nodes.len(), "{json:#}");
    for node in nodes {
        assert_eq!(node["transport"], "registry", "{json:#}");
        assert_eq!(node["verified"], true, "{json:#}");
    }
    for node in &cluster.nodes {
        assert_eq!(cri_id(cluster, node, normalized).as_deref(), Some(id), "{node}: {normalized}\n{json:#}");
    }
}

/// Every node is verified to hold the image, by whichever transport.
fn assert_verified(json: &serde_json::Value, cluster: &TestCluster, normalized: &str, id: &str) {
    for node in json["images"][0]["nodes"].as_array().unwrap() {
        assert_eq!(node["verified"], true, "{json:#}");
    }
    for node in &cluster.nodes {
        assert_eq!(cri_id(cluster, node, normalized).as_deref(), Some(id), "{node}: {normalized}\n{json:#}");
    }
}

/// Takes the image named `name` off every node, every record of it (as `crictl rmi` does:
/// its other names and CRI's id record too), so that the next load must bring it again.
fn forget_on_nodes(cluster: &TestCluster, name: &str) {
    for node in &cluster.nodes {
        let listing = kindload::resolve::records::parse_ctr_images(&cluster.ctr_images(node));
        let target = listing.iter().find(|r| r.name == name).map(|r| r.target.clone());
        let target = target.unwrap_or_else(|| panic!("{node} does not hold {name}"));
        for record in listing.iter().filter(|r| r.target == target) {
            cluster.exec(node, &["ctr", "-n", "k8s.io", "images", "rm", "--sync", &record.name]);
        }
        let left = cluster.ctr_images(node);
        assert!(!left.contains(&target), "{node} still holds {target}:\n{left}");
    }
}

/// Restarted, stopped and started, removed and made again: the registry keeps its images, a
/// load right after pushes none of the blobs it holds, a changed image only its new layer and
/// config, and every node pulls from it and is verified.
fn restart_keeps_images(provider: &'static str, source: &'static str, containerd: &'static str) {
    let network = TestNetwork::create(provider, "restart");
    let spec = ClusterSpec { provider, containerd, workers: 1, snapshotter: None };
    let cluster = TestCluster::start_on_network("restart", spec, &network, &[0, 1]);
    let registry = test_registry(provider, "restart");
    let up = up(&registry, &cluster).output().unwrap();
    assert!(up.status.success(), "registry up failed: {}", text(&up));
    registry.assert_one_container_with_its_volume();

    let context = tempfile::tempdir().unwrap();
    let repo = format!("kl-faults/app-{provider}-{}", std::process::id());
    let tag = format!("{repo}:v1");
    let normalized = if source == "podman" { format!("localhost/{tag}") } else { format!("docker.io/{tag}") };
    let pushed = format!("localhost:{}/{tag}", registry.port);
    let first = build_two_layers(source, context.path(), &tag, "first");
    let json = load(&registry, &cluster, source, &tag);
    assert_through_registry(&json, &cluster, &normalized, &first);
    let (first_layers, _) = registry.blobs_of(&repo, "v1");
    assert_eq!(first_layers.len(), 2, "{first_layers:?}");

    // restarted: the images are there at once, and the load right after pushes no blob
    forget_on_nodes(&cluster, &normalized);
    let (uploads, served) = (uploaded(&registry.log()), blobs_served(&registry.log()));
    registry.engine(&["restart", &registry.name]);
    let json = load(&registry, &cluster, source, &tag);
    assert_through_registry(&json, &cluster, &normalized, &first);
    let log = registry.log();
    assert_eq!(uploaded(&log), uploads, "blobs the registry held were pushed again after a restart");
    assert!(blobs_served(&log) > served, "the nodes pulled nothing from the restarted registry:\n{log}");
    assert_eq!(registry.blobs_of(&repo, "v1").0, first_layers);

    // stopped: a load sideloads and says why; started again: a changed image pushes only its
    // new layer and config
    registry.engine(&["stop", "--time", "2", &registry.name]);
    let second = build_two_layers(source, context.path(), &tag, "second");
    let json = load(&registry, &cluster, source, &tag);
    assert_verified(&json, &cluster, &normalized, &second);
    let note = json["images"][0]["nodes"][0]["note"].as_str().unwrap_or_default().to_string();
    assert!(note.contains("is not running") && note.contains("kindload registry up"), "{json:#}");
    registry.engine(&["start", &registry.name]);
    let third = build_two_layers(source, context.path(), &tag, "third");
    let uploads = uploaded(&registry.log());
    let json = load(&registry, &cluster, source, &tag);
    assert_through_registry(&json, &cluster, &normalized, &third);
    let (third_layers, third_config) = registry.blobs_of(&repo, "v1");
    assert_eq!(third_layers[0], first_layers[0], "the base layer changed: the test image is not what it says");
    let new: BTreeSet<String> = uploaded(&registry.log())[uploads.len()..].iter().cloned().collect();
    let expected: BTreeSet<String> = [third_layers[1].clone(), third_config].into_iter().collect();
    assert_eq!(new, expected, "after a stop and start, a changed top layer must push only it and the config");

    // removed and made again by `registry up`, which needs no --port to come back where the
    // nodes' files point: the named volume keeps the images
    registry.engine(&["rm", "--force", &registry.name]);
    let again = registry
        .kindload()
        .args(["registry", "up", "--cluster", &cluster.name, "--provider", provider, "--image", REGISTRY_IMAGE])
        .output()
        .unwrap();
    assert!(again.status.success(), "registry up after the container was removed: {}", text(&again));
    let published = format!(
        "started {} ({REGISTRY_IMAGE}) on network {}, published on 127.0.0.1:{}",
        registry.name, network.name, registry.port
    );
    assert!(text(&again).contains(&published), "{}", text(&again));
    assert!(!text(&again).contains("wrote"), "the nodes' files were rewritten: {}", text(&again));
    registry.assert_one_container_with_its_volume();
    assert_eq!(registry.blobs_of(&repo, "v1").0, third_layers, "a re-created registry lost its images");
    forget_on_nodes(&cluster, &normalized);
    let json = load(&registry, &cluster, source, &tag);
    assert_through_registry(&json, &cluster, &normalized, &third);
    let log = registry.log();
    assert_eq!(uploaded(&log), Vec::<String>::new(), "the re-created registry was pushed blobs it held");
    assert!(blobs_served(&log) > 0, "the nodes pulled nothing from the re-created registry:\n{log}");
    remove_images(source, &[&tag, &pushed]);
}

#[test]
fn docker_nodes_restarted_registry_keeps_images() {
    if !engine_available("docker") {
        return;
    }
    restart_keeps_images("docker", "docker", "2.1");
}

#[test]
fn podman_nodes_restarted_registry_keeps_images() {
    if !engine_available("podman") {
        return;
    }
    restart_keeps_images("podman", "podman", "1.7");
}

/// Two `registry up` at once, beside a load: one registry container, both ups exit 0 (one
/// started it, the other waited for it and found it up), the load verified on every node;
/// then a load through it. An `up` waiting on a held lock says on what.
fn concurrent_ups(provider: &'static str, containerd: &'static str) {
    let network = TestNetwork::create(provider, "concur");
    let spec = ClusterSpec { provider, containerd, workers: 1, snapshotter: None };
    let cluster = TestCluster::start_on_network("concur", spec, &network, &[0, 1]);
    let registry = test_registry(provider, "concur");
    let repo = format!("kl-faults/concurrent-{provider}-{}", std::process::id());
    let tag = format!("{repo}:v1");
    let normalized = format!("docker.io/{tag}");
    let first = sha256_id(&build_image("docker", &tag, "loaded while the registry comes up"));

    let (ups, loaded) = std::thread::scope(|scope| {
        let ups: Vec<_> = (0..2).map(|_| scope.spawn(|| up(&registry, &cluster).output().unwrap())).collect();
        let loading = scope.spawn(|| {
            registry
                .kindload()
                .args(["load", "--cluster", &cluster.name, "--provider", provider, "--engine", "docker"])
                .args(["--output", "json", &tag])
                .output()
                .unwrap()
        });
        let ups: Vec<_> = ups.into_iter().map(|h| h.join().unwrap()).collect();
        (ups, loading.join().unwrap())
    });
    for up in &ups {
        assert!(up.status.success(), "a concurrent registry up failed: {}", text(up));
    }
    let said: Vec<String> = ups.iter().map(text).collect();
    let started = said.iter().filter(|s| s.contains(&format!("started {}", registry.name))).count();
    assert_eq!(started, 1, "exactly one up starts the registry: {said:#?}");
    assert!(
        said.iter().any(|s| s.contains("nothing changed")),
        "the other up found it up and changed nothing: {said:#?}"
    );
    registry.assert_one_container_with_its_volume();
    let running = registry.engine(&["container", "inspect", "--format", "{{.State.Running}}", &registry.name]);
    assert_eq!(running.trim(), "true");
    // the nodes trust the one CA there is
    let ca = std::fs::read_to_string(registry.state.path().join("registry/ca.crt")).unwrap();
    for node in &cluster.nodes {
        let path = format!("{CONFIG_PATH}/localhost:{}/kindload-ca.crt", registry.port);
        let held = cluster.exec(node, &["cat", &path]);
        assert_eq!(String::from_utf8_lossy(&held.stdout), ca, "{node}: {path}");
    }
    // the load beside them: exit 0, every node verified, by whichever way the registry stood
    assert!(loaded.status.success(), "a load beside two registry up failed: {}", text(&loaded));
    let json: serde_json::Value = serde_json::from_slice(&loaded.stdout).unwrap();
    assert_verified(&json, &cluster, &normalized, &first);

    // a load through the registry they made
    let second = sha256_id(&build_image("docker", &tag, "loaded through the registry"));
    let json = load(&registry, &cluster, "docker", &tag);
    assert_through_registry(&json, &cluster, &normalized, &second);

    // an up that finds the lock held waits, says for whom and where, and goes on once it is free
    let path = kindload::registry::lock::path(registry.state.path());
    let held = kindload::registry::lock::acquire(&path, "held by the test", Duration::ZERO, &mut |_| {}).unwrap();
    // `registry up` as a child to read while it runs
    let mut up_child = registry.command();
    up_child.args(up_args(&registry, &cluster));
    let (said, status) = run_releasing_on(up_child, "waiting for", held);
    assert!(status.success(), "{said}");
    let waiting = format!(
        "waiting for another kindload, pid {} (held by the test) to finish changing the registry: it holds {}",
        std::process::id(),
        path.display()
    );
    assert!(said.contains(&waiting), "{said}");
    assert!(said.contains("nothing changed"), "{said}");
    remove_images("docker", &[&tag, &format!("localhost:{}/{tag}", registry.port)]);
}

/// Runs `cmd`, dropping `held` once its stderr has a line containing `marker` (or when it
/// ends); returns its stderr and exit status. Bounded by the command's own waits.
fn run_releasing_on(
    mut cmd: std::process::Command,
    marker: &str,
    held: kindload::registry::lock::Held,
) -> (String, std::process::ExitStatus) {
    use std::io::BufRead;
    cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut held = Some(held);
    let mut said = String::new();
    for line in std::io::BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        if line.contains(marker) {
            held.take();
        }
        said.push_str(&line);
        said.push('\n');
    }
    drop(held);
    (said, child.wait().unwrap())
}

#[test]
fn docker_nodes_two_registry_up_at_once() {
    if !engine_available("docker") {
        return;
    }
    concurrent_ups("docker", "2.1");
}

#[test]
fn podman_nodes_two_registry_up_at_once() {
    if !engine_available("podman") || !engine_available("docker") {
        return;
    }
    concurrent_ups("podman", "1.6");
}
