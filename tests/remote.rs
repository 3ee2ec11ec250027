//! Engines kindload reaches through a connection, as on macOS and Windows: Podman's remote
//! client talking to `podman system service` (Podman machine's shape), and the docker CLI
//! pointed at another daemon by a Docker context (Docker Desktop's, Colima's, OrbStack's).
//! Each loads by sideload and through the cluster's registry, verified on every node by
//! name and id; a remote engine whose push cannot go through (a service in a network
//! namespace of its own, as a VM's, or a registry cut off) sideloads with a note, and a
//! local engine's failed push still prints the JSON report, `"ok": false`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

const SERVICE_START_TIMEOUT: Duration = Duration::from_secs(30);

/// `podman system service` on a socket in a temporary directory, beside a remote client's
/// containers.conf: stopped on drop. Its idle timeout ends it should the test be killed.
struct PodmanService {
    child: Child,
    socket: PathBuf,
    dir: tempfile::TempDir,
}

/// Where the service runs: on the host's network, or in a network namespace of its own,
/// as in a VM whose loopback is not the host's.
enum Network {
    Host,
    OwnNamespace,
}

impl PodmanService {
    fn start(network: Network) -> PodmanService {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("podman.sock");
        std::fs::write(dir.path().join("client.conf"), "[engine]\nremote = true\n").unwrap();
        let mut command = match network {
            Network::Host => Command::new("podman"),
            Network::OwnNamespace => {
                let mut unshare = Command::new("unshare");
                unshare.args(["--net", "podman"]);
                unshare
            }
        };
        let child = command
            .args(["system", "service", "--time=120", &format!("unix://{}", socket.display())])
            .env("CONTAINERS_CONF", podman_containers_conf())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("podman system service starts");
        let service = PodmanService { child, socket, dir };
        let started = Instant::now();
        loop {
            let answer = run(service.client("podman").args(["info", "--format", "{{.Host.ServiceIsRemote}}"]));
            if answer.status.success() {
                assert_eq!(String::from_utf8_lossy(&answer.stdout).trim(), "true", "the client is not remote");
                break;
            }
            assert!(
                started.elapsed() < SERVICE_START_TIMEOUT,
                "podman's service did not answer on {} within {SERVICE_START_TIMEOUT:?}: {}",
                service.socket.display(),
                text(&answer)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        service
    }

    fn client_env(&self) -> [(&'static str, String); 2] {
        [
            ("CONTAINERS_CONF", self.dir.path().join("client.conf").display().to_string()),
            ("CONTAINER_HOST", format!("unix://{}", self.socket.display())),
        ]
    }

    /// `program` as the remote client runs it.
    fn client(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.envs(self.client_env());
        cmd
    }

    fn kindload(&self, registry: &TestRegistry) -> assert_cmd::Command {
        let mut cmd = registry.kindload();
        cmd.envs(self.client_env());
        cmd
    }

    /// Builds through the remote client; returns the image id.
    fn build(&self, tag: &str, content: &str) -> String {
        let context = tempfile::tempdir().unwrap();
        std::fs::write(context.path().join("content.txt"), content).unwrap();
        std::fs::write(context.path().join("Containerfile"), "FROM scratch\nCOPY content.txt /\n").unwrap();
        run_ok(self.client("podman").args(["build", "--no-cache", "-t", tag]).arg(context.path()));
        let id = run_ok(self.client("podman").args(["image", "inspect", "--format", "{{.Id}}", tag]));
        sha256_id(&id)
    }
}

impl Drop for PodmanService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The registry `kindload registry up` made for `cluster` on `provider`, with its own state
/// directory; removed on drop.
fn registry_up(tag: &str, cluster: &TestCluster, provider: &str) -> TestRegistry {
    let registry = TestRegistry::new(provider, format!("klremote-{tag}-{}", std::process::id()));
    let up = registry.up(cluster).args(["--provider", provider]).output().unwrap();
    assert!(up.status.success(), "registry up: {}", text(&up));
    registry
}

/// `kindload -v load ... --output json IMAGE`: the report (checked against the schema) and stderr.
fn load(
    mut cmd: assert_cmd::Command,
    cluster: &TestCluster,
    engine: &str,
    image: &str,
    extra: &[&str],
) -> (serde_json::Value, String) {
    let out = cmd
        .args(["-v", "load", "--cluster", &cluster.name, "--provider", &cluster.provider, "--engine", engine])
        .args(["--output", "json", image])
        .args(extra)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}), exit {:?}: {}", out.status.code(), text(&out)));
    assert_matches_schema("load-report.schema.json", &json);
    (json, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Every node is verified and reports `transport`, and its CRI answers to each of `names`
/// (the report's names, the kubelet's first) with `id`.
fn verified_everywhere(cluster: &TestCluster, json: &serde_json::Value, names: &[String], transport: &str, id: &Held) {
    assert_eq!(json["ok"], true, "{json:#}");
    assert_eq!(json["images"][0]["names"], serde_json::json!(names), "{json:#}");
    let nodes = json["images"][0]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), cluster.nodes.len(), "{json:#}");
    for node in nodes {
        assert_eq!(node["verified"], true, "{json:#}");
        assert_eq!(node["transport"], transport, "{json:#}");
    }
    for node in &cluster.nodes {
        for name in names {
            assert!(id.on(cluster, node, name), "{node} does not answer to {name} with {id:?}\n{json:#}");
        }
    }
}

/// What a node must hold: CRI's id is the engine's id, except under Docker's containerd
/// store, whose id is the digest of what it saved or pushed (the record's target).
#[derive(Debug)]
enum Held {
    Config(String),
    Target(String),
}

impl Held {
    fn on(&self, cluster: &TestCluster, node: &str, name: &str) -> bool {
        match self {
            Held::Config(id) => cri_id(cluster, node, name).as_deref() == Some(id.as_str()),
            Held::Target(id) => {
                let listing = kindload::resolve::records::parse_ctr_images(&cluster.ctr_images(node));
                listing.iter().any(|r| r.name == name && &r.target == id) && cri_id(cluster, node, name).is_some()
            }
        }
    }
}

#[test]
fn podman_remote_client_sideloads_and_goes_through_the_registry() {
    if !engine_available("podman") || !engine_available("docker") {
        return;
    }
    let service = PodmanService::start(Network::Host);
    let network = TestNetwork::create("docker", "remote-podman");
    let spec = ClusterSpec { provider: "docker", containerd: "2.1", workers: 2, snapshotter: None };
    let cluster = TestCluster::start_on_network("rpodman", spec, &network, &[0, 1, 2]);
    let tag = format!("kl-remote/podman-{}:v1", std::process::id());
    // the kubelet's name for it, and the one Podman gave the build
    let names = [format!("docker.io/{tag}"), format!("localhost/{tag}")];
    let name = &names[0];
    let registry = registry_up("podman", &cluster, "docker");
    let pushed = format!("localhost:{}/{tag}", registry.port);

    // kindload tells the engine is remote
    let doctor = service
        .kindload(&registry)
        .args(["doctor", "--engine", "podman", "--cluster", &cluster.name])
        .output()
        .unwrap();
    let remote = format!("(remote: podman's service at unix://{})", service.socket.display());
    assert!(String::from_utf8_lossy(&doctor.stdout).contains(&remote), "{}", text(&doctor));

    // sideload: the remote client saves, the service exports
    let first = service.build(&tag, "first");
    let (json, _) = load(service.kindload(&registry), &cluster, "podman", &tag, &["--sideload"]);
    verified_everywhere(&cluster, &json, &names, "sideload", &Held::Config(first.clone()));

    // through the registry: the first push of the repository is kindload's, reading the
    // service's export through the client
    let second = service.build(&tag, "second");
    let (json, stderr) = load(service.kindload(&registry), &cluster, "podman", &tag, &[]);
    verified_everywhere(&cluster, &json, &names, "registry", &Held::Config(second.clone()));
    assert_eq!(json["images"][0]["push"]["with"], "own", "{json:#}");
    assert!(!stderr.contains("podman push"), "{stderr}");
    // the next is the service's, to the loopback registry without the client's --cert-dir,
    // which it cannot read
    let again = service.build(&tag, "second again");
    let (json, stderr) = load(service.kindload(&registry), &cluster, "podman", &tag, &[]);
    verified_everywhere(&cluster, &json, &names, "registry", &Held::Config(again.clone()));
    assert_eq!(json["images"][0]["push"]["with"], "engine", "{json:#}");
    assert!(stderr.contains(&format!("podman push --tls-verify=false {pushed}")), "{stderr}");
    assert!(!stderr.contains("--cert-dir"), "{stderr}");

    // an engine whose loopback is not the host's (a VM's) cannot reach the registry: its
    // push fails, and the nodes are sideloaded, with the note, and still verified
    let elsewhere = PodmanService::start(Network::OwnNamespace);
    let isolated = service.build(&tag, "isolated");
    let (json, _) = load(elsewhere.kindload(&registry), &cluster, "podman", &tag, &[]);
    verified_everywhere(&cluster, &json, &names, "sideload", &Held::Config(isolated.clone()));
    let via = format!("podman runs elsewhere (podman's service at unix://{})", elsewhere.socket.display());
    for node in json["images"][0]["nodes"].as_array().unwrap() {
        let note = node["note"].as_str().unwrap_or_default();
        assert!(note.contains(&via) && note.contains(&format!("podman push --tls-verify=false {pushed}")), "{json:#}");
    }
    drop(elsewhere);

    // the registry cut off from the host: kindload cannot reach it either; sideloaded too
    let third = service.build(&tag, "third");
    registry.cut_off(&network);
    let (json, _) = load(service.kindload(&registry), &cluster, "podman", &tag, &[]);
    verified_everywhere(&cluster, &json, &names, "sideload", &Held::Config(third.clone()));
    for node in json["images"][0]["nodes"].as_array().unwrap() {
        let note = node["note"].as_str().unwrap_or_default();
        let via = format!("podman runs elsewhere (podman's service at unix://{})", service.socket.display());
        assert!(note.contains(&via), "{json:#}");
    }

    // the local podman (the same store here) pushing to the cut-off registry fails the
    // load, and the report still comes out, saying so for each node
    let fourth = service.build(&tag, "fourth");
    let out = registry
        .kindload()
        .args(["load", "--cluster", &cluster.name, "--provider", "docker", "--engine", "podman"])
        .args(["--output", "json", &tag])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("a failed push printed no JSON report ({e}): {}", text(&out)));
    assert_matches_schema("load-report.schema.json", &json);
    assert_eq!(json["ok"], false, "{json:#}");
    for node in json["images"][0]["nodes"].as_array().unwrap() {
        assert_eq!(node["action"], "failed", "{json:#}");
        assert!(node["error"].as_str().unwrap().starts_with("no node was changed: pushing"), "{json:#}");
    }
    for node in &cluster.nodes {
        assert!(Held::Config(third.clone()).on(&cluster, node, name), "{node} half-updated");
        assert!(!Held::Config(fourth.clone()).on(&cluster, node, name), "{node}");
    }
    let _ = run(engine_command("podman").args(["image", "rm", "-f", &tag, &pushed]));
    let _ = run(engine_command("podman").args(["image", "rm", "-f"]).args([first, second, isolated, third, fourth]));
}

