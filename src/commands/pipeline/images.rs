//! The images a load handles: from an archive's own records or an engine, grouped by
//! the export that carries them, with the names each must answer to on the nodes.

use std::path::Path;

use crate::error::{Error, Result};
use crate::resolve::image::Image;
use crate::resolve::node::Node;
use crate::resolve::records::{config_digest_for_target, CtrImage};
use crate::resolve::reference::ImageRef;
use crate::transfer::archive::ArchiveImage;
use crate::transfer::export::Source;
use crate::transfer::{self};

pub(super) fn names_of(group: &[&Image]) -> Vec<String> {
    group.iter().flat_map(|i| i.names.iter().map(ImageRef::normalized)).collect()
}

pub(super) fn same_image(identity: &crate::resolve::image::Identity, found: &ArchiveImage) -> bool {
    (identity.config.is_some() && identity.config == found.identity.config)
        || (identity.manifest.is_some() && identity.manifest == found.identity.manifest)
}

/// The names each exported image must answer to; an image the engine said it had but
/// the export does not hold means it changed in between.
pub(super) fn names_for_group(found: &[ArchiveImage], group: &[&Image], source: &Source) -> Result<Vec<Vec<String>>> {
    for image in group {
        if !found.iter().any(|a| same_image(&image.identity, a)) {
            let held: Vec<String> = found.iter().map(|a| a.identity.id()).collect();
            let fix = match source {
                Source::Engine { .. } => "the image changed while it was exported: run the load again",
                _ => "name an image the archive holds",
            };
            return Err(Error::failed(
                format!(
                    "{} ({}) is not in the {} stream, which holds {}",
                    image.requested,
                    image.identity.id(),
                    source.describe(),
                    held.join(", ")
                ),
                fix,
            ));
        }
    }
    Ok(found
        .iter()
        .map(|a| {
            let mut names: Vec<String> = group
                .iter()
                .filter(|i| same_image(&i.identity, a))
                .flat_map(|i| i.names.iter().map(ImageRef::normalized))
                .collect();
            if !names.is_empty() {
                let own: Vec<String> = own_names(a).filter(|n| !names.contains(n)).collect();
                names.extend(own);
            }
            names
        })
        .collect())
}

/// The names an archive gives an image, as the kubelet would resolve them.
pub(super) fn own_names(found: &ArchiveImage) -> impl Iterator<Item = String> + '_ {
    found.names.iter().filter_map(|n| ImageRef::parse(n).ok()).map(|r| r.normalized())
}

/// Groups the images that need a transfer by where their stream comes from: the archive,
/// or each engine's `save` (one export for all of that engine's images).
pub(super) fn sources(
    images: &[Image],
    archive: Option<&Source>,
    needed: impl Fn(usize) -> bool,
) -> Vec<(Source, Vec<usize>)> {
    let mut groups: Vec<(Source, Vec<usize>)> = Vec::new();
    for (i, image) in images.iter().enumerate().filter(|&(i, _)| needed(i)) {
        let source = match (archive, &image.engine) {
            (Some(source), _) => source.clone(),
            (None, Some(engine)) => Source::Engine { engine: engine.clone(), refs: Vec::new() },
            (None, None) => continue,
        };
        let same = groups.iter_mut().find(|(s, _)| match (s, &source) {
            (Source::Engine { engine: a, .. }, Source::Engine { engine: b, .. }) => a.kind == b.kind,
            _ => true,
        });
        match same {
            Some((_, members)) => members.push(i),
            None => groups.push((source, vec![i])),
        }
    }
    for (source, members) in groups.iter_mut() {
        if let Source::Engine { refs, .. } = source {
            *refs = members.iter().map(|&i| images[i].engine_ref.clone()).collect();
        }
    }
    groups
}

/// Docker's containerd store gives only a manifest digest; a node already holding that
/// manifest says which config digest CRI reports for it, so crictl can check the id.
pub(super) fn learn_config_digests(images: &mut [Image], listings: &[&[CtrImage]]) {
    for image in images.iter_mut().filter(|i| i.identity.config.is_none()) {
        let Some(manifest) = image.identity.manifest.clone() else { continue };
        image.identity.config = listings.iter().find_map(|listing| config_digest_for_target(listing, &manifest));
    }
}

/// The archive says what the engine may not have (the config digest, under Docker's containerd store).
pub(super) fn learn_identity(image: &mut Image, found: &[ArchiveImage]) {
    if let Some(a) = found.iter().find(|a| same_image(&image.identity, a)) {
        // The names the archive gives it (Podman's localhost/...) are names on the node too.
        for name in a.names.iter().filter_map(|n| ImageRef::parse(n).ok()) {
            image.add_name(name);
        }
        let learned = a.identity.clone();
        image.identity.merge(&learned);
    }
}

pub(super) fn scan_file(path: &Path) -> Result<Vec<ArchiveImage>> {
    let fix = "pass a docker-archive or OCI archive, as written by `docker save` or `podman save` and not altered since, or - for stdin";
    let file = std::fs::File::open(path)
        .map_err(|e| Error::input(format!("cannot open archive {}: {e}", path.display()), fix))?;
    transfer::scan(std::io::BufReader::with_capacity(1 << 20, file))
        .map(|(_, images)| images)
        .map_err(|e| Error::input(format!("{} is not an image archive: {e}", path.display()), fix))
}

