//! kindload under Skaffold's contract, with the exact environment Skaffold sets (no
//! Skaffold binary needed): the custom builder, build hooks, render and deploy hooks,
//! pushing to a real registry, and cancellation.

mod support;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{
    build_image, cri_id, engine_available, kind_kubeconfig as kubeconfig, kindload, remove_image, ClusterSpec,
    TestCluster,
};

/// A build context like the examples': FROM scratch plus one file.
fn context(dir: &Path, file: &str, content: &str) -> std::path::PathBuf {
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("hello.txt"), content).unwrap();
    std::fs::write(ctx.join(file), "FROM scratch\nCOPY hello.txt /hello.txt\nCMD [\"/hello.txt\"]\n").unwrap();
    ctx
}

fn inspect_id(engine: &str, image: &str) -> String {
    support::sha256_id(&support::run_ok(
        support::engine_command(engine).args(["image", "inspect", "--format", "{{.Id}}", image]),
    ))
}

/// `<repo>:<id hex>`, the ref Skaffold deploys after a local build, normalised.
fn deployed(repo: &str, id: &str) -> String {
    format!("docker.io/{repo}:{}", id.trim_start_matches("sha256:"))
}

fn custom_build(engine: &'static str, provider: &'static str, file: &str) {
    if !engine_available(engine) || !engine_available(provider) {
        return;
    }
    let cluster =
        TestCluster::start("build", ClusterSpec { provider, containerd: "2.1", workers: 1, snapshotter: None });
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), file, &cluster.name);
    let repo = format!("kl-test/{}-built", cluster.name);
    let image = format!("{repo}:v1");
    let out = support::building(|| {
        kindload()
            .arg("build")
            .current_dir(&ctx)
            .env("KUBECONFIG", kubeconfig(dir.path(), &cluster.name))
            .env("KINDLOAD_ENGINE", engine)
            .env("KINDLOAD_STATE_DIR", dir.path().join("state"))
            .env("IMAGE", &image)
            .env("PUSH_IMAGE", "false")
            .env("BUILD_CONTEXT", &ctx)
            .env("PLATFORMS", "")
            .env("SKIP_TEST", "false")
            .env("IMAGE_REPO", &repo)
            .env("IMAGE_TAG", "v1")
            .output()
    })
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = inspect_id(engine, &image);
    for node in &cluster.nodes {
        assert_eq!(cri_id(&cluster, node, &format!("docker.io/{image}")), Some(id.clone()), "$IMAGE on {node}");
        assert_eq!(cri_id(&cluster, node, &deployed(&repo, &id)), Some(id.clone()), "the deployed ref on {node}");
    }
    remove_image(engine, &image);
}

#[test]
fn custom_build_with_docker_loads_image_and_deployed_ref() {
    custom_build("docker", "docker", "Dockerfile");
}

#[test]
fn custom_build_with_podman_and_a_containerfile_into_podman_nodes() {
    custom_build("podman", "podman", "Containerfile");
}

#[test]
fn custom_build_outside_skaffold_says_how_to_run_it() {
    let out = kindload().arg("build").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("IMAGE, PUSH_IMAGE, BUILD_CONTEXT"), "{stderr}");
    assert!(stderr.contains("PUSH_IMAGE=false BUILD_CONTEXT=. kindload build"), "{stderr}");
}

fn push(engine: &'static str) {
    if !engine_available(engine) {
        return;
    }
    let registry = support::registry().expect("KINDLOAD_TEST_REGISTRY names the test registry");
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), "Dockerfile", engine);
    let tag = format!("t{}", std::process::id());
    let repo = format!("kindload-test/push-{engine}");
    let image = format!("{registry}/{repo}:{tag}");
    let out = support::building(|| {
        kindload()
            .arg("build")
            .env("KINDLOAD_ENGINE", engine)
            .env("IMAGE", &image)
            .env("PUSH_IMAGE", "true")
            .env("BUILD_CONTEXT", &ctx)
            .output()
    })
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tags = support::registry_tags(&registry, &repo);
    assert!(tags.starts_with("HTTP/1.0 200") || tags.starts_with("HTTP/1.1 200"), "{tags}");
    assert!(tags.contains(&format!("\"{tag}\"")), "{tags}");
    remove_image(engine, &image);
}

