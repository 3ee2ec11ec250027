//! Pushing an image to the registry straight from an engine's `save` stream (or an
//! archive), read entry by entry as the load reads it: every blob is uploaded while it
//! streams past, its digest computed from the bytes; then the manifest goes up under the tag.

use std::io::{self, Read};

use serde_json::Value;

use super::client::Client;
use crate::digest::Hasher;
use crate::error::{Error, Result};
use crate::resolve::image::Identity;
use crate::transfer::archive::{
    self, blob_path, clean_path, digest_from_path, is_metadata, named_tar_digest, ArchiveImage, Contents,
    DOCKER_MANIFEST, INDEX_TYPES,
};
use crate::transfer::export::{Export, Source};

/// What a push left in the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// `<repo>:<tag>` as pushed, e.g. `app:dev`.
    pub repo: String,
    pub tag: String,
    /// The digest of the manifest the tag now points at.
    pub manifest: String,
    /// The image's config digest (what CRI reports as the id), when known.
    pub config: Option<String>,
    pub blobs_sent: usize,
    pub blobs_had: usize,
    pub bytes_sent: u64,
}

/// Streams `source` into the registry under `repo:tag`. `identity` picks the image when the
/// archive holds several; `layers` are its uncompressed layer digests where known. Nothing
/// is exported when the tag already names the image, and no blob the registry holds is sent.
pub fn push(
    client: &Client,
    source: &Source,
    identity: &Identity,
    layers: &[String],
    repo: &str,
    tag: &str,
) -> Result<Pushed> {
    if let Some(pushed) = already_there(client, identity, repo, tag) {
        return Ok(pushed);
    }
    // An archive that names a layer by anything but its digest (Docker's legacy `save`)
    // leaves it unknown until its bytes are read: what the registry holds of the image's
    // layers decides whether such a layer is sent, only hashed, or first spooled.
    let held: Vec<String> = layers.iter().filter(|l| client.has_blob(repo, l).unwrap_or(false)).cloned().collect();
    let held = Held { layers: &held, all: !layers.is_empty() && held.len() == layers.len() };
    let mut export = Export::open(source)?;
    let mut tally = Tally::default();
    let read = upload_all(client, &mut export.reader, repo, held, &mut tally);
    let produced = export.finish();
    let contents = match (read, produced) {
        (_, Err(e)) => return Err(e),
        (Err(Failure::Registry(e)), _) => return Err(registry_error(e)),
        (Err(Failure::Archive(e)), _) => {
            return Err(Error::input(
                format!("{} is not an image archive: {e}", source.describe()),
                "pass a docker-archive or OCI archive, as written by `docker save` or `podman save`",
            ))
        }
        (Ok(contents), Ok(())) => contents,
    };
    let images = archive::images_in(&contents).map_err(|e| Error::input(format!("{}: {e}", source.describe()), ""))?;
    let image = pick(&images, identity)
        .ok_or_else(|| Error::failed(format!("{} did not hold the image", source.describe()), "run it again"))?;
    let (manifest, config) = put_manifests(client, &contents, image, repo, tag).map_err(registry_error)?;
    Ok(Pushed {
        repo: repo.to_string(),
        tag: tag.to_string(),
        manifest,
        config: config.or_else(|| image.identity.config.clone()),
        blobs_sent: tally.sent,
        blobs_had: tally.had,
        bytes_sent: tally.bytes,
    })
}

/// The push of an image the tag already names: nothing to send.
fn already_there(client: &Client, identity: &Identity, repo: &str, tag: &str) -> Option<Pushed> {
    let (_, bytes) = client.get_manifest(repo, tag).ok()?;
    // The registry serves the bytes it was given: their digest is the manifest's.
    let digest = crate::digest::sha256(&bytes);
    let config = config_of(&bytes);
    let same = identity.manifest.as_deref() == Some(digest.as_str())
        || (identity.config.is_some() && config.is_some() && identity.config == config);
    same.then(|| Pushed {
        repo: repo.to_string(),
        tag: tag.to_string(),
        manifest: digest,
        config: config.or_else(|| identity.config.clone()),
        blobs_sent: 0,
        blobs_had: 0,
        bytes_sent: 0,
    })
}

