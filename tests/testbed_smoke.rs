//! Proves the test bed works: real engines, kind-like nodes on both providers with
//! containerd 1.6, 1.7 and 2.1 and their CRI plugin, imports as kind does them, and
//! the Docker daemon with the containerd image store.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::*;

const CRI_MANAGED: &str = "io.cri-containerd.image=managed";

/// Removes an engine's image when dropped, also when the test fails.
struct ImageGuard(&'static str, String);

impl Drop for ImageGuard {
    fn drop(&mut self) {
        remove_image(self.0, &self.1);
    }
}

/// The ref the CRI plugin adds for an image: `sha256:<config digest>`. Docker's
/// classic store and Podman both use the config digest as image id, Podman without
/// the `sha256:` prefix.
fn cri_ref(engine_id: &str) -> String {
    format!("sha256:{}", engine_id.trim_start_matches("sha256:"))
}

/// True when `ctr images ls` output lists `reference` with the CRI-managed label.
fn cri_listed(listing: &str, reference: &str) -> bool {
    listing.lines().any(|line| line.split_whitespace().next() == Some(reference) && line.contains(CRI_MANAGED))
}

/// The REF column of `ctr images ls` output.
fn refs(listing: &str) -> Vec<&str> {
    listing.lines().skip(1).filter_map(|line| line.split_whitespace().next()).collect()
}

fn lookup<'a>(table: &'a toml::Table, path: &[&str]) -> Option<&'a toml::Value> {
    let (last, parents) = path.split_last()?;
    let mut table = table;
    for key in parents {
        table = table.get(*key)?.as_table()?;
    }
    table.get(*last)
}

/// (config version, CRI snapshotter) from `containerd config dump`.
fn dump_facts(dump: &str) -> (i64, String) {
    let table: toml::Table = dump.parse().unwrap_or_else(|e| panic!("config dump is not TOML: {e}\n{dump}"));
    let version = lookup(&table, &["version"]).and_then(toml::Value::as_integer).expect("config dump has a version");
    let snapshotter = [
        &["plugins", "io.containerd.cri.v1.images", "snapshotter"][..],
        &["plugins", "io.containerd.grpc.v1.cri", "containerd", "snapshotter"][..],
    ]
    .iter()
    .find_map(|path| lookup(&table, path))
    .and_then(toml::Value::as_str)
    .expect("config dump names the CRI snapshotter")
    .to_string();
    (version, snapshotter)
}

fn expected_config_version(containerd: &str) -> i64 {
    if containerd.starts_with("1.") {
        2
    } else {
        3
    }
}

