//! What an image archive holds, learned while it streams past: docker-archive
//! (`manifest.json`) and OCI layout (`index.json` + blobs), as written by `docker save`
//! (both image stores), `podman save` and `skopeo`. Every digest is computed from the
//! bytes; a file whose name claims another digest makes the archive unusable.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::Value;

use crate::digest::{self, FileFact, Hasher};
use crate::resolve::image::Identity;

/// JSON files (configs, manifests, indexes) are kept in memory; layers stream past.
pub const KEEP_AT_MOST: u64 = 4 << 20;
const KEEP_TOTAL: usize = 32 << 20;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const INDEX_TYPES: [&str; 2] =
    ["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"];

/// An OCI descriptor, with its fields in the order containerd writes them, so a manifest
/// kindload writes for a docker-archive hashes as containerd's own would.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

/// One image in an archive: its names as written there, its identity, and what a node
/// needs to import it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveImage {
    pub names: Vec<String>,
    pub identity: Identity,
    /// What index.json points at: a manifest, or an index for several platforms.
    pub target: Descriptor,
    /// A docker-archive has no manifest blob: this is the one kindload wrote for it.
    pub written_manifest: Option<Vec<u8>>,
    /// Layer blob digests of the local platform's manifest, bottom first.
    pub layers: Vec<String>,
    /// Uncompressed layer digests from the config, bottom first.
    pub diff_ids: Vec<String>,
    /// The config's `os/architecture[/variant]`; None for an index of several platforms.
    pub platform: Option<String>,
    /// For an index: each platform it lists, with the blobs that platform's manifest uses.
    pub by_platform: Vec<(String, Vec<String>)>,
}

/// Everything learned from one pass over an archive.
#[derive(Debug, Default)]
pub struct Contents {
    /// Small JSON files by path.
    pub json: HashMap<String, Vec<u8>>,
    /// Every regular file by path.
    pub files: HashMap<String, FileFact>,
    /// Symlinks by path, to the path they point at.
    pub symlinks: HashMap<String, String>,
    kept: usize,
    pub entries: usize,
}

impl Contents {
    /// Contents from whole files in memory (every JSON-looking one kept): for tests and fuzzing.
    pub fn from_files(files: HashMap<String, Vec<u8>>) -> Self {
        let mut contents = Contents::default();
        for (path, bytes) in files {
            let mut hasher = Hasher::default();
            hasher.update(&bytes);
            let kept = looks_like_json(&bytes).then_some(bytes);
            contents.entries += 1;
            contents.add_file(clean_path(&path), hasher.fact(), kept);
        }
        contents
    }

    /// Whether a file starting with `head` and `size` bytes long is kept as JSON metadata.
    pub fn keeps(&self, head: &[u8], size: u64) -> bool {
        size <= KEEP_AT_MOST && self.kept < KEEP_TOTAL && looks_like_json(head)
    }

    pub fn add_file(&mut self, path: String, fact: FileFact, kept: Option<Vec<u8>>) {
        self.files.insert(path.clone(), fact);
        if let Some(bytes) = kept {
            self.kept += bytes.len();
            self.json.insert(path, bytes);
        }
    }

    pub fn add_symlink(&mut self, path: String, target: &str) {
        let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        let resolved = join(dir, target);
        self.symlinks.insert(path, resolved);
    }

    fn fact(&self, path: &str) -> Option<&FileFact> {
        let path = self.symlinks.get(path).map(String::as_str).unwrap_or(path);
        self.files.get(path)
    }

    /// The bytes of blob `digest`, checked: present, and hashing to its name.
    fn blob(&self, digest: &str) -> Result<Option<&[u8]>, String> {
        let Some(path) = blob_path(digest) else { return Err(format!("{digest:?} is not a digest")) };
        match (self.files.get(&path), self.json.get(&path)) {
            (None, _) => Ok(None),
            (Some(fact), _) if fact.digest != digest => Err(altered(&path, &fact.digest)),
            (Some(_), bytes) => Ok(bytes.map(Vec::as_slice)),
        }
    }
}

