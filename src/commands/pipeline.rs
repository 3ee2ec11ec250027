//! The load for resolved images, over the cluster's selected nodes:
//! plan per node → retag → transfer → name → verify → report.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::Context;
use crate::error::{Error, Result};
use crate::exec::Runner;
use crate::plan::{self, Action, Step};
use crate::report::progress::Progress;
use crate::report::{ImageReport, LoadReport, NodeReport};
use crate::request::cli::SelectArgs;
use crate::resolve::image::Image;
use crate::resolve::node::Node;
use crate::resolve::provider::Provider;
use crate::resolve::reference::ImageRef;
use crate::transfer::archive::{self, ArchiveImage};
use crate::transfer::export::Source;
use crate::transfer::{self, import};
use crate::verify::{self, cri::config_digest_for_target, cri::CtrImage};

pub struct LoadRequest {
    /// Images found in an engine.
    pub images: Vec<Image>,
    /// With an archive: which of its images, by name (all when empty).
    pub wanted: Vec<String>,
    pub select: SelectArgs,
    pub archive: Option<PathBuf>,
    /// False for `verify`: nothing moves.
    pub transfer: bool,
}

/// Per image and node: what happened.
#[derive(Debug, Clone)]
struct Outcome {
    action: Action,
    bytes: u64,
    seconds: f64,
    error: Option<String>,
    verdict: Option<verify::Verdict>,
}

impl Outcome {
    fn new(action: Action) -> Self {
        Outcome { action, bytes: 0, seconds: 0.0, error: None, verdict: None }
    }

    fn failed(error: impl Into<String>) -> Self {
        Outcome { error: Some(error.into()), ..Outcome::new(Action::Failed) }
    }
}

/// Outcomes indexed [image][node].
type Outcomes = Vec<Vec<Outcome>>;

/// Loads (or only verifies) and returns the report with the images as they ended up.
pub fn run(ctx: &Context, req: LoadRequest) -> Result<(LoadReport, Vec<Image>)> {
    let (cluster, provider, nodes) = ctx.nodes(&req.select.cluster)?;
    let nodes = select_nodes(nodes, &req.select.nodes)?;
    let archive = req.archive.map(|p| if p.as_os_str() == "-" { Source::Stdin } else { Source::File(p) });
    let pipeline = Pipeline::new(ctx, provider, nodes);
    let (images, mut outcomes) = match &archive {
        _ if !req.transfer => {
            let outcomes = pipeline.untouched(&req.images);
            (req.images, outcomes)
        }
        Some(Source::Stdin) => pipeline.load_stdin(&req.wanted)?,
        Some(Source::File(path)) => {
            let mut images = images_from_archive(&scan_file(path)?, &req.wanted, &path.display().to_string())?;
            let outcomes = pipeline.load(&mut images, archive.as_ref())?;
            (images, outcomes)
        }
        _ => {
            let mut images = req.images;
            let outcomes = pipeline.load(&mut images, None)?;
            (images, outcomes)
        }
    };
    pipeline.verify_all(&images, &mut outcomes);
    let report = pipeline.report(&cluster.name, &images, &outcomes, archive.as_ref());
    Ok((report, images))
}

struct Pipeline<'a> {
    ctx: &'a Context,
    provider: Provider,
    nodes: Vec<Node>,
    /// Per node: its image records before anything changed, or why it cannot take part.
    before: Vec<std::result::Result<Vec<CtrImage>, String>>,
    settle: Duration,
}

impl<'a> Pipeline<'a> {
    fn new(ctx: &'a Context, provider: Provider, nodes: Vec<Node>) -> Self {
        let runner = ctx.runner();
        let before = std::thread::scope(|scope| {
            let listings: Vec<_> = nodes
                .iter()
                .map(|node| {
                    scope.spawn(move || {
                        if !node.running {
                            return Err(format!(
                                "node {} is {}: start it with `{} start {}`, or leave it out with --nodes",
                                node.name,
                                node.state,
                                provider.name(),
                                node.name
                            ));
                        }
                        import::list(runner, provider, &node.name)
                            .map_err(|e| format!("cannot list images on {}: {e}", node.name))
                    })
                })
                .collect();
            listings.into_iter().map(|h| h.join().expect("listing panicked")).collect()
        });
        let settle = Duration::from_secs(ctx.config.verify.settle_seconds);
        Pipeline { ctx, provider, nodes, before, settle }
    }

    fn runner(&self) -> &dyn Runner {
        self.ctx.runner()
    }

