//! `kindload load` and `kindload verify` on the real test bed: every image source (Docker's
//! classic store, Podman with its localhost/ names, an archive file, stdin, Docker's
//! containerd store) into Docker- and Podman-hosted nodes running containerd 1.6, 1.7, 2.1.

mod support;

use std::collections::BTreeSet;

use kindload::resolve::records::{config_digest_for_target, parse_ctr_images};
use serde_json::Value;
use support::{
    build_image, cri_id, engine_available, kindload, remove_image, save_image, sha256_id, ClusterSpec, TestCluster,
};

struct Run {
    code: Option<i32>,
    json: Value,
    stderr: String,
}

fn load(args: &[&str], stdin: Option<Vec<u8>>) -> Run {
    let mut cmd = kindload();
    cmd.arg("load").args(args).args(["--output", "json"]);
    if let Some(bytes) = stdin {
        cmd.write_stdin(bytes);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    if json != Value::Null {
        validate_report(&json);
    }
    Run { code: out.status.code(), json, stderr }
}

fn validate_report(json: &Value) {
    support::assert_matches_schema("load-report.schema.json", json);
}

/// Every node did `action` for every image and verified it.
fn assert_all(run: &Run, action: &str) {
    assert_eq!(run.code, Some(0), "stderr: {}\n{:#}", run.stderr, run.json);
    assert_eq!(run.json["ok"], true);
    for image in run.json["images"].as_array().unwrap() {
        for node in image["nodes"].as_array().unwrap() {
            assert_eq!(node["action"], action, "{image:#}");
            assert_eq!(node["verified"], true, "{image:#}");
            assert_eq!(node["verified_with"], "ctr", "the test bed's nodes have no crictl");
            if action == "loaded" {
                assert!(node["bytes"].as_u64().unwrap() > 0);
            } else {
                assert_eq!(node["bytes"], 0);
            }
        }
    }
}

fn assert_on_every_node(cluster: &TestCluster, name: &str, id: &str) {
    for node in &cluster.nodes {
        assert_eq!(cri_id(cluster, node, name).as_deref(), Some(id), "{name} on {node}:\n{}", cluster.ctr_images(node));
    }
}

fn names_on(cluster: &TestCluster, node: &str) -> BTreeSet<String> {
    parse_ctr_images(&cluster.ctr_images(node)).into_iter().map(|r| r.name).collect()
}

/// The whole load story for one provider and containerd version, for every image source.
fn matrix(provider: &'static str, containerd: &'static str, workers: usize, snapshotter: Option<&'static str>) {
    if !engine_available("docker") || !engine_available("podman") {
        return;
    }
    let cluster =
        TestCluster::start(&format!("load-{containerd}"), ClusterSpec { provider, containerd, workers, snapshotter });
    let c = cluster.name.as_str();

    // Docker's classic store: load, nothing on a second run, the changed image again.
    let tag = format!("kl-test/{c}-docker:v1");
    let id = build_image("docker", &tag, "first");
    let first = load(&[&tag, "--cluster", c, "--engine", "docker"], None);
    assert_all(&first, "loaded");
    assert_eq!(first.json["images"][0]["id"], id.as_str());
    assert_eq!(first.json["images"][0]["normalized"], format!("docker.io/{tag}"));
    assert_on_every_node(&cluster, &format!("docker.io/{tag}"), &id);
    assert_all(&load(&[&tag, "--cluster", c], None), "skipped");
    let changed = build_image("docker", &tag, "second");
    assert_ne!(changed, id);
    let again = load(&[&tag, "--cluster", c], None);
    assert_all(&again, "loaded");
    assert_on_every_node(&cluster, &format!("docker.io/{tag}"), &changed);

    // Podman names its build localhost/...; the node must also answer to what was asked.
    let ptag = format!("kl-test/{c}-podman:v1");
    let pid = sha256_id(&build_image("podman", &ptag, "from podman"));
    let podman = load(&[&ptag, "--cluster", c, "--engine", "podman"], None);
    assert_all(&podman, "loaded");
    assert_eq!(podman.json["images"][0]["source"], "podman");
    assert_on_every_node(&cluster, &format!("docker.io/{ptag}"), &pid);
    assert_on_every_node(&cluster, &format!("localhost/{ptag}"), &pid);
    assert_all(&load(&[&ptag, "--cluster", c, "--engine", "podman"], None), "skipped");
    let pchanged = sha256_id(&build_image("podman", &ptag, "from podman, changed"));
    assert_all(&load(&[&ptag, "--cluster", c, "--engine", "podman"], None), "loaded");
    assert_on_every_node(&cluster, &format!("docker.io/{ptag}"), &pchanged);

    // An archive file, with the image gone from every engine: the archive alone is enough.
    let atag = format!("kl-test/{c}-archive:v1");
    let aid = build_image("docker", &atag, "archived");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("image.tar");
    std::fs::write(&file, save_image("docker", &atag)).unwrap();
    remove_image("docker", &atag);
    let from_file = load(&["--archive", file.to_str().unwrap(), "--cluster", c], None);
    assert_all(&from_file, "loaded");
    assert_eq!(from_file.json["images"][0]["source"], file.to_str().unwrap());
    assert_on_every_node(&cluster, &format!("docker.io/{atag}"), &aid);
    assert_all(&load(&["--archive", file.to_str().unwrap(), "--cluster", c], None), "skipped");
    let achanged = build_image("docker", &atag, "archived, changed");
    std::fs::write(&file, save_image("docker", &atag)).unwrap();
    remove_image("docker", &atag);
    assert_all(&load(&["--archive", file.to_str().unwrap(), "--cluster", c], None), "loaded");
    assert_on_every_node(&cluster, &format!("docker.io/{atag}"), &achanged);

    // stdin: `podman save app | kindload load --archive -`.
    let stag = format!("kl-test/{c}-stdin:v1");
    let sid = sha256_id(&build_image("podman", &stag, "piped"));
    let piped = load(&["--archive", "-", "--cluster", c, &stag], Some(save_image("podman", &stag)));
    assert_all(&piped, "loaded");
    assert_on_every_node(&cluster, &format!("docker.io/{stag}"), &sid);

    for t in [&tag, &ptag, &stag] {
        remove_image("docker", t);
        remove_image("podman", t);
    }
}

#[test]
fn docker_nodes_containerd_1_6_single_node() {
    matrix("docker", "1.6", 0, None);
}

#[test]
fn docker_nodes_containerd_1_7() {
    matrix("docker", "1.7", 1, None);
}

#[test]
fn docker_nodes_containerd_2_1_three_nodes_native_snapshotter() {
    // containerd 2.x's transfer service cannot unpack into a non-default snapshotter.
    matrix("docker", "2.1", 2, Some("native"));
}

#[test]
fn podman_nodes_containerd_1_6() {
    matrix("podman", "1.6", 1, Some("native"));
}

#[test]
fn podman_nodes_containerd_1_7_single_node() {
    matrix("podman", "1.7", 0, None);
}

#[test]
fn podman_nodes_containerd_2_1() {
    matrix("podman", "2.1", 1, None);
}

/// Docker's containerd image store: `.Id` is the manifest digest and `save` writes an OCI
/// layout; CRI must still see the config digest it reports as the image id.
#[test]
fn containerd_store_source() {
    if !engine_available(support::CONTAINERD_STORE) || !engine_available("podman") {
        return;
    }
    let host = support::engine_cmd(support::CONTAINERD_STORE)[2].clone();
    let cluster = TestCluster::start(
        "store",
        ClusterSpec { provider: "podman", containerd: "2.1", workers: 1, snapshotter: None },
    );
    let tag = format!("kl-test/{}-store:v1", cluster.name);
    let manifest = build_image(support::CONTAINERD_STORE, &tag, "containerd store");
    let run = |extra: &[&str]| {
        let mut cmd = kindload();
        cmd.env("DOCKER_HOST", &host)
            .args([
                "load",
                &tag,
                "--cluster",
                &cluster.name,
                "--provider",
                "podman",
                "--engine",
                "docker",
                "--output",
                "json",
            ])
            .args(extra);
        let out = cmd.output().unwrap();
        let json: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        Run { code: out.status.code(), json, stderr: String::from_utf8_lossy(&out.stderr).into_owned() }
    };
    let first = run(&[]);
    assert_all(&first, "loaded");
    validate_report(&first.json);
    let name = format!("docker.io/{tag}");
    let config = first.json["images"][0]["id"].as_str().unwrap().to_string();
    assert_ne!(config, manifest, "CRI reports the config digest, not Docker's manifest-digest id");
    for node in &cluster.nodes {
        let listing = parse_ctr_images(&cluster.ctr_images(node));
        let record = listing.iter().find(|r| r.name == name).expect("named on the node");
        assert_eq!(record.target, manifest, "the node holds the very manifest Docker has");
        assert_eq!(config_digest_for_target(&listing, &record.target).as_deref(), Some(config.as_str()));
    }
    assert_all(&run(&[]), "skipped");
}

/// A multi-platform index whose other platform was never pulled (only its digest is
/// listed, as Docker's containerd store leaves it) imports the platform that is there.
#[test]
fn multi_platform_archive_with_missing_blobs_imports_the_local_platform() {
    if !engine_available("docker") {
        return;
    }
    let cluster = TestCluster::start(
        "multiarch",
        ClusterSpec { provider: "docker", containerd: "2.1", workers: 1, snapshotter: None },
    );
    let name = format!("docker.io/kl-test/{}-multi:v1", cluster.name);
    let (archive, config) = support_oci::multi_platform_archive(&name);
    let run = load(&["--archive", "-", "--cluster", &cluster.name], Some(archive));
    assert_all(&run, "loaded");
    assert_on_every_node(&cluster, &name, &config);
}

#[test]
fn stopped_node_fails_by_name_but_the_running_ones_are_loaded() {
    if !engine_available("docker") {
        return;
    }
    let cluster = TestCluster::start(
        "stop",
        ClusterSpec { provider: "docker", containerd: "1.7", workers: 2, snapshotter: None },
    );
    let tag = format!("kl-test/{}-stop:v1", cluster.name);
    let id = build_image("docker", &tag, "stopped node");
    let stopped = cluster.nodes[2].clone();
    cluster.stop_node(&stopped);
    let run = load(&[&tag, "--cluster", &cluster.name], None);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_eq!(run.json["ok"], false);
    let nodes = run.json["images"][0]["nodes"].as_array().unwrap();
    for node in nodes {
        if node["name"] == stopped.as_str() {
            assert_eq!(node["action"], "failed");
            assert_eq!(node["verified"], false);
            let error = node["error"].as_str().unwrap();
            assert!(error.contains(&format!("node {stopped} is exited")) && error.contains("docker start"), "{error}");
        } else {
            assert_eq!(node["action"], "loaded");
            assert_eq!(node["verified"], true);
            assert_eq!(
                cri_id(&cluster, node["name"].as_str().unwrap(), &format!("docker.io/{tag}")).as_deref(),
                Some(id.as_str())
            );
        }
    }
    let only_running = format!("{},{}", cluster.nodes[0], cluster.nodes[1]);
    assert_all(&load(&[&tag, "--cluster", &cluster.name, "--nodes", &only_running], None), "skipped");
    let unknown = load(&[&tag, "--cluster", &cluster.name, "--nodes", "nope"], None);
    assert_eq!(unknown.code, Some(2));
    assert!(unknown.stderr.contains("no node named nope"), "{}", unknown.stderr);
    remove_image("docker", &tag);
}

#[test]
fn missing_image_and_missing_cluster_are_exit_2() {
    if !engine_available("docker") || !engine_available("podman") {
        return;
    }
    let cluster = TestCluster::start(
        "missing",
        ClusterSpec { provider: "podman", containerd: "1.6", workers: 0, snapshotter: None },
    );
    let missing = load(&["kl-test/never-built:v1", "--cluster", &cluster.name], None);
    assert_eq!(missing.code, Some(2), "{}", missing.stderr);
    assert!(
        missing.stderr.contains("image \"kl-test/never-built:v1\" not found in docker or podman"),
        "{}",
        missing.stderr
    );
    assert!(missing.stderr.contains("fix: build or pull the image first"), "{}", missing.stderr);

    let tag = format!("kl-test/{}-nocluster:v1", cluster.name);
    build_image("docker", &tag, "x");
    let no_cluster = load(&[&tag, "--cluster", "kl-no-such-cluster"], None);
    assert_eq!(no_cluster.code, Some(2));
    assert!(no_cluster.stderr.contains("kind cluster \"kl-no-such-cluster\" not found"), "{}", no_cluster.stderr);
    remove_image("docker", &tag);
}

/// Same content under a new name: a tag on the node, no transfer.
#[test]
fn new_name_for_present_content_is_retagged_and_several_images_share_one_export() {
    if !engine_available("docker") {
        return;
    }
    let cluster = TestCluster::start(
        "retag",
        ClusterSpec { provider: "docker", containerd: "2.1", workers: 1, snapshotter: None },
    );
    let (a, b) = (format!("kl-test/{}-a:v1", cluster.name), format!("kl-test/{}-b:v1", cluster.name));
    build_image("docker", &a, "a");
    let b_id = build_image("docker", &b, "b");
    let out = kindload().args(["-v", "load", &a, &b, "--cluster", &cluster.name]).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert_eq!(log.matches(" docker save ").count(), 1, "one export for both images:\n{log}");
    assert!(log.contains(&format!(" docker save {a} {b}\n")), "{log}");

    let alias = format!("kl-test/{}-b:alias", cluster.name);
    support::run_ok(std::process::Command::new("docker").args(["tag", &b, &alias]));
    let retag = load(&[&alias, "--cluster", &cluster.name], None);
    assert_all(&retag, "retagged");
    assert_on_every_node(&cluster, &format!("docker.io/{alias}"), &b_id);
    for t in [&a, &b, &alias] {
        remove_image("docker", t);
    }
}

#[test]
fn verify_alone_reports_absent_images_with_a_diagnosis() {
    if !engine_available("podman") {
        return;
    }
    let cluster = TestCluster::start(
        "verify",
        ClusterSpec { provider: "podman", containerd: "1.7", workers: 1, snapshotter: None },
    );
    let tag = format!("kl-test/{}-verify:v1", cluster.name);
    build_image("podman", &tag, "verify");
    let out = kindload()
        .args(["verify", &tag, "--cluster", &cluster.name, "--engine", "podman"])
        .env("KINDLOAD_CONFIG", settle_fast())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("docker.io/{tag} is absent")), "{stderr}");
    assert!(stderr.contains(&format!("run `kindload load {tag} --nodes")), "{stderr}");
    assert_all(&load(&[&tag, "--cluster", &cluster.name, "--engine", "podman"], None), "loaded");
    let ok = kindload().args(["verify", &tag, "--cluster", &cluster.name, "--engine", "podman"]).output().unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    remove_image("podman", &tag);
}