fn looks_like_json(head: &[u8]) -> bool {
    head.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|&b| b == b'{' || b == b'[')
}

fn altered(path: &str, actual: &str) -> String {
    format!("{path} does not hash to the digest its name claims (its content is {actual}): the archive was altered or damaged")
}

/// Normalises a tar path: no leading `./`, `..` resolved.
pub fn clean_path(path: &str) -> String {
    join("", path)
}

fn join(dir: &str, rel: &str) -> String {
    let mut parts: Vec<&str> = if rel.starts_with('/') { Vec::new() } else { dir.split('/').collect() };
    for part in rel.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.retain(|p| !p.is_empty());
    parts.join("/")
}

/// The images described by an archive's metadata, every digest checked against the bytes.
pub fn images_in(contents: &Contents) -> Result<Vec<ArchiveImage>, String> {
    check_blob_names(contents)?;
    let mut images: Vec<ArchiveImage> = Vec::new();
    if let Some(index) = contents.json.get("index.json") {
        for image in oci_images(index, contents)? {
            merge_into(&mut images, image);
        }
    }
    if let Some(manifest) = contents.json.get("manifest.json") {
        for image in docker_images(manifest, contents)? {
            merge_into(&mut images, image);
        }
    }
    if images.is_empty() {
        return Err("no manifest.json or index.json: not a docker-archive or OCI image archive".into());
    }
    Ok(images)
}

/// `blobs/<alg>/<hex>` and `<hex>.json` name their content's digest: hold them to it.
fn check_blob_names(contents: &Contents) -> Result<(), String> {
    for (path, fact) in &contents.files {
        if let Some(claimed) = digest_from_path(path) {
            if claimed != fact.digest {
                return Err(altered(path, &fact.digest));
            }
        }
    }
    Ok(())
}

/// Docker writes both files for one image; keep one entry with every name, preferring
/// the OCI description (it has the real manifest).
fn merge_into(images: &mut Vec<ArchiveImage>, image: ArchiveImage) {
    let same = images.iter_mut().find(|i| i.identity.config.is_some() && i.identity.config == image.identity.config);
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

/// `manifest.json`: `[{"Config": "<hex>.json" | "blobs/sha256/<hex>", "RepoTags": [...], "Layers": [...]}]`.
fn docker_images(json: &[u8], contents: &Contents) -> Result<Vec<ArchiveImage>, String> {
    let entries: Vec<Value> = serde_json::from_slice(json).map_err(|e| format!("manifest.json: {e}"))?;
    entries.iter().map(|entry| docker_image(entry, contents)).collect()
}

fn docker_image(entry: &Value, contents: &Contents) -> Result<ArchiveImage, String> {
    let config_path = entry.get("Config").and_then(Value::as_str).ok_or("manifest.json: an entry has no Config")?;
    let config_path = clean_path(config_path);
    let config = contents
        .fact(&config_path)
        .ok_or_else(|| format!("manifest.json names {config_path}, which the archive lacks"))?;
    let config_bytes =
        contents.json.get(&config_path).ok_or_else(|| format!("{config_path} is not an image config"))?;
    let mut layers = Vec::new();
    for path in strings(entry.get("Layers")) {
        let path = clean_path(&path);
        let fact =
            contents.fact(&path).ok_or_else(|| format!("manifest.json names layer {path}, which the archive lacks"))?;
        let media_type = if fact.gzip { DOCKER_LAYER_GZIP } else { DOCKER_LAYER };
        layers.push(Descriptor { media_type: media_type.into(), digest: fact.digest.clone(), size: fact.size });
    }
    #[derive(Serialize)]
    struct Manifest<'a> {
        #[serde(rename = "schemaVersion")]
        schema_version: u32,
        #[serde(rename = "mediaType")]
        media_type: &'a str,
        config: Descriptor,
        layers: &'a [Descriptor],
    }
    let config_desc = Descriptor { media_type: DOCKER_CONFIG.into(), digest: config.digest.clone(), size: config.size };
    let written = serde_json::to_vec(&Manifest {
        schema_version: 2,
        media_type: DOCKER_MANIFEST,
        config: config_desc,
        layers: &layers,
    })
    .expect("a manifest serialises");
    let target =
        Descriptor { media_type: DOCKER_MANIFEST.into(), digest: digest::sha256(&written), size: written.len() as u64 };
    Ok(ArchiveImage {
        names: strings(entry.get("RepoTags")),
        identity: Identity { config: Some(config.digest.clone()), manifest: None },
        target,
        written_manifest: Some(written),
        layers: layers.into_iter().map(|l| l.digest).collect(),
        diff_ids: diff_ids(config_bytes),
        platform: platform_of(config_bytes),
        by_platform: Vec::new(),
    })
}

