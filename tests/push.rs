//! The push to the cluster's registry: kindload's own push of the engine's export or the
//! engine's push, picked per engine (Docker's classic store: the engine's, or kindload's with
//! CI=true; its containerd store: the engine's; Podman: kindload's while the registry holds no
//! version of the repository, Podman's after) and overridden by KINDLOAD_PUSH or kindload.yaml.
//! Either way a first load and a reload are verified on every node, the report says which push
//! and why, and the registry's access log shows no blob uploaded twice: not by a reload, not
//! by the engine's push after kindload's, not for an unchanged image pushed again.

mod support;

use std::collections::HashMap;
use std::path::Path;

use support::*;

fn engine_flag(source: &str) -> &'static str {
    if source == "podman" {
        "podman"
    } else {
        "docker"
    }
}

/// Builds `tag` FROM `base` with a top layer of `content`; returns the engine's id.
fn build_on(source: &str, base: &str, tag: &str, content: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("top.txt"), content).unwrap();
    std::fs::write(dir.path().join("Dockerfile"), format!("FROM {base}\nCOPY top.txt /top.txt\n")).unwrap();
    build_ok(source, &["-t", tag], dir.path());
    run_ok(engine_command(source).args(["image", "inspect", "--format", "{{.Id}}", tag])).trim().to_string()
}

/// A base of 2 MiB of random bytes, shared by every version of the test's image.
fn build_base(source: &str, tag: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut data = std::fs::File::create(dir.path().join("base.bin")).unwrap();
    let mut urandom = std::fs::File::open("/dev/urandom").unwrap();
    std::io::copy(&mut std::io::Read::take(&mut urandom, 2 << 20), &mut data).unwrap();
    std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\nCOPY base.bin /base.bin\n").unwrap();
    build_ok(source, &["-t", tag], Path::new(dir.path()));
}

/// Every blob upload the registry completed so far, by digest (its access log's `PUT
/// .../blobs/uploads/...?...digest=`): how often each was sent. The engine copies the log
/// from the container a moment after it is written: it is read until two readings 0.2 s
/// apart agree (at most 3 s).
fn uploads(registry: &TestRegistry) -> HashMap<String, usize> {
    let mut last = parse_uploads(&registry.log());
    for _ in 0..15 {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let now = parse_uploads(&registry.log());
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("the registry's access log of {} kept changing for 3 s", registry.name);
}

fn parse_uploads(log: &str) -> HashMap<String, usize> {
    let mut sent = HashMap::new();
    for line in log.lines().filter(|l| l.contains("\"PUT /v2/") && l.contains("/blobs/uploads/")) {
        let Some(at) = line.find("digest=") else { continue };
        let digest: String = line[at + 7..]
            .replace("%3A", ":")
            .replace("%3a", ":")
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == ':')
            .collect();
        *sent.entry(digest).or_default() += 1;
    }
    sent
}

fn total(sent: &HashMap<String, usize>) -> usize {
    sent.values().sum()
}

fn assert_none_twice(sent: &HashMap<String, usize>, what: &str) {
    let twice: Vec<_> = sent.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "{what}: blobs uploaded more than once: {twice:?}");
}

/// One test's cluster (control plane and a worker, both trusting the registry) and registry.
struct Setting {
    source: &'static str,
    tag: String,
    cluster: TestCluster,
    registry: TestRegistry,
    base: String,
    _network: TestNetwork,
}

impl Setting {
    fn new(source: &'static str, provider: &'static str, tag: &str) -> Setting {
        let network = TestNetwork::create(provider, tag);
        let spec = ClusterSpec { provider, containerd: "2.1", workers: 1, snapshotter: None };
        let cluster = TestCluster::start_on_network(tag, spec, &network, &[0, 1]);
        let registry = TestRegistry::new(provider, format!("klpush-{}-{tag}", std::process::id()));
        let up = registry.up(&cluster).output().unwrap();
        assert!(up.status.success(), "{}", text(&up));
        let base = format!("kl-push/base-{tag}-{}:1", std::process::id());
        build_base(source, &base);
        Setting { source, tag: tag.to_string(), cluster, registry, base, _network: network }
    }

