//! A node's image records, as `ctr -n k8s.io images ls` lists them: the names, the content
//! each points at, and which ones CRI manages (its `sha256:<config>` record is the image id).

use crate::resolve::inspect::normalize_id;

/// The label the CRI plugin puts on images it manages (and so the kubelet can use).
const CRI_MANAGED_LABEL: &str = "io.cri-containerd.image=managed";

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

    struct Fixtures {
        version: &'static str,
        ctr_ls: &'static str,
    }

    fn all() -> [Fixtures; 3] {
        [
            Fixtures { version: "1.6", ctr_ls: include_str!("../../tests/fixtures/containerd-1.6/ctr-images-ls.txt") },
            Fixtures { version: "1.7", ctr_ls: include_str!("../../tests/fixtures/containerd-1.7/ctr-images-ls.txt") },
            Fixtures { version: "2.1", ctr_ls: include_str!("../../tests/fixtures/containerd-2.1/ctr-images-ls.txt") },
        ]
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
