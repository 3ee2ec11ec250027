//! One entry point per parser of untrusted input, shared by the libFuzzer targets in
//! `fuzz_targets/` and by the corpus replay in `tests/fuzz_replay.rs` (which includes this
//! file as a module, so it must stay free of crate-level attributes).
//!
//! Each function takes raw bytes, feeds them to the parser the way kindload receives that
//! input, and exercises what callers do with the result. The contract is: no panic, no hang,
//! no unbounded allocation. Errors are fine; they are what bad input should produce.

use std::collections::HashMap;
use std::io::Cursor;

use kindload::request::{build_artifacts, config, manifests, skaffold_settings};
use kindload::resolve::records;
use kindload::resolve::reference::ImageRef;
use kindload::resolve::{containerd, engine, inspect, kubeconfig, provider, remote};
use kindload::transfer::archive;
use kindload::verify::cri;

/// A parser entry point: raw input bytes in, nothing out but a panic on a bug.
pub type Target = fn(&[u8]);

/// Target name (the `fuzz_targets/<name>.rs` file, the `corpus/<name>` and
/// `regressions/<name>` directories) and its entry point.
pub const TARGETS: &[(&str, Target)] = &[
    ("reference", reference),
    ("archive_files", archive_files),
    ("archive_tar", archive_tar),
    ("kubeconfig", kubeconfig),
    ("manifests", manifests),
    ("build_artifacts", build_artifacts),
    ("containerd", containerd),
    ("crictl", crictl),
    ("ctr_images", ctr_images),
    ("engine_json", engine_json),
    ("config", config),
];

/// Text parsers get what a lossy read of the bytes gives, so every input reaches them.
fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// `ImageRef::parse`, and for an accepted reference every rendering, which must parse back
/// to the same reference name.
pub fn reference(data: &[u8]) {
    let input = text(data);
    let Ok(r) = ImageRef::parse(&input) else { return };
    let normalized = r.normalized();
    let familiar = r.familiar();
    let _ = (r.domain(), r.path(), r.tag(), r.digest(), r.repository(), r.to_string());
    for rendered in [&normalized, &familiar] {
        match ImageRef::parse(rendered) {
            Ok(again) => assert_eq!(again.normalized(), normalized, "{input:?} rendered as {rendered:?}"),
            Err(e) => panic!("{input:?} parsed, but its rendering {rendered:?} does not: {e}"),
        }
    }
}

/// Separates files in an `archive_files` input: a byte that never occurs in UTF-8 text.
pub const FILE_SEPARATOR: u8 = 0xff;

/// `archive::images_in` on the metadata files of an archive. The input is a list of files
/// separated by [`FILE_SEPARATOR`], each `<path>\n<contents>` (e.g. `index.json`,
/// `manifest.json`, `blobs/sha256/<hex>`).
pub fn archive_files(data: &[u8]) {
    let files = split_files(data);
    if let Ok(images) = archive::images_in(&archive::Contents::from_files(files)) {
        for image in images {
            for name in &image.names {
                let _ = ImageRef::parse(name);
            }
        }
    }
}

/// The file map [`archive_files`] reads from its input.
pub fn split_files(data: &[u8]) -> HashMap<String, Vec<u8>> {
    data.split(|&b| b == FILE_SEPARATOR)
        .filter_map(|chunk| {
            let newline = chunk.iter().position(|&b| b == b'\n')?;
            Some((text(&chunk[..newline]).into_owned(), chunk[newline + 1..].to_vec()))
        })
        .collect()
}

/// `archive::scan` on a raw tar stream, as it comes out of `docker save` / `podman save`.
pub fn archive_tar(data: &[u8]) {
    let mut cursor = Cursor::new(data);
    if kindload::transfer::scan(&mut cursor).is_ok() {
        assert_eq!(cursor.position() as usize, data.len(), "a successful scan reads every byte");
    }
}

/// `parse_kubeconfig`, then the kind cluster lookup for every context it names.
pub fn kubeconfig(data: &[u8]) {
    let Ok(cfg) = kubeconfig::parse_kubeconfig(&text(data)) else { return };
    let merged = kubeconfig::merge(vec![cfg.clone(), cfg.clone()]);
    for (name, cluster) in &cfg.contexts {
        let _ = kubeconfig::kind_cluster_for_context(&merged, name);
        let _ = kubeconfig::kind_cluster_for_context(&merged, cluster);
    }
    if let Some(current) = &cfg.current_context {
        let _ = kubeconfig::kind_cluster_for_context(&merged, current);
    }
}

/// `images_in_manifests` on multi-document YAML, then each image as a reference.
pub fn manifests(data: &[u8]) {
    let Ok(images) = manifests::images_in_manifests(&text(data)) else { return };
    for image in images {
        let _ = ImageRef::parse(&image);
    }
}

/// `parse_build_artifacts` on a `skaffold build --file-output` file.
pub fn build_artifacts(data: &[u8]) {
    let Ok(artifacts) = build_artifacts::parse_build_artifacts(&text(data)) else { return };
    for artifact in artifacts {
        let _ = ImageRef::parse(&artifact.tag);
    }
}

/// `containerd config dump` (TOML) and `containerd --version`, both as read from a node.
pub fn containerd(data: &[u8]) {
    let input = text(data);
    let _ = containerd::parse_config_dump(&input);
    if let Some(version) = containerd::parse_containerd_version(&input) {
        let _ = containerd::lenient_version(&version);
    }
    let _ = containerd::lenient_version(&input);
}

/// `crictl inspecti -o json`, `crictl images -o json` and crictl's stderr.
pub fn crictl(data: &[u8]) {
    let input = text(data);
    let _ = cri::parse_crictl_inspecti(&input);
    let _ = cri::parse_crictl_images(&input);
    let _ = cri::crictl_says_missing(&input);
}

/// The `ctr -n k8s.io images ls` table, then the config-digest lookup for each target.
pub fn ctr_images(data: &[u8]) {
    let images = records::parse_ctr_images(&text(data));
    for image in &images {
        let _ = records::config_digest_for_target(&images, &image.target);
    }
}

/// Engine JSON: `image inspect`, `docker version`, `docker info`, `podman info`, `podman
/// version`, `docker context inspect`, and the `inspect` of kind's node containers.
pub fn engine_json(data: &[u8]) {
    let input = text(data);
    if let Ok(images) = inspect::parse_image_inspect(&input) {
        for image in images {
            let _ = image.id_is_manifest_digest();
            let _ = inspect::normalize_id(&image.id);
        }
    }
    let _ = engine::parse_docker_version(&input);
    let _ = engine::parse_docker_info(&input);
    let _ = engine::parse_podman_info(&input);
    let _ = remote::parse_podman_info(&input);
    let _ = remote::parse_podman_version(&input, Some("unix:///run/podman.sock"));
    let _ = remote::parse_docker_context(&input, Some("unix:///run/docker.sock"));
    let _ = provider::parse_node_inspect(&input, "kind");
}

/// `kindload.yaml`, and the Skaffold files kindload reads settings from (`skaffold.yaml`,
/// Skaffold's global config).
pub fn config(data: &[u8]) {
    let input = text(data);
    let _ = config::parse(&input);
    let _ = skaffold_settings::local_push(&input);
    let _ = skaffold_settings::kind_disable_load(&input, "kind-kind");
}
