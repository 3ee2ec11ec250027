//! `kindload build` under Tilt's `custom_build` contract, run as Tilt runs it (no Tilt binary
//! needed): the command string through `sh -c`, in the directory Tilt runs it in (the build
//! context), with Tilt's variables added to the environment: EXPECTED_REF
//! (`<image>:tilt-build-<unix seconds>`), EXPECTED_IMAGE, EXPECTED_TAG, and EXPECTED_REGISTRY
//! and REGISTRY_HOST when Tilt builds for a registry.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use support::{cri_id, engine_available, kind_kubeconfig, remove_image, ClusterSpec, TestCluster};

/// A build context: FROM scratch plus one file, with `file` as the Dockerfile's name.
fn context(dir: &Path, file: &str, content: &str) -> PathBuf {
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("hello.txt"), content).unwrap();
    std::fs::write(ctx.join(file), "FROM scratch\nCOPY hello.txt /hello.txt\nCMD [\"/hello.txt\"]\n").unwrap();
    ctx
}

/// The ref Tilt puts in EXPECTED_REF for `image`: a tag made from the clock.
fn expected_ref(image: &str) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    format!("{image}:tilt-build-{now}")
}

/// Runs `command` as Tilt runs a custom_build command string: `sh -c`, in `ctx`, with the
/// caller's environment (kindload on PATH, none of the host's kindload settings) plus the
/// variables Tilt adds for `expected_ref`, and `extra`.
fn run_as_tilt(command: &str, ctx: &Path, expected_ref: &str, extra: &[(&str, &str)]) -> Output {
    let (name, tag) = expected_ref.rsplit_once(':').expect("EXPECTED_REF has a tag");
    let path_part = name.split_once('/').filter(|(host, _)| host.contains(['.', ':'])).map_or(name, |(_, path)| path);
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_kindload")).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let mut cmd = Command::new("sh");
    cmd.args(["-c", command]).current_dir(ctx);
    for var in support::host_settings() {
        cmd.env_remove(var);
    }
    for var in ["IMAGE", "PUSH_IMAGE", "BUILD_CONTEXT", "EXPECTED_REGISTRY", "REGISTRY_HOST"] {
        cmd.env_remove(var);
    }
    cmd.env("PATH", path)
        .env("KUBECONFIG", support::no_kubeconfig())
        .env("EXPECTED_REF", expected_ref)
        .env("EXPECTED_IMAGE", path_part)
        .env("EXPECTED_TAG", tag)
        .envs(extra.iter().copied())
        .stdin(Stdio::null());
    support::building(|| cmd.output()).unwrap_or_else(|e| panic!("cannot run sh -c {command:?}: {e}"))
}

fn inspect_id(engine: &str, image: &str) -> String {
    support::sha256_id(&support::run_ok(
        support::engine_command(engine).args(["image", "inspect", "--format", "{{.Id}}", image]),
    ))
}

/// Builds EXPECTED_REF with `engine` into a cluster on `provider` and checks that every node
/// answers to exactly that name with the built image's id.
fn tilt_build(engine: &'static str, provider: &'static str, file: &str, command: &str, containerd: &'static str) {
    if !engine_available(engine) || !engine_available(provider) {
        return;
    }
    let cluster = TestCluster::start("tilt", ClusterSpec { provider, containerd, workers: 2, snapshotter: None });
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), file, &cluster.name);
    let repo = format!("kl-test/{}-tilt", cluster.name);
    let reference = expected_ref(&repo);
    let kubeconfig = kind_kubeconfig(dir.path(), &cluster.name);
    let state = dir.path().join("state");
    let out = run_as_tilt(
        command,
        &ctx,
        &reference,
        &[("KUBECONFIG", kubeconfig.to_str().unwrap()), ("KINDLOAD_STATE_DIR", state.to_str().unwrap())],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let id = inspect_id(engine, &reference);
    let normalized = format!("docker.io/{reference}");
    for node in &cluster.nodes {
        assert_eq!(cri_id(&cluster, node, &normalized), Some(id.clone()), "EXPECTED_REF on {node}: {stderr}");
        // Exactly EXPECTED_REF: no Skaffold-style `<repo>:<id hex>` name beside it.
        let names: Vec<String> = kindload::resolve::records::parse_ctr_images(&cluster.ctr_images(node))
            .into_iter()
            .map(|r| r.name)
            .filter(|n| n.starts_with(&format!("docker.io/{repo}:")))
            .collect();
        assert_eq!(names.as_slice(), std::slice::from_ref(&normalized), "names of {repo} on {node}");
    }
    remove_image(engine, &reference);
}

#[test]
fn tilt_custom_build_loads_expected_ref_on_every_node() {
    tilt_build("docker", "docker", "Dockerfile", "kindload build", "2.1");
}

