//! Registry mode on the real test bed: nodes on a user-defined network as kind's are, the
//! registry built FROM scratch from Debian's docker-registry (CNCF Distribution), TLS from
//! kindload's CA, nodes pulling through containerd's hosts.toml with `ctr --hosts-dir`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use support::*;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A registry of this test, named apart from every other test's.
fn test_registry(provider: &str) -> TestRegistry {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    TestRegistry::new(provider, format!("klreg-{}-{n}", std::process::id()))
}

/// What the node's hosts directory holds (paths, sizes, modification times; empty when
/// absent): what `down` must restore, and what a second `up` must not touch.
fn certs_d(cluster: &TestCluster, node: &str) -> String {
    let script = "find /etc/containerd/certs.d -type f -exec stat -c '%n %s %Y' {} + 2>/dev/null | sort; \
                  find /etc/containerd/certs.d 2>/dev/null | sort; true";
    let out = cluster.exec(node, &["sh", "-c", script]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Removes `reference` from the node, then pulls it as the kubelet's containerd would
/// (hosts.toml under config_path), and returns the CRI id it then has.
fn pull_on_node(cluster: &TestCluster, node: &str, reference: &str) -> Option<String> {
    cluster.exec(node, &["ctr", "-n", "k8s.io", "images", "rm", reference]);
    let out = cluster.exec(node, &["ctr", "-n", "k8s.io", "images", "pull", "--hosts-dir", CONFIG_PATH, reference]);
    assert!(out.status.success(), "pull of {reference} on {node} failed: {}", text(&out));
    wait_for_cri_id(cluster, node, reference)
}

fn wait_for_cri_id(cluster: &TestCluster, node: &str, reference: &str) -> Option<String> {
    for _ in 0..40 {
        if let Some(id) = cri_id(cluster, node, reference) {
            return Some(id);
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    None
}

/// A client image FROM scratch with curl and the libraries it loads, and no CA bundle:
/// it trusts only the CA it is given.
fn ensure_curl_image(provider: &str) -> &'static str {
    const IMAGE: &str = "kindload-testcurl:1";
    if run(engine_command(provider).args(["image", "inspect", IMAGE])).status.success() {
        return IMAGE;
    }
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    let curl = Path::new("/usr/bin/curl");
    assert!(curl.exists(), "/usr/bin/curl is missing (apt-get install curl)");
    let mut files = vec![curl.to_path_buf()];
    let ldd = run_ok(Command::new("ldd").arg(curl));
    for line in ldd.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [_, "=>", path, ..] if path.starts_with('/') => files.push(PathBuf::from(path)),
            [path, ..] if path.starts_with('/') => files.push(PathBuf::from(path)),
            _ => {}
        }
    }
    for file in files {
        let dest = rootfs.join(file.strip_prefix("/").unwrap());
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(std::fs::canonicalize(&file).unwrap(), &dest).unwrap();
    }
    std::fs::create_dir_all(rootfs.join("tmp")).unwrap();
    std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\nCOPY rootfs/ /\nENTRYPOINT [\"/usr/bin/curl\"]\n")
        .unwrap();
    run_ok(engine_command(provider).args(["build", "-t", IMAGE]).arg(dir.path()));
    IMAGE
}

/// curl, in a container on `network`, GETs the manifest; `ca` is the only CA it trusts.
fn fetch_manifest(provider: &str, network: &str, ca: Option<&Path>, url: &str) -> std::process::Output {
    let image = ensure_curl_image(provider);
    let mut cmd = engine_command(provider);
    cmd.args(["run", "--rm", "--network", network]);
    if provider == "podman" {
        cmd.args(["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "--runtime", "runc"]);
    }
    if let Some(ca) = ca {
        cmd.args(["-v", &format!("{}:/ca.crt:ro", ca.display())]);
    }
    cmd.arg(image).args(["-fsS", "--max-time", "20"]);
    cmd.args(["-H", "Accept: application/vnd.docker.distribution.manifest.v2+json"]);
    cmd.args(["-H", "Accept: application/vnd.oci.image.manifest.v1+json"]);
    if ca.is_some() {
        cmd.args(["--cacert", "/ca.crt"]);
    }
    cmd.arg(url);
    run(&mut cmd)
}

/// The whole story on one cluster: up twice, load --via-registry, every node pulls by both
/// references, a pod-like client trusts only kindload's CA, status, stop, down.
fn end_to_end(provider: &'static str, containerd: &'static str, workers: usize) {
    let network = TestNetwork::create(provider, "reg");
    let spec = ClusterSpec { provider, containerd, workers, snapshotter: None };
    let all: Vec<usize> = (0..=workers).collect();
    let cluster = TestCluster::start_on_network(&format!("reg{}", containerd.replace('.', "")), spec, &network, &all);
    let setup = test_registry(provider);
    let before: Vec<String> = cluster.nodes.iter().map(|n| certs_d(&cluster, n)).collect();

    // up, then up again: the second changes nothing
    let first = setup.up(&cluster).output().unwrap();
    assert!(first.status.success(), "registry up failed: {}", text(&first));
    assert!(text(&first).contains(&format!("started {}", setup.name)), "{}", text(&first));
    assert!(text(&first).contains("not applied"), "no API server: says it did not apply: {}", text(&first));
    let after_first: Vec<String> = cluster.nodes.iter().map(|n| certs_d(&cluster, n)).collect();
    assert!(after_first.iter().all(|f| f.contains("/hosts.toml")), "{after_first:?}");
    // modification times are in seconds: a rewrite by the second up must show
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = setup.up(&cluster).output().unwrap();
    assert!(second.status.success(), "second registry up failed: {}", text(&second));
    assert!(text(&second).contains("nothing changed"), "{}", text(&second));
    let after_second: Vec<String> = cluster.nodes.iter().map(|n| certs_d(&cluster, n)).collect();
    assert_eq!(after_first, after_second, "the second up rewrote node files");
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(setup.state.path().join("registry/ca.key")).unwrap().permissions(),
    );
    assert_eq!(key_mode & 0o777, 0o600);

    // a node added later is configured by the next up
    let mut cluster = cluster;
    let late = cluster.add_worker(spec, &network);
    let before_late = certs_d(&cluster, &late);
    let third = setup.up(&cluster).output().unwrap();
    assert!(third.status.success(), "{}", text(&third));
    assert!(text(&third).contains(&format!("{late}: wrote 4 file(s)")), "{}", text(&third));
    assert!(!text(&third).contains("nothing changed"), "{}", text(&third));
    let mut before = before;
    before.push(before_late);

    // status
    let status =
        setup.kindload().args(["registry", "status", "--cluster", &cluster.name, "--output", "json"]).output().unwrap();
    assert!(status.status.success(), "{}", text(&status));
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_matches_schema("registry-status.schema.json", &json);
    assert_eq!(json["running"], true);
    assert_eq!(json["host_address"], setup.host());
    assert_eq!(json["cluster_address"], format!("{}:5000", setup.name));
    assert_eq!(json["nodes"].as_array().unwrap().len(), cluster.nodes.len());
    assert!(json["nodes"].as_array().unwrap().iter().all(|n| n["trusted"] == true), "{json:#}");

    // load --via-registry: through the registry, every node answers to its name there too
    let tag = format!("kl-registry/app-{}-{provider}:v1", std::process::id());
    let id = sha256_id(&build_image("docker", &tag, &format!("via registry {provider} {containerd}")));
    let reference = format!("{}/{tag}", setup.host());
    let in_cluster = format!("{}:5000/{tag}", setup.name);
    let json = load_report(setup.kindload(), &cluster, "docker", &tag, &["--via-registry"]);
    let push = &json["images"][0]["push"];
    assert_eq!(push["reference"], reference.as_str(), "{json:#}");
    assert_eq!(push["cluster_reference"], in_cluster.as_str(), "{json:#}");
    for node in json["images"][0]["nodes"].as_array().unwrap() {
        assert_eq!((&node["transport"], &node["verified"]), (&"registry".into(), &true.into()), "{json:#}");
    }
    for node in &cluster.nodes {
        assert_eq!(wait_for_cri_id(&cluster, node, &reference).as_deref(), Some(id.as_str()), "{node}");
        assert_eq!(pull_on_node(&cluster, node, &reference).as_deref(), Some(id.as_str()), "{node}: {reference}");
        assert_eq!(pull_on_node(&cluster, node, &in_cluster).as_deref(), Some(id.as_str()), "{node}: {in_cluster}");
    }
    // a second load moves nothing, still makes sure the registry holds it, and sends no blob
    let uploads =
        |log: String| log.lines().filter(|l| l.contains("\"PUT /v2/") && l.contains("/blobs/uploads/")).count();
    let sent_before = uploads(setup.log());
    let again = load_report(setup.kindload(), &cluster, "docker", &tag, &["--via-registry"]);
    assert!(again["images"][0]["nodes"].as_array().unwrap().iter().all(|n| n["action"] == "skipped"), "{again:#}");
    assert_eq!(again["images"][0]["push"]["reference"], reference.as_str(), "{again:#}");
    std::thread::sleep(std::time::Duration::from_millis(500)); // the engine copies the log a moment later
    assert_eq!(uploads(setup.log()), sent_before, "an unchanged image's blobs were sent again");

    // a layer too large to be held in memory streams through PATCH, its digest computed on the way
    let big = format!("kl-registry/big-{}-{provider}:v1", std::process::id());
    build_random_image("docker", &big, 9 << 20);
    let big_id = sha256_id(&run_ok(engine_command("docker").args(["image", "inspect", "--format", "{{.Id}}", &big])));
    load_report(setup.kindload(), &cluster, "docker", &big, &["--via-registry", "--push", "own"]);
    let big_ref = format!("{}/{big}", setup.host());
    assert_eq!(pull_on_node(&cluster, cluster.control_plane(), &big_ref).as_deref(), Some(big_id.as_str()));
    remove_image("docker", &big);

    // a client on the nodes' network trusting only kindload's CA; without it, refused
    let repo = tag.split(':').next().unwrap();
    let url = format!("https://{}:5000/v2/{repo}/manifests/v1", setup.name);
    let ca_out = setup.kindload().args(["registry", "ca"]).output().unwrap();
    assert!(ca_out.status.success());
    assert_eq!(String::from_utf8_lossy(&ca_out.stdout), std::fs::read_to_string(setup.ca_path()).unwrap());
    let trusted = fetch_manifest(provider, &network.name, Some(&setup.ca_path()), &url);
    assert!(trusted.status.success(), "client with the CA: {}", text(&trusted));
    let manifest: serde_json::Value = serde_json::from_slice(&trusted.stdout).unwrap();
    assert_eq!(manifest["config"]["digest"], id.as_str(), "{manifest:#}");
    let refused = fetch_manifest(provider, &network.name, None, &url);
    assert!(!refused.status.success(), "a client without the CA must be refused: {}", text(&refused));
    assert!(text(&refused).to_lowercase().contains("certificate"), "{}", text(&refused));

    // kindload build with PUSH_IMAGE=true and $IMAGE on the registry pushes with kindload's client
    let context = tempfile::tempdir().unwrap();
    std::fs::write(context.path().join("built.txt"), format!("built {}", std::process::id())).unwrap();
    std::fs::write(context.path().join("Dockerfile"), "FROM scratch\nCOPY built.txt /built.txt\n").unwrap();
    let built = format!("{}/kl-registry/built-{}-{provider}:v2", setup.host(), std::process::id());
    let build = support::building(|| {
        setup
            .kindload()
            .args(["build", "--engine", "docker"])
            .env("IMAGE", &built)
            .env("PUSH_IMAGE", "true")
            .env("BUILD_CONTEXT", context.path())
            .output()
    })
    .unwrap();
    assert!(build.status.success(), "{}", text(&build));
    assert!(text(&build).contains("kindload's registry"), "{}", text(&build));
    let built_id =
        sha256_id(&run_ok(engine_command("docker").args(["image", "inspect", "--format", "{{.Id}}", &built])));
    let node = cluster.control_plane();
    assert_eq!(pull_on_node(&cluster, node, &built).as_deref(), Some(built_id.as_str()));
    remove_image("docker", &built);

    // doctor reports the registry, each node's trust, the certificate, the Skaffold setting
    let doctor = setup.kindload().args(["doctor", "--cluster", &cluster.name]).output().unwrap();
    let said = text(&doctor);
    assert!(said.contains(&format!("ok    registry {} running at {}", setup.name, setup.host())), "{said}");
    assert!(said.contains("certificate expires in"), "{said}");
    for node in &cluster.nodes {
        assert!(said.contains(&format!("ok    node {node} trusts registry")), "{said}");
    }
    assert!(said.contains(&format!("--default-repo={}", setup.host())), "{said}");

    // a stopped registry: a clear error and exit 1 (the image changed: a node needs it)
    run_ok(engine_command(provider).args(["stop", "--time", "1", &setup.name]));
    build_image("docker", &tag, &format!("changed {provider} {containerd}"));
    let stopped = setup
        .kindload()
        .args([
            "load",
            "--via-registry",
            "--cluster",
            &cluster.name,
            "--provider",
            provider,
            "--engine",
            "docker",
            &tag,
        ])
        .output()
        .unwrap();
    assert_eq!(stopped.status.code(), Some(1), "{}", text(&stopped));
    assert!(text(&stopped).contains("is not running"), "{}", text(&stopped));
    assert!(text(&stopped).contains("kindload registry up"), "{}", text(&stopped));

    // down leaves the nodes as they were; --delete-data takes the images too. A cluster of
    // another test being removed meanwhile cannot be read and counts as a user of the
    // registry: that refusal is asked again, at most twice, once it is gone.
    let mut down = setup.kindload().args(["registry", "down", "--delete-data", "--cluster", &cluster.name]).output();
    for _ in 0..2 {
        match &down {
            Ok(out) if !out.status.success() && text(out).contains("is removing") => {
                std::thread::sleep(std::time::Duration::from_secs(3));
                down =
                    setup.kindload().args(["registry", "down", "--delete-data", "--cluster", &cluster.name]).output();
            }
            _ => break,
        }
    }
    let down = down.unwrap();
    assert!(down.status.success(), "{}", text(&down));
    let after_down: Vec<String> = cluster.nodes.iter().map(|n| certs_d(&cluster, n)).collect();
    assert_eq!(before, after_down);
    assert!(!run(engine_command(provider).args(["container", "inspect", &setup.name])).status.success());
    let volume = format!("{}-data", setup.name);
    assert!(!run(engine_command(provider).args(["volume", "inspect", &volume])).status.success(), "data kept");
    remove_image("docker", &tag);
}

#[test]
fn docker_containerd_2_1_end_to_end() {
    if !engine_available("docker") {
        return;
    }
    end_to_end("docker", "2.1", 1);
}

#[test]
fn podman_containerd_1_6_end_to_end() {
    if !engine_available("podman") || !engine_available("docker") {
        return;
    }
    end_to_end("podman", "1.6", 0);
}

/// containerd 1.7, a worker without config_path: up configures the others, names it, gives
/// the patch, exits 2, and leaves it untouched; a load verifies the others and fails it.
#[test]
fn node_without_config_path_is_named_and_left_alone() {
    if !engine_available("docker") {
        return;
    }
    let network = TestNetwork::create("docker", "noconf");
    let spec = ClusterSpec { provider: "docker", containerd: "1.7", workers: 1, snapshotter: None };
    let cluster = TestCluster::start_on_network("reg17", spec, &network, &[0]);
    let setup = test_registry("docker");
    let worker = cluster.nodes[1].clone();
    let up = setup.up(&cluster).output().unwrap();
    assert_eq!(up.status.code(), Some(2), "{}", text(&up));
    let said = text(&up);
    assert!(said.contains(&worker), "{said}");
    assert!(said.contains("containerdConfigPatches:"), "{said}");
    assert!(said.contains("[plugins.\"io.containerd.grpc.v1.cri\".registry]"), "{said}");
    assert!(said.contains("config_path = \"/etc/containerd/certs.d\""), "{said}");
    assert_eq!(certs_d(&cluster, &worker), "", "the worker was touched");
    assert!(certs_d(&cluster, cluster.control_plane()).contains("/hosts.toml"));

    let tag = format!("kl-registry/partial-{}:v1", std::process::id());
    let id = sha256_id(&build_image("docker", &tag, "partial"));
    let load = setup
        .kindload()
        .args(["load", "--via-registry", "--cluster", &cluster.name, "--engine", "docker", "--output", "json", &tag])
        .output()
        .unwrap();
    assert_eq!(load.status.code(), Some(1), "{}", text(&load));
    let reference = format!("{}/{tag}", setup.host());
    assert_eq!(wait_for_cri_id(&cluster, cluster.control_plane(), &reference).as_deref(), Some(id.as_str()));
    let json: serde_json::Value = serde_json::from_slice(&load.stdout).unwrap();
    let failed = json["images"][0]["nodes"].as_array().unwrap().iter().find(|n| n["name"] == worker.as_str()).unwrap();
    assert_eq!(failed["action"], "failed", "{json:#}");
    let error = failed["error"].as_str().unwrap();
    assert!(error.starts_with("--via-registry allows no sideload: ") && error.contains("config_path"), "{json:#}");

    // down keeps the images for the next up
    let down = setup.kindload().args(["registry", "down", "--cluster", &cluster.name]).output().unwrap();
    assert!(down.status.success(), "{}", text(&down));
    assert!(run(engine_command("docker").args(["volume", "inspect", &format!("{}-data", setup.name)]))
        .status
        .success());
    let up = setup.up(&cluster).output().unwrap();
    assert_eq!(up.status.code(), Some(2), "the worker still has no config_path: {}", text(&up));
    assert_eq!(pull_on_node(&cluster, cluster.control_plane(), &reference).as_deref(), Some(id.as_str()));
    remove_image("docker", &tag);
}

#[test]
fn bad_input_is_exit_2_with_the_fix() {
    if !engine_available("docker") {
        return;
    }
    let network = TestNetwork::create("docker", "bad");
    let spec = ClusterSpec { provider: "docker", containerd: "2.1", workers: 0, snapshotter: None };
    let cluster = TestCluster::start_on_network("regbad", spec, &network, &[0]);

    // port in use
    let setup = test_registry("docker");
    let listener = std::net::TcpListener::bind(("127.0.0.1", setup.port)).unwrap();
    let out = setup.up(&cluster).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains(&format!("port {} on 127.0.0.1 is in use", setup.port)), "{}", text(&out));
    assert!(text(&out).contains("--port"), "{}", text(&out));
    drop(listener);

    // name taken by a container kindload did not make
    run_ok(engine_command("docker").args(["create", "--name", &setup.name, "--network", "none", REGISTRY_IMAGE]));
    let out = setup.up(&cluster).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("kindload did not make it"), "{}", text(&out));
    assert!(text(&out).contains("--name"), "{}", text(&out));

    // nodes with no network
    let isolated = TestCluster::start(
        "regnone",
        ClusterSpec { provider: "docker", containerd: "2.1", workers: 0, snapshotter: None },
    );
    let other = test_registry("docker");
    let out = other.up(&isolated).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("on no container network"), "{}", text(&out));
    assert!(text(&out).contains("kind create cluster"), "{}", text(&out));

    // no registry at all: bad input too
    let tag = format!("kl-registry/none-{}:v1", std::process::id());
    build_image("docker", &tag, "no registry");
    let out = other
        .kindload()
        .args(["load", "--via-registry", "--cluster", &cluster.name, "--engine", "docker", &tag])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("there is no kindload registry"), "{}", text(&out));
    assert!(text(&out).contains("kindload registry up"), "{}", text(&out));
    remove_image("docker", &tag);
}