fn registry_error(e: String) -> Error {
    Error::failed(
        format!("pushing to the registry failed: {e}"),
        "check it with `kindload registry status`; `kindload registry up` starts it again",
    )
}

fn pick<'a>(images: &'a [ArchiveImage], identity: &Identity) -> Option<&'a ArchiveImage> {
    if images.len() == 1 {
        return images.first();
    }
    images.iter().find(|i| {
        (identity.config.is_some() && i.identity.config == identity.config)
            || (identity.manifest.is_some() && i.identity.manifest == identity.manifest)
    })
}

#[derive(Default)]
struct Tally {
    sent: usize,
    had: usize,
    bytes: u64,
}

enum Failure {
    Archive(io::Error),
    Registry(String),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Archive(e)
    }
}

/// The image's layers the registry holds, and whether that is all of them.
struct Held<'a> {
    layers: &'a [String],
    all: bool,
}

/// Reads the whole archive; uploads every file that is image content, keeps the metadata.
fn upload_all(
    client: &Client,
    reader: impl Read,
    repo: &str,
    held: Held,
    tally: &mut Tally,
) -> Result<Contents, Failure> {
    let mut archive = tar::Archive::new(reader);
    let mut contents = Contents::default();
    for entry in archive.entries()? {
        let mut entry = entry?;
        contents.entries += 1;
        let path = clean_path(&entry.path()?.to_string_lossy());
        let kind = entry.header().entry_type();
        if kind.is_symlink() {
            if let Some(target) = entry.link_name()? {
                contents.add_symlink(path, &target.to_string_lossy());
            }
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let size = entry.header().size()?;
        if is_metadata(&path) || size <= archive::KEEP_AT_MOST {
            let mut bytes = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut bytes)?;
            let mut hasher = Hasher::default();
            hasher.update(&bytes);
            let fact = hasher.fact();
            if !is_metadata(&path) {
                let done = client
                    .upload_blob(repo, &mut bytes.as_slice(), size, Some(&fact.digest))
                    .map_err(Failure::Registry)?;
                count(tally, &done);
            }
            let kept = contents.keeps(&bytes, size).then_some(bytes);
            contents.add_file(path, fact, kept);
            continue;
        }
        let known = digest_from_path(&path).or_else(|| named_tar_digest(&path));
        let done = match known {
            None if held.all => held_layer(&mut entry, held.layers)?,
            None if !held.layers.is_empty() => spooled_layer(client, repo, &mut entry, size, held.layers)?,
            _ => client.upload_blob(repo, &mut entry, size, known.as_deref()).map_err(Failure::Registry)?,
        };
        count(tally, &done);
        let fact = crate::digest::FileFact { digest: done.digest.clone(), size: done.size, gzip: false };
        contents.add_file(path, fact, None);
    }
    io::copy(&mut archive.into_inner(), &mut io::sink())?;
    if contents.entries == 0 {
        return Err(Failure::Archive(io::Error::new(
            io::ErrorKind::InvalidData,
            "the archive is empty or not a tar archive",
        )));
    }
    Ok(contents)
}

/// Hashes a layer the registry holds (one of `held`) instead of sending it.
fn held_layer(entry: &mut dyn Read, held: &[String]) -> Result<super::client::Uploaded, Failure> {
    let fact = hash_through(entry, &mut io::sink())?;
    if !held.contains(&fact.digest) {
        return Err(Failure::Registry(format!(
            "the export holds a layer {} that is not one of the image's layers (was it rebuilt meanwhile?); load it again",
            fact.digest
        )));
    }
    Ok(super::client::Uploaded { digest: fact.digest, size: fact.size, sent: false })
}

