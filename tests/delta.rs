//! The inner loop on the real test bed: a reload sends each node only the layers it lacks
//! (judged per node, from what its containerd holds), leaves no `import-*` record and no
//! superseded image behind, and an archive whose names and contents disagree is refused.

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use support::{
    cri_id, engine_available, engine_cmd, engine_command, kindload, remove_image, run_ok, save_image, sha256_id,
    ClusterSpec, TestCluster, CONTAINERD_STORE,
};

const MB: usize = 1 << 20;

/// A base image of two random layers and apps built on it, each with its own random top
/// layer: the apps share the base layers byte for byte.
struct Family {
    engine: &'static str,
    base: String,
    prefix: String,
}

impl Family {
    fn new(engine: &'static str, prefix: &str) -> Family {
        let base = format!("kl-test/{prefix}-base:1");
        build(engine, &base, "scratch", &[("a.bin", 2 * MB), ("b.bin", 2 * MB)]);
        Family { engine, base, prefix: prefix.to_string() }
    }

    /// Builds `<prefix>-<name>:<tag>` on the base with a fresh random top layer; its id.
    fn app(&self, name: &str, tag: &str, top: usize) -> (String, String) {
        let image = format!("kl-test/{}-{name}:{tag}", self.prefix);
        let from = if self.engine == "podman" { format!("localhost/{}", self.base) } else { self.base.clone() };
        let id = build(self.engine, &image, &from, &[("top.bin", top)]);
        (image, sha256_id(&id))
    }

    fn remove(&self, images: &[&str]) {
        for image in images.iter().copied().chain([self.base.as_str()]) {
            remove_image(self.engine, image);
        }
    }
}

/// Builds FROM `from` with one COPY (one layer) per random file; returns the engine's id.
fn build(engine: &str, tag: &str, from: &str, files: &[(&str, usize)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut dockerfile = format!("FROM {from}\n");
    for (name, size) in files {
        let mut data = vec![0u8; *size];
        let mut urandom = std::fs::File::open("/dev/urandom").unwrap();
        std::io::Read::read_exact(&mut urandom, &mut data).unwrap();
        std::fs::write(dir.path().join(name), data).unwrap();
        dockerfile.push_str(&format!("COPY {name} /{name}\n"));
    }
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    support::build_ok(engine, &["-q", "-t", tag], dir.path());
    run_ok(engine_command(engine).args(["image", "inspect", "--format", "{{.Id}}", tag])).trim().to_string()
}

struct Run {
    code: Option<i32>,
    json: Value,
    stderr: String,
}

fn load_with(cmd: &mut assert_cmd::Command, args: &[&str], stdin: Option<Vec<u8>>) -> Run {
    cmd.arg("load").args(args).args(["--output", "json"]);
    if let Some(bytes) = stdin {
        cmd.write_stdin(bytes);
    }
    let out = cmd.output().unwrap();
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    if json != Value::Null {
        support::assert_matches_schema("load-report.schema.json", &json);
    }
    Run { code: out.status.code(), json, stderr: String::from_utf8_lossy(&out.stderr).into_owned() }
}

fn load(args: &[&str]) -> Run {
    load_with(&mut kindload(), args, None)
}

/// The report's row for `node` of the first image.
fn row<'a>(run: &'a Run, node: &str) -> &'a Value {
    run.json["images"][0]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == node)
        .unwrap_or_else(|| panic!("no row for {node}: {:#}", run.json))
}

fn assert_verified(run: &Run) {
    assert_eq!(run.code, Some(0), "{}\n{:#}", run.stderr, run.json);
    for image in run.json["images"].as_array().unwrap() {
        for node in image["nodes"].as_array().unwrap() {
            assert_eq!(node["verified"], true, "{node:#}");
        }
    }
}

fn names_on(cluster: &TestCluster, node: &str) -> BTreeSet<String> {
    cluster.ctr_images(node).lines().skip(1).filter_map(|l| l.split_whitespace().next()).map(String::from).collect()
}

