//! What the kubelet can see: crictl's answers about images.

use serde::Deserialize;

/// One image as the CRI reports it; `id` is the config digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriImage {
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCriImage {
    id: String,
    // crictl prints `[]` today, but the CRI message allows these to be absent or null.
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    repo_digests: Option<Vec<String>>,
}

impl From<RawCriImage> for CriImage {
    fn from(raw: RawCriImage) -> Self {
        CriImage {
            id: raw.id,
            repo_tags: raw.repo_tags.unwrap_or_default(),
            repo_digests: raw.repo_digests.unwrap_or_default(),
        }
    }
}

#[derive(Deserialize)]
struct RawInspecti {
    status: Option<RawCriImage>,
}

#[derive(Deserialize)]
struct RawImageList {
    images: Option<Vec<RawCriImage>>,
}

/// `crictl inspecti -o json REF` output → `status.id`, `repoTags`, `repoDigests`.
pub fn parse_crictl_inspecti(json: &str) -> Result<CriImage, String> {
    let raw: RawInspecti =
        serde_json::from_str(json).map_err(|e| format!("crictl inspecti output is not the expected JSON: {e}"))?;
    raw.status.map(CriImage::from).ok_or_else(|| "crictl inspecti output has no image status".to_string())
}

/// `crictl images -o json` → all images. For a missing ref crictl returns the whole list,
/// so callers filter by tag themselves.
pub fn parse_crictl_images(json: &str) -> Result<Vec<CriImage>, String> {
    let raw: RawImageList =
        serde_json::from_str(json).map_err(|e| format!("crictl images output is not the expected JSON: {e}"))?;
    Ok(raw.images.unwrap_or_default().into_iter().map(CriImage::from).collect())
}

/// crictl inspecti's stderr says the image is missing (`no such image "REF" present`),
/// as opposed to crictl failing for another reason (no socket, no permission).
pub fn crictl_says_missing(stderr: &str) -> bool {
    stderr.contains("no such image")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "sha256:441c29fcf848420af9478385aa2c50f1aed261136929dd5df71cc8bd05f30e83";
    const IMPORT_DIGEST_NAME: &str =
        "docker.io/library/import-2026-11-24@sha256:50fd1c54b129cd11eed7c33c2f001f4bb5b9fe7e4490e9235007c687fcd22e28";

    struct Fixtures {
        version: &'static str,
        inspecti_present: &'static str,
        inspecti_missing: &'static str,
        images_json: &'static str,
    }

    macro_rules! fixture {
        ($dir:literal, $file:literal) => {
            include_str!(concat!("../../tests/fixtures/", $dir, "/", $file))
        };
    }

    macro_rules! fixtures {
        ($dir:literal) => {
            Fixtures {
                version: $dir,
                inspecti_present: fixture!($dir, "crictl-inspecti-present.json"),
                inspecti_missing: fixture!($dir, "crictl-inspecti-missing.txt"),
                images_json: fixture!($dir, "crictl-images-o-json.json"),
            }
        };
    }

    fn all() -> [Fixtures; 3] {
        [fixtures!("containerd-1.6"), fixtures!("containerd-1.7"), fixtures!("containerd-2.1")]
    }

    /// containerd 2.x no longer reports the import-time digest name as a repo digest.
    fn expected_repo_digests(version: &str) -> Vec<String> {
        if version.starts_with("containerd-1.") {
            vec![IMPORT_DIGEST_NAME.to_string()]
        } else {
            vec![]
        }
    }

    #[test]
    fn inspecti_present_on_every_version() {
        for f in all() {
            let image = parse_crictl_inspecti(f.inspecti_present).unwrap();
            assert_eq!(image.id, CONFIG, "{}", f.version);
            assert_eq!(image.repo_tags, ["example.com/app/bb:dev"], "{}", f.version);
            assert_eq!(image.repo_digests, expected_repo_digests(f.version), "{}", f.version);
        }
    }

    #[test]
    fn images_list_on_every_version() {
        for f in all() {
            let images = parse_crictl_images(f.images_json).unwrap();
            let expected = CriImage {
                id: CONFIG.into(),
                repo_tags: vec!["example.com/app/bb:dev".into()],
                repo_digests: expected_repo_digests(f.version),
            };
            assert_eq!(images, [expected], "{}", f.version);
        }
    }

    #[test]
    fn missing_image_stderr_on_every_version() {
        for f in all() {
            assert!(crictl_says_missing(f.inspecti_missing), "{}", f.version);
        }
        let other_failure = r#"time="2026-11-24T13:07:25Z" level=fatal msg="validate service connection: validate CRI v1 image API for endpoint \"unix:///run/containerd/containerd.sock\": rpc error: code = Unavailable""#;
        assert!(!crictl_says_missing(other_failure));
        assert!(!crictl_says_missing(""));
    }

    #[test]
    fn crictl_json_edge_cases() {
        assert_eq!(parse_crictl_images(r#"{"images": []}"#).unwrap(), vec![]);
        assert_eq!(parse_crictl_images(r#"{"images": null}"#).unwrap(), vec![]);
        let sparse = parse_crictl_images(r#"{"images":[{"id":"sha256:ab","repoTags":null}]}"#).unwrap();
        assert_eq!(sparse[0].repo_tags, Vec::<String>::new());
        assert!(parse_crictl_images("not json").is_err());
        assert!(parse_crictl_inspecti("{}").unwrap_err().contains("no image status"));
        assert!(parse_crictl_inspecti(r#"{"status":{"repoTags":[]}}"#).is_err(), "id is required");
    }
}