#[test]
fn push_image_true_pushes_with_docker() {
    push("docker");
}

/// Podman verifies TLS by default; kindload turns that off for a loopback registry only.
#[test]
fn push_image_true_pushes_with_podman_to_a_plain_http_registry() {
    push("podman");
}

#[test]
fn build_hook_loads_the_image_and_the_deployed_ref_unless_pushing() {
    if !engine_available("docker") {
        return;
    }
    let cluster = TestCluster::start(
        "hook",
        ClusterSpec { provider: "docker", containerd: "1.6", workers: 1, snapshotter: None },
    );
    let dir = tempfile::tempdir().unwrap();
    let repo = format!("kl-test/{}-hook", cluster.name);
    let image = format!("{repo}:v1");
    let id = build_image("docker", &image, "hook");
    let hook = |push: &str| {
        kindload()
            .arg("load")
            .env("KUBECONFIG", kubeconfig(dir.path(), &cluster.name))
            .env("KINDLOAD_STATE_DIR", dir.path().join("state"))
            .env("SKAFFOLD_IMAGE", &image)
            .env("SKAFFOLD_PUSH_IMAGE", push)
            .env("SKAFFOLD_IMAGE_REPO", "kl-test")
            .env("SKAFFOLD_IMAGE_TAG", "v1")
            .env("SKAFFOLD_BUILD_CONTEXT", dir.path())
            .output()
            .unwrap()
    };
    let pushing = hook("true");
    assert!(pushing.status.success());
    assert!(String::from_utf8_lossy(&pushing.stderr).contains("nothing to load"));
    assert_eq!(cri_id(&cluster, &cluster.nodes[0], &format!("docker.io/{image}")), None, "pushing loads nothing");

    let out = hook("false");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for node in &cluster.nodes {
        assert_eq!(cri_id(&cluster, node, &format!("docker.io/{image}")), Some(id.clone()));
        assert_eq!(cri_id(&cluster, node, &deployed(&repo, &id)), Some(id.clone()));
    }
    remove_image("docker", &image);
}

/// Post-render hook: hydrated manifests on stdin; every local image they reference is
/// loaded (containers, init containers, CronJobs), others are left for the kubelet.
#[test]
fn render_hook_loads_local_images_from_manifests_on_stdin() {
    if !engine_available("docker") || !engine_available("podman") {
        return;
    }
    let cluster = TestCluster::start(
        "render",
        ClusterSpec { provider: "podman", containerd: "1.7", workers: 1, snapshotter: None },
    );
    let app = format!("kl-test/{}-app:v1", cluster.name);
    let init = format!("kl-test/{}-init:v1", cluster.name);
    let job = format!("kl-test/{}-job:v1", cluster.name);
    let app_id = build_image("docker", &app, "app");
    let init_id = build_image("docker", &init, "init");
    let job_id = support::sha256_id(&build_image("podman", &job, "job"));
    let manifests = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app}}\nspec:\n  template:\n    spec:\n      initContainers:\n      - name: init\n        image: {init}\n      containers:\n      - name: app\n        image: {app}\n      - name: sidecar\n        image: registry.example/not/local:1\n---\napiVersion: batch/v1\nkind: CronJob\nmetadata: {{name: job}}\nspec:\n  schedule: '* * * * *'\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers:\n          - name: job\n            image: {job}\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = kindload()
        .args(["load", "--from-manifests", "-", "--cluster", &cluster.name])
        .env("KINDLOAD_STATE_DIR", dir.path())
        .env("SKAFFOLD_KUBE_CONTEXT", format!("kind-{}", cluster.name))
        .write_stdin(manifests)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("registry.example/not/local:1: not a local image"), "{stderr}");
    for node in &cluster.nodes {
        assert_eq!(cri_id(&cluster, node, &format!("docker.io/{app}")), Some(app_id.clone()));
        assert_eq!(cri_id(&cluster, node, &format!("docker.io/{init}")), Some(init_id.clone()));
        assert_eq!(cri_id(&cluster, node, &format!("docker.io/{job}")), Some(job_id.clone()));
    }
    for t in [&app, &init] {
        remove_image("docker", t);
    }
    remove_image("podman", &job);
}

