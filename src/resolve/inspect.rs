//! `docker image inspect IMG` / `podman image inspect IMG` output: a JSON array with one
//! object per image. Only the identity and platform fields are kept.

use serde::Deserialize;

/// One image as the engine describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineImage {
    /// Always `sha256:<hex>` (Podman prints it unprefixed; the prefix is added).
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub os: Option<String>,
    pub architecture: Option<String>,
    pub variant: Option<String>,
    /// Docker's containerd store: `.Descriptor.digest` (then `.Id` is that manifest digest,
    /// not the config digest).
    pub manifest_digest: Option<String>,
    /// Podman: `.Digest`.
    pub podman_digest: Option<String>,
    /// Docker's containerd store: `.Descriptor.mediaType` (an index for a multi-platform image).
    pub descriptor_media_type: Option<String>,
    /// `.RootFS.Layers`: the uncompressed digests of the layers, bottom first.
    pub diff_ids: Vec<String>,
    /// `.Size`: the unpacked size in bytes, an estimate of what an export carries.
    pub size: Option<u64>,
}

impl EngineImage {
    /// The image is an index of several platforms: its one `Architecture` is not all it holds.
    pub fn is_index(&self) -> bool {
        self.descriptor_media_type.as_deref().is_some_and(|m| m.contains("index") || m.contains("manifest.list"))
    }

