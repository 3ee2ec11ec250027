//! What Tilt, Skaffold's `--build-concurrency` and CI scripts do at once: several `kindload
//! load` runs started together into one fresh cluster, of images built FROM one base no node
//! holds yet (and the same image twice). Every run must end, by sideload, through the
//! registry and mixed; every node must then answer to every name with the right id, hold no
//! `import-*` record and no ingest in progress; a sideloaded base must reach each node once.
//! Every run is bounded: one still running after its deadline is killed and reported as hung.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

const MB: usize = 1 << 20;
/// A run still going after this is hung (a healthy one takes seconds).
const DEADLINE: Duration = Duration::from_secs(240);

/// A base of random bytes and apps on it, each with a random top layer of its own.
struct Family {
    engine: &'static str,
    base: String,
    apps: Vec<(String, String)>,
    base_bytes: usize,
    top_bytes: usize,
}

impl Family {
    fn build(engine: &'static str, prefix: &str, apps: usize, base_bytes: usize, top_bytes: usize) -> Family {
        let pid = std::process::id();
        let base = format!("kl-conc/{prefix}-base-{pid}:1");
        build_random(engine, &base, "scratch", "base.bin", base_bytes);
        let from = if engine == "podman" { format!("localhost/{base}") } else { base.clone() };
        let apps = (0..apps)
            .map(|i| {
                let image = format!("kl-conc/{prefix}-app{i}-{pid}:dev");
                let id = sha256_id(&build_random(engine, &image, &from, "top.bin", top_bytes));
                (image, id)
            })
            .collect();
        Family { engine, base, apps, base_bytes, top_bytes }
    }

    /// The name the kubelet resolves an app's reference to.
    fn normalized(&self, image: &str) -> String {
        if self.engine == "podman" {
            format!("localhost/{image}")
        } else {
            format!("docker.io/{image}")
        }
    }
}

impl Drop for Family {
    fn drop(&mut self) {
        for (image, _) in &self.apps {
            remove_image(self.engine, image);
        }
        remove_image(self.engine, &self.base);
    }
}

fn build_random(engine: &str, tag: &str, from: &str, file: &str, bytes: usize) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut data = vec![0u8; bytes];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut data).unwrap();
    std::fs::write(dir.path().join(file), data).unwrap();
    std::fs::write(dir.path().join("Dockerfile"), format!("FROM {from}\nCOPY {file} /{file}\n")).unwrap();
    build_ok(engine, &["-q", "-t", tag], dir.path())
}

/// The environment of the runs: where kindload keeps its state, and the cluster's registry
/// once `up` made it (removed with the runs).
struct Runs {
    state: tempfile::TempDir,
    registry: Option<TestRegistry>,
}

impl Runs {
    fn new() -> Runs {
        Runs { state: tempfile::tempdir().unwrap(), registry: None }
    }

    fn command(&self) -> Command {
        match &self.registry {
            Some(registry) => registry.command(),
            None => {
                let mut cmd = kindload_command();
                cmd.env("KINDLOAD_STATE_DIR", self.state.path()).env("CONTAINERS_CONF", podman_containers_conf());
                cmd
            }
        }
    }

