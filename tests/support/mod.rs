//! Test bed for integration tests: real engines (Docker, Podman, Docker with the
//! containerd image store) and kind-like clusters whose nodes run a real containerd
//! (images `kindload-testnode:<version>`, built by `tests/testbed/build-node-images.sh`).
//!
//! Include with `mod support;`. Every test starts with
//! `if !support::engine_available("docker") { return; }`: without the engine the
//! test is skipped, unless `KINDLOAD_REQUIRE_ENGINES=1` (set by `tests/run.sh`),
//! where a missing engine fails the test.

#![allow(dead_code)]

mod registry;
#[allow(unused_imports)]
pub use registry::TestRegistry;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, RwLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const PROVIDERS: [&str; 2] = ["docker", "podman"];
pub const CONTAINERD_VERSIONS: [&str; 3] = ["1.6", "1.7", "2.1"];

/// Engines `engine_available` knows, besides the providers.
pub const CONTAINERD_STORE: &str = "containerd-store";

pub const NODE_IMAGE: &str = "kindload-testnode";
pub const CLUSTER_LABEL: &str = "io.x-k8s.kind.cluster";
pub const ROLE_LABEL: &str = "io.x-k8s.kind.role";
/// Label carrying the pid of the test process that owns a node container.
pub const OWNER_LABEL: &str = "io.kindload.testbed.owner";

const REQUIRE_ENV: &str = "KINDLOAD_REQUIRE_ENGINES";
const STORE_HOST_ENV: &str = "KINDLOAD_TEST_CONTAINERD_STORE_HOST";
const REGISTRY_ENV: &str = "KINDLOAD_TEST_REGISTRY";
const ROOTLESS_USER_ENV: &str = "KINDLOAD_TEST_ROOTLESS_USER";
const NODE_READY_TIMEOUT: Duration = Duration::from_secs(60);

fn engines_required() -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1")
}

/// Panics (when engines are required) or prints a skip note, for something missing.
fn missing(what: &str, why: &str) -> bool {
    if engines_required() {
        panic!("{what} is not available ({why}), and {REQUIRE_ENV}=1 requires it");
    }
    eprintln!("skipping: {what} is not available ({why})");
    false
}

/// True when `engine` ("docker" | "podman" | "containerd-store") answers; when it
/// does not and KINDLOAD_REQUIRE_ENGINES=1 it panics naming what is missing;
/// otherwise prints a skip note and returns false.
pub fn engine_available(engine: &str) -> bool {
    static PROBED: OnceLock<Mutex<HashMap<String, Result<(), String>>>> = OnceLock::new();
    let probed = PROBED.get_or_init(Default::default);
    let result = {
        let mut probed = probed.lock().unwrap_or_else(|e| e.into_inner());
        probed.entry(engine.to_string()).or_insert_with(|| probe_engine(engine)).clone()
    };
    match result {
        Ok(()) => true,
        Err(why) => missing(&format!("engine {engine:?}"), &why),
    }
}

