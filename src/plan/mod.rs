//! Per node and image: skip (already there under every name), retag (the content is there
//! under another name), or transfer.

pub mod layers;
pub mod platform;
pub mod push;
pub mod retention;

use serde::Serialize;

use crate::resolve::image::{Identity, Image};
use crate::resolve::records::{config_digest_for_target, CtrImage};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Loaded,
    Skipped,
    Retagged,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Skip,
    /// Tag these names from an existing record holding the same content.
    Retag {
        from: String,
        names: Vec<String>,
    },
    Transfer,
}

/// True when `record` holds the image `identity` describes.
pub fn holds(listing: &[CtrImage], record: &CtrImage, identity: &Identity) -> bool {
    identity.matches(&record.target, config_digest_for_target(listing, &record.target).as_deref())
}

/// The record named `name`, if it holds the image.
pub fn named_holding<'a>(listing: &'a [CtrImage], name: &str, identity: &Identity) -> Option<&'a CtrImage> {
    listing.iter().find(|r| r.name == name && holds(listing, r, identity))
}

/// Any record holding the image, preferring a named one over CRI's `sha256:` id record.
pub fn any_holding<'a>(listing: &'a [CtrImage], identity: &Identity) -> Option<&'a CtrImage> {
    let mut holding = listing.iter().filter(|r| holds(listing, r, identity));
    let first = holding.next()?;
    if !first.name.starts_with("sha256:") {
        return Some(first);
    }
    holding.find(|r| !r.name.starts_with("sha256:")).or(Some(first))
}

/// Names of `image` the node lacks (or holds other content under).
pub fn missing_names(listing: &[CtrImage], image: &Image) -> Vec<String> {
    image
        .names
        .iter()
        .map(|n| n.normalized())
        .filter(|n| named_holding(listing, n, &image.identity).is_none())
        .collect()
}

pub fn plan(listing: &[CtrImage], image: &Image) -> Step {
    let missing = missing_names(listing, image);
    if missing.is_empty() {
        return Step::Skip;
    }
    match any_holding(listing, &image.identity) {
        Some(record) => Step::Retag { from: record.name.clone(), names: missing },
        None => Step::Transfer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::records::parse_ctr_images;

    const LISTING: &str = include_str!("../../tests/fixtures/containerd-1.6/ctr-images-ls.txt");
    const CONFIG: &str = "sha256:441c29fcf848420af9478385aa2c50f1aed261136929dd5df71cc8bd05f30e83";
    const MANIFEST: &str = "sha256:50fd1c54b129cd11eed7c33c2f001f4bb5b9fe7e4490e9235007c687fcd22e28";

    fn image(name: &str, config: Option<&str>, manifest: Option<&str>) -> Image {
        Image::for_tests(name, Identity { config: config.map(Into::into), manifest: manifest.map(Into::into) })
    }

    #[test]
    fn same_config_digest_under_the_same_name_is_skipped() {
        let listing = parse_ctr_images(LISTING);
        assert_eq!(plan(&listing, &image("example.com/app/bb:dev", Some(CONFIG), None)), Step::Skip);
    }

    #[test]
    fn manifest_digest_ids_match_too() {
        let listing = parse_ctr_images(LISTING);
        assert_eq!(plan(&listing, &image("example.com/app/bb:dev", None, Some(MANIFEST))), Step::Skip);
    }

    #[test]
    fn same_content_under_another_name_is_retagged() {
        let listing = parse_ctr_images(LISTING);
        let step = plan(&listing, &image("bb:dev", Some(CONFIG), None));
        assert_eq!(
            step,
            Step::Retag { from: "example.com/app/bb:dev".into(), names: vec!["docker.io/library/bb:dev".into()] }
        );
    }

    #[test]
    fn changed_content_is_transferred() {
        let listing = parse_ctr_images(LISTING);
        let other = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        assert_eq!(plan(&listing, &image("example.com/app/bb:dev", Some(other), None)), Step::Transfer);
        assert_eq!(plan(&[], &image("app:dev", Some(CONFIG), None)), Step::Transfer);
    }
}