    /// Starts `kindload load ARGS` into `cluster` with a JSON report.
    fn start(&self, cluster: &TestCluster, engine: &str, args: &[String]) -> Child {
        self.command()
            .args(["load", "--cluster", &cluster.name, "--provider", &cluster.provider, "--engine", engine])
            .args(["--output", "json"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Starts every run at once and waits for each, killing any still running at the deadline.
    fn all_at_once(&self, cluster: &TestCluster, engine: &str, runs: &[Vec<String>]) -> Vec<Ended> {
        let children: Vec<(String, Child)> =
            runs.iter().map(|args| (args.join(" "), self.start(cluster, engine, args))).collect();
        let started = Instant::now();
        children.into_iter().map(|(args, child)| Ended::wait(args, child, started + DEADLINE)).collect()
    }

    fn up(&mut self, cluster: &TestCluster) {
        let registry = TestRegistry::new(&cluster.provider, format!("{}-registry", cluster.name));
        let up = registry.up(cluster).output().unwrap();
        self.registry = Some(registry);
        assert!(up.status.success(), "registry up: {}", String::from_utf8_lossy(&up.stderr));
    }
}

/// How a run ended.
struct Ended {
    args: String,
    code: Option<i32>,
    hung: bool,
    json: Value,
    stderr: String,
}

impl Ended {
    fn wait(args: String, mut child: Child, deadline: Instant) -> Ended {
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let out = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
        let err = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
        let mut hung = false;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                hung = true;
                child.kill().unwrap();
                break child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let json = serde_json::from_str(&out.join().unwrap()).unwrap_or(Value::Null);
        Ended { args, code: status.code(), hung, json, stderr: err.join().unwrap() }
    }

    fn assert_ok(&self) {
        assert!(!self.hung, "`kindload load {}` never ended (killed after {DEADLINE:?}):\n{}", self.args, self.stderr);
        assert_eq!(self.code, Some(0), "`kindload load {}` failed:\n{}\n{:#}", self.args, self.stderr, self.json);
        assert_matches_schema("load-report.schema.json", &self.json);
        assert_eq!(self.json["ok"], true, "{:#}", self.json);
    }

    /// Bytes the run sent `node`, all images together.
    fn bytes_to(&self, node: &str) -> u64 {
        let images = self.json["images"].as_array().unwrap();
        images
            .iter()
            .flat_map(|i| i["nodes"].as_array().unwrap())
            .filter(|n| n["name"] == node)
            .filter_map(|n| n["bytes"].as_u64())
            .sum()
    }
}

/// Every node answers to every app's name with its id, and holds no leftover.
fn assert_settled(cluster: &TestCluster, family: &Family) {
    for node in &cluster.nodes {
        for (image, id) in &family.apps {
            let name = family.normalized(image);
            assert_eq!(cri_id(cluster, node, &name).as_deref(), Some(id.as_str()), "{node}: {name}");
        }
        let records = cluster.ctr_images(node);
        assert!(!records.contains("import-"), "{node} keeps an import-* record:\n{records}");
        let active = cluster.exec(node, &["ctr", "--namespace=k8s.io", "content", "active"]);
        let active = String::from_utf8_lossy(&active.stdout);
        assert_eq!(active.lines().skip(1).filter(|l| !l.trim().is_empty()).count(), 0, "{node}: {active}");
        let state = cluster.run_state(node);
        assert!(state.is_empty(), "{node} keeps a run's lock, claims or registration:\n{state}");
    }
}

/// Three apps and the first again, all at once; each run loads one image.
fn three_apps_and_one_twice(family: &Family, extra: &[&[&str]]) -> Vec<Vec<String>> {
    let apps = family.apps.iter().map(|(image, _)| image.clone());
    apps.clone()
        .chain(apps.take(1))
        .enumerate()
        .map(|(i, image)| {
            let mut args = vec![image];
            args.extend(extra.get(i).copied().unwrap_or_default().iter().map(|s| s.to_string()));
            args
        })
        .collect()
}

/// Sideload: every run ends, and the base reaches each node once: all runs together send a
/// node the base and each top layer once, not a base per run.
fn sideloads(provider: &'static str, containerd: &'static str, workers: usize) {
    if !engine_available(provider) {
        return;
    }
    let tag = format!("conc{}{}", &provider[..1], containerd.replace('.', ""));
    let cluster = TestCluster::start(&tag, ClusterSpec { provider, containerd, workers, snapshotter: None });
    let family = Family::build(provider, &tag, 3, 8 * MB, MB);
    let runs = Runs::new();
    let ended =
        runs.all_at_once(&cluster, provider, &three_apps_and_one_twice(&family, &[&["--sideload"] as &[&str]; 4]));
    for run in &ended {
        run.assert_ok();
    }
    assert_settled(&cluster, &family);
    let most = (family.base_bytes + 3 * family.top_bytes) as u64 + 256 * 1024;
    for node in &cluster.nodes {
        let sent: u64 = ended.iter().map(|r| r.bytes_to(node)).sum();
        assert!(sent >= (family.base_bytes + 3 * family.top_bytes) as u64, "{node} got {sent} bytes");
        assert!(sent <= most, "{node} got {sent} bytes, more than the base and the tops once ({most})");
    }
}

#[test]
fn parallel_sideloads_on_docker_nodes_with_containerd_2_1() {
    sideloads("docker", "2.1", 2);
}

#[test]
fn parallel_sideloads_on_docker_nodes_with_containerd_1_6() {
    sideloads("docker", "1.6", 1);
}

#[test]
fn parallel_sideloads_from_podman_on_podman_nodes_with_containerd_1_7() {
    sideloads("podman", "1.7", 1);
}

/// Through the registry (two runs and the repeat) beside a sideload (the third app).
fn mixed(provider: &'static str, containerd: &'static str) {
    if !engine_available(provider) {
        return;
    }
    let tag = format!("mix{}{}", &provider[..1], containerd.replace('.', ""));
    let network = TestNetwork::create(provider, &tag);
    let spec = ClusterSpec { provider, containerd, workers: 1, snapshotter: None };
    let cluster = TestCluster::start_on_network(&tag, spec, &network, &[0, 1]);
    let family = Family::build(provider, &tag, 3, 8 * MB, MB);
    let mut runs = Runs::new();
    runs.up(&cluster);
    let ended = runs.all_at_once(&cluster, provider, &three_apps_and_one_twice(&family, &[&[], &[], &["--sideload"]]));
    drop(runs);
    for run in &ended {
        run.assert_ok();
    }
    // the first app is loaded twice: whichever run comes second finds it there
    let first = [&ended[0], &ended[3]].map(|r| r.json["images"][0]["transport"].clone());
    assert!(first.contains(&Value::from("registry")), "{first:?}");
    assert_eq!(ended[1].json["images"][0]["transport"], "registry", "{:#}", ended[1].json);
    assert_eq!(ended[2].json["images"][0]["transport"], "sideload", "{:#}", ended[2].json);
    assert_settled(&cluster, &family);
}

#[test]
fn parallel_loads_through_the_registry_beside_a_sideload_on_docker_nodes_with_containerd_2_1() {
    mixed("docker", "2.1");
}

#[test]
fn parallel_loads_through_the_registry_beside_a_sideload_on_podman_nodes_with_containerd_1_6() {
    mixed("podman", "1.6");
}

/// Eight runs of three images each into five nodes, by sideload or through the registry.
fn eight_runs_into_five_nodes(through_registry: bool) {
    if !engine_available("docker") {
        return;
    }
    let tag = if through_registry { "scalereg" } else { "scaleside" };
    let network = TestNetwork::create("docker", tag);
    let spec = ClusterSpec { provider: "docker", containerd: "2.1", workers: 4, snapshotter: None };
    let cluster = TestCluster::start_on_network(tag, spec, &network, &[0, 1, 2, 3, 4]);
    let family = Family::build("docker", tag, 3, 4 * MB, 256 * 1024);
    let mut runs = Runs::new();
    if through_registry {
        runs.up(&cluster);
    }
    let images: Vec<String> = family.apps.iter().map(|(i, _)| i.clone()).collect();
    let extra: &[&str] = if through_registry { &[] } else { &["--sideload"] };
    let all: Vec<Vec<String>> =
        (0..8).map(|_| images.iter().cloned().chain(extra.iter().map(|s| s.to_string())).collect()).collect();
    let ended = runs.all_at_once(&cluster, "docker", &all);
    drop(runs);
    for run in &ended {
        run.assert_ok();
        assert_eq!(run.json["images"].as_array().unwrap().len(), 3, "{:#}", run.json);
    }
    assert_settled(&cluster, &family);
}

#[test]
fn eight_parallel_runs_of_three_images_into_five_nodes_by_sideload() {
    eight_runs_into_five_nodes(false);
}

#[test]
fn eight_parallel_runs_of_three_images_into_five_nodes_through_the_registry() {
    eight_runs_into_five_nodes(true);
}

#[test]
fn ten_images_from_manifests_in_one_run() {
    if !engine_available("docker") {
        return;
    }
    let cluster = TestCluster::start(
        "tenimgs",
        ClusterSpec { provider: "docker", containerd: "1.7", workers: 1, snapshotter: None },
    );
    let family = Family::build("docker", "tenimgs", 10, 2 * MB, 64 * 1024);
    let manifests: String = family
        .apps
        .iter()
        .enumerate()
        .map(|(i, (image, _))| {
            format!("---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: app{i}\nspec:\n  containers:\n  - name: app\n    image: {image}\n")
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("manifests.yaml");
    std::fs::write(&file, manifests).unwrap();
    let runs = Runs::new();
    let ended = runs.all_at_once(&cluster, "docker", &[vec!["--from-manifests".into(), file.display().to_string()]]);
    ended[0].assert_ok();
    assert_eq!(ended[0].json["images"].as_array().unwrap().len(), 10, "{:#}", ended[0].json);
    assert_settled(&cluster, &family);
}

/// A run that claimed the base on every node, stopped (SIGSTOP) before it sent much, and
/// a second run of another app on the same base, started after it: the cluster, the
/// family, the runs' environment, the stopped run and the second one.
fn behind_a_stopped_claimant(tag: &str, second_args: &[&str]) -> (TestCluster, Family, Runs, Child, Child) {
    let cluster =
        TestCluster::start(tag, ClusterSpec { provider: "docker", containerd: "2.1", workers: 1, snapshotter: None });
    let family = Family::build("docker", tag, 2, 200 * MB, MB);
    let runs = Runs::new();
    let first = runs.start(&cluster, "docker", &[family.apps[0].0.clone(), "--sideload".into()]);
    wait_until("the first run to claim the base on every node", Duration::from_secs(60), || {
        cluster.nodes.iter().all(|n| cluster.run_state(n).lines().any(|l| l.starts_with("claims/")))
    });
    signal(&first, libc::SIGSTOP);
    let mut args = vec![family.apps[1].0.clone(), "--sideload".to_string()];
    args.extend(second_args.iter().map(|a| a.to_string()));
    let second = runs.start(&cluster, "docker", &args);
    (cluster, family, runs, first, second)
}

fn signal(child: &Child, signal: libc::c_int) {
    // SAFETY: kill(2) on a child this test started.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0, "kill({}, {signal})", child.id());
}

/// Whether `node` holds two runs' registrations: the second run's sign that it surveyed there.
fn registered_twice(cluster: &TestCluster, node: &str) -> bool {
    cluster.run_state(node).lines().filter(|l| l.starts_with("runs/")).count() >= 2
}

#[test]
fn a_run_killed_while_another_waits_for_its_base_leaves_that_one_to_send_it() {
    if !engine_available("docker") {
        return;
    }
    let (cluster, family, runs, mut first, second) =
        behind_a_stopped_claimant("killedclaim", &["--stall-timeout", "60"]);
    wait_until("the second run to survey every node", Duration::from_secs(60), || {
        cluster.nodes.iter().all(|n| registered_twice(&cluster, n))
    });
    // time for the second run to send its own layer and wait on the base
    std::thread::sleep(Duration::from_secs(3));
    first.kill().unwrap();
    first.wait().unwrap();
    let second = Ended::wait(family.apps[1].0.clone(), second, Instant::now() + DEADLINE);
    second.assert_ok();
    for node in &cluster.nodes {
        assert!(
            second.bytes_to(node) >= family.base_bytes as u64,
            "the waiting run sent {node} the base the killed one did not: {:#}",
            second.json
        );
    }
    // the killed run's partial ingests go with the next transfer's survey
    let again = runs.all_at_once(&cluster, "docker", &[vec![family.apps[0].0.clone(), "--sideload".into()]]);
    again[0].assert_ok();
    assert_settled(&cluster, &family);
}

#[test]
fn a_run_waiting_on_a_stopped_run_names_it_within_the_stall_limit() {
    if !engine_available("docker") {
        return;
    }
    let started = Instant::now();
    let (cluster, family, runs, mut first, second) =
        behind_a_stopped_claimant("stoppedclaim", &["--stall-timeout", "8"]);
    let second = Ended::wait(family.apps[1].0.clone(), second, Instant::now() + DEADLINE);
    assert!(!second.hung, "{}", second.stderr);
    assert_eq!(second.code, Some(1), "{}\n{:#}", second.stderr, second.json);
    assert!(started.elapsed() < Duration::from_secs(150), "bounded by the stall limit");
    let errors: Vec<&str> =
        second.json["images"][0]["nodes"].as_array().unwrap().iter().filter_map(|n| n["error"].as_str()).collect();
    assert_eq!(errors.len(), cluster.nodes.len(), "every node waited on the stopped run: {:#}", second.json);
    for error in errors {
        assert!(
            error.contains(&format!("pid {}", first.id())) && error.contains("made no progress for 8 s"),
            "names the stopped run and the stall: {error}"
        );
        assert!(error.contains("--stall-timeout"), "says how to allow more: {error}");
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let again = runs.all_at_once(
        &cluster,
        "docker",
        &family.apps.iter().map(|(image, _)| vec![image.clone(), "--sideload".into()]).collect::<Vec<_>>(),
    );
    again.iter().for_each(Ended::assert_ok);
    assert_settled(&cluster, &family);
}
