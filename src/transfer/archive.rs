//! What an image archive holds, learned while it streams past: docker-archive
//! (`manifest.json`) and OCI layout (`index.json` + blobs), as written by `docker save`
//! (both image stores), `podman save` and `skopeo`.

use std::collections::HashMap;
use std::io::{self, Read};

use serde_json::Value;

use crate::resolve::image::Identity;

/// Small JSON files are kept in memory; layers stream past untouched.
const KEEP_AT_MOST: u64 = 1 << 20;
const KEEP_TOTAL: usize = 32 << 20;

const INDEX_TYPES: [&str; 2] =
    ["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"];

/// One image in an archive: its names as written there and its identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveImage {
    pub names: Vec<String>,
    pub identity: Identity,
}

/// Reads a whole tar stream, keeping the small files image metadata lives in.
/// Every byte is consumed (including the end-of-archive blocks), so a tee upstream sees it all.
pub fn scan(reader: impl Read) -> io::Result<Vec<ArchiveImage>> {
    let mut archive = tar::Archive::new(reader);
    let mut kept: HashMap<String, Vec<u8>> = HashMap::new();
    let mut kept_total = 0usize;
    let mut entries = 0usize;
    for entry in archive.entries()? {
        let mut entry = entry?;
        entries += 1;
        let path = entry.path()?.to_string_lossy().trim_start_matches("./").to_string();
        let size = entry.header().size()?;
        if entry.header().entry_type().is_file() && size <= KEEP_AT_MOST && kept_total < KEEP_TOTAL {
            let mut data = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut data)?;
            kept_total += data.len();
            kept.insert(path, data);
        } else {
            io::copy(&mut entry, &mut io::sink())?;
        }
    }
    // Drain the end-of-archive blocks and any padding.
    io::copy(&mut archive.into_inner(), &mut io::sink())?;
    if entries == 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "the archive is empty or not a tar archive"));
    }
    images_in(&kept).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The images described by an archive's metadata files.
pub fn images_in(files: &HashMap<String, Vec<u8>>) -> Result<Vec<ArchiveImage>, String> {
    let mut images: Vec<ArchiveImage> = Vec::new();
    if let Some(index) = files.get("index.json") {
        for image in oci_images(index, files)? {
            merge_into(&mut images, image);
        }
    }
    if let Some(manifest) = files.get("manifest.json") {
        for image in docker_images(manifest)? {
            merge_into(&mut images, image);
        }
    }
    if images.is_empty() {
        return Err("no manifest.json or index.json: not a docker-archive or OCI image archive".into());
    }
    Ok(images)
}

/// Docker writes both files for one image; keep one entry with every name.
fn merge_into(images: &mut Vec<ArchiveImage>, image: ArchiveImage) {
    let same = images.iter_mut().find(|i| {
        (i.identity.config.is_some() && i.identity.config == image.identity.config)
            || (i.identity.manifest.is_some() && i.identity.manifest == image.identity.manifest)
    });
    match same {
        Some(existing) => {
            existing.identity.merge(&image.identity);
            for name in image.names {
                if !existing.names.contains(&name) {
                    existing.names.push(name);
                }
            }
        }
        None => images.push(image),
    }
}

/// `manifest.json`: `[{"Config": "<hex>.json" | "blobs/sha256/<hex>", "RepoTags": [...]}]`.
fn docker_images(json: &[u8]) -> Result<Vec<ArchiveImage>, String> {
    let entries: Vec<Value> = serde_json::from_slice(json).map_err(|e| format!("manifest.json: {e}"))?;
    Ok(entries
        .iter()
        .map(|entry| {
            let config = entry.get("Config").and_then(Value::as_str).and_then(digest_from_path);
            let names = strings(entry.get("RepoTags"));
            ArchiveImage { names, identity: Identity { config, manifest: None } }
        })
        .collect())
}