/// A config with a short settle time, for runs that are expected to fail verification.
fn settle_fast() -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("kindload-settle-{}.yaml", std::process::id()));
    std::fs::write(&path, "verify:\n  settle_seconds: 1\n").unwrap();
    path
}

/// An import that fails half-way (a snapshotter the node cannot use) leaves no image
/// record behind, so a later run cannot mistake it for "already present".
#[test]
fn failed_import_leaves_no_record() {
    if !engine_available("docker") {
        return;
    }
    let cluster = TestCluster::start(
        "badsnap",
        ClusterSpec { provider: "docker", containerd: "1.7", workers: 0, snapshotter: Some("btrfs") },
    );
    let tag = format!("kl-test/{}-bad:v1", cluster.name);
    build_image("docker", &tag, "cannot unpack");
    let before = names_on(&cluster, &cluster.nodes[0]);
    let run = load(&[&tag, "--cluster", &cluster.name], None);
    assert_eq!(run.code, Some(1), "{}\n{:#}", run.stderr, run.json);
    let node = &run.json["images"][0]["nodes"][0];
    assert_eq!(node["action"], "failed");
    assert!(node["error"].as_str().unwrap().contains("import into"), "{node:#}");
    assert_eq!(names_on(&cluster, &cluster.nodes[0]), before, "nothing half-imported is visible");
    remove_image("docker", &tag);
}