#[test]
fn manifests_parse_as_the_configmaps_tools_read() {
    let state = tempfile::tempdir().unwrap();
    let out = kindload().env("KINDLOAD_STATE_DIR", state.path()).args(["registry", "ca"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "no CA yet: {}", text(&out));
    // make the CA the way `up` does, without a cluster
    kindload::registry::ca::Store::new(state.path()).ensure_ca().unwrap();
    let out = kindload()
        .env("KINDLOAD_STATE_DIR", state.path())
        .args(["registry", "manifests", "--cluster", "kl-no-such-cluster", "--ca-namespace", "crossplane-system"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let yaml = String::from_utf8_lossy(&out.stdout);
    let docs: Vec<serde_json::Value> = yaml.split("\n---\n").map(serde_yaml_value).collect();
    assert_eq!(docs.len(), 2, "{yaml}");
    assert_eq!(docs[0]["metadata"]["name"], "local-registry-hosting");
    assert_eq!(docs[0]["metadata"]["namespace"], "kube-public");
    let hosting = serde_yaml_value(docs[0]["data"]["localRegistryHosting.v1"].as_str().unwrap());
    assert_eq!(hosting["host"], "localhost:5001");
    assert_eq!(hosting["hostFromContainerRuntime"], "kindload-registry:5000");
    assert_eq!(docs[1]["metadata"]["namespace"], "crossplane-system");
    let ca = std::fs::read_to_string(state.path().join("registry/ca.crt")).unwrap();
    assert_eq!(docs[1]["data"]["ca.crt"], ca.as_str());
}

fn serde_yaml_value(text: &str) -> serde_json::Value {
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("not YAML ({e}): {text}"))
}

/// Docker's containerd image store writes an OCI layout (an index, `.Id` the manifest
/// digest); a Podman-hosted containerd 2.1 cluster pulls what kindload pushed from it.
#[test]
fn containerd_store_oci_layout_to_podman_nodes() {
    if !engine_available(CONTAINERD_STORE) || !engine_available("podman") {
        return;
    }
    let store_host = engine_cmd(CONTAINERD_STORE)[2].clone();
    let network = TestNetwork::create("podman", "store");
    let spec = ClusterSpec { provider: "podman", containerd: "2.1", workers: 1, snapshotter: None };
    let cluster = TestCluster::start_on_network("regstore", spec, &network, &[0, 1]);
    let setup = test_registry("podman");
    let up = setup.up(&cluster).output().unwrap();
    assert!(up.status.success(), "{}", text(&up));
    let tag = format!("kl-registry/store-{}:v1", std::process::id());
    build_image(CONTAINERD_STORE, &tag, "from the containerd store");
    let mut cmd = setup.kindload();
    cmd.env("DOCKER_HOST", &store_host);
    // kindload's own push of the OCI layout `docker save` writes
    let report = load_report(cmd, &cluster, "docker", &tag, &["--via-registry", "--push", "own"]);
    assert_eq!(report["images"][0]["push"]["with"], "own", "{report:#}");
    let id = report["images"][0]["id"].as_str().expect("the config digest is known").to_string();
    let reference = report["images"][0]["push"]["reference"].as_str().unwrap().to_string();
    assert_eq!(reference, format!("{}/{tag}", setup.host()));
    for node in &cluster.nodes {
        assert_eq!(pull_on_node(&cluster, node, &reference).as_deref(), Some(id.as_str()), "{node}");
    }
    let _ = run(engine_command(CONTAINERD_STORE).args(["image", "rm", "-f", &tag]));
}

/// Two clusters share one registry: `down` of one keeps the other's trust, the container and
/// the images; a cluster that could not trust it changes nothing by coming or going;
/// `--delete-data` is refused while another cluster uses it; `--all` ends it for everyone.
/// Every subcommand takes the same target flags.
#[test]
fn clusters_share_one_registry_and_down_undoes_only_one() {
    if !engine_available("docker") {
        return;
    }
    let network = TestNetwork::create("docker", "share");
    let one = ClusterSpec { provider: "docker", containerd: "2.1", workers: 0, snapshotter: None };
    let a = TestCluster::start_on_network("sharea", one, &network, &[0]);
    let b = TestCluster::start_on_network("shareb", one, &network, &[0]);
    let plain = TestCluster::start_on_network("sharec", one, &network, &[]);
    let setup = test_registry("docker");
    let target = |cluster: &TestCluster| {
        vec![
            "--cluster".to_string(),
            cluster.name.clone(),
            "--provider".into(),
            "docker".into(),
            "--kube-context".into(),
            format!("kind-{}", cluster.name),
            "--name".into(),
            setup.name.clone(),
        ]
    };
    let registry = |sub: &str, cluster: &TestCluster, extra: &[&str]| {
        setup.kindload().args(["registry", sub]).args(target(cluster)).args(extra).output().unwrap()
    };
    let exists = |what: &str, name: &str| run(engine_command("docker").args([what, "inspect", name])).status.success();
    let volume = format!("{}-data", setup.name);
    let (before_a, before_b) = (certs_d(&a, a.control_plane()), certs_d(&b, b.control_plane()));

    let up_a = registry("up", &a, &["--image", REGISTRY_IMAGE, "--port", &setup.port.to_string()]);
    assert!(up_a.status.success(), "{}", text(&up_a));
    let tag = format!("kl-registry/shared-{}:v1", std::process::id());
    let id = sha256_id(&build_image("docker", &tag, "shared by two clusters"));
    let load = setup
        .kindload()
        .args(["load", "--via-registry", "--cluster", &a.name, "--engine", "docker", &tag])
        .output()
        .unwrap();
    assert!(load.status.success(), "{}", text(&load));
    let reference = format!("{}/{tag}", setup.host());

    // a cluster whose nodes read no hosts.toml: refused before anything changes, and its down keeps all
    let before_plain = certs_d(&plain, plain.control_plane());
    let up_plain = registry("up", &plain, &["--image", REGISTRY_IMAGE]);
    assert_eq!(up_plain.status.code(), Some(2), "{}", text(&up_plain));
    assert_eq!(certs_d(&plain, plain.control_plane()), before_plain);
    let down_plain = registry("down", &plain, &[]);
    assert!(down_plain.status.success(), "{}", text(&down_plain));
    assert!(text(&down_plain).contains(&format!("cluster(s) {} still use it", a.name)), "{}", text(&down_plain));
    assert!(exists("container", &setup.name) && exists("volume", &volume));

    // the second cluster joins; status names both
    let up_b = registry("up", &b, &["--image", REGISTRY_IMAGE]);
    assert!(up_b.status.success(), "{}", text(&up_b));
    let status = registry("status", &a, &["--output", "json"]);
    assert!(status.status.success(), "{}", text(&status));
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_matches_schema("registry-status.schema.json", &json);
    assert_eq!(json["clusters"], serde_json::json!([a.name.clone(), b.name.clone()]), "{json:#}");
    for sub in ["ca", "manifests"] {
        let out = registry(sub, &b, &[]);
        assert!(out.status.success(), "registry {sub} with the target flags: {}", text(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("BEGIN CERTIFICATE"), "{sub}");
    }

    // deleting the images while a still uses them is refused, and changes nothing
    let refused = registry("down", &b, &["--delete-data"]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(text(&refused).contains(&a.name) && text(&refused).contains("--all"), "{}", text(&refused));
    assert!(certs_d(&b, b.control_plane()).contains("/hosts.toml"), "the refused down touched b");

    // down of b: b's trust gone, a's trust, the container and the images kept
    let down_b = registry("down", &b, &[]);
    assert!(down_b.status.success(), "{}", text(&down_b));
    assert_eq!(certs_d(&b, b.control_plane()), before_b, "b still trusts it");
    assert!(certs_d(&a, a.control_plane()).contains("/hosts.toml"), "a lost its trust");
    assert!(exists("container", &setup.name) && exists("volume", &volume));
    assert_eq!(pull_on_node(&a, a.control_plane(), &reference).as_deref(), Some(id.as_str()));
    let status = registry("status", &a, &["--output", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(json["running"], true, "{json:#}");
    assert_eq!(json["clusters"], serde_json::json!([a.name.clone()]), "{json:#}");

    // the last cluster's down removes the container and keeps the images for the next up
    let down_a = registry("down", &a, &[]);
    assert!(down_a.status.success(), "{}", text(&down_a));
    assert!(!exists("container", &setup.name), "{}", text(&down_a));
    assert!(exists("volume", &volume), "{}", text(&down_a));
    let again = registry("up", &a, &["--image", REGISTRY_IMAGE, "--port", &setup.port.to_string()]);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(pull_on_node(&a, a.control_plane(), &reference).as_deref(), Some(id.as_str()), "images lost");

    // --all ends it for every cluster, --delete-data with the images
    let up_b = registry("up", &b, &["--image", REGISTRY_IMAGE]);
    assert!(up_b.status.success(), "{}", text(&up_b));
    let all =
        setup.kindload().args(["registry", "down", "--all", "--delete-data", "--name", &setup.name]).output().unwrap();
    assert!(all.status.success(), "{}", text(&all));
    assert_eq!(certs_d(&a, a.control_plane()), before_a);
    assert_eq!(certs_d(&b, b.control_plane()), before_b);
    assert!(!exists("container", &setup.name) && !exists("volume", &volume), "{}", text(&all));
    remove_image("docker", &tag);
}

/// The engine refuses to start the registry: `up` fails with exit 1 and leaves no container
/// or volume; a container of its own that never started is made again by the next `up`.
fn failed_start_leaves_nothing(provider: &'static str) {
    let network = TestNetwork::create(provider, "broken");
    let one = ClusterSpec { provider, containerd: "2.1", workers: 0, snapshotter: None };
    let cluster = TestCluster::start_on_network("broken", one, &network, &[0]);
    let setup = test_registry(provider);
    let context = tempfile::tempdir().unwrap();
    std::fs::write(context.path().join("file"), "no program here").unwrap();
    std::fs::write(context.path().join("Dockerfile"), "FROM scratch\nCOPY file /file\nCMD [\"/no-such-program\"]\n")
        .unwrap();
    let broken = format!("kindload-testbroken-{}:1", std::process::id());
    build_ok(provider, &["-t", &broken], context.path());
    let exists = |what: &str, name: &str| run(engine_command(provider).args([what, "inspect", name])).status.success();
    let volume = format!("{}-data", setup.name);
    let before = certs_d(&cluster, cluster.control_plane());
    let up = |image: &str| {
        setup
            .kindload()
            .args(["registry", "up", "--cluster", &cluster.name, "--image", image])
            .args(["--port", &setup.port.to_string()])
            .output()
            .unwrap()
    };

    let failed = up(&broken);
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    assert!(text(&failed).contains("starting the registry container failed"), "{}", text(&failed));
    assert!(!exists("container", &setup.name), "a failed up left a container: {}", text(&failed));
    assert!(!exists("volume", &volume), "a failed up left a volume: {}", text(&failed));
    assert_eq!(certs_d(&cluster, cluster.control_plane()), before, "a failed up wrote node files");

    // a container of kindload's that never started (as a killed up leaves it) is made anew
    run_ok(engine_command(provider).args(["create", "--name", &setup.name]).args([
        "--label",
        &format!("io.kindload.registry={}", setup.name),
        "--label",
        &format!("io.kindload.registry.port={}", setup.port),
        &broken,
    ]));
    let fixed = up(REGISTRY_IMAGE);
    assert!(fixed.status.success(), "{}", text(&fixed));
    assert!(text(&fixed).contains("never started"), "{}", text(&fixed));
    assert!(certs_d(&cluster, cluster.control_plane()).contains("/hosts.toml"));
    remove_image(provider, &broken);
}

#[test]
fn docker_failed_start_leaves_nothing() {
    if !engine_available("docker") {
        return;
    }
    failed_start_leaves_nothing("docker");
}

#[test]
fn podman_failed_start_leaves_nothing() {
    if !engine_available("podman") {
        return;
    }
    failed_start_leaves_nothing("podman");
}