/// A Docker context in a CLI config of the test's own, naming the second daemon.
struct DockerContext {
    name: String,
    config: tempfile::TempDir,
}

impl DockerContext {
    fn create(host: &str) -> DockerContext {
        let context =
            DockerContext { name: format!("kl-remote-{}", std::process::id()), config: tempfile::tempdir().unwrap() };
        run_ok(context.docker().args(["context", "create", &context.name, "--docker", &format!("host={host}")]));
        context
    }

    fn docker(&self) -> Command {
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_CONFIG", self.config.path()).env_remove("DOCKER_HOST").env_remove("DOCKER_CONTEXT");
        cmd
    }

    fn config_dir(&self) -> &Path {
        self.config.path()
    }
}

#[test]
fn docker_context_sideloads_and_goes_through_the_registry() {
    if !engine_available(CONTAINERD_STORE) || !engine_available("podman") {
        return;
    }
    let store_host = engine_cmd(CONTAINERD_STORE)[2].clone();
    let context = DockerContext::create(&store_host);
    // The nodes are on Podman: the docker CLI, pointed at the second daemon, is the engine alone.
    let network = TestNetwork::create("podman", "remote-docker");
    let spec = ClusterSpec { provider: "podman", containerd: "1.7", workers: 1, snapshotter: None };
    let cluster = TestCluster::start_on_network("rdocker", spec, &network, &[0, 1]);
    let tag = format!("kl-remote/docker-{}:v1", std::process::id());
    let names = [format!("docker.io/{tag}")];
    let registry = registry_up("docker", &cluster, "podman");
    let pushed = format!("localhost:{}/{tag}", registry.port);
    let with_context = |how: &str| {
        let mut cmd = registry.kindload();
        cmd.env("DOCKER_CONFIG", context.config_dir());
        if how == "DOCKER_CONTEXT" {
            cmd.env("DOCKER_CONTEXT", &context.name);
        }
        cmd
    };

    // kindload tells the engine is remote
    let doctor = with_context("DOCKER_CONTEXT")
        .args(["doctor", "--engine", "docker", "--cluster", &cluster.name])
        .output()
        .unwrap();
    let remote = format!("remote: docker context {} at {store_host})", context.name);
    assert!(String::from_utf8_lossy(&doctor.stdout).contains(&remote), "{}", text(&doctor));

    // sideload, the context chosen by DOCKER_CONTEXT
    let first = sha256_id(&build_image(CONTAINERD_STORE, &tag, "first"));
    let (json, _) = load(with_context("DOCKER_CONTEXT"), &cluster, "docker", &tag, &["--sideload"]);
    verified_everywhere(&cluster, &json, &names, "sideload", &Held::Target(first.clone()));

    // through the registry, the context the CLI config's current one
    run_ok(context.docker().args(["context", "use", &context.name]));
    let second = sha256_id(&build_image(CONTAINERD_STORE, &tag, "second"));
    let (json, stderr) = load(with_context("config"), &cluster, "docker", &tag, &[]);
    verified_everywhere(&cluster, &json, &names, "registry", &Held::Target(second.clone()));
    assert!(stderr.contains(&format!("docker push {pushed}")), "{stderr}");

    // no way through the registry: sideloaded, with the note naming the context
    let third = sha256_id(&build_image(CONTAINERD_STORE, &tag, "third"));
    registry.cut_off(&network);
    let (json, _) = load(with_context("config"), &cluster, "docker", &tag, &[]);
    verified_everywhere(&cluster, &json, &names, "sideload", &Held::Target(third.clone()));
    let note = json["images"][0]["nodes"][0]["note"].as_str().unwrap_or_default();
    assert!(
        note.contains(&format!("docker runs elsewhere (docker context {} at {store_host})", context.name)),
        "{json:#}"
    );
    let _ = run(engine_command(CONTAINERD_STORE).args(["image", "rm", "-f", &tag, &pushed]));
    let _ = run(engine_command(CONTAINERD_STORE).args(["image", "rm", "-f"]).args([first, second, third]));
}

#[test]
fn a_docker_context_that_does_not_exist_is_named_with_its_fix() {
    if !engine_available("docker") {
        return;
    }
    let config = tempfile::tempdir().unwrap();
    let name = format!("kl-missing-{}", std::process::id());
    let out = kindload()
        .env("DOCKER_CONFIG", config.path())
        .env("DOCKER_CONTEXT", &name)
        .args(["load", "--engine", "docker", "--cluster", "kl-none", "app:dev"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("docker does not answer: its context {name} (from DOCKER_CONTEXT) does not exist")),
        "{stderr}"
    );
    assert!(stderr.contains("or `unset DOCKER_CONTEXT`"), "{stderr}");
    assert!(!stderr.contains("/var/run/docker.sock"), "the default socket was not what failed: {stderr}");
}