#[test]
fn truncated_archive_on_stdin_is_bad_input_and_leaves_nothing() {
    if !engine_available("docker") {
        return;
    }
    let cluster = TestCluster::start(
        "trunc",
        ClusterSpec { provider: "docker", containerd: "1.6", workers: 1, snapshotter: None },
    );
    let tag = format!("kl-test/{}-trunc:v1", cluster.name);
    build_image("docker", &tag, &"x".repeat(100_000));
    let mut archive = save_image("docker", &tag);
    archive.truncate(archive.len() / 2);
    let before: Vec<BTreeSet<String>> = cluster.nodes.iter().map(|n| names_on(&cluster, n)).collect();
    let run = load(&["--archive", "-", "--cluster", &cluster.name], Some(archive));
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("stdin is not an image archive"), "{}", run.stderr);
    let after: Vec<BTreeSet<String>> = cluster.nodes.iter().map(|n| names_on(&cluster, n)).collect();
    assert_eq!(before, after);
    remove_image("docker", &tag);
}

/// Memory stays bounded whatever the image size: nothing buffers the image.
#[test]
fn memory_does_not_grow_with_the_image() {
    if !engine_available("docker") {
        return;
    }
    let cluster =
        TestCluster::start("mem", ClusterSpec { provider: "docker", containerd: "2.1", workers: 1, snapshotter: None });
    let tag = format!("kl-test/{}-big:v1", cluster.name);
    support::build_random_image("docker", &tag, 192 << 20);
    let out = kindload().args(["-v", "load", &tag, "--cluster", &cluster.name]).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let peak_kib: u64 = log
        .lines()
        .find_map(|l| l.strip_prefix("+ peak resident memory: ")?.strip_suffix(" KiB")?.parse().ok())
        .unwrap_or_else(|| panic!("no peak memory line in:\n{log}"));
    assert!(peak_kib < 64 * 1024, "kindload held {peak_kib} KiB while streaming a 192 MiB image to 2 nodes");
    remove_image("docker", &tag);
}

