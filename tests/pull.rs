//! `kindload build --pull never|missing|always` against a real registry on loopback, whose
//! access log proves which policy contacted it: with never or missing and the base present
//! locally, no request reaches it; always asks for the base's manifest; never with the base
//! missing is exit 2 naming the base, before any request.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{build_image, engine_available, kindload, remove_image, run, run_ok};

/// Debian's docker-registry on a free loopback port, with its own storage and access log.
struct Registry {
    addr: String,
    log: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let log = dir.path().join("registry.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("docker-registry runs (tests/run.sh installs it)");
        let registry = Registry { addr, log, child, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&registry.addr).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not listen on {}", registry.addr);
            std::thread::sleep(Duration::from_millis(100));
        }
        registry
    }

    /// Every request in the access log so far (`"GET /v2/... HTTP/1.1" 200 ...`).
    fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"GET /v2/") || l.contains("\"HEAD /v2/"))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Built {
    out: Output,
    /// Requests the registry received during the build.
    requests: Vec<String>,
}

impl Built {
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
}

/// `kindload build` of `image` in `ctx` outside any kind context (so it only builds).
fn build(registry: &Registry, engine: &str, ctx: &Path, image: &str, extra: &[&str]) -> Built {
    let before = registry.requests().len();
    let kubeconfig = ctx.parent().unwrap().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\ncurrent-context: gke_proj_zone_prod\ncontexts:\n- name: gke_proj_zone_prod\n  context:\n    cluster: gke_proj_zone_prod\n    user: me\n",
    )
    .unwrap();
    let out = support::building(|| {
        kindload()
            .arg("build")
            .args(extra)
            .current_dir(ctx)
            .env("KUBECONFIG", &kubeconfig)
            .env("KINDLOAD_ENGINE", engine)
            .env("IMAGE", image)
            .env("PUSH_IMAGE", "false")
            .env("BUILD_CONTEXT", ctx)
            .output()
    })
    .unwrap();
    // The access log is written as each request completes; give the last line a moment.
    std::thread::sleep(Duration::from_millis(300));
    Built { out, requests: registry.requests().split_off(before) }
}

fn pull_policies(engine: &'static str) {
    if !engine_available("docker") || !engine_available(engine) {
        return;
    }
    let registry = Registry::start();
    let repo = format!("kl-pull-base-{engine}-{}", std::process::id());
    let base = format!("{}/{repo}:v1", registry.addr);
    build_image("docker", &base, &format!("base for {engine}"));
    run_ok(support::engine_command("docker").args(["push", &base]));
    if engine == "podman" {
        run_ok(support::engine_command("podman").args(["pull", "--tls-verify=false", &base]));
    }
    let manifest_asked = |b: &Built| b.requests.iter().any(|r| r.contains(&format!("/v2/{repo}/manifests/")));

    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("hello.txt"), engine).unwrap();
    std::fs::write(ctx.join("Dockerfile"), format!("FROM {base}\nCOPY hello.txt /hello.txt\n")).unwrap();
    let image = format!("kl-test/pull-{engine}-{}:v1", std::process::id());

    // Base present locally: the default (missing) and never contact nothing.
    for extra in [&[][..], &["--pull", "missing"][..], &["--pull", "never"][..]] {
        let b = build(&registry, engine, &ctx, &image, extra);
        assert!(b.out.status.success(), "{extra:?}: {}", b.stderr());
        assert!(b.requests.is_empty(), "{extra:?} contacted the registry: {:#?}", b.requests);
    }
    // always asks the registry for the base's manifest even though it is present.
    let always = build(&registry, engine, &ctx, &image, &["--pull", "always"]);
    assert!(always.out.status.success(), "{}", always.stderr());
    assert!(manifest_asked(&always), "--pull always did not ask for {repo}'s manifest: {:#?}", always.requests);

    // Base gone locally: never is an input error naming it, and nothing is asked.
    remove_image(engine, &image);
    remove_image(engine, &base);
    let absent = run(support::engine_command(engine).args(["image", "inspect", &base]));
    assert!(!absent.status.success(), "{base} is still in {engine}");
    let never = build(&registry, engine, &ctx, &image, &["--pull", "never"]);
    let err = never.stderr();
    assert_eq!(never.out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "base image {base} not present in {engine}, and pull policy never (from --pull) forbids pulling"
        )),
        "{err}"
    );
    assert!(err.contains(&format!("fix: `{engine} pull {base}` first, or build with `--pull missing`")), "{err}");
    assert!(never.requests.is_empty(), "--pull never contacted the registry: {:#?}", never.requests);

    // The same from kindload.yaml.
    std::fs::write(ctx.join("kindload.yaml"), "pull: never\n").unwrap();
    let from_config = build(&registry, engine, &ctx, &image, &[]);
    let err = from_config.stderr();
    assert_eq!(from_config.out.status.code(), Some(2), "{err}");
    assert!(err.contains("pull policy never (from `pull:` in kindload.yaml)"), "{err}");
    assert!(from_config.requests.is_empty(), "pull: never contacted the registry: {:#?}", from_config.requests);
    std::fs::remove_file(ctx.join("kindload.yaml")).unwrap();

    // missing pulls what is missing.
    let missing = build(&registry, engine, &ctx, &image, &["--pull", "missing"]);
    assert!(missing.out.status.success(), "{}", missing.stderr());
    assert!(manifest_asked(&missing), "--pull missing did not pull the absent base: {:#?}", missing.requests);
    assert!(run(support::engine_command(engine).args(["image", "inspect", &base])).status.success());

    remove_image(engine, &image);
    remove_image(engine, &base);
    remove_image("docker", &base);
}

#[test]
fn pull_policies_with_docker() {
    pull_policies("docker");
}

#[test]
fn pull_policies_with_podman() {
    pull_policies("podman");
}