/// `index.json`: each entry a manifest (or an index, resolved to the platform present).
fn oci_images(json: &[u8], contents: &Contents) -> Result<Vec<ArchiveImage>, String> {
    let index: Value = serde_json::from_slice(json).map_err(|e| format!("index.json: {e}"))?;
    let mut images = Vec::new();
    for desc in index.get("manifests").and_then(Value::as_array).into_iter().flatten() {
        let digest = desc.get("digest").and_then(Value::as_str).ok_or("index.json: a manifest has no digest")?;
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
        let bytes =
            contents.blob(digest)?.ok_or_else(|| format!("index.json names {digest}, which the archive lacks"))?;
        let media_type = desc.get("mediaType").and_then(Value::as_str).unwrap_or("").to_string();
        let target = Descriptor { media_type, digest: digest.to_string(), size: bytes.len() as u64 };
        let manifest = local_manifest(bytes, contents, 0, &mut HashSet::new())?;
        let single = !is_index(bytes);
        let (config, layers, diff_ids, platform) = match manifest {
            Some(m) => (Some(m.config), m.layers, m.diff_ids, m.platform.filter(|_| single)),
            None => (None, Vec::new(), Vec::new(), None),
        };
        images.push(ArchiveImage {
            names,
            identity: Identity { config, manifest: Some(digest.to_string()) },
            target,
            written_manifest: None,
            layers,
            diff_ids,
            platform,
            by_platform: if single { Vec::new() } else { platform_blobs(bytes, contents, 0, &mut HashSet::new())? },
        });
    }
    Ok(images)
}

struct Resolved {
    config: String,
    layers: Vec<String>,
    diff_ids: Vec<String>,
    platform: Option<String>,
}

fn is_index(bytes: &[u8]) -> bool {
    serde_json::from_slice::<Value>(bytes).is_ok_and(|b| {
        INDEX_TYPES.contains(&b.get("mediaType").and_then(Value::as_str).unwrap_or("")) || b.get("manifests").is_some()
    })
}