mod support_oci {
    //! A hand-made OCI archive: an index listing two platforms, only the local one's blobs present.
    use sha2::{Digest, Sha256};

    fn digest(bytes: &[u8]) -> String {
        format!("sha256:{}", Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect::<String>())
    }

    fn append(builder: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, path, data).unwrap();
    }

    /// Returns the archive and the config digest CRI will report.
    pub fn multi_platform_archive(name: &str) -> (Vec<u8>, String) {
        let mut layer = tar::Builder::new(Vec::new());
        append(&mut layer, "hello.txt", name.as_bytes());
        let layer = layer.into_inner().unwrap();
        let diff_id = digest(&layer);
        let arch = kindload::transfer::archive::local_arch();
        let config = format!(
            r#"{{"architecture":"{arch}","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
        );
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}]}}"#,
            digest(config.as_bytes()),
            config.len(),
            diff_id,
            layer.len()
        );
        let absent = digest(b"a manifest for another platform that was never pulled");
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{},"platform":{{"architecture":"{arch}","os":"linux"}}}},{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{absent}","size":512,"platform":{{"architecture":"not-{arch}","os":"linux"}}}}]}}"#,
            digest(manifest.as_bytes()),
            manifest.len()
        );
        let top = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{}","size":{},"annotations":{{"io.containerd.image.name":"{name}"}}}}]}}"#,
            digest(index.as_bytes()),
            index.len()
        );
        let mut archive = tar::Builder::new(Vec::new());
        append(&mut archive, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
        for blob in [layer.as_slice(), config.as_bytes(), manifest.as_bytes(), index.as_bytes()] {
            append(&mut archive, &format!("blobs/sha256/{}", &digest(blob)[7..]), blob);
        }
        append(&mut archive, "index.json", top.as_bytes());
        (archive.into_inner().unwrap(), digest(config.as_bytes()))
    }
}