    /// `kindload load --output json` with `env` set; must succeed and prove every node.
    fn load(&self, image: &str, env: &[(&str, &str)]) -> serde_json::Value {
        let mut cmd = self.registry.kindload();
        if self.source == CONTAINERD_STORE {
            cmd.env("DOCKER_HOST", &engine_cmd(CONTAINERD_STORE)[2]);
        }
        for (key, value) in env {
            cmd.env(key, value);
        }
        let json = load_report(cmd, &self.cluster, engine_flag(self.source), image, &[]);
        for node in json["images"][0]["nodes"].as_array().unwrap() {
            assert_eq!(node["verified"], true, "{json:#}");
        }
        assert_eq!(json["images"][0]["nodes"].as_array().unwrap().len(), self.cluster.nodes.len());
        json
    }

    /// Loads `image` and checks the push the report names.
    fn load_by(&self, image: &str, env: &[(&str, &str)], with: &str, why: &str) -> serde_json::Value {
        let json = self.load(image, env);
        let push = &json["images"][0]["push"];
        assert_eq!(push["with"], with, "{json:#}");
        assert!(push["why"].as_str().unwrap().contains(why), "{json:#}");
        for node in json["images"][0]["nodes"].as_array().unwrap().iter().filter(|n| n["action"] != "skipped") {
            assert_eq!(node["transport"], "registry", "{json:#}");
        }
        json
    }

    /// Removes every name of `image` from the worker, as `crictl rmi` does, so the next load
    /// pushes (and pulls) it again.
    fn forget_on_worker(&self, image: &str) {
        let worker = &self.cluster.nodes[1];
        let listing = self.cluster.ctr_images(worker);
        let repo = image.split(':').next().unwrap();
        let names: Vec<&str> = listing
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.contains(repo) || n.starts_with("sha256:"))
            .collect();
        for name in names {
            self.cluster.exec(worker, &["ctr", "-n", "k8s.io", "images", "rm", "--sync", name]);
        }
    }

    fn app(&self, name: &str) -> String {
        format!("kl-push/{name}-{}-{}:v1", self.tag, std::process::id())
    }
}

impl Drop for Setting {
    fn drop(&mut self) {
        remove_image(self.source, &self.base);
    }
}