#[test]
fn build_artifacts_file_is_loaded() {
    if !engine_available("docker") {
        return;
    }
    let cluster = TestCluster::start(
        "artifacts",
        ClusterSpec { provider: "docker", containerd: "1.7", workers: 0, snapshotter: None },
    );
    let tag = format!("kl-test/{}-art:abc123", cluster.name);
    let id = build_image("docker", &tag, "artifact");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("build.json");
    std::fs::write(&file, format!(r#"{{"builds":[{{"imageName":"kl-test/{}-art","tag":"{tag}"}}]}}"#, cluster.name))
        .unwrap();
    let out = kindload()
        .args(["load", "--from-build-artifacts", file.to_str().unwrap(), "--cluster", &cluster.name])
        .env("KINDLOAD_STATE_DIR", dir.path().join("state"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(cri_id(&cluster, &cluster.nodes[0], &format!("docker.io/{tag}")), Some(id));
    remove_image("docker", &tag);
}

/// Skaffold's cache skips the build (and its hooks) after the cluster was recreated: the
/// pre-deploy hook reloads what kindload built for this project.
#[test]
fn pre_deploy_hook_repairs_a_recreated_cluster() {
    if !engine_available("docker") {
        return;
    }
    let spec = ClusterSpec { provider: "docker", containerd: "2.1", workers: 1, snapshotter: None };
    let cluster = TestCluster::start("repair", spec);
    let name = cluster.name.clone();
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    let ctx = context(&project, "Dockerfile", &name);
    std::fs::write(project.join("skaffold.yaml"), "apiVersion: skaffold/v4beta14\nkind: Config\n").unwrap();
    let repo = format!("kl-test/{name}-repair");
    let image = format!("{repo}:v1");
    let state = dir.path().join("state");
    let built = support::building(|| {
        kindload()
            .arg("build")
            .current_dir(&ctx)
            .env("KUBECONFIG", kubeconfig(dir.path(), &name))
            .env("KINDLOAD_STATE_DIR", &state)
            .env("IMAGE", &image)
            .env("PUSH_IMAGE", "false")
            .env("BUILD_CONTEXT", &ctx)
            .env("KINDLOAD_ENGINE", "docker")
            .output()
    })
    .unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let id = inspect_id("docker", &image);

    // The cluster is deleted and created again under the same name: its nodes are empty.
    drop(cluster);
    let recreated = support::TestCluster::start_named(&name, spec);
    assert_eq!(cri_id(&recreated, &recreated.nodes[0], &format!("docker.io/{image}")), None);

    let hook = kindload()
        .arg("load")
        .current_dir(&project)
        .env("KUBECONFIG", kubeconfig(dir.path(), &name))
        .env("KINDLOAD_STATE_DIR", &state)
        .env("SKAFFOLD_KUBE_CONTEXT", format!("kind-{name}"))
        .env("SKAFFOLD_NAMESPACES", "default")
        .env("SKAFFOLD_RUN_ID", "run-1")
        .env("SKAFFOLD_WORK_DIR", &project)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&hook.stderr);
    assert!(hook.status.success(), "{stderr}");
    assert!(stderr.contains("reloading 1 image(s) recorded for"), "{stderr}");
    for node in &recreated.nodes {
        assert_eq!(cri_id(&recreated, node, &format!("docker.io/{image}")), Some(id.clone()));
        assert_eq!(cri_id(&recreated, node, &deployed(&repo, &id)), Some(id.clone()));
    }
    remove_image("docker", &image);
}

/// SIGINT (Skaffold's cancel) mid-transfer: every child is gone well within Skaffold's
/// 2 s grace, and no node shows a half-imported image.
#[test]
fn interrupt_stops_children_fast_and_leaves_nothing_half_imported() {
    cancel_mid_transfer(libc::SIGINT);
}

#[test]
fn terminate_stops_children_fast_and_leaves_nothing_half_imported() {
    cancel_mid_transfer(libc::SIGTERM);
}

fn cancel_mid_transfer(signal: i32) {
    if !engine_available("docker") {
        return;
    }
    let cluster = TestCluster::start(
        "cancel",
        ClusterSpec { provider: "docker", containerd: "1.7", workers: 1, snapshotter: None },
    );
    let tag = format!("kl-test/{}-cancel:v1", cluster.name);
    support::build_random_image("docker", &tag, 768 << 20);
    let before: Vec<_> = cluster.nodes.iter().map(|n| cluster.ctr_images(n)).collect();

    let mut child = Command::new(env!("CARGO_BIN_EXE_kindload"))
        .args(["-v", "load", &tag, "--cluster", &cluster.name])
        .env_remove("DOCKER_HOST")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    // Wait until the imports are running, then interrupt as Skaffold does.
    let mut log = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(60);
    while !String::from_utf8_lossy(&log).contains("images import") {
        let n = stderr.read(&mut buf).unwrap();
        assert!(
            n > 0 && Instant::now() < deadline,
            "the load never started importing:\n{}",
            String::from_utf8_lossy(&log)
        );
        log.extend_from_slice(&buf[..n]);
    }
    std::thread::sleep(Duration::from_millis(700));
    let interrupted = Instant::now();
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
    let status = child.wait().unwrap();
    let took = interrupted.elapsed();
    stderr.read_to_end(&mut log).unwrap();
    let log = String::from_utf8_lossy(&log);
    eprintln!("stopped {took:?} after the signal");
    assert!(took < Duration::from_millis(1800), "took {took:?} to stop:\n{log}");
    assert_eq!(status.code(), Some(130), "{log}");
    let leftover = Command::new("pgrep").args(["-f", &format!("save {tag}")]).output().unwrap();
    assert!(leftover.stdout.is_empty(), "a docker save is still running");
    std::thread::sleep(Duration::from_secs(2));
    for (node, before) in cluster.nodes.iter().zip(before) {
        assert_eq!(cluster.ctr_images(node), before, "{node} shows a half-imported image:\n{log}");
    }
    remove_image("docker", &tag);
}

/// Outside a kind context the custom builder only builds; a `requires` alias reaches the
/// build as a build argument.
#[test]
fn custom_build_only_builds_outside_kind_and_passes_required_artifacts() {
    if !engine_available("docker") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nARG BASE_IMAGE\nLABEL base=$BASE_IMAGE\nCOPY Dockerfile /\n")
        .unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\ncurrent-context: gke_proj_zone_prod\ncontexts:\n- name: gke_proj_zone_prod\n  context:\n    cluster: gke_proj_zone_prod\n    user: me\n",
    )
    .unwrap();
    let image = format!("kl-test/outside-kind-{}:v1", std::process::id());
    let out = support::building(|| {
        kindload()
            .args(["build", "--build-arg-from", "BASE_IMAGE"])
            .env("KUBECONFIG", &kubeconfig)
            .env("KINDLOAD_ENGINE", "docker")
            .env("IMAGE", &image)
            .env("PUSH_IMAGE", "false")
            .env("BUILD_CONTEXT", &ctx)
            .env("BASE_IMAGE", "kl-test/base:3f1c")
            .output()
    })
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("built {image}; not loading")) && stderr.contains("is not a kind cluster"),
        "{stderr}"
    );
    let label = support::run_ok(support::engine_command("docker").args([
        "image",
        "inspect",
        "--format",
        "{{index .Config.Labels \"base\"}}",
        &image,
    ]));
    assert_eq!(label.trim(), "kl-test/base:3f1c");
    remove_image("docker", &image);
}
