//! The retention policy on real nodes: after a new tag per build, each node keeps the newest
//! `--keep` versions of the repository that kindload loaded (2 by default), plus any a
//! container uses and any kindload did not load; `--keep 1`, `--keep all` and `keep:` in
//! kindload.yaml set it, and the registry route applies it too.

mod support;

use support::*;

/// The tags `node` holds in `repository` (normalized, e.g. `docker.io/kl-keep/app`).
fn tags(cluster: &TestCluster, node: &str, repository: &str) -> Vec<String> {
    let listing = kindload::resolve::records::parse_ctr_images(&cluster.ctr_images(node));
    let mut tags: Vec<String> =
        listing.iter().filter_map(|r| r.name.strip_prefix(&format!("{repository}:")).map(str::to_string)).collect();
    tags.sort();
    tags
}

fn sorted(tags: &[&str]) -> Vec<String> {
    let mut tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    tags.sort();
    tags
}

/// `kindload load ... --output json` that must succeed; the report, checked against the schema.
fn load_json(cmd: &mut assert_cmd::Command) -> serde_json::Value {
    let out = cmd.args(["--output", "json"]).output().unwrap();
    assert!(out.status.success(), "load failed: {}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_matches_schema("load-report.schema.json", &json);
    json
}

fn retention<'a>(json: &'a serde_json::Value, node: &str) -> &'a serde_json::Value {
    json["retention"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["node"] == node)
        .unwrap_or_else(|| panic!("no retention for {node}: {json:#}"))
}

fn removed(json: &serde_json::Value, node: &str) -> Vec<String> {
    let names = retention(json, node)["removed"].as_array().unwrap();
    names.iter().map(|n| n.as_str().unwrap().to_string()).collect()
}

/// Twenty builds, each under a new tag, loaded one after the other: each node ends with the
/// newest two, plus the version a container record pins on the control plane, plus the
/// version a name given by hand (unlabelled) refers to on the worker, and an image imported
/// by hand into the same repository stays too.
#[test]
fn twenty_tags_per_build_keep_two_versions_docker_2_1() {
    if !engine_available("docker") {
        return;
    }
    let cluster = TestCluster::start(
        "keep21",
        ClusterSpec { provider: "docker", containerd: "2.1", workers: 1, snapshotter: None },
    );
    let (control, worker) = (cluster.nodes[0].clone(), cluster.nodes[1].clone());
    let repo = format!("kl-keep/{}", cluster.name);
    let normalized = format!("docker.io/{repo}");

    // Put on the worker by hand, unlabelled: never kindload's to remove.
    let manual = format!("{repo}:manual");
    build_image("docker", &manual, "imported by hand");
    let imported = cluster.exec_with_stdin(
        &worker,
        &["ctr", "-n", "k8s.io", "images", "import", "-"],
        &save_image("docker", &manual),
    );
    assert!(imported.status.success(), "{}", text(&imported));
    remove_image("docker", &manual);

    let mut ids = Vec::new();
    for build in 1..=20 {
        let tag = format!("{repo}:b{build:02}");
        ids.push(sha256_id(&build_image("docker", &tag, &format!("build {build}"))));
        let json = load_json(kindload().args(["load", "--cluster", &cluster.name, &tag]));
        assert_eq!(json["ok"], true, "{json:#}");
        remove_image("docker", &tag);
        match build {
            1 => {
                // A container record (nothing runs) pins b01 on the control plane.
                let image = format!("{normalized}:b01");
                let pin =
                    cluster.exec(&control, &["ctr", "-n", "k8s.io", "containers", "create", &image, "kl-keep-pin"]);
                assert!(pin.status.success(), "{}", text(&pin));
            }
            2 => {
                // A second name for b02 given by hand on the worker: b02 is not only kindload's.
                let (from, to) = (format!("{normalized}:b02"), format!("{normalized}:by-hand"));
                let named = cluster.exec(&worker, &["ctr", "-n", "k8s.io", "images", "tag", &from, &to]);
                assert!(named.status.success(), "{}", text(&named));
            }
            3 => {
                // b01 on the worker is the first version beyond the newest two.
                assert_eq!(removed(&json, &worker), [format!("{normalized}:b01")], "{json:#}");
                assert!(retention(&json, &worker)["bytes_freed"].as_u64().unwrap() > 0, "{json:#}");
                assert!(removed(&json, &control).is_empty(), "b01 is pinned on {control}: {json:#}");
            }
            20 => {
                assert_eq!(removed(&json, &control), [format!("{normalized}:b18")], "{json:#}");
                assert_eq!(removed(&json, &worker), [format!("{normalized}:b18")], "{json:#}");
            }
            _ => {}
        }
    }
    assert_eq!(tags(&cluster, &control, &normalized), sorted(&["b01", "b19", "b20"]), "pinned by a container");
    assert_eq!(tags(&cluster, &worker, &normalized), sorted(&["b02", "by-hand", "b19", "b20", "manual"]));
    // The removed versions' CRI id records went with them.
    let control_listing = cluster.ctr_images(&control);
    for (build, id) in ids.iter().enumerate().map(|(i, id)| (i + 1, id)) {
        let kept = [1, 19, 20].contains(&build);
        assert_eq!(control_listing.contains(id.as_str()), kept, "b{build:02} ({id}) on {control}:\n{control_listing}");
    }
}