/// Podman's build names the image `localhost/<ref>`; the nodes still answer to EXPECTED_REF.
#[test]
fn tilt_custom_build_with_podman_and_flags_in_the_command_string() {
    tilt_build("podman", "podman", "Containerfile", "kindload build --engine podman -f Containerfile", "1.7");
}

/// The `custom_build(...)` call of a Tiltfile: its ref, its command and its keyword flags.
struct CustomBuildCall {
    reference: String,
    command: String,
    flags: Vec<String>,
}

/// Reads the first `custom_build(` call: its first two string arguments, and every
/// `name=True` keyword (enough for the example, which the test keeps honest).
fn custom_build_call(tiltfile: &str) -> CustomBuildCall {
    let call = &tiltfile[tiltfile.find("custom_build(").expect("a custom_build call")..];
    let call = &call[..call.find("\n)").expect("the call ends with `)` on its own line")];
    let code: String = call.lines().map(|l| l.split('#').next().unwrap()).collect::<Vec<_>>().join("\n");
    let strings: Vec<&str> = code.split('\'').skip(1).step_by(2).collect();
    let flags = code
        .split([',', '\n', '('])
        .map(str::trim)
        .filter_map(|arg| arg.strip_suffix("=True"))
        .map(String::from)
        .collect();
    CustomBuildCall { reference: strings[0].to_string(), command: strings[1].to_string(), flags }
}

/// examples/tilt, run as `tilt up` would run its custom_build: the command from the
/// Tiltfile, in the Tiltfile's directory; the deployment names the same image.
#[test]
fn tilt_example_loads_its_image_on_every_node() {
    if !engine_available("docker") {
        return;
    }
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tilt");
    let call = custom_build_call(&std::fs::read_to_string(example.join("Tiltfile")).unwrap());
    assert_eq!(call.command, "kindload build");
    assert!(call.flags.contains(&"skips_local_docker".into()) && call.flags.contains(&"disable_push".into()));
    let deployment = std::fs::read_to_string(example.join("k8s/deployment.yaml")).unwrap();
    assert!(deployment.contains(&format!("image: {}\n", call.reference)), "Tilt matches the image by its ref");

    let cluster = TestCluster::start(
        "tilt-example",
        ClusterSpec { provider: "docker", containerd: "1.6", workers: 1, snapshotter: None },
    );
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kind_kubeconfig(dir.path(), &cluster.name);
    let state = dir.path().join("state");
    let reference = format!("{}-{}", expected_ref(&call.reference), std::process::id());
    let out = run_as_tilt(
        &call.command,
        &example,
        &reference,
        &[
            ("KUBECONFIG", kubeconfig.to_str().unwrap()),
            ("KINDLOAD_STATE_DIR", state.to_str().unwrap()),
            ("KINDLOAD_ENGINE", "docker"),
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = inspect_id("docker", &reference);
    for node in &cluster.nodes {
        assert_eq!(cri_id(&cluster, node, &format!("docker.io/{reference}")), Some(id.clone()), "{node}");
    }
    remove_image("docker", &reference);
}

/// With a registry (EXPECTED_REGISTRY) Tilt deploys from it, so the build pushes there.
#[test]
fn tilt_with_a_registry_pushes_expected_ref() {
    if !engine_available("docker") {
        return;
    }
    let registry = support::registry().expect("KINDLOAD_TEST_REGISTRY names the test registry");
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), "Dockerfile", "tilt-push");
    let repo = format!("kindload-test/tilt-{}", std::process::id());
    let reference = expected_ref(&format!("{registry}/{repo}"));
    let out = run_as_tilt(
        "kindload build",
        &ctx,
        &reference,
        &[("EXPECTED_REGISTRY", &registry), ("REGISTRY_HOST", &registry), ("KINDLOAD_ENGINE", "docker")],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tag = reference.rsplit_once(':').unwrap().1;
    let tags = support::registry_tags(&registry, &repo);
    assert!(tags.starts_with("HTTP/1.0 200") || tags.starts_with("HTTP/1.1 200"), "{tags}");
    assert!(tags.contains(&format!("\"{tag}\"")), "{tags}");
    remove_image("docker", &reference);
}

#[test]
fn build_outside_skaffold_and_tilt_names_both_contracts() {
    let out = support::kindload().arg("build").env_remove("EXPECTED_REF").env_remove("IMAGE").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("EXPECTED_REF (Tilt's custom_build)"), "{stderr}");
    assert!(stderr.contains("skips_local_docker=True, disable_push=True"), "{stderr}");
    assert!(stderr.contains("EXPECTED_REF=app:dev kindload build"), "{stderr}");
}
