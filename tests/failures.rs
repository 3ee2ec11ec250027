//! Failures named for what they are, on the real test bed: an image built for another
//! platform is refused before anything is exported, and a node that runs out of disk
//! says so with its free space and keeps no half-imported record.

mod support;

use std::collections::BTreeSet;

use serde_json::Value;
use support::{
    cluster_name, engine_available, engine_command, kindload, remove_image, run_ok, ClusterSpec, TestCluster,
};

fn names_on(cluster: &TestCluster, node: &str) -> BTreeSet<String> {
    cluster.ctr_images(node).lines().skip(1).filter_map(|l| l.split_whitespace().next()).map(String::from).collect()
}

fn host_platform() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "linux/arm64",
        _ => "linux/amd64",
    }
}

fn other_arch() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "amd64",
        _ => "arm64",
    }
}

/// Builds FROM scratch for `arch` (COPY runs nothing, so no emulation is needed).
fn build_for(engine: &str, tag: &str, arch: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.txt"), format!("built for {arch}")).unwrap();
    std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\nCOPY app.txt /app.txt\n").unwrap();
    run_ok(engine_command(engine).args(["build", "-q", "--arch", arch, "-t", tag]).arg(dir.path()));
}

#[test]
fn an_image_for_another_platform_is_refused_before_export() {
    if !engine_available("podman") {
        return;
    }
    let cluster = TestCluster::start(
        "platform",
        ClusterSpec { provider: "podman", containerd: "2.1", workers: 1, snapshotter: None },
    );
    let tag = format!("kl-test/{}-arm:v1", cluster.name);
    build_for("podman", &tag, other_arch());
    let before: Vec<BTreeSet<String>> = cluster.nodes.iter().map(|n| names_on(&cluster, n)).collect();
    let out = kindload().args(["load", &tag, "--cluster", &cluster.name, "--engine", "podman", "-v"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let built_for = format!("linux/{}", other_arch());
    assert!(
        stderr.contains(&format!("is built for {built_for}, but the cluster's nodes run {}", host_platform())),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("--platform {}", host_platform())), "names the fix: {stderr}");
    assert!(!stderr.contains("+ podman save"), "nothing was exported: {stderr}");
    let after: Vec<BTreeSet<String>> = cluster.nodes.iter().map(|n| names_on(&cluster, n)).collect();
    assert_eq!(before, after);

    // The same image as an archive file is judged by its config.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("arm.tar");
    run_ok(engine_command("podman").args(["save", "--format", "docker-archive", "-o"]).arg(&file).arg(&tag));
    let out =
        kindload().args(["load", "--archive", file.to_str().unwrap(), "--cluster", &cluster.name]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("is built for {built_for}")), "{stderr}");
    remove_image("podman", &tag);
}

