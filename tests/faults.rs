//! The faults of a day of development, on the real test bed: a run killed while it holds
//! layer claims on the nodes, a node container restarted mid-load, a node whose containerd stops
//! answering. Each ends in bounded time with exit 1 naming the node (or, for the killed
//! run, does not hold up the next), and the next load succeeds and leaves nothing behind.

mod support;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use support::*;

const MB: usize = 1 << 20;

fn kindload_child(cluster: &TestCluster, image: &str, extra: &[&str]) -> Child {
    kindload_command()
        .args(["load", image, "--cluster", &cluster.name, "--provider", &cluster.provider, "--sideload"])
        .args(["--output", "json"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a child with a deadline: its exit code and its output (stdout, stderr).
fn finish(mut child: Child, limit: Duration) -> (Option<i32>, String, String) {
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!("kindload did not end within {limit:?}:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (status.code(), text(&out.stdout), text(&out.stderr))
}

/// Whether a run has claimed layers on `node` (which it does right after its survey there).
fn holds_claims(cluster: &TestCluster, node: &str) -> bool {
    cluster.run_state(node).lines().any(|l| l.starts_with("claims/"))
}

/// No leftover on any node: no lock, claim or registration, no ingest in progress, no
/// `import-*` record.
fn assert_clean(cluster: &TestCluster) {
    for node in &cluster.nodes {
        let state = cluster.run_state(node);
        assert!(state.is_empty(), "{node} keeps a run's state:\n{state}");
        let active = cluster.exec(node, &["ctr", "--namespace=k8s.io", "content", "active"]);
        let active = String::from_utf8_lossy(&active.stdout);
        assert_eq!(active.lines().skip(1).filter(|l| !l.trim().is_empty()).count(), 0, "{node}: {active}");
        assert!(!cluster.ctr_images(node).contains("import-"), "{node} keeps an import-* record");
    }
}

/// A load that must succeed and verify on every node with the image's id.
fn load_ok(cluster: &TestCluster, image: &str, id: &str) {
    let (code, stdout, stderr) =
        finish(kindload_child(cluster, image, &["--stall-timeout", "30"]), Duration::from_secs(120));
    assert_eq!(code, Some(0), "{stderr}\n{stdout}");
    for node in &cluster.nodes {
        assert_eq!(cri_id(cluster, node, &format!("docker.io/{image}")).as_deref(), Some(id), "{node}");
    }
}

/// A two-node containerd 2.1 cluster on `provider` and an image of `bytes` random bytes built
/// in Docker: the cluster, the image's name and its id.
fn setting(provider: &'static str, tag: &str, bytes: usize) -> (TestCluster, String, String) {
    let spec = ClusterSpec { provider, containerd: "2.1", workers: 1, snapshotter: None };
    let cluster = TestCluster::start(tag, spec);
    let image = format!("kl-faults/{tag}-{}:v1", std::process::id());
    build_random_image("docker", &image, bytes);
    let id = sha256_id(&run_ok(engine_command("docker").args(["image", "inspect", "--format", "{{.Id}}", &image])));
    (cluster, image, id)
}

fn signal(pid: &str, signal: libc::c_int) {
    let pid: libc::pid_t = pid.parse().unwrap_or_else(|_| panic!("not a pid: {pid:?}"));
    // SAFETY: kill(2) on the node's containerd, a process this test bed started.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill({pid}, {signal}) failed");
}

fn container_pid(cluster: &TestCluster, node: &str) -> String {
    run_ok(engine_command(&cluster.provider).args(["inspect", "--format", "{{.State.Pid}}", node])).trim().to_string()
}

#[test]
fn a_run_killed_while_it_holds_claims_does_not_hold_up_the_next() {
    if !engine_available("docker") {
        return;
    }
    let (cluster, image, id) = setting("docker", "killedrun", 120 * MB);
    let mut first = kindload_child(&cluster, &image, &[]);
    let node = cluster.nodes.last().unwrap().clone();
    wait_until("the first run to claim layers on the last node", Duration::from_secs(60), || {
        holds_claims(&cluster, &node)
    });
    first.kill().unwrap();
    first.wait().unwrap();
    // the killed run's shells see their stdin close and give the claims back
    wait_for("the killed run's claims and registrations to go", Duration::from_secs(10), || {
        let left: Vec<String> = cluster.nodes.iter().map(|n| cluster.run_state(n)).filter(|s| !s.is_empty()).collect();
        (!left.is_empty()).then(|| format!("still there: {left:?}"))
    });
    load_ok(&cluster, &image, &id);
    assert_clean(&cluster);
    remove_image("docker", &image);
}

fn restarted_mid_load(provider: &'static str) {
    if !engine_available(provider) {
        return;
    }
    let (cluster, image, id) = setting(provider, &format!("restart{}", &provider[..1]), 160 * MB);
    let worker = cluster.nodes[1].clone();
    let load = kindload_child(&cluster, &image, &["--engine", "docker", "--stall-timeout", "20"]);
    // restarted while its import is taking bytes (a restart before the import starts is
    // no fault: the node is back by then, and the load succeeds)
    wait_until("the load's import into the worker", Duration::from_secs(60), || {
        let active = cluster.exec(&worker, &["ctr", "--namespace=k8s.io", "content", "active"]);
        String::from_utf8_lossy(&active.stdout).contains("tar-blobs/kindload-")
    });
    run_ok(engine_command(provider).args(["restart", "--time", "1", &worker]));
    let (code, stdout, stderr) = finish(load, Duration::from_secs(120));
    assert_eq!(code, Some(1), "a node restarted mid-load fails the load:\n{stderr}\n{stdout}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["ok"], false, "{json:#}");
    let row = json["images"][0]["nodes"].as_array().unwrap().iter().find(|n| n["name"] == worker.as_str()).unwrap();
    assert_eq!(row["verified"], false, "{json:#}");
    assert!(row["error"].as_str().unwrap_or_default().contains(&worker), "the error names the node: {row:#}");
    wait_until("containerd in the restarted node", Duration::from_secs(60), || {
        cluster.exec(&worker, &["ctr", "version"]).status.success()
    });
    let (code, _, stderr) = finish(kindload_child(&cluster, &image, &["--engine", "docker"]), Duration::from_secs(120));
    assert_eq!(code, Some(0), "the next load succeeds: {stderr}");
    for node in &cluster.nodes {
        assert_eq!(cri_id(&cluster, node, &format!("docker.io/{image}")).as_deref(), Some(id.as_str()), "{node}");
    }
    assert_clean(&cluster);
    remove_image("docker", &image);
}

#[test]
fn a_docker_node_restarted_mid_load_fails_naming_it_and_the_next_load_succeeds() {
    restarted_mid_load("docker");
}

#[test]
fn a_podman_node_restarted_mid_load_fails_naming_it_and_the_next_load_succeeds() {
    restarted_mid_load("podman");
}

#[test]
fn a_node_whose_containerd_stops_answering_is_a_stall_named_in_bounded_time() {
    if !engine_available("docker") {
        return;
    }
    let (cluster, image, id) = setting("docker", "frozen", 120 * MB);
    let worker = cluster.nodes[1].clone();
    let containerd = container_pid(&cluster, &worker);
    let started = Instant::now();
    let load = kindload_child(&cluster, &image, &["--stall-timeout", "4"]);
    wait_until("the load to claim layers on the worker", Duration::from_secs(60), || holds_claims(&cluster, &worker));
    signal(&containerd, libc::SIGSTOP);
    let (code, stdout, stderr) = finish(load, Duration::from_secs(90));
    signal(&containerd, libc::SIGCONT);
    assert_eq!(code, Some(1), "{stderr}\n{stdout}");
    assert!(started.elapsed() < Duration::from_secs(80), "bounded by the stall limit, not hung");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let row = json["images"][0]["nodes"].as_array().unwrap().iter().find(|n| n["name"] == worker.as_str()).unwrap();
    let error = row["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&worker) && error.contains("made no progress for 4 s"),
        "names the node and the stall: {row:#}"
    );
    assert!(error.contains("--stall-timeout"), "says how to allow more: {error}");
    load_ok(&cluster, &image, &id);
    assert_clean(&cluster);
    remove_image("docker", &image);
}