/// `index.json`: each entry a manifest (or an index, resolved to the platform present).
fn oci_images(json: &[u8], files: &HashMap<String, Vec<u8>>) -> Result<Vec<ArchiveImage>, String> {
    let index: Value = serde_json::from_slice(json).map_err(|e| format!("index.json: {e}"))?;
    let mut images = Vec::new();
    let mut answered = HashMap::new();
    for desc in index.get("manifests").and_then(Value::as_array).into_iter().flatten() {
        let Some(digest) = desc.get("digest").and_then(Value::as_str) else { continue };
        let annotation = |key: &str| desc.pointer(&format!("/annotations/{}", key.replace('/', "~1")));
        let mut names = Vec::new();
        if let Some(name) = annotation("io.containerd.image.name").and_then(Value::as_str) {
            names.push(name.to_string());
        } else if let Some(name) = annotation("org.opencontainers.image.ref.name").and_then(Value::as_str) {
            // A bare tag ("dev") names nothing on its own; a full reference does.
            if name.contains('/') || name.contains(':') {
                names.push(name.to_string());
            }
        }
        let config = config_digest(digest, files, 0, &mut answered);
        images.push(ArchiveImage { names, identity: Identity { config, manifest: Some(digest.to_string()) } });
    }
    Ok(images)
}

/// Follows a manifest (or an index, to the local platform whose blobs are present) to its config digest.
/// `answered` remembers each (digest, depth) looked at, so an index whose children repeat or
/// point back at it costs one visit per blob and depth rather than one per path through it.
fn config_digest(
    digest: &str,
    files: &HashMap<String, Vec<u8>>,
    depth: u8,
    answered: &mut HashMap<(String, u8), Option<String>>,
) -> Option<String> {
    if let Some(known) = answered.get(&(digest.to_string(), depth)) {
        return known.clone();
    }
    let found = follow(digest, files, depth, answered);
    answered.insert((digest.to_string(), depth), found.clone());
    found
}

fn follow(
    digest: &str,
    files: &HashMap<String, Vec<u8>>,
    depth: u8,
    answered: &mut HashMap<(String, u8), Option<String>>,
) -> Option<String> {
    let blob: Value = serde_json::from_slice(files.get(&blob_path(digest)?)?).ok()?;
    let media_type = blob.get("mediaType").and_then(Value::as_str).unwrap_or("");
    if INDEX_TYPES.contains(&media_type) || blob.get("manifests").is_some() {
        if depth > 2 {
            return None;
        }
        let children = blob.get("manifests")?.as_array()?;
        return children
            .iter()
            .filter(|c| is_local_platform(c))
            .filter_map(|c| c.get("digest").and_then(Value::as_str))
            .find_map(|d| config_digest(d, files, depth + 1, answered));
    }
    blob.pointer("/config/digest").and_then(Value::as_str).map(str::to_string)
}

fn is_local_platform(desc: &Value) -> bool {
    let os = desc.pointer("/platform/os").and_then(Value::as_str).unwrap_or("");
    let arch = desc.pointer("/platform/architecture").and_then(Value::as_str).unwrap_or("");
    os == "linux" && arch == local_arch()
}

/// The architecture as OCI names it.
pub fn local_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

fn blob_path(digest: &str) -> Option<String> {
    let (algo, hex) = digest.split_once(':')?;
    Some(format!("blobs/{algo}/{hex}"))
}