/// `DOCKER_HOST` pointing at Podman's socket: kindload drives the `docker` CLI, recognises
/// that Podman answers, and the image (named localhost/... there) still answers to the
/// name the user gave.
#[test]
fn docker_api_served_by_podman_source() {
    if !engine_available("docker") || !engine_available("podman") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("podman.sock");
    let mut service = std::process::Command::new("podman")
        .args(["system", "service", "--time=0", &format!("unix://{}", socket.display())])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !socket.exists() {
        assert!(std::time::Instant::now() < deadline, "podman system service did not start");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let docker_host = format!("unix://{}", socket.display());
    let cluster = TestCluster::start(
        "viasock",
        ClusterSpec { provider: "podman", containerd: "1.7", workers: 1, snapshotter: None },
    );
    let tag = format!("kl-test/{}-viasock:v1", cluster.name);
    let id = sha256_id(&build_image("podman", &tag, "through the docker api"));

    let doctor = kindload()
        .args(["doctor", &tag, "--cluster", &cluster.name])
        .env("DOCKER_HOST", &docker_host)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(text.contains("ok    engine docker 4.") && text.contains("(backed by Podman"), "{text}");
    assert!(text.contains(&format!("DOCKER_HOST={docker_host}")), "says how the engine is reached: {text}");

    let mut cmd = kindload();
    cmd.env("DOCKER_HOST", &docker_host).args([
        "load",
        &tag,
        "--cluster",
        &cluster.name,
        "--engine",
        "docker",
        "--provider",
        "podman",
        "--output",
        "json",
    ]);
    let out = cmd.output().unwrap();
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let run = Run { code: out.status.code(), json, stderr: String::from_utf8_lossy(&out.stderr).into_owned() };
    assert_all(&run, "loaded");
    assert_eq!(run.json["images"][0]["source"], "docker");
    assert_on_every_node(&cluster, &format!("docker.io/{tag}"), &id);
    let _ = service.kill();
    let _ = service.wait();
    remove_image("podman", &tag);
}

/// On a terminal the transfer shows a live byte count and rate; NO_COLOR turns bars off.
#[test]
fn progress_is_drawn_on_a_terminal() {
    if !engine_available("docker") {
        return;
    }
    let cluster =
        TestCluster::start("tty", ClusterSpec { provider: "docker", containerd: "1.7", workers: 0, snapshotter: None });
    let on_terminal = |tag: &str, no_color: bool| {
        support::build_random_image("docker", tag, 48 << 20);
        let command = format!("{} load {tag} --cluster {}", env!("CARGO_BIN_EXE_kindload"), cluster.name);
        let mut script = std::process::Command::new("script");
        script.args(["-qec", &command, "/dev/null"]).env_remove("DOCKER_HOST").env("TERM", "xterm");
        if no_color {
            script.env("NO_COLOR", "1");
        } else {
            script.env_remove("NO_COLOR");
        }
        let out = script.output().unwrap();
        remove_image("docker", tag);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{text}");
        assert!(text.contains("loaded 48.0 MiB"), "{text:?}");
        text
    };
    let drawn = on_terminal(&format!("kl-test/{}-tty:v1", cluster.name), false);
    assert!(drawn.contains(" → 1 node(s) ") && drawn.contains("/s"), "no progress drawn:\n{drawn:?}");
    // The plan knows what the node will receive: a bar with percentage, total and time left.
    assert!(drawn.contains("% ") && drawn.contains("/48.00 MiB") && drawn.contains(" left"), "no bar:\n{drawn:?}");
    let plain = on_terminal(&format!("kl-test/{}-nocolor:v1", cluster.name), true);
    assert!(!plain.contains(" → 1 node(s) "), "NO_COLOR still drew a bar:\n{plain:?}");
}

/// Podman writes several images into one docker-archive only when asked (`-m`): one export
/// for all, and each image under its own name with its own id.
#[test]
fn podman_exports_several_images_in_one_archive() {
    if !engine_available("podman") {
        return;
    }
    let cluster = TestCluster::start(
        "pmulti",
        ClusterSpec { provider: "podman", containerd: "2.1", workers: 1, snapshotter: None },
    );
    let (a, b) = (format!("kl-test/{}-pa:v1", cluster.name), format!("kl-test/{}-pb:v1", cluster.name));
    let a_id = sha256_id(&build_image("podman", &a, "podman a"));
    let b_id = sha256_id(&build_image("podman", &b, "podman b"));
    let out =
        kindload().args(["-v", "load", &a, &b, "--cluster", &cluster.name, "--engine", "podman"]).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains(&format!("+ podman save --format docker-archive --multi-image-archive {a} {b}")), "{log}");
    assert_eq!(log.matches("+ podman save").count(), 1, "{log}");
    assert_on_every_node(&cluster, &format!("docker.io/{a}"), &a_id);
    assert_on_every_node(&cluster, &format!("docker.io/{b}"), &b_id);
    remove_image("podman", &a);
    remove_image("podman", &b);
}