    fn usable(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&n| self.before[n].is_ok()).collect()
    }

    /// `verify` alone: nothing moves; unusable nodes fail.
    fn untouched(&self, images: &[Image]) -> Outcomes {
        images
            .iter()
            .map(|_| {
                self.before
                    .iter()
                    .map(|b| match b {
                        Ok(_) => Outcome::new(Action::Skipped),
                        Err(e) => Outcome::failed(e.clone()),
                    })
                    .collect()
            })
            .collect()
    }

    /// Plans every image on every node, retags, and streams each source once to the
    /// nodes that need it.
    fn load(&self, images: &mut [Image], archive: Option<&Source>) -> Result<Outcomes> {
        let listings: Vec<&[CtrImage]> = self.before.iter().flatten().map(Vec::as_slice).collect();
        learn_config_digests(images, &listings);
        let steps: Vec<Vec<Option<Step>>> = images
            .iter()
            .map(|image| self.before.iter().map(|b| b.as_ref().ok().map(|l| plan::plan(l, image))).collect())
            .collect();
        let mut outcomes: Outcomes = steps
            .iter()
            .map(|row| {
                row.iter()
                    .zip(&self.before)
                    .map(|(step, before)| match (step, before) {
                        (Some(Step::Skip), _) => Outcome::new(Action::Skipped),
                        (Some(Step::Retag { .. }), _) => Outcome::new(Action::Retagged),
                        (Some(Step::Transfer), _) => Outcome::new(Action::Loaded),
                        (None, Err(e)) => Outcome::failed(e.clone()),
                        (None, Ok(_)) => Outcome::failed("not planned"),
                    })
                    .collect()
            })
            .collect();
        self.retag(&steps, &mut outcomes);

        let needs = |i: usize, n: usize| matches!(steps[i][n], Some(Step::Transfer));
        for (source, members) in sources(images, archive, |i| (0..self.nodes.len()).any(|n| needs(i, n))) {
            let targets: Vec<usize> = (0..self.nodes.len()).filter(|&n| members.iter().any(|&i| needs(i, n))).collect();
            let names: Vec<String> =
                members.iter().flat_map(|&i| images[i].names.iter().map(|r| r.normalized())).collect();
            let (found, per_node) = self.stream(&targets, &source, &names)?;
            for &i in &members {
                learn_identity(&mut images[i], &found);
            }
            let mut arrived = Vec::new();
            for &n in &targets {
                for &i in members.iter().filter(|&&i| needs(i, n)) {
                    outcomes[i][n] = per_node.get(&n).cloned().unwrap_or_else(|| Outcome::failed("not loaded"));
                    arrived.push((i, n));
                }
            }
            self.name_arrivals(images, &mut outcomes, &arrived);
        }
        Ok(outcomes)
    }

    /// stdin can be read once and says what it holds only as it streams: every usable
    /// node gets it, and the images are known afterwards.
    fn load_stdin(&self, wanted: &[String]) -> Result<(Vec<Image>, Outcomes)> {
        let targets = self.usable();
        let (found, per_node) = self.stream(&targets, &Source::Stdin, &[])?;
        let images = images_from_archive(&found, wanted, "stdin")?;
        let mut outcomes: Outcomes = images
            .iter()
            .map(|_| {
                (0..self.nodes.len())
                    .map(|n| match (&self.before[n], per_node.get(&n)) {
                        (Err(e), _) => Outcome::failed(e.clone()),
                        (Ok(_), Some(o)) => o.clone(),
                        (Ok(_), None) => Outcome::failed("not loaded"),
                    })
                    .collect()
            })
            .collect();
        let arrived: Vec<(usize, usize)> =
            (0..images.len()).flat_map(|i| targets.iter().map(move |&n| (i, n))).collect();
        self.name_arrivals(&images, &mut outcomes, &arrived);
        Ok((images, outcomes))
    }

    fn retag(&self, steps: &[Vec<Option<Step>>], outcomes: &mut Outcomes) {
        for (i, row) in steps.iter().enumerate() {
            for (n, step) in row.iter().enumerate() {
                let Some(Step::Retag { from, names }) = step else { continue };
                let started = Instant::now();
                let node = &self.nodes[n].name;
                let failed = names.iter().find_map(|name| {
                    import::tag(self.runner(), self.provider, node, from, name)
                        .err()
                        .map(|e| format!("retagging {from} as {name} failed: {e}"))
                });
                outcomes[i][n] = match failed {
                    Some(error) => Outcome::failed(error),
                    None => Outcome { seconds: started.elapsed().as_secs_f64(), ..Outcome::new(Action::Retagged) },
                };
            }
        }
    }

    /// Streams one source to `targets` with progress; removes what a failed import left.
    fn stream(
        &self,
        targets: &[usize],
        source: &Source,
        wanted_names: &[String],
    ) -> Result<(Vec<ArchiveImage>, HashMap<usize, Outcome>)> {
        let mut per_node = HashMap::new();
        if targets.is_empty() {
            return Ok((Vec::new(), per_node));
        }
        let target_nodes: Vec<&Node> = targets.iter().map(|&n| &self.nodes[n]).collect();
        let progress = Progress::start(
            self.ctx.style,
            format!("{} → {} node(s)", source.describe(), targets.len()),
            source.size(),
        );
        let result = transfer::stream(self.provider, &target_nodes, source, progress.bytes.clone());
        let bytes = progress.bytes.load(std::sync::atomic::Ordering::Relaxed);
        progress.finish();
        let transferred = match result {
            Ok(t) => t,
            Err(e) => {
                for &n in targets {
                    self.clean_up(n, wanted_names);
                }
                return Err(e);
            }
        };
        let names: Vec<String> = transferred
            .images
            .iter()
            .flat_map(|a| a.names.iter().filter_map(|n| ImageRef::parse(n).ok()).map(|r| r.normalized()))
            .chain(wanted_names.iter().cloned())
            .collect();
        for (name, result) in transferred.nodes {
            let Some(&n) = targets.iter().find(|&&n| self.nodes[n].name == name) else { continue };
            let outcome = match result {
                Ok(()) => Outcome { bytes, seconds: transferred.elapsed.as_secs_f64(), ..Outcome::new(Action::Loaded) },
                Err(e) => Outcome::failed(format!("import into {name} failed: {e}{}", self.clean_up(n, &names))),
            };
            per_node.insert(n, outcome);
        }
        Ok((transferred.images, per_node))
    }

    /// Removes image records a failed import left on node `n`; says what it did.
    fn clean_up(&self, n: usize, names: &[String]) -> String {
        let before = self.before[n].as_ref().map(Vec::as_slice).unwrap_or_default();
        match import::clean_up(self.runner(), self.provider, &self.nodes[n].name, before, names) {
            Ok(removed) if !removed.is_empty() => format!(" (removed what it left: {})", removed.join(", ")),
            Ok(_) => String::new(),
            Err(e) => format!(" (and removing what it left failed: {e})"),
        }
    }

    /// Names what each node received: the archive may carry other names (Podman's
    /// localhost/...) or none the user asked for. `arrived` holds (image, node) pairs.
    fn name_arrivals(&self, images: &[Image], outcomes: &mut Outcomes, arrived: &[(usize, usize)]) {
        for (n, node) in self.nodes.iter().enumerate() {
            let here: Vec<usize> = arrived
                .iter()
                .filter(|&&(i, m)| m == n && outcomes[i][n].action == Action::Loaded)
                .map(|&(i, _)| i)
                .collect();
            if here.is_empty() {
                continue;
            }
            let node_images: Vec<&Image> = here.iter().map(|&i| &images[i]).collect();
            if let Err(e) = name_on_node(self.runner(), self.provider, &node.name, &node_images, self.settle) {
                for &i in &here {
                    outcomes[i][n].action = Action::Failed;
                    outcomes[i][n].error = Some(e.clone());
                }
            }
        }
    }

    /// Verifies every image on every node that took part, concurrently.
    fn verify_all(&self, images: &[Image], outcomes: &mut Outcomes) {
        let (runner, provider, settle) = (self.runner(), self.provider, self.settle);
        std::thread::scope(|scope| {
            let mut handles = Vec::new();
            for (i, image) in images.iter().enumerate() {
                for (n, node) in self.nodes.iter().enumerate() {
                    if outcomes[i][n].action != Action::Failed {
                        handles.push((
                            i,
                            n,
                            scope.spawn(move || verify::verify(runner, provider, node, image, settle)),
                        ));
                    }
                }
            }
            for (i, n, handle) in handles {
                let verdict = handle.join().expect("verify panicked");
                if !verdict.verified {
                    outcomes[i][n].error = Some(verdict.diagnosis.clone());
                }
                outcomes[i][n].verdict = Some(verdict);
            }
        });
    }

    fn report(&self, cluster: &str, images: &[Image], outcomes: &Outcomes, archive: Option<&Source>) -> LoadReport {
        let images: Vec<ImageReport> = images
            .iter()
            .zip(outcomes)
            .map(|(image, row)| ImageReport {
                reference: image.requested.clone(),
                normalized: image.normalized(),
                names: image.names.iter().map(|n| n.normalized()).collect(),
                id: row
                    .iter()
                    .find_map(|o| o.verdict.as_ref().and_then(|v| v.id.clone()))
                    .unwrap_or_else(|| image.identity.id()),
                source: match (archive, &image.engine) {
                    (Some(s), _) => s.describe(),
                    (None, Some(e)) => e.kind.to_string(),
                    (None, None) => String::new(),
                },
                nodes: self
                    .nodes
                    .iter()
                    .zip(row)
                    .map(|(node, o)| NodeReport {
                        name: node.name.clone(),
                        action: o.action,
                        verified: o.verdict.as_ref().is_some_and(|v| v.verified),
                        verified_with: o.verdict.as_ref().map(|v| v.with),
                        bytes: o.bytes,
                        seconds: (o.seconds * 1000.0).round() / 1000.0,
                        error: o.error.clone(),
                    })
                    .collect(),
            })
            .collect();
        let ok =
            !self.nodes.is_empty() && !images.is_empty() && images.iter().all(|i| i.nodes.iter().all(|n| n.verified));
        LoadReport { cluster: cluster.to_string(), provider: self.provider.name().to_string(), ok, images }
    }
}