/// `ctr -n k8s.io images import --digests --snapshotter=<s> -` as kind runs it. On
/// containerd 2.x, a snapshotter other than the default needs `--local`: the
/// transfer service has no unpack configuration for it ("no unpack platforms
/// defined", containerd#11606).
fn import(cluster: &TestCluster, node: &str, containerd: &str, snapshotter: &str, archive: &[u8]) {
    let flag = format!("--snapshotter={snapshotter}");
    let mut args = vec!["ctr", "-n", "k8s.io", "images", "import", "--digests", &flag];
    if !containerd.starts_with("1.") && snapshotter != "overlayfs" {
        args.push("--local");
    }
    args.push("-");
    let out = cluster.exec_with_stdin(node, &args, archive);
    assert!(
        out.status.success(),
        "import into {node} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits (up to 10 s) until every reference is listed as CRI-managed in `node`.
fn wait_cri_listed(cluster: &TestCluster, node: &str, references: &[&str]) {
    let started = Instant::now();
    loop {
        let listing = cluster.ctr_images(node);
        if references.iter().all(|r| cri_listed(&listing, r)) {
            eprintln!("{node}: CRI refs listed after {:?}", started.elapsed());
            return;
        }
        if started.elapsed() > Duration::from_secs(10) {
            panic!("{node} does not list {references:?} as CRI-managed images:\n{listing}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ctr_ok(cluster: &TestCluster, node: &str, args: &[&str]) {
    let mut argv = vec!["ctr", "-n", "k8s.io"];
    argv.extend_from_slice(args);
    let out = cluster.exec(node, &argv);
    assert!(out.status.success(), "`{}` in {node} failed: {}", argv.join(" "), String::from_utf8_lossy(&out.stderr));
}

fn inspect(provider: &str, format: &str, object: &str) -> String {
    run_ok(engine_command(provider).args(["inspect", "--format", format, object])).trim().to_string()
}

fn node_smoke(provider: &'static str, containerd: &'static str) {
    if !engine_available(provider) {
        return;
    }
    let tag = format!("{provider}{}", containerd.replace('.', ""));
    let cluster = TestCluster::start(&tag, ClusterSpec { provider, containerd, workers: 1, snapshotter: None });
    let native = TestCluster::start(
        &format!("{tag}-native"),
        ClusterSpec { provider, containerd, workers: 0, snapshotter: Some("native") },
    );

    // Names and labels, as kind sets them.
    let name = &cluster.name;
    assert_eq!(cluster.nodes, [format!("{name}-control-plane"), format!("{name}-worker")]);
    let listed = run_ok(engine_command(provider).args([
        "ps",
        "--filter",
        &format!("label={CLUSTER_LABEL}={name}"),
        "--format",
        "{{.Names}}",
    ]));
    let mut listed: Vec<&str> = listed.split_whitespace().collect();
    listed.sort_unstable();
    assert_eq!(listed, [cluster.nodes[0].as_str(), cluster.nodes[1].as_str()]);
    for (node, role) in cluster.nodes.iter().zip(["control-plane", "worker"]) {
        let labels =
            format!("{{{{index .Config.Labels \"{CLUSTER_LABEL}\"}}}} {{{{index .Config.Labels \"{ROLE_LABEL}\"}}}}");
        assert_eq!(inspect(provider, &labels, node), format!("{name} {role}"));
    }

    // containerd version and configuration.
    for (c, node, snapshotter) in [
        (&cluster, &cluster.nodes[0], "overlayfs"),
        (&cluster, &cluster.nodes[1], "overlayfs"),
        (&native, &native.nodes[0], "native"),
    ] {
        let out = c.exec(node, &["containerd", "--version"]);
        let version = String::from_utf8_lossy(&out.stdout);
        assert!(
            version.contains(&format!(" {containerd}.")) || version.contains(&format!(" v{containerd}.")),
            "{node} runs {version}, not containerd {containerd}"
        );
        let (config_version, cri_snapshotter) = dump_facts(&c.config_dump(node));
        assert_eq!(config_version, expected_config_version(containerd), "{node}");
        assert_eq!(cri_snapshotter, snapshotter, "{node}");
    }

    // An image saved by the engine and imported as kind does it shows up in every
    // node under its name and as `sha256:<config digest>`, both CRI-managed.
    let image = format!("example.com/kindload-smoke/{tag}:{}", std::process::id());
    let _guard = ImageGuard(provider, image.clone());
    let id = build_image(provider, &image, &format!("smoke test {tag}"));
    let archive = save_image(provider, &image);
    let config_ref = cri_ref(&id);
    for (c, node, snapshotter) in [
        (&cluster, &cluster.nodes[0], "overlayfs"),
        (&cluster, &cluster.nodes[1], "overlayfs"),
        (&native, &native.nodes[0], "native"),
    ] {
        import(c, node, containerd, snapshotter, &archive);
        wait_cri_listed(c, node, &[&image, &config_ref]);
    }

    // Retagging and removal, as a loader uses them.
    let node = cluster.control_plane();
    let alias = format!("{image}-alias");
    ctr_ok(&cluster, node, &["images", "tag", "--force", &image, &alias]);
    ctr_ok(&cluster, node, &["images", "tag", "--force", &image, &alias]);
    wait_cri_listed(&cluster, node, &[&alias]);
    ctr_ok(&cluster, node, &["images", "rm", &alias]);
    let listing = cluster.ctr_images(node);
    assert!(!refs(&listing).contains(&alias.as_str()), "{alias} still listed:\n{listing}");
    assert!(cri_listed(&listing, &image), "{image} gone with its alias:\n{listing}");

    // A stopped node stays listed, not running.
    let worker = &cluster.nodes[1];
    cluster.stop_node(worker);
    assert_eq!(inspect(provider, "{{.State.Running}}", worker), "false");
}

macro_rules! node_smoke_tests {
    ($($test:ident: $provider:literal, $containerd:literal;)*) => {
        $(
            #[test]
            fn $test() {
                node_smoke($provider, $containerd);
            }
        )*
    };
}

node_smoke_tests! {
    docker_nodes_containerd_1_6: "docker", "1.6";
    docker_nodes_containerd_1_7: "docker", "1.7";
    docker_nodes_containerd_2_1: "docker", "2.1";
    podman_nodes_containerd_1_6: "podman", "1.6";
    podman_nodes_containerd_1_7: "podman", "1.7";
    podman_nodes_containerd_2_1: "podman", "2.1";
}

fn archive_json(archive: &[u8], path: &str) -> serde_json::Value {
    let mut entries = tar::Archive::new(archive);
    for entry in entries.entries().expect("a tar archive") {
        let mut entry = entry.expect("a tar entry");
        if entry.path().expect("entry path").to_str() == Some(path) {
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            return serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        }
    }
    panic!("{path} is not in the archive");
}

/// Docker with the containerd image store reports the manifest digest as `.Id`;
/// the config digest, which the CRI plugin lists, is another one.
#[test]
fn containerd_store_ids_are_manifest_digests() {
    if !engine_available(CONTAINERD_STORE) {
        return;
    }
    let driver = run_ok(engine_command(CONTAINERD_STORE).args(["info", "--format", "{{json .DriverStatus}}"]));
    assert!(driver.contains("io.containerd.snapshotter.v1"), "not the containerd image store: {driver}");

    let image = format!("example.com/kindload-smoke/store:{}", std::process::id());
    let _guard = ImageGuard(CONTAINERD_STORE, image.clone());
    let id = build_image(CONTAINERD_STORE, &image, "containerd store");
    let archive = save_image(CONTAINERD_STORE, &image);

    let index = archive_json(&archive, "index.json");
    assert_eq!(index["manifests"][0]["digest"], id.as_str(), "{index}");
    let manifest = archive_json(&archive, "manifest.json");
    let config = manifest[0]["Config"].as_str().expect("Config in manifest.json");
    let config_ref = format!("sha256:{}", config.strip_prefix("blobs/sha256/").expect("an OCI blob path"));
    assert_ne!(id, config_ref);

    // Imported into a node, the image is known to the CRI by its config digest.
    if !engine_available("docker") {
        return;
    }
    let cluster = TestCluster::start(
        "store",
        ClusterSpec { provider: "docker", containerd: "2.1", workers: 0, snapshotter: None },
    );
    let node = cluster.control_plane();
    import(&cluster, node, "2.1", "overlayfs", &archive);
    wait_cri_listed(&cluster, node, &[&image, &config_ref]);
    let listing = cluster.ctr_images(node);
    assert!(!refs(&listing).contains(&cri_ref(&id).as_str()), "{listing}");
}

/// The local registry started by tests/run.sh accepts pushes over plain HTTP.
#[test]
fn registry_accepts_a_push() {
    let Some(registry) = registry() else {
        return;
    };
    if !engine_available("docker") {
        return;
    }
    let tag = std::process::id().to_string();
    let image = format!("{registry}/kindload-smoke/push:{tag}");
    let _guard = ImageGuard("docker", image.clone());
    build_image("docker", &image, "pushed");
    run_ok(engine_command("docker").args(["push", &image]));

    let mut stream = TcpStream::connect(&registry).expect("connect to the registry");
    write!(stream, "GET /v2/kindload-smoke/push/tags/list HTTP/1.0\r\nHost: {registry}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains(&format!("\"{tag}\"")), "{response}");
}