/// Skaffold's build hook, twenty times: each build is deployed as `<repo>:<image id>`, a new
/// name every time, beside the build's own tag, which moves. Nodes on Podman, containerd 1.6.
#[test]
fn twenty_skaffold_hook_builds_keep_two_versions_podman_1_6() {
    if !engine_available("podman") || !engine_available("docker") {
        return;
    }
    let cluster = TestCluster::start(
        "keep16",
        ClusterSpec { provider: "podman", containerd: "1.6", workers: 1, snapshotter: None },
    );
    let dir = tempfile::tempdir().unwrap();
    let repo = format!("kl-keep/{}", cluster.name);
    let normalized = format!("docker.io/{repo}");
    let image = format!("{repo}:dev");
    let mut deployed = Vec::new();
    for build in 1..=20 {
        let id = build_image("docker", &image, &format!("build {build}"));
        deployed.push(id.trim_start_matches("sha256:").to_string());
        let json = load_json(
            kindload()
                .arg("load")
                .env("KUBECONFIG", kind_kubeconfig(dir.path(), &cluster.name))
                .env("KINDLOAD_STATE_DIR", dir.path().join("state"))
                .env("KIND_EXPERIMENTAL_PROVIDER", "podman")
                .env("SKAFFOLD_IMAGE", &image)
                .env("SKAFFOLD_PUSH_IMAGE", "false")
                .env("SKAFFOLD_IMAGE_REPO", "kl-keep")
                .env("SKAFFOLD_IMAGE_TAG", "dev")
                .env("SKAFFOLD_BUILD_CONTEXT", dir.path()),
        );
        assert_eq!(json["ok"], true, "{json:#}");
        if build >= 3 {
            for node in &cluster.nodes {
                let gone = removed(&json, node);
                assert_eq!(gone, [format!("{normalized}:{}", deployed[build - 3])], "{node}: {json:#}");
            }
        }
    }
    for node in &cluster.nodes {
        let mut want: Vec<&str> = deployed[18..].iter().map(String::as_str).collect();
        want.push("dev");
        assert_eq!(tags(&cluster, node, &normalized), sorted(&want), "{node}");
    }
    remove_image("docker", &image);
}

