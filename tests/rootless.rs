//! Rootless Podman: a non-root user (subordinate ids, in the docker group) builds with its own
//! Podman storage and loads into a cluster hosted by the root Docker engine (rootless
//! containers cannot run on these hosts). Names, ids and verification as for root Podman.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::Output;

use serde_json::Value;
use support::{cri_id, engine_available, run, sha256_id, text, ClusterSpec, RootlessUser, TestCluster};

fn podman_as(user: &RootlessUser, args: &[&str]) -> Output {
    run(user.command("podman").args(args))
}

#[test]
fn rootless_podman_builds_and_loads_into_docker_hosted_nodes() {
    if !engine_available("docker") || !engine_available("podman") {
        return;
    }
    let Some(user) = support::rootless_user() else { return };
    let cluster = TestCluster::start(
        "rootless",
        ClusterSpec { provider: "docker", containerd: "2.1", workers: 1, snapshotter: None },
    );
    let c = cluster.name.as_str();

    // A build context and kubeconfig the user can read.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("hello.txt"), format!("rootless {c}")).unwrap();
    std::fs::write(ctx.join("Containerfile"), "FROM scratch\nCOPY hello.txt /hello.txt\n").unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: kind-{c}\ncontexts:\n- name: kind-{c}\n  context:\n    cluster: kind-{c}\n    user: kind-{c}\n"
        ),
    )
    .unwrap();
    let repo = format!("kl-test/{c}-rootless");
    let image = format!("{repo}:v1");

    // Skaffold's custom builder, run by the user: rootless Podman builds, kindload loads.
    let built = run(user
        .command(env!("CARGO_BIN_EXE_kindload"))
        .arg("build")
        .env("KUBECONFIG", &kubeconfig)
        .env("KINDLOAD_ENGINE", "podman")
        .env("IMAGE", &image)
        .env("PUSH_IMAGE", "false")
        .env("BUILD_CONTEXT", &ctx)
        .env("PLATFORMS", "")
        .env("IMAGE_REPO", &repo)
        .env("IMAGE_TAG", "v1"));
    assert!(built.status.success(), "{}", text(&built));

    // The image lives in the user's storage, not root's, and Podman says it is rootless.
    let info = podman_as(&user, &["info", "--format", "{{.Host.Security.Rootless}}"]);
    assert_eq!(String::from_utf8_lossy(&info.stdout).trim(), "true", "{}", text(&info));
    let inspected = podman_as(&user, &["image", "inspect", "--format", "{{.Id}}", &image]);
    assert!(inspected.status.success(), "{}", text(&inspected));
    let id = sha256_id(&String::from_utf8_lossy(&inspected.stdout));
    let in_root = run(support::engine_command("podman").args(["image", "exists", &format!("localhost/{image}")]));
    assert!(!in_root.status.success(), "root's Podman should not hold {image}");

    // Every node answers to the pod-spec name, Podman's localhost/ name, and the deployed ref.
    let deployed = format!("docker.io/{repo}:{}", id.trim_start_matches("sha256:"));
    for node in &cluster.nodes {
        for name in [format!("docker.io/{image}"), format!("localhost/{image}"), deployed.clone()] {
            assert_eq!(
                cri_id(&cluster, node, &name),
                Some(id.clone()),
                "{name} on {node}:\n{}",
                cluster.ctr_images(node)
            );
        }
    }

    // By hand, the user's `kindload load` finds the image in rootless Podman and skips every node.
    let again =
        run(user.command(env!("CARGO_BIN_EXE_kindload")).args(["load", &image, "--cluster", c, "--output", "json"]));
    assert!(again.status.success(), "{}", text(&again));
    let report: Value = serde_json::from_slice(&again.stdout).unwrap();
    support::assert_matches_schema("load-report.schema.json", &report);
    let loaded = &report["images"][0];
    assert_eq!(loaded["source"], "podman");
    assert_eq!(loaded["id"], id.as_str());
    assert_eq!(report["provider"], "docker");
    for node in loaded["nodes"].as_array().unwrap() {
        assert_eq!(node["action"], "skipped", "{report:#}");
        assert_eq!(node["verified"], true, "{report:#}");
    }

    let _ = podman_as(&user, &["image", "rm", "-f", &image]);
}
