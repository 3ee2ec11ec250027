//! Node-side listings: what the kubelet can see (crictl) and, where crictl is missing,
//! what containerd holds in the `k8s.io` namespace (ctr).

use serde::Deserialize;

use crate::resolve::inspect::normalize_id;

/// The label the CRI plugin puts on images it manages (and so the kubelet can use).
const CRI_MANAGED_LABEL: &str = "io.cri-containerd.image=managed";

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

/// One row of `ctr -n k8s.io images ls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtrImage {
    pub name: String,
    pub media_type: String,
    /// The DIGEST column: the digest of the manifest or index the name points at.
    pub target: String,
    /// LABELS has `io.cri-containerd.image=managed`.
    pub managed: bool,
}

/// Parses the `ctr -n k8s.io images ls` table. SIZE contains a space (`1.9 MiB`), so REF,
/// TYPE and DIGEST are the first three fields and LABELS is the last.
pub fn parse_ctr_images(table: &str) -> Vec<CtrImage> {
    table.lines().filter(|line| !is_ctr_header(line)).filter_map(parse_ctr_row).collect()
}

fn is_ctr_header(line: &str) -> bool {
    let mut fields = line.split_whitespace();
    fields.next() == Some("REF") && fields.next() == Some("TYPE")
}

fn parse_ctr_row(line: &str) -> Option<CtrImage> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    // REF TYPE DIGEST SIZE(2 words) PLATFORMS LABELS
    if fields.len() < 5 {
        return None;
    }
    let labels = fields[fields.len() - 1];
    Some(CtrImage {
        name: fields[0].to_string(),
        media_type: fields[1].to_string(),
        target: fields[2].to_string(),
        managed: labels.split(',').any(|label| label == CRI_MANAGED_LABEL),
    })
}

/// The config digest (what CRI reports as image id) for an image target: the CRI plugin
/// keeps a managed ref named `sha256:<config digest>` pointing at the same target.
pub fn config_digest_for_target(images: &[CtrImage], target: &str) -> Option<String> {
    images
        .iter()
        .filter(|image| image.managed && image.target == target)
        .find(|image| normalize_id(&image.name).as_deref() == Some(image.name.as_str()))
        .map(|image| image.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "sha256:441c29fcf848420af9478385aa2c50f1aed261136929dd5df71cc8bd05f30e83";
    const MANIFEST: &str = "sha256:50fd1c54b129cd11eed7c33c2f001f4bb5b9fe7e4490e9235007c687fcd22e28";
    const IMPORT_DIGEST_NAME: &str =
        "docker.io/library/import-2026-11-24@sha256:50fd1c54b129cd11eed7c33c2f001f4bb5b9fe7e4490e9235007c687fcd22e28";

    struct Fixtures {
        version: &'static str,
        inspecti_present: &'static str,
        inspecti_missing: &'static str,
        images_json: &'static str,
        ctr_ls: &'static str,
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
                ctr_ls: fixture!($dir, "ctr-images-ls.txt"),
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

    #[test]
    fn ctr_table_on_every_version() {
        for f in all() {
            let images = parse_ctr_images(f.ctr_ls);
            let bb = images.iter().find(|i| i.name == "example.com/app/bb:dev").expect(f.version);
            assert_eq!(bb.target, MANIFEST, "{}", f.version);
            assert_eq!(bb.media_type, "application/vnd.docker.distribution.manifest.v2+json");
            assert!(bb.managed);
            assert!(images.iter().all(|i| i.name != "REF"), "header skipped");
            assert_eq!(config_digest_for_target(&images, MANIFEST).as_deref(), Some(CONFIG), "{}", f.version);
        }
    }

    #[test]
    fn ctr_table_rows_per_version() {
        let [v16, _, v21] = all();
        let names: Vec<String> = parse_ctr_images(v16.ctr_ls).into_iter().map(|i| i.name).collect();
        assert_eq!(names, ["example.com/app/bb:dev", &format!("import-2026-11-24@{MANIFEST}"), CONFIG]);
        assert_eq!(parse_ctr_images(v21.ctr_ls).len(), 2);
    }

    #[test]
    fn config_digest_needs_a_managed_id_ref_for_the_same_target() {
        let row = |name: &str, target: &str, managed: bool| CtrImage {
            name: name.into(),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            target: target.into(),
            managed,
        };
        let other = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
        let images = [
            row("example.com/app/bb:dev", MANIFEST, true),
            row(CONFIG, other, true),
            row("sha256:3333333333333333333333333333333333333333333333333333333333333333", MANIFEST, false),
        ];
        assert_eq!(config_digest_for_target(&images, MANIFEST), None);
        assert_eq!(config_digest_for_target(&images, other).as_deref(), Some(CONFIG));
        assert_eq!(config_digest_for_target(&[], MANIFEST), None);
    }

    #[test]
    fn ctr_rows_without_labels_or_blank_lines() {
        let table = "REF TYPE DIGEST SIZE PLATFORMS LABELS\n\
                     \n\
                     docker.io/library/app:v1 application/vnd.oci.image.index.v1+json sha256:aa 3.0 MiB linux/amd64,linux/arm64 -\n";
        let images = parse_ctr_images(table);
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].name, "docker.io/library/app:v1");
        assert_eq!(images[0].target, "sha256:aa");
        assert!(!images[0].managed);
        assert!(parse_ctr_images("").is_empty());
    }
}
