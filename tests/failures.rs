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
    remove_image("docker", &tag);
}
