//! `kindload nodes` and `kindload doctor` against real clusters on Docker and Podman,
//! with containerd 1.6, 1.7 and 2.1 nodes.

mod support;

use serde_json::Value;
use support::{engine_available, kindload, ClusterSpec, TestCluster};

fn nodes_json(cluster: &TestCluster) -> Vec<Value> {
    let out = kindload().args(["nodes", "--cluster", &cluster.name, "--output", "json"]).output().unwrap();
    assert!(out.status.success(), "kindload nodes failed: {}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).expect("nodes prints JSON");
    support::assert_matches_schema("nodes-report.schema.json", &json);
    json.as_array().expect("an array").clone()
}

/// Facts for one provider and containerd version, read from nodes kindload has never seen.
fn check_versions(provider: &'static str) {
    if !engine_available(provider) {
        return;
    }
    let clusters: Vec<(TestCluster, &str)> = support::CONTAINERD_VERSIONS
        .iter()
        .map(|&version| {
            let snapshotter = (version == "1.7").then_some("native");
            let spec = ClusterSpec { provider, containerd: version, workers: 1, snapshotter };
            (TestCluster::start(&format!("nodes-{version}"), spec), version)
        })
        .collect();
    for (cluster, version) in &clusters {
        let rows = nodes_json(cluster);
        assert_eq!(rows.len(), 2, "{rows:#?}");
        assert_eq!(rows[0]["name"], cluster.nodes[0].as_str());
        assert_eq!(rows[0]["role"], "control-plane");
        assert_eq!(rows[1]["role"], "worker");
        for row in &rows {
            assert_eq!(row["provider"], provider);
            assert_eq!(row["running"], true);
            let reported = row["containerd_version"].as_str().unwrap_or_default();
            assert!(reported.starts_with(version), "{reported} on a {version} node");
            let config_version = if version.starts_with('2') { 3 } else { 2 };
            assert_eq!(row["config_version"], config_version);
            let snapshotter = if *version == "1.7" { "native" } else { "overlayfs" };
            assert_eq!(row["snapshotter"], snapshotter, "{row:#}");
            assert_eq!(row["crictl"], false, "the test bed's nodes have no crictl");
            assert_eq!(row["warnings"], Value::Array(vec![]));
        }
        // containerd's version and config are kept per containerd process, and read from there
        for node in &cluster.nodes {
            let kept = cluster.exec(node, &["sh", "-c", "cat /run/kindload/facts-*.config"]);
            assert!(String::from_utf8_lossy(&kept.stdout).contains("version = "), "{node} keeps no config");
        }
        assert_eq!(nodes_json(cluster), rows, "the kept facts say what containerd said");
    }
}

#[test]
fn nodes_on_docker_with_every_containerd() {
    check_versions("docker");
}

#[test]
fn nodes_on_podman_with_every_containerd() {
    check_versions("podman");
}

#[test]
fn stopped_node_is_reported_and_doctor_names_the_fix() {
    if !engine_available("docker") {
        return;
    }
    let cluster = TestCluster::start(
        "stopped",
        ClusterSpec { provider: "docker", containerd: "2.1", workers: 1, snapshotter: None },
    );
    cluster.stop_node(&cluster.nodes[1]);
    let rows = nodes_json(&cluster);
    assert_eq!(rows[1]["running"], false);
    assert_eq!(rows[1]["containerd_version"], Value::Null);
    let human = kindload().args(["nodes", "--cluster", &cluster.name]).output().unwrap();
    let table = String::from_utf8_lossy(&human.stdout);
    assert!(table.lines().nth(2).is_some_and(|l| l.contains("exited")), "{table}");

    let doctor = kindload().args(["doctor", "--cluster", &cluster.name]).output().unwrap();
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert_eq!(doctor.status.code(), Some(1), "{text}");
    assert!(text.contains(&format!("FAIL  node {} is exited", cluster.nodes[1])), "{text}");
    assert!(text.contains(&format!("fix: `docker start {}`", cluster.nodes[1])), "{text}");
    assert!(text.contains(&format!("ok    node {} (control-plane): containerd 2.1", cluster.nodes[0])), "{text}");
}

#[test]
fn cluster_name_comes_from_the_kube_context() {
    if !engine_available("podman") {
        return;
    }
    let cluster =
        TestCluster::start("ctx", ClusterSpec { provider: "podman", containerd: "1.6", workers: 0, snapshotter: None });
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("config");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: kind-{0}\ncontexts:\n- name: kind-{0}\n  context:\n    cluster: kind-{0}\n    user: kind-{0}\n",
            cluster.name
        ),
    )
    .unwrap();
    let out = kindload().args(["nodes", "--output", "json"]).env("KUBECONFIG", &kubeconfig).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["name"], cluster.nodes[0].as_str());
    assert_eq!(rows[0]["provider"], "podman");

    // KIND_EXPERIMENTAL_PROVIDER=docker looks only at Docker, where this cluster is not.
    let wrong = kindload()
        .args(["nodes", "--cluster", &cluster.name])
        .env("KIND_EXPERIMENTAL_PROVIDER", "docker")
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("not found"));
}

#[test]
fn missing_cluster_is_exit_2_with_the_fix() {
    if !engine_available("docker") || !engine_available("podman") {
        return;
    }
    for command in ["nodes", "doctor"] {
        let out = kindload().args([command, "--cluster", "kl-no-such-cluster"]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{command}");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("kind cluster \"kl-no-such-cluster\" not found"), "{command}: {text}");
        assert!(text.contains("kind create cluster --name kl-no-such-cluster"), "{command}: {text}");
    }
}

#[test]
fn missing_engine_is_exit_2_naming_what_was_looked_for() {
    let empty = tempfile::tempdir().unwrap();
    for args in [vec!["load", "app:dev"], vec!["doctor"]] {
        let out = kindload().args(&args).env("PATH", empty.path()).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("no container engine found"), "{text}");
        assert!(text.contains("docker is not installed (not found on PATH)"), "{text}");
        assert!(text.contains("podman is not installed (not found on PATH)"), "{text}");
        assert!(text.contains("`apt-get install docker.io`") && text.contains("`apt-get install podman`"), "{text}");
    }
}

#[test]
fn malformed_references_are_exit_2() {
    for bad in ["App:Dev", "app:", "app@sha256:123", "a//b"] {
        for command in ["load", "verify", "doctor"] {
            let out = kindload().args([command, bad, "--cluster", "unused"]).output().unwrap();
            assert_eq!(out.status.code(), Some(2), "{command} {bad}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains(&format!("invalid image reference {bad:?}")), "{command} {bad}: {stderr}");
        }
    }
}

/// In a Skaffold project, doctor says which Skaffold setting would load twice or push.
#[test]
fn doctor_checks_the_skaffold_settings_that_cause_double_loading() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("skaffold.yaml"),
        "apiVersion: skaffold/v4beta14\nkind: Config\nbuild:\n  local:\n    push: false\n",
    )
    .unwrap();
    let global = dir.path().join("skaffold-global.yaml");
    let doctor = |global_config: &str| {
        std::fs::write(&global, global_config).unwrap();
        let out = kindload()
            .args(["doctor", "--cluster", "dev"])
            .current_dir(dir.path())
            .env("SKAFFOLD_CONFIG", &global)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let unset = doctor("global: {}\n");
    assert!(unset.contains("warn  skaffold") && unset.contains("kind-disable-load true"), "{unset}");
    let set = doctor("kubeContexts:\n- kube-context: kind-dev\n  kind-disable-load: true\n");
    assert!(set.contains("ok    skaffold"), "{set}");
}