/// "blobs/sha256/<hex>" or "<hex>.json" → "sha256:<hex>".
fn digest_from_path(path: &str) -> Option<String> {
    if let Some(rest) = path.strip_prefix("blobs/") {
        let (algo, hex) = rest.split_once('/')?;
        return Some(format!("{algo}:{hex}"));
    }
    let hex = path.strip_suffix(".json")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| format!("sha256:{hex}"))
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(pairs: &[(&str, &str)]) -> HashMap<String, Vec<u8>> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect()
    }

    #[test]
    fn docker_classic_archive() {
        let manifest = r#"[{"Config":"441c29fcf848420af9478385aa2c50f1aed261136929dd5df71cc8bd05f30e83.json","RepoTags":["bb:1","example.com/app/bb:dev"],"Layers":["3d01/layer.tar"]}]"#;
        let images = images_in(&files(&[("manifest.json", manifest)])).unwrap();
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].names, ["bb:1", "example.com/app/bb:dev"]);
        assert_eq!(
            images[0].identity.config.as_deref(),
            Some("sha256:441c29fcf848420af9478385aa2c50f1aed261136929dd5df71cc8bd05f30e83")
        );
    }

    #[test]
    fn podman_docker_archive() {
        let manifest = include_str!("../../tests/fixtures/engines/podman-4.3-save-docker-archive-manifest.json");
        let images = images_in(&files(&[("manifest.json", manifest)])).unwrap();
        assert_eq!(images[0].names, ["localhost/test/hello:v1"]);
        assert_eq!(
            images[0].identity.config.as_deref(),
            Some("sha256:b21546368a959dcf24dcfaf1b90e72f199d5fac6eaff83cf4b329f97e366b7bd")
        );
    }

    #[test]
    fn containerd_store_archive_has_both_files_and_yields_one_image() {
        let index = include_str!("../../tests/fixtures/engines/docker-28.5-containerd-store-save-index.json");
        let manifest = include_str!("../../tests/fixtures/engines/docker-28.5-containerd-store-save-manifest.json");
        let manifest_blob = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:badd216c2d35d0e9a90ced39b0877a9b395d2166bf9e7bb254422adac5c6c342","size":651},"layers":[]}"#;
        let images = images_in(&files(&[
            ("index.json", index),
            ("manifest.json", manifest),
            ("blobs/sha256/a9940815d560e628155cff1f71b3a2bcf161d299fc35b245424532a959f92d52", manifest_blob),
        ]))
        .unwrap();
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].names, ["example.com/app/bb28:dev"]);
        assert_eq!(
            images[0].identity,
            Identity {
                config: Some("sha256:badd216c2d35d0e9a90ced39b0877a9b395d2166bf9e7bb254422adac5c6c342".into()),
                manifest: Some("sha256:a9940815d560e628155cff1f71b3a2bcf161d299fc35b245424532a959f92d52".into()),
            }
        );
    }

    #[test]
    fn multi_platform_index_resolves_to_the_local_platform() {
        let arch = local_arch();
        let index = r#"{"manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:1111","annotations":{"io.containerd.image.name":"docker.io/library/app:dev"}}]}"#;
        let nested = format!(
            r#"{{"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
              {{"digest":"sha256:2222","platform":{{"os":"linux","architecture":"not-{arch}"}}}},
              {{"digest":"sha256:3333","platform":{{"os":"linux","architecture":"{arch}"}}}}]}}"#
        );
        let local = r#"{"config":{"digest":"sha256:c0ffee"}}"#;
        let images =
            images_in(&files(&[("index.json", index), ("blobs/sha256/1111", &nested), ("blobs/sha256/3333", local)]))
                .unwrap();
        assert_eq!(images[0].identity.config.as_deref(), Some("sha256:c0ffee"));
        assert_eq!(images[0].identity.manifest.as_deref(), Some("sha256:1111"));
    }

    #[test]
    fn bare_tag_annotation_is_not_a_name() {
        let index =
            r#"{"manifests":[{"digest":"sha256:1111","annotations":{"org.opencontainers.image.ref.name":"dev"}}]}"#;
        assert!(images_in(&files(&[("index.json", index)])).unwrap()[0].names.is_empty());
    }

    #[test]
    fn scan_reads_a_real_tar_to_the_end() {
        let mut builder = tar::Builder::new(Vec::new());
        let manifest = br#"[{"Config":"blobs/sha256/abcd","RepoTags":["app:dev"]}]"#;
        let mut header = tar::Header::new_gnu();
        header.set_size(manifest.len() as u64);
        header.set_cksum();
        builder.append_data(&mut header, "manifest.json", &manifest[..]).unwrap();
        let bytes = builder.into_inner().unwrap();
        let mut cursor = io::Cursor::new(bytes.clone());
        let images = scan(&mut cursor).unwrap();
        assert_eq!(images[0].identity.config.as_deref(), Some("sha256:abcd"));
        assert_eq!(cursor.position() as usize, bytes.len(), "every byte consumed");
    }

    #[test]
    fn not_a_tar_is_an_error() {
        assert!(scan(io::Cursor::new(b"hello, not a tar".to_vec())).is_err());
    }
}
