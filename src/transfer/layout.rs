//! The archive each node receives: an OCI image layout holding only the blobs that node
//! lacks, then `oci-layout` and an `index.json` naming every image under every name it
//! must answer to. containerd's importer stores each file by the digest of its bytes and
//! resolves the index against its content store, so blobs the node already has can be left out.
//!
//! Every file goes under a folder of this run's own (`blobs/kindload-<run>/`). containerd
//! names an import's ingest after the file's path and lets one writer hold a name at a
//! time: with shared paths, two runs sending the same base layer wait for each other's
//! ingest on each node, and runs that feed several nodes in step deadlock. With paths of
//! their own they never share an ingest, and a failed run's ingests can be found by name.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::OnceLock;

use super::archive::{ArchiveImage, Descriptor};

const BLOCK: u64 = 512;

/// This run's folder in every layout it sends: the process id and the start time, so two
/// runs (on one host or several) never share it.
pub fn run_folder() -> &'static str {
    static FOLDER: OnceLock<String> = OnceLock::new();
    FOLDER.get_or_init(|| {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        format!("blobs/kindload-{:x}-{:x}", std::process::id(), nanos & 0xffff_ffff_ffff)
    })
}

/// Where a file is put in this run's layout: a blob by its digest's hex, or a file whose
/// digest only its bytes tell by a name made from its archive path.
pub fn blob(name: &str) -> String {
    let name = name.split_once(':').map_or(name, |(_, hex)| hex);
    format!("{}/{}", run_folder(), name.replace('/', "_"))
}

/// The ingest name containerd gives a file of this run's layouts (`tar-` and its path):
/// what a failed run looks for among a node's active ingests.
pub fn ingest_prefix() -> String {
    format!("tar-{}/", run_folder())
}

/// The tar header of a regular file.
pub fn header(path: &str, size: u64) -> Vec<u8> {
    let mut header = tar::Header::new_ustar();
    header.set_path(path).expect("layout paths are short and plain");
    header.set_size(size);
    header.set_mode(0o444);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    header.as_bytes().to_vec()
}

/// Zeros completing a file of `size` bytes to a whole tar block.
pub fn padding(size: u64) -> Vec<u8> {
    vec![0; ((BLOCK - size % BLOCK) % BLOCK) as usize]
}

/// A whole small file: header, bytes, padding.
pub fn file(path: &str, bytes: &[u8]) -> Vec<u8> {
    let mut out = header(path, bytes.len() as u64);
    out.extend_from_slice(bytes);
    out.extend(padding(bytes.len() as u64));
    out
}

/// The end of the archive: two zero blocks.
pub fn end() -> Vec<u8> {
    vec![0; 2 * BLOCK as usize]
}

/// One image to name in index.json: what it points at, and the names.
pub struct Entry<'a> {
    pub image: &'a ArchiveImage,
    pub names: Vec<String>,
}

#[derive(Serialize)]
struct Index {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    manifests: Vec<Named>,
}

#[derive(Serialize)]
struct Named {
    #[serde(flatten)]
    descriptor: Descriptor,
    annotations: BTreeMap<&'static str, String>,
}

/// The closing files: manifests kindload wrote, `oci-layout`, and `index.json`.
pub fn closing(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut written = std::collections::HashSet::new();
    for entry in entries {
        if let Some(manifest) = &entry.image.written_manifest {
            if written.insert(&entry.image.target.digest) {
                out.extend(file(&blob(&entry.image.target.digest), manifest));
            }
        }
    }
    out.extend(file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#));
    let index = Index {
        schema_version: 2,
        media_type: "application/vnd.oci.image.index.v1+json",
        manifests: entries
            .iter()
            .flat_map(|e| {
                e.names.iter().map(|name| Named {
                    descriptor: e.image.target.clone(),
                    annotations: BTreeMap::from([("io.containerd.image.name", name.clone())]),
                })
            })
            .collect(),
    };
    out.extend(file("index.json", &serde_json::to_vec(&index).expect("an index serialises")));
    out.extend(end());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::image::Identity;
    use std::io::Read;

    #[test]
    fn closing_files_form_a_readable_oci_layout() {
        let image = ArchiveImage {
            names: vec![],
            identity: Identity::default(),
            target: Descriptor {
                media_type: super::super::archive::DOCKER_MANIFEST.into(),
                digest: format!("sha256:{}", "a".repeat(64)),
                size: 3,
            },
            written_manifest: Some(b"{ }".to_vec()),
            layers: vec![],
            diff_ids: vec![],
            platform: None,
            by_platform: vec![],
        };
        let mut bytes = file("blobs/sha256/x", b"layer bytes");
        bytes.extend(closing(&[Entry {
            image: &image,
            names: vec!["docker.io/library/app:dev".into(), "x/y:z".into()],
        }]));
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            seen.push((entry.path().unwrap().display().to_string(), text));
        }
        let paths: Vec<&str> = seen.iter().map(|(p, _)| p.as_str()).collect();
        let manifest = blob(&format!("sha256:{}", "a".repeat(64)));
        assert_eq!(paths, ["blobs/sha256/x", manifest.as_str(), "oci-layout", "index.json"]);
        assert!(manifest.starts_with("blobs/kindload-") && manifest.ends_with(&"a".repeat(64)), "{manifest}");
        assert_eq!(manifest.matches('/').count(), 2, "one folder of the run's own: {manifest}");
        let index: serde_json::Value = serde_json::from_str(&seen[3].1).unwrap();
        assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
        assert_eq!(index["manifests"][1]["annotations"]["io.containerd.image.name"], "x/y:z");
        assert_eq!(index["manifests"][0]["size"], 3);
    }
}