/// Reads `entry` to its end into `out`, hashing it on the way.
fn hash_through(entry: &mut dyn Read, out: &mut dyn io::Write) -> io::Result<crate::digest::FileFact> {
    let mut hasher = Hasher::default();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = entry.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.fact());
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
    }
}

/// A layer the registry may hold, named by no digest: written to a temporary file while
/// hashed, then sent from it only when the registry lacks it.
fn spooled_layer(
    client: &Client,
    repo: &str,
    entry: &mut dyn Read,
    size: u64,
    held: &[String],
) -> Result<super::client::Uploaded, Failure> {
    use std::io::Seek;
    let mut spool = tempfile::tempfile()?;
    let fact = hash_through(entry, &mut spool)?;
    if held.contains(&fact.digest) {
        return Ok(super::client::Uploaded { digest: fact.digest, size: fact.size, sent: false });
    }
    spool.rewind()?;
    client.upload_blob(repo, &mut spool, size, Some(&fact.digest)).map_err(Failure::Registry)
}

fn count(tally: &mut Tally, done: &super::client::Uploaded) {
    if done.sent {
        tally.sent += 1;
        tally.bytes += done.size;
    } else {
        tally.had += 1;
    }
}

/// Puts the image's manifest under the tag: the one kindload wrote for a docker-archive,
/// the manifest blob itself for an OCI layout. An index goes up whole when the archive has
/// every manifest it names, else only the manifest of the platform that was exported.
/// Returns the tagged manifest's digest and the config digest it names.
fn put_manifests(
    client: &Client,
    contents: &Contents,
    image: &ArchiveImage,
    repo: &str,
    tag: &str,
) -> Result<(String, Option<String>), String> {
    if let Some(bytes) = &image.written_manifest {
        let digest = client.put_manifest(repo, tag, DOCKER_MANIFEST, bytes)?;
        return Ok((digest, config_of(bytes)));
    }
    let target = &image.target;
    let bytes = blob_bytes(contents, &target.digest).ok_or_else(|| format!("the archive lacks {}", target.digest))?;
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("{}: {e}", target.digest))?;
    let media_type =
        value.get("mediaType").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| target.media_type.clone());
    if !INDEX_TYPES.contains(&media_type.as_str()) {
        let digest = client.put_manifest(repo, tag, &media_type, bytes)?;
        return Ok((digest, config_of(bytes)));
    }
    let children: Vec<(String, String)> = value
        .get("manifests")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| {
            let digest = m.get("digest")?.as_str()?.to_string();
            let media =
                m.get("mediaType").and_then(Value::as_str).unwrap_or("application/vnd.oci.image.manifest.v1+json");
            Some((digest, media.to_string()))
        })
        .collect();
    let all_present = children.iter().all(|(d, _)| blob_bytes(contents, d).is_some());
    if all_present {
        for (digest, media) in &children {
            client.put_manifest(repo, digest, media, blob_bytes(contents, digest).expect("present"))?;
        }
        let digest = client.put_manifest(repo, tag, &media_type, bytes)?;
        return Ok((digest, image.identity.config.clone()));
    }
    let wanted = image.identity.config.as_deref();
    for (digest, media) in &children {
        let Some(child) = blob_bytes(contents, digest) else { continue };
        if wanted.is_none() || config_of(child).as_deref() == wanted {
            let digest = client.put_manifest(repo, tag, media, child)?;
            return Ok((digest, config_of(child)));
        }
    }
    Err("the archive holds no manifest for the exported platform".into())
}

fn blob_bytes<'a>(contents: &'a Contents, digest: &str) -> Option<&'a [u8]> {
    contents.json.get(&blob_path(digest)?).map(Vec::as_slice)
}

/// The config digest a manifest names.
pub fn config_of(manifest: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(manifest).ok()?;
    value.pointer("/config/digest").and_then(Value::as_str).map(str::to_string)
}