#[test]
fn a_node_out_of_disk_says_so_and_keeps_nothing() {
    if !engine_available("docker") {
        return;
    }
    let cluster = TestCluster::start_with_root(
        &cluster_name("nodisk"),
        ClusterSpec { provider: "docker", containerd: "1.7", workers: 0, snapshotter: None },
        &["--tmpfs", "/var/lib/containerd:size=24m"],
    );
    let node = cluster.control_plane().to_string();
    let tag = format!("kl-test/{}-big:v1", cluster.name);
    support::build_random_image("docker", &tag, 40 << 20);
    let before = names_on(&cluster, &node);
    let out = kindload().args(["load", &tag, "--cluster", &cluster.name, "--output", "json"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let error = json["images"][0]["nodes"][0]["error"].as_str().unwrap().to_string();
    assert!(error.contains("no space left on device"), "{error}");
    assert!(error.contains(&format!("{node} ran out of disk under /var/lib/containerd (")), "{error}");
    assert!(error.contains(" free)"), "says how much is free: {error}");
    assert!(error.contains(&format!("docker exec {node} crictl rmi --prune")), "names the fix: {error}");
    assert_eq!(names_on(&cluster, &node), before, "no half-imported record");
    let active = cluster.exec(&node, &["ctr", "--namespace=k8s.io", "content", "active"]);
    let active = String::from_utf8_lossy(&active.stdout);
    assert_eq!(active.lines().skip(1).filter(|l| !l.trim().is_empty()).count(), 0, "no partial blob: {active}");
    remove_image("docker", &tag);
}

/// An index of two platforms whose blobs are all in the archive: each node receives only
/// its own platform's layer.
#[test]
fn a_multi_platform_image_sends_each_node_its_own_platform() {
    if !engine_available("docker") {
        return;
    }
    let cluster = TestCluster::start(
        "twoarch",
        ClusterSpec { provider: "docker", containerd: "1.7", workers: 1, snapshotter: None },
    );
    let name = format!("docker.io/kl-test/{}-two:v1", cluster.name);
    let (archive, config) = two_platform_archive(&name);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("two.tar");
    std::fs::write(&file, &archive).unwrap();
    let out = kindload()
        .args(["load", "--archive", file.to_str().unwrap(), "--cluster", &cluster.name, "--output", "json"])
        .output()
        .unwrap();
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(out.status.code(), Some(0), "{}\n{json:#}", String::from_utf8_lossy(&out.stderr));
    for node in json["images"][0]["nodes"].as_array().unwrap() {
        assert_eq!(node["verified"], true, "{node:#}");
        let bytes = node["bytes"].as_u64().unwrap();
        assert!(bytes > LAYER as u64 && bytes < (LAYER + LAYER / 2) as u64, "one platform's layer, not two: {node:#}");
    }
    for node in &cluster.nodes {
        assert_eq!(support::cri_id(&cluster, node, &name), Some(config.clone()), "{node}");
    }
}

const LAYER: usize = 1 << 20;

/// An OCI archive whose index lists the local platform and another, every blob present,
/// each platform with its own 1 MiB layer of random bytes. Returns it and the local config digest.
fn two_platform_archive(name: &str) -> (Vec<u8>, String) {
    use kindload::digest::sha256;
    let append = |builder: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]| {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, path, data).unwrap();
    };
    let local = kindload::transfer::archive::local_arch();
    let mut blobs: Vec<Vec<u8>> = Vec::new();
    let mut entries = Vec::new();
    let mut local_config = String::new();
    for arch in [local, other_arch()] {
        let mut random = vec![0u8; LAYER];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut random).unwrap();
        let mut layer = tar::Builder::new(Vec::new());
        append(&mut layer, "data.bin", &random);
        let layer = layer.into_inner().unwrap();
        let config = format!(
            r#"{{"architecture":"{arch}","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
            sha256(&layer)
        );
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}]}}"#,
            sha256(config.as_bytes()),
            config.len(),
            sha256(&layer),
            layer.len()
        );
        entries.push(format!(
            r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{},"platform":{{"architecture":"{arch}","os":"linux"}}}}"#,
            sha256(manifest.as_bytes()),
            manifest.len()
        ));
        if arch == local {
            local_config = sha256(config.as_bytes());
        }
        blobs.extend([layer, config.into_bytes(), manifest.into_bytes()]);
    }
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{}]}}"#,
        entries.join(",")
    );
    let top = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{}","size":{},"annotations":{{"io.containerd.image.name":"{name}"}}}}]}}"#,
        sha256(index.as_bytes()),
        index.len()
    );
    blobs.push(index.into_bytes());
    let mut archive = tar::Builder::new(Vec::new());
    append(&mut archive, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    for blob in &blobs {
        append(&mut archive, &format!("blobs/sha256/{}", &sha256(blob)[7..]), blob);
    }
    append(&mut archive, "index.json", top.as_bytes());
    (archive.into_inner().unwrap(), local_config)
}

#[test]
fn a_load_that_stops_early_still_prints_its_json_report() {
    if !engine_available("docker") {
        return;
    }
    let cluster = format!("kl-none-{}", std::process::id());
    let image = format!("kl-nowhere/app-{}:v1", std::process::id());
    let out = kindload()
        .args(["load", "--engine", "docker", "--cluster", &cluster, "--output", "json", &image])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    support::assert_matches_schema("load-report.schema.json", &json);
    assert_eq!((&json["cluster"], &json["ok"]), (&Value::from(cluster.as_str()), &Value::Bool(false)), "{json:#}");
    assert_eq!(json["images"], Value::Array(Vec::new()), "{json:#}");
    let error = json["error"].as_str().unwrap();
    assert!(error.starts_with(&format!("image \"{image}\" not found in docker")), "{error}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found in docker"), "the error is on stderr as usual");
}