    /// True when `.Id` is a manifest digest (Docker's containerd image store): a descriptor
    /// is present and its digest is the id. Such an id never matches what crictl reports.
    pub fn id_is_manifest_digest(&self) -> bool {
        self.manifest_digest.as_deref() == Some(self.id.as_str())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawImage {
    id: String,
    // Older engines print `null` rather than `[]` for an untagged image.
    repo_tags: Option<Vec<String>>,
    repo_digests: Option<Vec<String>>,
    os: Option<String>,
    architecture: Option<String>,
    variant: Option<String>,
    descriptor: Option<RawDescriptor>,
    digest: Option<String>,
    #[serde(rename = "RootFS")]
    root_fs: Option<RawRootFs>,
    size: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawRootFs {
    layers: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct RawDescriptor {
    digest: Option<String>,
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
}

/// Parses the whole inspect array; an id that is not a sha256 image id is an error.
pub fn parse_image_inspect(json: &str) -> Result<Vec<EngineImage>, String> {
    let raw: Vec<RawImage> =
        serde_json::from_str(json).map_err(|e| format!("image inspect output is not the expected JSON: {e}"))?;
    raw.into_iter().map(engine_image).collect()
}

fn engine_image(raw: RawImage) -> Result<EngineImage, String> {
    let id = normalize_id(&raw.id).ok_or_else(|| format!("image inspect gave an unexpected Id {:?}", raw.id))?;
    Ok(EngineImage {
        id,
        repo_tags: raw.repo_tags.unwrap_or_default(),
        repo_digests: raw.repo_digests.unwrap_or_default(),
        os: non_empty(raw.os),
        architecture: non_empty(raw.architecture),
        variant: non_empty(raw.variant),
        descriptor_media_type: raw.descriptor.as_ref().and_then(|d| non_empty(d.media_type.clone())),
        manifest_digest: raw.descriptor.and_then(|d| non_empty(d.digest)),
        podman_digest: non_empty(raw.digest),
        diff_ids: raw.root_fs.and_then(|r| r.layers).unwrap_or_default(),
        size: raw.size,
    })
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

/// Normalise an image id: `b215...` (64 hex) → `sha256:b215...`; `sha256:...` unchanged;
/// anything else `None`. Only lowercase hex counts, as engines and CRI print it.
pub fn normalize_id(id: &str) -> Option<String> {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    let is_sha256_hex = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    is_sha256_hex.then(|| format!("sha256:{hex}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKER_20: &str = include_str!("../../tests/fixtures/engines/docker-20.10-image-inspect.json");
    const DOCKER_28_CONTAINERD: &str =
        include_str!("../../tests/fixtures/engines/docker-28.5-containerd-store-image-inspect.json");
    const PODMAN_4: &str = include_str!("../../tests/fixtures/engines/podman-4.3-image-inspect.json");

    fn only(json: &str) -> EngineImage {
        let mut images = parse_image_inspect(json).unwrap();
        assert_eq!(images.len(), 1);
        images.remove(0)
    }

    #[test]
    fn docker_classic_store_id_is_the_config_digest() {
        let image = only(DOCKER_20);
        assert_eq!(image.id, "sha256:441c29fcf848420af9478385aa2c50f1aed261136929dd5df71cc8bd05f30e83");
        assert_eq!(image.repo_tags, ["bb:1", "example.com/app/bb:dev"]);
        assert!(image.repo_digests.is_empty());
        assert_eq!(image.os.as_deref(), Some("linux"));
        assert_eq!(image.architecture.as_deref(), Some("amd64"));
        assert_eq!(image.variant, None);
        assert_eq!(image.manifest_digest, None);
        assert_eq!(image.podman_digest, None);
        assert!(!image.id_is_manifest_digest());
    }

    #[test]
    fn docker_containerd_store_id_is_the_manifest_digest() {
        let image = only(DOCKER_28_CONTAINERD);
        let manifest = "sha256:a9940815d560e628155cff1f71b3a2bcf161d299fc35b245424532a959f92d52";
        assert_eq!(image.id, manifest);
        assert_eq!(image.manifest_digest.as_deref(), Some(manifest));
        assert_eq!(image.repo_tags, ["example.com/app/bb28:dev"]);
        assert_eq!(image.repo_digests, [format!("example.com/app/bb28@{manifest}")]);
        assert!(image.id_is_manifest_digest());
    }

    #[test]
    fn podman_id_gets_its_prefix() {
        let image = only(PODMAN_4);
        assert_eq!(image.id, "sha256:b21546368a959dcf24dcfaf1b90e72f199d5fac6eaff83cf4b329f97e366b7bd");
        assert_eq!(
            image.podman_digest.as_deref(),
            Some("sha256:7fa47645c6db52c20a9ea6b9e6e5f40ec09928a88059f333b000916db7b1fc57")
        );
        assert_eq!(image.repo_tags, ["localhost/test/hello:v1"]);
        assert_eq!(image.manifest_digest, None);
        assert!(!image.id_is_manifest_digest());
    }

    #[test]
    fn descriptor_with_another_digest_is_not_a_manifest_id() {
        let json = r#"[{"Id":"sha256:1111111111111111111111111111111111111111111111111111111111111111",
            "RepoTags":null,"Variant":"v8",
            "Descriptor":{"digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222"}}]"#;
        let image = only(json);
        assert!(!image.id_is_manifest_digest());
        assert!(image.repo_tags.is_empty());
        assert_eq!(image.variant.as_deref(), Some("v8"));
    }

    #[test]
    fn empty_array_and_bad_input() {
        assert_eq!(parse_image_inspect("[]\n").unwrap(), vec![]);
        assert!(parse_image_inspect("Error: No such image: app").is_err());
        assert!(parse_image_inspect(r#"[{"RepoTags":[]}]"#).is_err(), "Id is required");
        let err = parse_image_inspect(r#"[{"Id":"not-an-id"}]"#).unwrap_err();
        assert!(err.contains("not-an-id"), "{err}");
    }

    #[test]
    fn normalize_ids() {
        let hex = "b21546368a959dcf24dcfaf1b90e72f199d5fac6eaff83cf4b329f97e366b7bd";
        let prefixed = format!("sha256:{hex}");
        assert_eq!(normalize_id(hex), Some(prefixed.clone()));
        assert_eq!(normalize_id(&prefixed), Some(prefixed.clone()));
        assert_eq!(normalize_id(&hex[..12]), None);
        assert_eq!(normalize_id(&hex.to_uppercase()), None);
        assert_eq!(normalize_id(&format!("sha512:{hex}")), None);
        assert_eq!(normalize_id(&format!("sha256:sha256:{hex}")), None);
        assert_eq!(normalize_id(""), None);
    }
}