fn probe_engine(engine: &str) -> Result<(), String> {
    let args: &[&str] = match engine {
        "docker" | CONTAINERD_STORE => &["info", "--format", "{{.ServerVersion}}"],
        "podman" => &["info", "--format", "{{.Host.OCIRuntime.Name}}"],
        other => panic!("unknown engine {other:?}"),
    };
    if engine == CONTAINERD_STORE && std::env::var_os(STORE_HOST_ENV).is_none() {
        return Err(format!("{STORE_HOST_ENV} is not set"));
    }
    let argv = engine_cmd(engine);
    match engine_command(engine).args(args).output() {
        Err(e) => Err(format!("cannot run {}: {e}", argv[0])),
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "`{} {}` failed: {}",
            argv.join(" "),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

/// The local registry started by `tests/run.sh` (`KINDLOAD_TEST_REGISTRY`, e.g.
/// `127.0.0.1:5000`), or None (after a skip note, or a panic when engines are required).
pub fn registry() -> Option<String> {
    match std::env::var(REGISTRY_ENV) {
        Ok(addr) if !addr.is_empty() => Some(addr),
        _ => {
            missing("the test registry", &format!("{REGISTRY_ENV} is not set"));
            None
        }
    }
}

/// Asks the test registry (plain HTTP) for a repository's tags: the raw response.
pub fn registry_tags(registry: &str, repo: &str) -> String {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(registry).expect("registry answers");
    write!(stream, "GET /v2/{repo}/tags/list HTTP/1.0\r\nHost: {registry}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// A non-root user with subordinate ids, for rootless Podman.
pub struct RootlessUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

impl RootlessUser {
    /// `program args...` run as this user with its own login-like environment (PATH, HOME,
    /// USER), its groups included (docker), nothing of root's environment.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .args(["--init-groups", "--"])
            .arg(program)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", &self.home)
            .env("USER", &self.name)
            .current_dir(&self.home);
        cmd
    }
}

/// The rootless Podman user created by `tests/testbed/rootless-user.sh`
/// (`KINDLOAD_TEST_ROOTLESS_USER`), or None (after a skip note, or a panic when engines are required).
pub fn rootless_user() -> Option<RootlessUser> {
    let Some(name) = std::env::var(ROOTLESS_USER_ENV).ok().filter(|n| !n.is_empty()) else {
        missing("the rootless Podman user", &format!("{ROOTLESS_USER_ENV} is not set"));
        return None;
    };
    let id = |flag: &str| -> Option<u32> {
        let out = run(Command::new("id").arg(flag).arg(&name));
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    let passwd = run(Command::new("getent").args(["passwd", &name]));
    let home = String::from_utf8_lossy(&passwd.stdout).trim().split(':').nth(5).map(PathBuf::from);
    match (id("-u"), id("-g"), home) {
        (Some(uid), Some(gid), Some(home)) => Some(RootlessUser { name, uid, gid, home }),
        _ => {
            missing("the rootless Podman user", &format!("user {name:?} does not exist"));
            None
        }
    }
}

/// argv prefix for an engine: ["docker"], ["podman"], or for "containerd-store"
/// ["docker", "--host", <KINDLOAD_TEST_CONTAINERD_STORE_HOST>].
pub fn engine_cmd(engine: &str) -> Vec<String> {
    match engine {
        "docker" | "podman" => vec![engine.to_string()],
        CONTAINERD_STORE => {
            let host = std::env::var(STORE_HOST_ENV).unwrap_or_else(|_| panic!("{STORE_HOST_ENV} is not set"));
            vec!["docker".into(), "--host".into(), host]
        }
        other => panic!("unknown engine {other:?}"),
    }
}

/// A `std::process::Command` for `engine_cmd(engine)`. DOCKER_HOST is removed so
/// that "docker" always means the default daemon, as for `kindload()`.
pub fn engine_command(engine: &str) -> Command {
    let argv = engine_cmd(engine);
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).env_remove("DOCKER_HOST");
    cmd
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` with `stdin` (or /dev/null) and captures its output; panics only
/// when it cannot be started.
pub fn run_with_stdin(cmd: &mut Command, stdin: Option<&[u8]>) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run `{}`: {e}", describe(cmd)));
    let writer = stdin.map(|data| {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        let data = data.to_vec();
        thread::spawn(move || {
            // The child may exit without reading everything; its status tells.
            let _ = pipe.write_all(&data);
        })
    });
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("waiting for `{}`: {e}", describe(cmd)));
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    out
}

/// Runs `cmd` and returns its output; panics when it cannot be started.
pub fn run(cmd: &mut Command) -> Output {
    run_with_stdin(cmd, None)
}

/// Runs `cmd` and returns its stdout; panics with stderr when it fails.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    check(cmd, &out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn check(cmd: &Command, out: &Output) {
    if !out.status.success() {
        panic!(
            "`{}` failed ({}):\n{}{}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// What a test cluster looks like.
#[derive(Clone, Copy, Debug)]
pub struct ClusterSpec {
    /// "docker" or "podman": the provider hosting the node containers
    pub provider: &'static str,
    /// one of CONTAINERD_VERSIONS
    pub containerd: &'static str,
    /// worker nodes besides the control plane
    pub workers: usize,
    /// CRI snapshotter written into every node's config (default overlayfs)
    pub snapshotter: Option<&'static str>,
}

/// Where kind node images since v0.27 point containerd's registry `config_path`.
pub const CONFIG_PATH: &str = "/etc/containerd/certs.d";

/// Appends the registry `config_path` table to the node's config, then runs the image's
/// own entrypoint (the node image itself stays as built, shared by every test).
const ADD_CONFIG_PATH: &str = r#"printf '\n[%s]\n  config_path = "%s"\n' "$KINDLOAD_TEST_CONFIG_PATH_TABLE" "$KINDLOAD_TEST_CONFIG_PATH" >> /etc/containerd/config.toml && mkdir -p "$KINDLOAD_TEST_CONFIG_PATH" && exec /usr/local/bin/entrypoint"#;

struct NetworkLayout {
    network: String,
    with_config_path: Vec<usize>,
}

/// A user-defined container network (`<provider> network create`), removed on drop.
pub struct TestNetwork {
    pub name: String,
    pub provider: String,
}

impl TestNetwork {
    pub fn create(provider: &str, tag: &str) -> TestNetwork {
        let name = cluster_name(&format!("net-{tag}"));
        run_ok(engine_command(provider).args(["network", "create", &name]));
        TestNetwork { name, provider: provider.to_string() }
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        let _ = run(engine_command(&self.provider).args(["network", "rm", &self.name]));
    }
}

pub const REGISTRY_IMAGE: &str = "kindload-testregistry:1";

/// Makes sure `provider` has the registry image (Debian's docker-registry FROM scratch),
/// building it with `tests/testbed/build-registry-image.sh` when missing.
pub fn ensure_registry_image(provider: &str) {
    let present = run(engine_command(provider).args(["image", "inspect", "--format", "{{.Id}}", REGISTRY_IMAGE]))
        .status
        .success();
    if !present {
        let script = testbed_dir().join("build-registry-image.sh");
        let status = Command::new(&script)
            .arg(provider)
            .stdin(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(status.success(), "{} {provider} failed", script.display());
    }
}

/// A containers.conf for Podman run by kindload on this test bed: the ulimits and runtime
/// the node containers get on the command line (see tests/testbed/README.md).
pub fn podman_containers_conf() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("kindload-test-containers-{}.conf", std::process::id()));
        std::fs::write(
            &path,
            "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\n[engine]\nruntime = \"runc\"\n",
        )
        .unwrap();
        path
    })
    .clone()
}

/// A running kind-like cluster; its node containers are removed on drop.
pub struct TestCluster {
    pub name: String,
    pub provider: String,
    /// control-plane first
    pub nodes: Vec<String>,
}

static CLUSTER_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// `kl-<tag>-<pid>-<n>`, lowercase, only `[a-z0-9-]`, short enough for hostnames.
pub fn cluster_name(tag: &str) -> String {
    let mut tag: String =
        tag.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    tag.truncate(16);
    let tag = tag.trim_matches('-');
    let n = CLUSTER_COUNTER.fetch_add(1, Ordering::SeqCst);
    let pid = std::process::id();
    if tag.is_empty() {
        format!("kl-{pid}-{n}")
    } else {
        format!("kl-{tag}-{pid}-{n}")
    }
}

fn node_names(cluster: &str, workers: usize) -> Vec<(String, &'static str)> {
    let mut nodes = vec![(format!("{cluster}-control-plane"), "control-plane")];
    for i in 1..=workers {
        let suffix = if i == 1 { String::new() } else { i.to_string() };
        nodes.push((format!("{cluster}-worker{suffix}"), "worker"));
    }
    nodes
}

fn testbed_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testbed")
}

/// Makes sure `provider` has the node image for `version`, building it with
/// `tests/testbed/build-node-images.sh` when missing (the script serialises
/// builds across processes with a lock file).
fn ensure_node_image(provider: &str, version: &str) {
    static READY: OnceLock<Mutex<HashSet<(String, String)>>> = OnceLock::new();
    let mut ready = READY.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    let key = (provider.to_string(), version.to_string());
    if ready.contains(&key) {
        return;
    }
    let image = format!("{NODE_IMAGE}:{version}");
    let present =
        run(engine_command(provider).args(["image", "inspect", "--format", "{{.Id}}", &image])).status.success();
    if !present {
        eprintln!("building node images for {provider} (missing {image})");
        let script = testbed_dir().join("build-node-images.sh");
        let status = Command::new(&script)
            .arg(provider)
            .stdin(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(status.success(), "{} {provider} failed", script.display());
    }
    ready.insert(key);
}

fn pid_alive(pid: &str) -> bool {
    Path::new("/proc").join(pid).exists()
}

/// Removes node containers left behind by test processes that no longer run
/// (killed before their clusters were dropped). Once per provider and process.
fn remove_orphans(provider: &str) {
    static SWEPT: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let mut swept = SWEPT.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if !swept.insert(provider.to_string()) {
        return;
    }
    let out = run(engine_command(provider).args([
        "ps",
        "-a",
        "--filter",
        &format!("label={OWNER_LABEL}"),
        "--format",
        "{{.Names}}",
    ]));
    let names = String::from_utf8_lossy(&out.stdout);
    let orphans: Vec<&str> = names
        .lines()
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .filter(|name| {
            let owner = run(engine_command(provider).args([
                "inspect",
                "--format",
                &format!("{{{{index .Config.Labels \"{OWNER_LABEL}\"}}}}"),
                name,
            ]));
            let owner = String::from_utf8_lossy(&owner.stdout).trim().to_string();
            !owner.is_empty() && !pid_alive(&owner)
        })
        .collect();
    if !orphans.is_empty() {
        run(engine_command(provider).args(["rm", "-f", "-v"]).args(&orphans));
    }
}

impl TestCluster {
    /// Starts a labelled cluster with a unique name derived from `tag`
    /// (`kl-<tag>-<pid>-<n>`), nodes `<name>-control-plane`, `<name>-worker`,
    /// `<name>-worker2`, ... labelled io.x-k8s.kind.cluster=<name> and
    /// io.x-k8s.kind.role=control-plane|worker; waits until containerd answers
    /// `ctr version` in every node (60 s, then panics with the node's logs).
    pub fn start(tag: &str, spec: ClusterSpec) -> TestCluster {
        Self::start_named(&cluster_name(tag), spec)
    }

    /// Starts a cluster under an exact name, as `kind create cluster --name` would
    /// after the old one was deleted.
    pub fn start_named(name: &str, spec: ClusterSpec) -> TestCluster {
        Self::start_with_root(name, spec, &["-v", "/var/lib/containerd"])
    }

    /// As `start_named`, with `root` as the run arguments that give the nodes their
    /// containerd root (a volume by default; a small tmpfs makes a node that runs out of disk).
    pub fn start_with_root(name: &str, spec: ClusterSpec, root: &[&str]) -> TestCluster {
        Self::start_nodes(name, spec, root, None)
    }

    /// As `start`, with every node on `network` (a user-defined network, as kind's `kind`
    /// network is) and containerd's registry `config_path` set to `/etc/containerd/certs.d`
    /// on each node whose index (0 = control plane) is in `with_config_path`, as kind node
    /// images since v0.27 do; the other nodes have none, as older ones.
    pub fn start_on_network(
        tag: &str,
        spec: ClusterSpec,
        network: &TestNetwork,
        with_config_path: &[usize],
    ) -> TestCluster {
        let layout = NetworkLayout { network: network.name.clone(), with_config_path: with_config_path.to_vec() };
        Self::start_nodes(&cluster_name(tag), spec, &["-v", "/var/lib/containerd"], Some(&layout))
    }

    fn start_nodes(name: &str, spec: ClusterSpec, root: &[&str], layout: Option<&NetworkLayout>) -> TestCluster {
        assert!(PROVIDERS.contains(&spec.provider), "unknown provider {:?}", spec.provider);
        assert!(CONTAINERD_VERSIONS.contains(&spec.containerd), "unknown containerd version {:?}", spec.containerd);
        ensure_node_image(spec.provider, spec.containerd);
        remove_orphans(spec.provider);

        let mut cluster =
            TestCluster { name: name.to_string(), provider: spec.provider.to_string(), nodes: Vec::new() };
        for (i, (node, role)) in node_names(&cluster.name, spec.workers).into_iter().enumerate() {
            let config_path = layout.is_some_and(|l| l.with_config_path.contains(&i));
            cluster.run_node(spec, root, layout.map(|l| l.network.as_str()), config_path, node, role);
        }
        for node in &cluster.nodes {
            cluster.wait_ready(node);
        }
        cluster
    }

    /// Adds a worker to a cluster started with `start_on_network` (as `kind` would for a
    /// node joining later), with containerd's registry config_path; returns its name.
    pub fn add_worker(&mut self, spec: ClusterSpec, network: &TestNetwork) -> String {
        let node = format!("{}-worker{}", self.name, self.nodes.len() + 1);
        self.run_node(spec, &["-v", "/var/lib/containerd"], Some(&network.name), true, node.clone(), "worker");
        self.wait_ready(&node);
        node
    }

    fn run_node(
        &mut self,
        spec: ClusterSpec,
        root: &[&str],
        network: Option<&str>,
        config_path: bool,
        node: String,
        role: &str,
    ) {
        let image = format!("{NODE_IMAGE}:{}", spec.containerd);
        let mut cmd = engine_command(spec.provider);
        cmd.args(["run", "--detach", "--name", &node, "--hostname", &node]);
        cmd.args(["--label", &format!("{CLUSTER_LABEL}={}", self.name)]);
        cmd.args(["--label", &format!("{ROLE_LABEL}={role}")]);
        cmd.args(["--label", &format!("{OWNER_LABEL}={}", std::process::id())]);
        cmd.args(["--network", network.unwrap_or("none"), "--cap-add", "SYS_ADMIN"]);
        if config_path {
            // The node image's entrypoint, after config_path is added to its config.
            let table = if spec.containerd.starts_with("1.") {
                "plugins.\"io.containerd.grpc.v1.cri\".registry"
            } else {
                "plugins.\"io.containerd.cri.v1.images\".registry"
            };
            cmd.args(["--entrypoint", "/bin/sh"]);
            cmd.args(["-e", &format!("KINDLOAD_TEST_CONFIG_PATH_TABLE={table}")]);
            cmd.args(["-e", &format!("KINDLOAD_TEST_CONFIG_PATH={CONFIG_PATH}")]);
        }
        cmd.args(["--security-opt", "seccomp=unconfined"]);
        cmd.args(["--security-opt", "apparmor=unconfined"]);
        cmd.args(root).args(["--tmpfs", "/run", "--tmpfs", "/tmp"]);
        if let Some(snapshotter) = spec.snapshotter {
            cmd.args(["-e", &format!("KINDLOAD_TEST_SNAPSHOTTER={snapshotter}")]);
        }
        if spec.provider == "podman" {
            cmd.args(["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]);
            cmd.args(["--runtime", "runc"]);
        }
        cmd.arg(&image);
        if config_path {
            cmd.args(["-c", ADD_CONFIG_PATH]);
        }
        let out = run(&mut cmd);
        // Recorded before checking, so that drop removes a half-created container.
        self.nodes.push(node);
        check(&cmd, &out);
    }

    fn wait_ready(&self, node: &str) {
        let deadline = Instant::now() + NODE_READY_TIMEOUT;
        loop {
            let out = self.exec(node, &["ctr", "version"]);
            if out.status.success() {
                return;
            }
            if Instant::now() >= deadline {
                let logs = run(engine_command(&self.provider).args(["logs", "--tail", "50", node]));
                panic!(
                    "containerd in {node} did not answer within {NODE_READY_TIMEOUT:?}: {}\n--- logs of {node} ---\n{}{}",
                    String::from_utf8_lossy(&out.stderr).trim(),
                    String::from_utf8_lossy(&logs.stdout),
                    String::from_utf8_lossy(&logs.stderr)
                );
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// The control-plane node.
    pub fn control_plane(&self) -> &str {
        &self.nodes[0]
    }

    /// `<provider> exec <node> args...`
    pub fn exec(&self, node: &str, args: &[&str]) -> Output {
        run(engine_command(&self.provider).arg("exec").arg(node).args(args))
    }

    /// `<provider> exec -i <node> args...` with `stdin` fed to the command.
    pub fn exec_with_stdin(&self, node: &str, args: &[&str], stdin: &[u8]) -> Output {
        run_with_stdin(engine_command(&self.provider).args(["exec", "-i", node]).args(args), Some(stdin))
    }

    /// What kindload runs keep in `node`'s /run/kindload while they run: the survey lock,
    /// layer claims (`claims/<hex>`) and run registrations (`runs/<run>`), one per line.
    /// Empty once every run has ended.
    pub fn run_state(&self, node: &str) -> String {
        let script = "cd /run/kindload 2>/dev/null || exit 0; for f in import.lock claims/* runs/*; do [ -e \"$f\" ] && echo \"$f\"; done; exit 0";
        let out = self.exec(node, &["sh", "-c", script]);
        assert!(
            out.status.success(),
            "listing {node}'s /run/kindload failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// stdout of `ctr -n k8s.io images ls` in `node`; panics on failure.
    pub fn ctr_images(&self, node: &str) -> String {
        let out = self.exec(node, &["ctr", "-n", "k8s.io", "images", "ls"]);
        assert!(out.status.success(), "ctr images ls in {node} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// stdout of `containerd config dump` in `node`; panics on failure.
    pub fn config_dump(&self, node: &str) -> String {
        let out = self.exec(node, &["containerd", "config", "dump"]);
        assert!(
            out.status.success(),
            "containerd config dump in {node} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stops the node container (it stays listed, as a stopped kind node does).
    pub fn stop_node(&self, node: &str) {
        run_ok(engine_command(&self.provider).args(["stop", "--time", "5", node]));
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if self.nodes.is_empty() {
            return;
        }
        let _ = engine_command(&self.provider)
            .args(["rm", "-f", "-v"])
            .args(&self.nodes)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

static IMAGE_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Builds a tiny unique image FROM scratch (a file /kindload-test.txt whose content
/// is `content`) with the given engine and tag; returns the engine's image id as
/// printed by `image inspect --format {{.Id}}`.
pub fn build_image(engine: &str, tag: &str, content: &str) -> String {
    build_image_with(engine, tag, content, false)
}

/// As `build_image`, plus busybox-static as /bin/busybox when `with_busybox`.
/// Each build is unique (a nonce label), so two builds never share an id.
pub fn build_image_with(engine: &str, tag: &str, content: &str, with_busybox: bool) -> String {
    let dir = tempfile::tempdir().expect("temporary build context");
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::write(rootfs.join("kindload-test.txt"), content).unwrap();
    if with_busybox {
        let busybox = Path::new("/bin/busybox");
        assert!(busybox.exists(), "/bin/busybox is missing (install busybox-static)");
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        std::fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
    }
    std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\nCOPY rootfs/ /\n").unwrap();
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    let nonce = format!("{}-{}-{nanos}", std::process::id(), IMAGE_COUNTER.fetch_add(1, Ordering::SeqCst));
    build_ok(engine, &["--no-cache", "--label", &format!("io.kindload.test.nonce={nonce}"), "-t", tag], dir.path());
    run_ok(engine_command(engine).args(["image", "inspect", "--format", "{{.Id}}", tag])).trim().to_string()
}

/// Builds an image FROM scratch holding `bytes` of random data (incompressible, as real
/// layers mostly are), for large-image tests.
pub fn build_random_image(engine: &str, tag: &str, bytes: usize) {
    let dir = tempfile::tempdir().expect("temporary build context");
    let mut data = std::fs::File::create(dir.path().join("random.bin")).unwrap();
    let mut urandom = std::fs::File::open("/dev/urandom").unwrap();
    std::io::copy(&mut std::io::Read::take(&mut urandom, bytes as u64), &mut data).unwrap();
    std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\nCOPY random.bin /random.bin\n").unwrap();
    build_ok(engine, &["-t", tag], dir.path());
}

/// `<engine> build ARGS CONTEXT`, tried again when Docker's legacy builder loses a step's
/// image to a concurrent build or removal ("unable to find image", "No such image"): a
/// test-bed race in setting up an image, not a result under test.
pub fn build_ok(engine: &str, args: &[&str], context: &Path) -> String {
    let mut last = None;
    for _ in 0..3 {
        let mut cmd = engine_command(engine);
        cmd.arg("build").args(args).arg(context);
        let out = building(|| run(&mut cmd));
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        if !(stderr.contains("unable to find image") || stderr.contains("No such image")) {
            check(&cmd, &out);
        }
        last = Some((cmd, out));
    }
    let (cmd, out) = last.expect("three attempts");
    check(&cmd, &out);
    unreachable!("check panics on a failed build")
}

/// Polls `check` every 50 ms until it holds; fails naming `what` after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    wait_for(what, limit, || (!check()).then(String::new));
}

/// As [`wait_until`], where `pending` tells what is not so yet (None once it is), which a
/// time-out shows.
pub fn wait_for(what: &str, limit: Duration, mut pending: impl FnMut() -> Option<String>) {
    let deadline = Instant::now() + limit;
    while let Some(left) = pending() {
        assert!(Instant::now() < deadline, "waited {limit:?} for {what}: {left}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Docker's legacy builder, looking for a cached step FROM scratch, reads every image
/// without a parent and fails with "unable to find image" when one goes meanwhile. Within
/// a test binary, builds share this lock and a removal takes it alone.
static IMAGE_STORE: RwLock<()> = RwLock::new(());

/// Runs `work`, which builds an image (by the engine or through `kindload build`), while
/// no test of this binary removes one.
pub fn building<T>(work: impl FnOnce() -> T) -> T {
    let _shared = IMAGE_STORE.read().unwrap_or_else(|e| e.into_inner());
    work()
}

/// `<engine> image rm -f <tag>`, ignoring errors; never while a build of this binary runs.
pub fn remove_image(engine: &str, tag: &str) {
    remove_images(engine, &[tag]);
}

/// `<engine> image rm -f <tags>`, as [`remove_image`].
pub fn remove_images(engine: &str, tags: &[&str]) {
    let _alone = IMAGE_STORE.write().unwrap_or_else(|e| e.into_inner());
    let _ = run(engine_command(engine).args(["image", "rm", "-f"]).args(tags));
}

/// `<engine> save <tag>` as bytes (a docker-archive for docker and podman, an OCI
/// layout plus manifest.json for the containerd store).
pub fn save_image(engine: &str, tag: &str) -> Vec<u8> {
    let mut cmd = engine_command(engine);
    cmd.args(["save", tag]);
    let out = run(&mut cmd);
    check(&cmd, &out);
    out.stdout
}

/// A command for the real kindload binary with KIND_CLUSTER_NAME, KINDLOAD_ENGINE,
/// KIND_EXPERIMENTAL_PROVIDER, SKAFFOLD_*, DOCKER_HOST, CONTAINER_HOST, CI and KINDLOAD_PUSH removed and KUBECONFIG
/// pointing at a nonexistent file, so the host's settings never leak in.
pub fn kindload() -> assert_cmd::Command {
    assert_cmd::Command::from_std(kindload_command())
}

/// `kindload()` as a `std::process::Command`, for a run to spawn and read while it goes.
pub fn kindload_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kindload"));
    for var in host_settings() {
        cmd.env_remove(var);
    }
    cmd.env("KUBECONFIG", no_kubeconfig());
    cmd
}

/// stdout and stderr of a run, one after the other.
pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A port on 127.0.0.1 free when asked (the OS picks it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Variables of the host's environment that would change what kindload does: the ones
/// `kindload()` removes.
pub fn host_settings() -> Vec<std::ffi::OsString> {
    // CI picks kindload's own push for Docker's classic store: a test that wants it sets it.
    let fixed = [
        "KIND_CLUSTER_NAME",
        "KINDLOAD_ENGINE",
        "KIND_EXPERIMENTAL_PROVIDER",
        "DOCKER_HOST",
        "CONTAINER_HOST",
        "CI",
        "KINDLOAD_PUSH",
    ];
    let skaffold = std::env::vars_os().map(|(var, _)| var).filter(|var| var.to_string_lossy().starts_with("SKAFFOLD_"));
    fixed.into_iter().map(Into::into).chain(skaffold).collect()
}

/// A KUBECONFIG path that does not exist.
pub fn no_kubeconfig() -> PathBuf {
    std::env::temp_dir().join(format!("kindload-test-{}-no-such-dir/kubeconfig", std::process::id()))
}

/// `load --cluster <cluster> --provider <its provider> --engine <engine> --output json <image>
/// <extra>...` run by `cmd`, which must succeed; the report, checked against the schema.
pub fn load_report(
    mut cmd: assert_cmd::Command,
    cluster: &TestCluster,
    engine: &str,
    image: &str,
    extra: &[&str],
) -> serde_json::Value {
    let out = cmd
        .args(["load", "--cluster", &cluster.name, "--provider", &cluster.provider, "--engine", engine])
        .args(["--output", "json", image])
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "load {image} failed: {}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_matches_schema("load-report.schema.json", &json);
    json
}

/// A kubeconfig whose current context is the kind cluster, as `kind create cluster` writes it.
pub fn kind_kubeconfig(dir: &Path, cluster: &str) -> PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: kind-{cluster}\nclusters:\n- name: kind-{cluster}\n  cluster:\n    server: https://127.0.0.1:6443\ncontexts:\n- name: kind-{cluster}\n  context:\n    cluster: kind-{cluster}\n    user: kind-{cluster}\nusers:\n- name: kind-{cluster}\n  user: {{}}\n"
        ),
    )
    .unwrap();
    path
}

/// What CRI would answer for `name` on `node`: the config digest of the record's target,
/// through CRI's own `sha256:<config>` record (the one the kubelet's lookups resolve through).
pub fn cri_id(cluster: &TestCluster, node: &str, name: &str) -> Option<String> {
    let listing = kindload::resolve::records::parse_ctr_images(&cluster.ctr_images(node));
    let record = listing.iter().find(|r| r.name == name)?;
    kindload::resolve::records::config_digest_for_target(&listing, &record.target)
}

/// An engine's image id with the `sha256:` prefix Podman leaves off.
pub fn sha256_id(id: &str) -> String {
    let id = id.trim();
    if id.starts_with("sha256:") {
        id.to_string()
    } else {
        format!("sha256:{id}")
    }
}

/// Fails the test when `instance` does not match the committed schema `schemas/<file>`.
pub fn assert_matches_schema(file: &str, instance: &serde_json::Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas").join(file);
    let schema: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let errors: Vec<String> = validator.iter_errors(instance).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "output does not match schemas/{file}: {errors:?}\n{instance:#}");
}