/// Follows a manifest (or an index, to the local platform whose blobs are present) to
/// its config and layers; every blob read is checked against its digest. Each index is
/// followed once (`visited`), so one listing itself many times cannot make this explode.
fn local_manifest(
    bytes: &[u8],
    contents: &Contents,
    depth: u8,
    visited: &mut HashSet<String>,
) -> Result<Option<Resolved>, String> {
    let blob: Value = serde_json::from_slice(bytes).map_err(|e| format!("a manifest in the archive: {e}"))?;
    let media_type = blob.get("mediaType").and_then(Value::as_str).unwrap_or("");
    if INDEX_TYPES.contains(&media_type) || blob.get("manifests").is_some() {
        if depth > 2 {
            return Err("image indexes nested too deeply".into());
        }
        for child in
            blob.get("manifests").and_then(Value::as_array).into_iter().flatten().filter(|c| is_local_platform(c))
        {
            let Some(d) = child.get("digest").and_then(Value::as_str) else { continue };
            if !visited.insert(d.to_string()) {
                continue;
            }
            if let Some(child_bytes) = contents.blob(d)? {
                if let Some(resolved) = local_manifest(child_bytes, contents, depth + 1, visited)? {
                    return Ok(Some(resolved));
                }
            }
        }
        return Ok(None);
    }
    let Some(config) = blob.pointer("/config/digest").and_then(Value::as_str) else { return Ok(None) };
    let config_bytes = contents.blob(config)?;
    let layers = blob
        .get("layers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|l| l.get("digest").and_then(Value::as_str).map(str::to_string))
        .collect();
    Ok(Some(Resolved {
        config: config.to_string(),
        layers,
        diff_ids: config_bytes.map(diff_ids).unwrap_or_default(),
        platform: config_bytes.and_then(platform_of),
    }))
}

/// `os/architecture[/variant]` of an image config.
fn platform_of(config: &[u8]) -> Option<String> {
    let c: Value = serde_json::from_slice(config).ok()?;
    let field = |k: &str| c.get(k).and_then(Value::as_str);
    crate::resolve::platform::join(field("os"), field("architecture"), field("variant"))
}

/// Each platform an index lists (an index inside it followed too), with the blobs of
/// that platform's manifest that the archive holds.
fn platform_blobs(
    bytes: &[u8],
    contents: &Contents,
    depth: u8,
    visited: &mut HashSet<String>,
) -> Result<Vec<(String, Vec<String>)>, String> {
    let index: Value = serde_json::from_slice(bytes).map_err(|e| format!("an index in the archive: {e}"))?;
    let mut found = Vec::new();
    for child in index.get("manifests").and_then(Value::as_array).into_iter().flatten() {
        let Some(d) = child.get("digest").and_then(Value::as_str) else { continue };
        if !visited.insert(d.to_string()) {
            continue;
        }
        let Some(child_bytes) = contents.blob(d)? else { continue };
        if is_index(child_bytes) {
            if depth < 2 {
                found.extend(platform_blobs(child_bytes, contents, depth + 1, visited)?);
            }
            continue;
        }
        let field = |k: &str| child.pointer(&format!("/platform/{k}")).and_then(Value::as_str);
        let Some(platform) = crate::resolve::platform::join(field("os"), field("architecture"), field("variant"))
        else {
            continue;
        };
        let manifest: Value =
            serde_json::from_slice(child_bytes).map_err(|e| format!("a manifest in the archive: {e}"))?;
        let mut blobs = vec![d.to_string()];
        blobs.extend(manifest.pointer("/config/digest").and_then(Value::as_str).map(str::to_string));
        blobs.extend(
            manifest
                .get("layers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|l| l.get("digest").and_then(Value::as_str).map(str::to_string)),
        );
        found.push((platform, blobs));
    }
    Ok(found)
}

/// `rootfs.diff_ids` of an image config.
fn diff_ids(config: &[u8]) -> Vec<String> {
    serde_json::from_slice::<Value>(config).ok().map(|c| strings(c.pointer("/rootfs/diff_ids"))).unwrap_or_default()
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

pub fn blob_path(digest: &str) -> Option<String> {
    let (algo, hex) = digest.split_once(':')?;
    (!algo.is_empty() && !hex.is_empty() && !hex.contains('/') && !algo.contains('/'))
        .then(|| format!("blobs/{algo}/{hex}"))
}

/// "blobs/sha256/<hex>" or "<hex>.json" → "sha256:<hex>".
pub fn digest_from_path(path: &str) -> Option<String> {
    let candidate = if let Some(rest) = path.strip_prefix("blobs/") {
        let (algo, hex) = rest.split_once('/')?;
        (algo == "sha256").then(|| format!("sha256:{hex}"))?
    } else {
        format!("sha256:{}", path.strip_suffix(".json")?)
    };
    digest::is_digest(&candidate).then_some(candidate)
}

/// Podman's docker-archive names layers `<uncompressed digest>.tar`.
pub fn named_tar_digest(path: &str) -> Option<String> {
    let hex = path.strip_suffix(".tar")?;
    let digest = format!("sha256:{hex}");
    digest::is_digest(&digest).then_some(digest)
}

/// Files that describe the archive rather than being image content.
pub fn is_metadata(path: &str) -> bool {
    matches!(path, "manifest.json" | "index.json" | "oci-layout" | "repositories")
        || path.ends_with("/json")
        || path.ends_with("/VERSION")
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfer::scan;
    use std::io;

    /// An archive as a list of (path, bytes), scanned for real.
    fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, bytes) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, path, *bytes).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn blob_name(bytes: &[u8]) -> String {
        format!("blobs/sha256/{}", &digest::sha256(bytes)[7..])
    }

    const CONFIG: &[u8] = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]}}"#;

    #[test]
    fn docker_classic_archive_gets_containerds_manifest() {
        let config_name = format!("{}.json", &digest::sha256(CONFIG)[7..]);
        let manifest = format!(r#"[{{"Config":"{config_name}","RepoTags":["app:dev"],"Layers":["abc/layer.tar"]}}]"#);
        let bytes = archive(&[("abc/layer.tar", b""), (&config_name, CONFIG), ("manifest.json", manifest.as_bytes())]);
        let mut cursor = io::Cursor::new(bytes.clone());
        let (_, images) = scan(&mut cursor).unwrap();
        assert_eq!(cursor.position() as usize, bytes.len(), "every byte consumed");
        let image = &images[0];
        assert_eq!(image.names, ["app:dev"]);
        assert_eq!(image.identity.config, Some(digest::sha256(CONFIG)));
        let written = String::from_utf8(image.written_manifest.clone().unwrap()).unwrap();
        assert_eq!(
            written,
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"{DOCKER_CONFIG}","digest":"{}","size":{}}},"layers":[{{"mediaType":"{DOCKER_LAYER}","digest":"{}","size":0}}]}}"#,
                digest::sha256(CONFIG),
                CONFIG.len(),
                digest::sha256(b"")
            )
        );
        assert_eq!(image.target.digest, digest::sha256(written.as_bytes()));
        assert_eq!(image.layers, [digest::sha256(b"")]);
        assert_eq!(image.diff_ids, [digest::sha256(b"")]);
        assert_eq!(image.platform.as_deref(), Some("linux/amd64"));
    }

    #[test]
    fn a_config_whose_bytes_do_not_match_its_name_is_refused() {
        let claimed = "441c29fcf848420af9478385aa2c50f1aed261136929dd5df71cc8bd05f30e83.json";
        let manifest = format!(r#"[{{"Config":"{claimed}","RepoTags":["app:dev"],"Layers":[]}}]"#);
        let bytes = archive(&[(claimed, CONFIG), ("manifest.json", manifest.as_bytes())]);
        let err = scan(io::Cursor::new(bytes)).unwrap_err().to_string();
        assert!(err.contains("does not hash to the digest its name claims"), "{err}");
    }

    #[test]
    fn oci_layout_with_symlinked_podman_layers_and_checked_blobs() {
        let layer = b"not really a tar";
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"digest":"{}"}},"layers":[{{"digest":"{}"}}]}}"#,
            digest::sha256(CONFIG),
            digest::sha256(layer)
        );
        let index = format!(
            r#"{{"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","annotations":{{"io.containerd.image.name":"docker.io/library/app:dev"}}}}]}}"#,
            digest::sha256(manifest.as_bytes())
        );
        let files = [
            (blob_name(layer), &layer[..]),
            (blob_name(CONFIG), CONFIG),
            (blob_name(manifest.as_bytes()), manifest.as_bytes()),
            ("index.json".to_string(), index.as_bytes()),
        ];
        let refs: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (p.as_str(), *b)).collect();
        let (_, images) = scan(io::Cursor::new(archive(&refs))).unwrap();
        assert_eq!(images[0].identity.config, Some(digest::sha256(CONFIG)));
        assert_eq!(images[0].identity.manifest, Some(digest::sha256(manifest.as_bytes())));
        assert_eq!(images[0].layers, [digest::sha256(layer)]);
        assert!(images[0].written_manifest.is_none());

        let mut tampered = refs.clone();
        tampered[0].1 = b"other bytes";
        let err = scan(io::Cursor::new(archive(&tampered))).unwrap_err().to_string();
        assert!(err.contains("does not hash"), "{err}");
    }

    #[test]
    fn multi_platform_index_resolves_to_the_local_platform() {
        let arch = local_arch();
        let local = format!(r#"{{"config":{{"digest":"{}"}},"layers":[]}}"#, digest::sha256(CONFIG));
        let nested = format!(
            r#"{{"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
              {{"digest":"sha256:{}","platform":{{"os":"linux","architecture":"not-{arch}"}}}},
              {{"digest":"{}","platform":{{"os":"linux","architecture":"{arch}"}}}}]}}"#,
            "2".repeat(64),
            digest::sha256(local.as_bytes())
        );
        let index = format!(
            r#"{{"manifests":[{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{}","annotations":{{"io.containerd.image.name":"docker.io/library/app:dev"}}}}]}}"#,
            digest::sha256(nested.as_bytes())
        );
        let files = [
            (blob_name(nested.as_bytes()), nested.as_bytes()),
            (blob_name(local.as_bytes()), local.as_bytes()),
            ("index.json".to_string(), index.as_bytes()),
        ];
        let refs: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (p.as_str(), *b)).collect();
        let (_, images) = scan(io::Cursor::new(archive(&refs))).unwrap();
        assert_eq!(images[0].identity.config, Some(digest::sha256(CONFIG)));
        assert_eq!(images[0].identity.manifest, Some(digest::sha256(nested.as_bytes())));
        let local_blobs = vec![digest::sha256(local.as_bytes()), digest::sha256(CONFIG)];
        assert_eq!(images[0].by_platform, [(format!("linux/{arch}"), local_blobs)], "absent platforms list nothing");
    }

    #[test]
    fn podman_docker_archive_manifest_resolves_symlinked_layers() {
        let mut contents = Contents::default();
        let mut h = Hasher::default();
        h.update(b"layer");
        contents.add_file("1e8f.tar".into(), h.fact(), None);
        contents.add_symlink("b16a/layer.tar".into(), "../1e8f.tar");
        let mut c = Hasher::default();
        c.update(CONFIG);
        contents.add_file("cfg.json".into(), c.fact(), Some(CONFIG.to_vec()));
        let manifest = br#"[{"Config":"cfg.json","RepoTags":["localhost/app:dev"],"Layers":["b16a/layer.tar"]}]"#;
        let mut m = Hasher::default();
        m.update(manifest);
        contents.add_file("manifest.json".into(), m.fact(), Some(manifest.to_vec()));
        let images = images_in(&contents).unwrap();
        assert_eq!(images[0].layers, [digest::sha256(b"layer")]);
    }

    #[test]
    fn bare_tag_annotation_is_not_a_name_and_not_a_tar_is_an_error() {
        let local = format!(r#"{{"config":{{"digest":"{}"}},"layers":[]}}"#, digest::sha256(CONFIG));
        let index = format!(
            r#"{{"manifests":[{{"digest":"{}","annotations":{{"org.opencontainers.image.ref.name":"dev"}}}}]}}"#,
            digest::sha256(local.as_bytes())
        );
        let files = [(blob_name(local.as_bytes()), local.as_bytes()), ("index.json".to_string(), index.as_bytes())];
        let refs: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (p.as_str(), *b)).collect();
        assert!(scan(io::Cursor::new(archive(&refs))).unwrap().1[0].names.is_empty());
        assert!(scan(io::Cursor::new(b"hello, not a tar".to_vec())).is_err());
    }
}