/// Archive images become images to load; when the user named images, only those, and
/// each must be in the archive.
pub(super) fn images_from_archive(found: &[ArchiveImage], wanted: &[String], source: &str) -> Result<Vec<Image>> {
    if wanted.is_empty() {
        return found
            .iter()
            .map(|a| {
                let names: Vec<ImageRef> = a.names.iter().filter_map(|n| ImageRef::parse(n).ok()).collect();
                let first = names.first().ok_or_else(|| {
                    Error::input(
                        format!("{source} holds an image without a name ({})", a.identity.id()),
                        "tag the image before saving it, or name it: `kindload load --archive FILE app:dev`",
                    )
                })?;
                Ok(Image {
                    requested: first.familiar(),
                    engine_ref: first.normalized(),
                    engine_names: Vec::new(),
                    names,
                    identity: a.identity.clone(),
                    engine: None,
                    layers: a.diff_ids.clone(),
                    size: None,
                    platform: a.platform.clone(),
                    by_platform: a.by_platform.clone(),
                })
            })
            .collect();
    }
    wanted
        .iter()
        .map(|w| {
            let reference = ImageRef::parse(w)?;
            let named = found.iter().find(|a| a.names.iter().any(|n| ImageRef::parse(n).is_ok_and(|r| r == reference)));
            let chosen = match (named, found) {
                (Some(a), _) => a,
                // One image in the archive: the name given is its name.
                (None, [only]) => only,
                (None, _) => {
                    let held: Vec<&str> = found.iter().flat_map(|a| a.names.iter().map(String::as_str)).collect();
                    return Err(Error::input(
                        format!("{w} is not in {source}"),
                        format!("the archive holds {}; name one of those", held.join(", ")),
                    ));
                }
            };
            Ok(Image {
                requested: w.clone(),
                names: vec![reference],
                identity: chosen.identity.clone(),
                engine: None,
                engine_ref: w.clone(),
                engine_names: Vec::new(),
                layers: chosen.diff_ids.clone(),
                size: None,
                platform: chosen.platform.clone(),
                by_platform: chosen.by_platform.clone(),
            })
        })
        .collect()
}

pub(super) fn select_nodes(nodes: Vec<Node>, only: &[String]) -> Result<Vec<Node>> {
    if only.is_empty() {
        return Ok(nodes);
    }
    let unknown: Vec<&str> = only.iter().filter(|o| !nodes.iter().any(|n| &n.name == *o)).map(String::as_str).collect();
    if !unknown.is_empty() {
        let all: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        return Err(Error::usage(
            format!("no node named {} in this cluster", unknown.join(", ")),
            format!("the cluster's nodes are {}", all.join(", ")),
        ));
    }
    Ok(nodes.into_iter().filter(|n| only.contains(&n.name)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::image::Identity;

    fn archived(names: &[&str], config: &str) -> ArchiveImage {
        ArchiveImage {
            names: names.iter().map(|s| s.to_string()).collect(),
            identity: Identity { config: Some(config.into()), manifest: None },
            target: crate::transfer::archive::Descriptor { media_type: String::new(), digest: String::new(), size: 0 },
            written_manifest: None,
            layers: vec![],
            diff_ids: vec!["sha256:d1".into()],
            platform: Some("linux/amd64".into()),
            by_platform: vec![],
        }
    }

    fn wanted(input: &str) -> String {
        input.to_string()
    }

    #[test]
    fn archive_images_keep_their_names_or_take_the_one_given() {
        let found = [archived(&["localhost/app:dev"], "sha256:a")];
        let all = images_from_archive(&found, &[], "x.tar").unwrap();
        assert_eq!(all[0].normalized(), "localhost/app:dev");
        let named = images_from_archive(&found, &[wanted("app:dev")], "x.tar").unwrap();
        assert_eq!(named[0].normalized(), "docker.io/library/app:dev");
        assert_eq!(named[0].identity.config.as_deref(), Some("sha256:a"));
        assert_eq!(named[0].layers, ["sha256:d1"], "the archive's layers are the plan's hints");
    }

    #[test]
    fn a_node_holding_the_manifest_tells_its_config_digest() {
        let listing = crate::resolve::records::parse_ctr_images(include_str!(
            "../../../tests/fixtures/containerd-2.1/ctr-images-ls.txt"
        ));
        let manifest = "sha256:50fd1c54b129cd11eed7c33c2f001f4bb5b9fe7e4490e9235007c687fcd22e28";
        let mut images = vec![Image {
            requested: "example.com/app/bb:dev".into(),
            names: vec![ImageRef::parse("example.com/app/bb:dev").unwrap()],
            identity: Identity { config: None, manifest: Some(manifest.into()) },
            engine: None,
            engine_ref: "example.com/app/bb:dev".into(),
            engine_names: Vec::new(),
            layers: vec![],
            size: None,
            platform: None,
            by_platform: vec![],
        }];
        learn_config_digests(&mut images, &[&[], &listing]);
        assert_eq!(
            images[0].identity.config.as_deref(),
            Some("sha256:441c29fcf848420af9478385aa2c50f1aed261136929dd5df71cc8bd05f30e83")
        );
    }

    #[test]
    fn a_name_not_in_a_multi_image_archive_is_bad_input() {
        let found = [archived(&["a:1"], "sha256:a"), archived(&["b:1"], "sha256:b")];
        let err = images_from_archive(&found, &[wanted("c:1")], "x.tar").unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.fix().unwrap().contains("a:1, b:1"));
        let unnamed = [archived(&[], "sha256:a")];
        assert!(images_from_archive(&unnamed, &[], "stdin").unwrap_err().to_string().contains("without a name"));
    }
}