fn no_import_records(cluster: &TestCluster) {
    for node in &cluster.nodes {
        let listing = cluster.ctr_images(node);
        assert!(!listing.contains("import-"), "{node} keeps an import-* record:\n{listing}");
    }
}

/// Layer blobs of `image`'s manifest on `node` (what `ctr content rm` would discard).
fn layer_blobs(cluster: &TestCluster, node: &str, name: &str) -> Vec<String> {
    let listing = kindload::resolve::records::parse_ctr_images(&cluster.ctr_images(node));
    let target = &listing.iter().find(|r| r.name == name).unwrap().target;
    let out = cluster.exec(node, &["ctr", "-n", "k8s.io", "content", "get", target]);
    let manifest: Value = serde_json::from_slice(&out.stdout).unwrap();
    manifest["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()).collect()
}

/// One cluster, four nodes in four states, one reload: each node receives what it lacks.
fn four_nodes(containerd: &'static str) {
    if !engine_available("docker") {
        return;
    }
    let cluster = TestCluster::start(
        &format!("delta-{containerd}"),
        ClusterSpec { provider: "docker", containerd, workers: 3, snapshotter: None },
    );
    let c = cluster.name.as_str();
    let n = &cluster.nodes;
    let family = Family::new("docker", c);
    let (v1, _) = family.app("app", "v1", MB);
    let (other, _) = family.app("other", "v1", MB);
    // n[0]: nothing. n[1]: the previous version. n[2]: the base layers under another name.
    // n[3]: the previous version, its layer blobs discarded after unpacking, as kind's
    // containerd config does for pulled images.
    assert_verified(&load(&[&v1, "--cluster", c, "--nodes", &format!("{},{}", n[1], n[3])]));
    assert_verified(&load(&[&other, "--cluster", c, "--nodes", &n[2]]));
    let normalized = format!("docker.io/{v1}");
    let blobs = layer_blobs(&cluster, &n[3], &normalized);
    let mut rm = vec!["ctr", "-n", "k8s.io", "content", "rm"];
    rm.extend(blobs.iter().map(String::as_str));
    assert!(cluster.exec(&n[3], &rm).status.success());
    let left = String::from_utf8_lossy(&cluster.exec(&n[3], &["ctr", "-n", "k8s.io", "content", "ls", "-q"]).stdout)
        .into_owned();
    assert!(blobs.iter().all(|b| !left.contains(b.as_str())), "blobs discarded:\n{left}");

    // The same tag, a new 1 MB top layer on the shared 4 MB base.
    let (v2, v2_id) = family.app("app", "v1", MB);
    assert_eq!(v2, v1);
    let run = load(&[&v2, "--cluster", c]);
    assert_verified(&run);
    let full = row(&run, &n[0]);
    assert_eq!(full["action"], "loaded");
    assert!(full["bytes"].as_u64().unwrap() > 5 * MB as u64, "{full:#}");
    assert_eq!(full["bytes_present"], 0, "{full:#}");
    for node in &n[1..] {
        let r = row(&run, node);
        assert_eq!(r["action"], "loaded", "{r:#}");
        let bytes = r["bytes"].as_u64().unwrap();
        assert!(bytes > MB as u64 && bytes < (MB + 64 * 1024) as u64, "{node} received only the top layer: {r:#}");
        assert!(r["bytes_present"].as_u64().unwrap() >= 4 * MB as u64, "{r:#}");
    }
    for node in n {
        assert_eq!(cri_id(&cluster, node, &normalized).as_deref(), Some(v2_id.as_str()), "{node}");
    }
    no_import_records(&cluster);
    // A second run finds everything in place and moves nothing.
    let again = load(&[&v2, "--cluster", c]);
    assert_verified(&again);
    assert!(n.iter().all(|node| row(&again, node)["action"] == "skipped"), "{:#}", again.json);
    family.remove(&[&v1, &other]);
}

#[test]
fn four_nodes_containerd_1_6() {
    four_nodes("1.6");
}

#[test]
fn four_nodes_containerd_1_7() {
    four_nodes("1.7");
}

#[test]
fn four_nodes_containerd_2_1() {
    four_nodes("2.1");
}

/// Every source format reloads by delta: Docker's classic store, Podman, Docker's
/// containerd store, an archive file and stdin.
#[test]
fn every_source_reloads_by_delta() {
    if !engine_available("docker") || !engine_available("podman") || !engine_available(CONTAINERD_STORE) {
        return;
    }
    let cluster = TestCluster::start(
        "delta-src",
        ClusterSpec { provider: "podman", containerd: "2.1", workers: 0, snapshotter: None },
    );
    let c = cluster.name.clone();
    let node = cluster.control_plane().to_string();
    let store_host = engine_cmd(CONTAINERD_STORE)[2].clone();
    let dir = tempfile::tempdir().unwrap();
    for engine in ["docker", "podman", CONTAINERD_STORE, "file", "stdin"] {
        let builder = match engine {
            "file" | "stdin" => "docker",
            e => e,
        };
        let family = Family::new(builder, &format!("{c}-{}", engine.replace('-', "")));
        let reload = |first: bool| -> (Run, String, String) {
            let (image, id) = family.app("app", "v1", MB);
            let mut cmd = kindload();
            let run = match engine {
                "docker" | "podman" => load_with(&mut cmd, &[&image, "--cluster", &c, "--engine", engine], None),
                CONTAINERD_STORE => {
                    cmd.env("DOCKER_HOST", &store_host);
                    load_with(&mut cmd, &[&image, "--cluster", &c, "--engine", "docker", "--provider", "podman"], None)
                }
                "file" => {
                    let file = dir.path().join(format!("{first}.tar"));
                    std::fs::write(&file, save_image(builder, &image)).unwrap();
                    load_with(&mut cmd, &["--archive", file.to_str().unwrap(), "--cluster", &c], None)
                }
                _ => {
                    load_with(&mut cmd, &["--archive", "-", "--cluster", &c, &image], Some(save_image(builder, &image)))
                }
            };
            (run, image, id)
        };
        let (first, _, _) = reload(true);
        assert_verified(&first);
        let (second, image, id) = reload(false);
        assert_verified(&second);
        let r = row(&second, &node);
        let bytes = r["bytes"].as_u64().unwrap();
        // The top layer, compressed or not, and the small metadata: never the 4 MB base.
        assert!(bytes < (MB + 256 * 1024) as u64, "{engine}: the base layers were sent again: {r:#}");
        assert!(r["bytes_present"].as_u64().unwrap() >= 2 * MB as u64, "{engine}: {r:#}");
        let normalized = format!("docker.io/{image}");
        if engine != CONTAINERD_STORE {
            assert_eq!(cri_id(&cluster, &node, &normalized).as_deref(), Some(id.as_str()), "{engine}");
        }
        family.remove(&[&image]);
    }
    no_import_records(&cluster);
}

/// A day of `skaffold dev`: 20 reloads of an image whose top layer changes each time
/// leave one version of it, and the node's disk holds one version plus at most one
/// extra copy of the changing layer.
#[test]
fn twenty_reloads_leave_one_version() {
    if !engine_available("docker") {
        return;
    }
    let cluster = TestCluster::start(
        "reloads",
        ClusterSpec { provider: "docker", containerd: "2.1", workers: 0, snapshotter: None },
    );
    let c = cluster.name.as_str();
    let node = cluster.control_plane();
    let family = Family::new("docker", c);
    let top = 2 * MB;
    let disk = || -> u64 {
        let out = cluster.exec(node, &["du", "-sk", "/var/lib/containerd"]);
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace().next().unwrap().parse::<u64>().unwrap() * 1024
    };
    let (image, _) = family.app("app", "dev", top);
    assert_verified(&load(&[&image, "--cluster", c]));
    let after_first = disk();
    let mut last_id = String::new();
    for _ in 0..20 {
        let (_, id) = family.app("app", "dev", top);
        assert_verified(&load(&[&image, "--cluster", c]));
        last_id = id;
    }
    let after_twenty = disk();
    let growth = after_twenty.saturating_sub(after_first);
    assert!(
        growth <= (top + top / 2) as u64,
        "20 reloads grew containerd's disk by {growth} bytes: more than one extra copy of the {top}-byte layer"
    );
    let listing = kindload::resolve::records::parse_ctr_images(&cluster.ctr_images(node));
    let normalized = format!("docker.io/{image}");
    let record = listing.iter().find(|r| r.name == normalized).unwrap();
    assert!(
        listing.iter().all(|r| r.target == record.target),
        "only the current version is left:\n{}",
        cluster.ctr_images(node)
    );
    assert_eq!(cri_id(&cluster, node, &normalized), Some(last_id));
    no_import_records(&cluster);
    family.remove(&[&image]);
}

/// `--keep-superseded` keeps the previous version; `--full` sends every layer again.
#[test]
fn keep_superseded_and_full() {
    if !engine_available("docker") {
        return;
    }
    let cluster = TestCluster::start(
        "keepfull",
        ClusterSpec { provider: "docker", containerd: "1.6", workers: 0, snapshotter: None },
    );
    let c = cluster.name.as_str();
    let node = cluster.control_plane();
    let family = Family::new("docker", c);
    let (image, old_id) = family.app("app", "dev", MB);
    assert_verified(&load(&[&image, "--cluster", c]));
    let (_, second_id) = family.app("app", "dev", MB);
    let run = load(&[&image, "--cluster", c, "--keep-superseded", "--full"]);
    assert_verified(&run);
    assert!(row(&run, node)["bytes"].as_u64().unwrap() > 5 * MB as u64, "--full sends the base too: {:#}", run.json);
    assert_eq!(row(&run, node)["bytes_present"], 0);
    assert!(names_on(&cluster, node).contains(&old_id), "the previous version is kept: {:?}", names_on(&cluster, node));
    family.app("app", "dev", MB);
    assert_verified(&load(&[&image, "--cluster", c]));
    let names = names_on(&cluster, node);
    assert!(!names.contains(&second_id), "the version this load replaced is removed: {names:?}");
    assert!(names.contains(&old_id), "what --keep-superseded kept stays: {names:?}");
    family.remove(&[&image]);
}

/// The false success: an archive whose config bytes do not hash to the digest its name
/// claims, made by editing a `docker save` archive, while the nodes hold the image that
/// name belongs to. It is refused before any node is touched.
#[test]
fn an_archive_whose_names_and_contents_disagree_is_refused() {
    if !engine_available("docker") {
        return;
    }
    let cluster = TestCluster::start(
        "forged",
        ClusterSpec { provider: "docker", containerd: "1.7", workers: 1, snapshotter: None },
    );
    let c = cluster.name.as_str();
    let family = Family::new("docker", c);
    let (image, id) = family.app("app", "v1", MB);
    assert_verified(&load(&[&image, "--cluster", c]));

    let dir = tempfile::tempdir().unwrap();
    let unpacked = dir.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    let original = dir.path().join("original.tar");
    std::fs::write(&original, save_image("docker", &image)).unwrap();
    run_ok(std::process::Command::new("tar").arg("-xf").arg(&original).arg("-C").arg(&unpacked));
    let config = unpacked.join(format!("{}.json", id.trim_start_matches("sha256:")));
    let edited = std::fs::read_to_string(&config).unwrap().replacen("\"architecture\"", "\"architecture\" ", 1);
    std::fs::write(&config, edited).unwrap();
    let forged = dir.path().join("forged.tar");
    tar_dir(&unpacked, &forged);

    let before: Vec<BTreeSet<String>> = cluster.nodes.iter().map(|n| names_on(&cluster, n)).collect();
    let run = load(&["--archive", forged.to_str().unwrap(), "--cluster", c]);
    assert_eq!(run.code, Some(2), "{}\n{:#}", run.stderr, run.json);
    assert!(run.stderr.contains("does not hash to the digest its name claims"), "{}", run.stderr);
    assert_eq!(run.json["ok"], false, "{:#}", run.json);
    assert_eq!(run.json["images"], serde_json::json!([]), "nothing was loaded: {:#}", run.json);
    assert!(
        run.json["error"].as_str().unwrap().contains("does not hash to the digest its name claims"),
        "{:#}",
        run.json
    );
    let after: Vec<BTreeSet<String>> = cluster.nodes.iter().map(|n| names_on(&cluster, n)).collect();
    assert_eq!(before, after, "no node was touched");
    // The same bytes on stdin are refused too (nodes get no image record).
    let run = load_with(&mut kindload(), &["--archive", "-", "--cluster", c], Some(std::fs::read(&forged).unwrap()));
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("does not hash"), "{}", run.stderr);
    let after: Vec<BTreeSet<String>> = cluster.nodes.iter().map(|n| names_on(&cluster, n)).collect();
    assert_eq!(before, after, "no node gained or lost an image record");
    family.remove(&[&image]);
}