/// The default push for `source` (`with`, saying `why`): a first load, a reload of a changed
/// top layer, and the unchanged image pushed again for a node that lost it; then the other
/// push asked for by KINDLOAD_PUSH, followed by the default push, reusing what it sent.
/// `reuses`: whether the default push reuses what the other one sent (Podman's and the
/// containerd store's do; Docker's classic store re-sends every layer it did not push itself,
/// which is why its default is its own push outside CI).
/// `first` is the push picked while the registry holds no version of the repository, `after`
/// the one picked once it does (they differ for Podman only).
fn story(
    source: &'static str,
    provider: &'static str,
    tag: &str,
    first: (&str, &str),
    after: (&str, &str),
    ci: bool,
    reuses: bool,
) {
    let s = Setting::new(source, provider, tag);
    let env: &[(&str, &str)] = if ci { &[("CI", "true")] } else { &[] };
    let app = s.app("app");
    build_on(source, &s.base, &app, "first");
    let json = s.load_by(&app, env, first.0, first.1);
    if first.0 == "own" {
        assert!(json["images"][0]["push"]["blobs_sent"].as_u64().unwrap() >= 3, "{json:#}");
    }
    let sent_first = uploads(&s.registry);
    assert_none_twice(&sent_first, "first load");

    // a changed top layer: only it and the config go up
    build_on(source, &s.base, &app, "second");
    s.load_by(&app, env, after.0, after.1);
    let second = uploads(&s.registry);
    assert_none_twice(&second, "reload");
    assert!(total(&second) - total(&sent_first) <= 2, "the reload sent more than the top layer and config: {second:?}");

    // unchanged, pushed again for a node that lost it: nothing sent
    s.forget_on_worker(&app);
    let json = s.load_by(&app, env, after.0, after.1);
    if after.0 == "own" {
        assert_eq!(json["images"][0]["push"]["blobs_sent"], 0, "{json:#}");
    }
    assert_eq!(uploads(&s.registry), second, "the unchanged image's blobs were sent again");

    // the other push, asked for; then the default push of a changed image reuses its blobs
    // (on a base of its own, which the registry has not had yet)
    let other = if first.0 == "own" { "engine" } else { "own" };
    let asked = s.app("asked");
    let base = format!("{}-asked", s.base);
    build_base(source, &base);
    build_on(source, &base, &asked, "asked first");
    let setting = [("KINDLOAD_PUSH", other)];
    s.load_by(&asked, &setting, other, &format!("KINDLOAD_PUSH={other} asks for it"));
    let before = uploads(&s.registry);
    build_on(source, &base, &asked, "asked second");
    s.load_by(&asked, env, after.0, after.1);
    let sent = uploads(&s.registry);
    if reuses {
        assert_none_twice(&sent, "the default push after the other one");
        assert!(total(&sent) - total(&before) <= 2, "the push after the other one sent again what it sent: {sent:?}");
    } else {
        assert!(total(&sent) - total(&before) > 2, "Docker's classic store reused layers it did not push: {sent:?}");
    }

    // kindload.yaml asks too, below the environment
    let project = tempfile::tempdir().unwrap();
    let config = project.path().join("kindload.yaml");
    std::fs::write(&config, format!("push: {other}\n")).unwrap();
    build_on(source, &base, &asked, "asked third");
    let config = config.to_str().unwrap();
    s.load_by(&asked, &[("KINDLOAD_CONFIG", config)], other, &format!("`push: {other}` in kindload.yaml"));
    build_on(source, &base, &asked, "asked fourth");
    let flag = [("KINDLOAD_CONFIG", config), ("KINDLOAD_PUSH", first.0)];
    s.load_by(&asked, &flag, first.0, &format!("KINDLOAD_PUSH={} asks for it", first.0));

    remove_image(source, &base);
    for image in [&app, &asked] {
        remove_image(source, image);
        remove_image(source, &format!("{}/{image}", s.registry.host()));
    }
}

#[test]
fn docker_classic_store_pushes_with_docker() {
    if !engine_available("docker") {
        return;
    }
    let engine = ("engine", "Docker's classic store trusts only layers it pushed");
    story("docker", "docker", "pushdk", engine, engine, false, false);
}

#[test]
fn docker_classic_store_under_ci_pushes_with_kindload() {
    if !engine_available("docker") {
        return;
    }
    story("docker", "docker", "pushci", ("own", "CI is set"), ("own", "CI is set"), true, false);
}

#[test]
fn docker_containerd_store_pushes_with_docker() {
    if !engine_available(CONTAINERD_STORE) || !engine_available("podman") {
        return;
    }
    let engine = ("engine", "containerd store pushes the compressed layers");
    story(CONTAINERD_STORE, "podman", "pushcs", engine, engine, false, true);
}

#[test]
fn podman_pushes_first_with_kindload_then_with_podman() {
    if !engine_available("podman") || !engine_available("docker") {
        return;
    }
    let first = ("own", "the registry holds no version yet");
    story("podman", "docker", "pushpm", first, ("engine", "the registry holds an earlier version"), false, true);
}

/// A bad KINDLOAD_PUSH is a usage error naming the values, before anything is done.
#[test]
fn a_bad_push_setting_is_exit_2() {
    let out = kindload().env("KINDLOAD_PUSH", "fast").args(["load", "app:dev"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("own") && text(&out).contains("engine"), "{}", text(&out));
}