/// Docker's `exec` and `save` run through kindload's own Engine API client where the CLI
/// would use the local socket, and through the CLI with KINDLOAD_DOCKER_CLI=1: both load and
/// verify every node, and `-v` shows which ran.
#[test]
fn docker_exec_and_save_by_the_engine_api_or_by_the_cli() {
    if !engine_available("docker") {
        return;
    }
    let cluster = TestCluster::start(
        "dockapi",
        ClusterSpec { provider: "docker", containerd: "2.1", workers: 1, snapshotter: None },
    );
    for (i, cli) in [false, true].into_iter().enumerate() {
        let tag = format!("kl-test/{}-{i}:v1", cluster.name);
        let id = sha256_id(&build_image("docker", &tag, &format!("by the {}", if cli { "cli" } else { "api" })));
        let mut cmd = kindload();
        cmd.args(["-v", "load", &tag, "--cluster", &cluster.name, "--output", "json"]);
        if cli {
            cmd.env("KINDLOAD_DOCKER_CLI", "1");
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let json: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        assert_all(&Run { code: out.status.code(), json, stderr: stderr.clone() }, "loaded");
        let logged = |prefix: &str| stderr.lines().filter(|l| l.starts_with(prefix)).count();
        let (exec, save) = (logged("+ docker exec "), logged("+ docker save "));
        let (api_exec, api_save) = (logged("+ (Engine API) docker exec "), logged("+ (Engine API) docker save "));
        assert!(exec + api_exec >= 4 && save + api_save == 1, "a session and an import per node: {stderr}");
        match cli {
            false => assert_eq!((exec, save), (0, 0), "{stderr}"),
            true => assert_eq!((api_exec, api_save), (0, 0), "{stderr}"),
        }
        assert_on_every_node(&cluster, &format!("docker.io/{tag}"), &id);
        remove_image("docker", &tag);
    }
}