/// Groups the images that need a transfer by where their stream comes from: the archive,
/// or each engine's `save` (one export for all of that engine's images).
fn sources(images: &[Image], archive: Option<&Source>, needed: impl Fn(usize) -> bool) -> Vec<(Source, Vec<usize>)> {
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
fn learn_config_digests(images: &mut [Image], listings: &[&[CtrImage]]) {
    for image in images.iter_mut().filter(|i| i.identity.config.is_none()) {
        let Some(manifest) = image.identity.manifest.clone() else { continue };
        image.identity.config = listings.iter().find_map(|listing| config_digest_for_target(listing, &manifest));
    }
}

/// The archive says what the engine may not have (the config digest, under Docker's containerd store).
fn learn_identity(image: &mut Image, found: &[ArchiveImage]) {
    let id = &image.identity;
    let same = found.iter().find(|a| {
        (id.config.is_some() && a.identity.config == id.config)
            || (id.manifest.is_some() && a.identity.manifest == id.manifest)
    });
    if let Some(a) = same {
        let learned = a.identity.clone();
        image.identity.merge(&learned);
    }
}

/// Gives every image all its names on the node, tagging from whatever record holds the
/// content; waits up to `settle` for CRI to index a fresh import first.
pub fn name_on_node(
    runner: &dyn Runner,
    provider: Provider,
    node: &str,
    images: &[&Image],
    settle: Duration,
) -> std::result::Result<(), String> {
    let deadline = Instant::now() + settle;
    loop {
        let listing = import::list(runner, provider, node).map_err(|e| e.to_string())?;
        let unheld: Vec<&&Image> =
            images.iter().filter(|i| plan::any_holding(&listing, &i.identity).is_none()).collect();
        if unheld.is_empty() {
            for image in images {
                let missing = plan::missing_names(&listing, image);
                if let Some(from) = plan::any_holding(&listing, &image.identity).filter(|_| !missing.is_empty()) {
                    for name in &missing {
                        import::tag(runner, provider, node, &from.name, name)
                            .map_err(|e| format!("naming {name} on {node} failed: {e}"))?;
                    }
                }
            }
            return Ok(());
        }
        if Instant::now() >= deadline || crate::exec::cancelled() {
            let what: Vec<String> = unheld.iter().map(|i| format!("{} ({})", i.requested, i.identity.id())).collect();
            return Err(format!("after the import, {node} does not hold {}", what.join(", ")));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn scan_file(path: &Path) -> Result<Vec<ArchiveImage>> {
    let fix = "pass a docker-archive or OCI archive, as written by `docker save` or `podman save`, or - for stdin";
    let file = std::fs::File::open(path)
        .map_err(|e| Error::input(format!("cannot open archive {}: {e}", path.display()), fix))?;
    archive::scan(std::io::BufReader::new(file))
        .map_err(|e| Error::input(format!("{} is not an image archive: {e}", path.display()), fix))
}

/// Archive images become images to load; when the user named images, only those, and
/// each must be in the archive.
fn images_from_archive(found: &[ArchiveImage], wanted: &[String], source: &str) -> Result<Vec<Image>> {
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
                    names,
                    identity: a.identity.clone(),
                    engine: None,
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
            })
        })
        .collect()
}

fn select_nodes(nodes: Vec<Node>, only: &[String]) -> Result<Vec<Node>> {
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
    }

    #[test]
    fn a_node_holding_the_manifest_tells_its_config_digest() {
        let listing =
            crate::verify::cri::parse_ctr_images(include_str!("../../tests/fixtures/containerd-2.1/ctr-images-ls.txt"));
        let manifest = "sha256:50fd1c54b129cd11eed7c33c2f001f4bb5b9fe7e4490e9235007c687fcd22e28";
        let mut images = vec![Image {
            requested: "example.com/app/bb:dev".into(),
            names: vec![ImageRef::parse("example.com/app/bb:dev").unwrap()],
            identity: Identity { config: None, manifest: Some(manifest.into()) },
            engine: None,
            engine_ref: "example.com/app/bb:dev".into(),
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