fn tar_dir(dir: &Path, out: &Path) {
    let entries: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    run_ok(std::process::Command::new("tar").arg("-cf").arg(out).arg("-C").arg(dir).args(entries));
}

/// A docker-archive names layers by an id, not a digest: a node that holds some of them
/// is told the others apart by size, and a guess the bytes prove wrong (a new layer the
/// size of a held one) is corrected by a second pass, never by a wrong image.
#[test]
fn a_wrong_size_guess_is_corrected_by_a_second_pass() {
    if !engine_available("docker") {
        return;
    }
    let cluster = TestCluster::start(
        "guess",
        ClusterSpec { provider: "docker", containerd: "1.6", workers: 0, snapshotter: None },
    );
    let c = cluster.name.as_str();
    let node = cluster.control_plane();
    let family = Family::new("docker", c);
    let (image, _) = family.app("app", "v1", MB);
    assert_verified(&load(&[&image, "--cluster", c]));
    // The new top layer has the size of each base layer the node holds. The guess is needed
    // only while a held layer is still to come, so the top must not be the archive's last layer
    // (layers stand in the order of their ids): build again until it is not.
    let mut id = String::new();
    for _ in 0..20 {
        id = family.app("app", "v1", 2 * MB).1;
        if !top_layer_comes_last(&save_image("docker", &image)) {
            break;
        }
    }
    let out = kindload().args(["load", &image, "--cluster", c, "--output", "json", "-v"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stderr}\n{json:#}");
    assert_eq!(stderr.matches(" docker save ").count(), 2, "a second export: {stderr}");
    let r = &json["images"][0]["nodes"][0];
    assert_eq!(r["verified"], true, "{r:#}");
    let bytes = r["bytes"].as_u64().unwrap();
    assert!(bytes > 2 * MB as u64 && bytes < (2 * MB + 64 * 1024) as u64, "only the new layer was sent: {r:#}");
    assert_eq!(cri_id(&cluster, node, &format!("docker.io/{image}")), Some(id));
    family.remove(&[&image]);
}

/// Whether the last layer in a docker-archive's manifest is also the last `layer.tar` in
/// the stream.
fn top_layer_comes_last(archive: &[u8]) -> bool {
    let mut tar = tar::Archive::new(archive);
    let mut order = Vec::new();
    let mut manifest = Vec::new();
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().display().to_string();
        if path == "manifest.json" {
            std::io::Read::read_to_end(&mut entry, &mut manifest).unwrap();
        } else if path.ends_with("layer.tar") {
            order.push(path);
        }
    }
    let manifest: Value = serde_json::from_slice(&manifest).unwrap();
    let top = manifest[0]["Layers"].as_array().unwrap().last().unwrap().as_str().unwrap().to_string();
    order.last() == Some(&top)
}