/// `--keep all` keeps every version, `--keep 1` only the one loaded, `keep:` in kindload.yaml
/// sets it, and the flag wins over the file; `kindload build` as Tilt runs it applies it too.
/// Containerd 1.7.
#[test]
fn keep_flag_and_config() {
    if !engine_available("docker") {
        return;
    }
    let cluster = TestCluster::start(
        "keepflag",
        ClusterSpec { provider: "docker", containerd: "1.7", workers: 0, snapshotter: None },
    );
    let node = cluster.nodes[0].clone();
    let repo = format!("kl-keep/{}", cluster.name);
    let normalized = format!("docker.io/{repo}");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kindload.yaml");
    let load = |build: usize, extra: &[&str]| {
        let tag = format!("{repo}:b{build}");
        build_image("docker", &tag, &format!("build {build}"));
        let json = load_json(
            kindload().env("KINDLOAD_CONFIG", &config).args(["load", "--cluster", &cluster.name, &tag]).args(extra),
        );
        remove_image("docker", &tag);
        json
    };
    std::fs::write(&config, "cluster: unused-by-these-loads\n").unwrap();
    for build in 1..=3 {
        let json = load(build, &["--keep", "all"]);
        assert!(json["retention"].as_array().unwrap().is_empty(), "{json:#}");
    }
    assert_eq!(tags(&cluster, &node, &normalized), ["b1", "b2", "b3"]);
    load(4, &["--keep", "1"]);
    assert_eq!(tags(&cluster, &node, &normalized), ["b4"], "the versions kept by --keep all were kindload's");

    std::fs::write(&config, "keep: all\n").unwrap();
    load(5, &[]);
    load(6, &[]);
    assert_eq!(tags(&cluster, &node, &normalized), ["b4", "b5", "b6"]);
    std::fs::write(&config, "keep: 2\n").unwrap();
    let json = load(7, &[]);
    assert_eq!(tags(&cluster, &node, &normalized), ["b6", "b7"], "{json:#}");
    std::fs::write(&config, "keep: all\n").unwrap();
    load(8, &["--keep", "1"]);
    assert_eq!(tags(&cluster, &node, &normalized), ["b8"], "the flag wins over the file");

    std::fs::write(&config, "keep: 0\n").unwrap();
    let out =
        kindload().env("KINDLOAD_CONFIG", &config).args(["load", "--cluster", &cluster.name, "x:y"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("keep: give a number of versions, 1 or more, or `all`"), "{}", text(&out));
    let out = kindload().args(["load", "--cluster", &cluster.name, "--keep", "0", "x:y"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("1 or more"), "{}", text(&out));
    std::fs::remove_file(&config).unwrap();

    // Human output names what went and what it freed.
    let tag = format!("{repo}:b9");
    build_image("docker", &tag, "build 9");
    let out = kindload().args(["load", "--cluster", &cluster.name, "--keep", "1", &tag]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains(&format!("{node}  removed 1 older version ({normalized}:b8), freed ")), "{said}");
    remove_image("docker", &tag);

    // Tilt's custom_build: `kindload build` in the context, a new EXPECTED_REF each build.
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY hello.txt /hello.txt\n").unwrap();
    let kubeconfig = kind_kubeconfig(dir.path(), &cluster.name);
    for build in 1..=3 {
        std::fs::write(ctx.join("hello.txt"), format!("tilt build {build}")).unwrap();
        let expected = format!("{repo}:tilt-build-{build}");
        let out = support::building(|| {
            kindload()
                .current_dir(&ctx)
                .env("KUBECONFIG", &kubeconfig)
                .env("KINDLOAD_STATE_DIR", dir.path().join("state"))
                .env("EXPECTED_REF", &expected)
                .env("EXPECTED_IMAGE", &repo)
                .env("EXPECTED_TAG", format!("tilt-build-{build}"))
                .args(["build", "--keep", "2"])
                .output()
        })
        .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        remove_image("docker", &expected);
    }
    assert_eq!(tags(&cluster, &node, &normalized), ["tilt-build-2", "tilt-build-3"]);
}

/// Through the cluster's registry, the node's session labels and removes as the sideload
/// does: the user's names and the registry's go together.
#[test]
fn the_registry_route_keeps_two_versions() {
    if !engine_available("docker") {
        return;
    }
    let network = TestNetwork::create("docker", "keepreg");
    let spec = ClusterSpec { provider: "docker", containerd: "2.1", workers: 0, snapshotter: None };
    let cluster = TestCluster::start_on_network("keepreg", spec, &network, &[0]);
    let registry = TestRegistry::new("docker", format!("klkeep-{}", std::process::id()));
    let port = registry.port;
    let up = registry.up(&cluster).output().unwrap();
    assert!(up.status.success(), "{}", text(&up));
    let node = cluster.nodes[0].clone();
    let repo = format!("kl-keep/{}", cluster.name);
    let normalized = format!("docker.io/{repo}");
    let mirrored = format!("localhost:{port}/{repo}");
    for build in 1..=4 {
        let tag = format!("{repo}:b{build}");
        build_image("docker", &tag, &format!("build {build}"));
        let json = load_json(registry.kindload().args(["load", "--cluster", &cluster.name, &tag]));
        assert_eq!(json["images"][0]["transport"], "registry", "{json:#}");
        if build >= 3 {
            let mut gone = removed(&json, &node);
            gone.sort();
            let old = build - 2;
            assert_eq!(gone, [format!("{normalized}:b{old}"), format!("{mirrored}:b{old}")], "{json:#}");
        }
        let _ = run(engine_command("docker").args([
            "image",
            "rm",
            "-f",
            &tag,
            &format!("localhost:{port}/{repo}:b{build}"),
        ]));
    }
    assert_eq!(tags(&cluster, &node, &normalized), ["b3", "b4"]);
    assert_eq!(tags(&cluster, &node, &mirrored), ["b3", "b4"]);
}
