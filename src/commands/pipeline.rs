//! The load for resolved images, over the cluster's selected nodes:
//! survey nodes → plan per node → retag → transfer what each lacks → drop what was
//! superseded → verify → report.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::Context;
use crate::error::{Error, Result};
use crate::exec::Runner;
use crate::plan::layers::{LayerHints, NodeNeeds};
use crate::plan::{self, platform, Action, Step};
use crate::report::progress::Progress;
use crate::report::{ImageReport, LoadReport, NodeReport};
use crate::request::cli::SelectArgs;
use crate::resolve::holdings::Depth;
use crate::resolve::image::Image;
use crate::resolve::node::{self, Node};
use crate::resolve::provider::Provider;
use crate::resolve::records::{config_digest_for_target, CtrImage};
use crate::resolve::reference::ImageRef;
use crate::transfer::archive::ArchiveImage;
use crate::transfer::export::Source;
use crate::transfer::{self, import, Target};
use crate::verify;

pub struct LoadRequest {
    /// Images found in an engine.
    pub images: Vec<Image>,
    /// With an archive: which of its images, by name (all when empty).
    pub wanted: Vec<String>,
    pub select: SelectArgs,
    pub archive: Option<PathBuf>,
    /// False for `verify`: nothing moves.
    pub transfer: bool,
    pub options: LoadOptions,
}

/// How the transfer behaves.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Send every blob, whatever the nodes hold.
    pub full: bool,
    /// Keep the image a name moved away from, instead of removing it.
    pub keep_superseded: bool,
    /// Largest layer spooled to a temporary file (docker-archive layers named by id).
    pub spool_max: u64,
}

impl LoadOptions {
    pub fn from_args(args: &crate::request::cli::TransferArgs) -> Self {
        LoadOptions { full: args.full, keep_superseded: args.keep_superseded, spool_max: args.spool_limit << 20 }
    }
}

/// Per image and node: what happened.
#[derive(Debug, Clone)]
struct Outcome {
    action: Action,
    bytes: u64,
    present: u64,
    seconds: f64,
    error: Option<String>,
    verdict: Option<verify::Verdict>,
}

impl Outcome {
    fn new(action: Action) -> Self {
        Outcome { action, bytes: 0, present: 0, seconds: 0.0, error: None, verdict: None }
    }

    fn failed(error: impl Into<String>) -> Self {
        Outcome { error: Some(error.into()), ..Outcome::new(Action::Failed) }
    }
}

/// Outcomes indexed [image][node].
type Outcomes = Vec<Vec<Outcome>>;

/// Loads (or only verifies) and returns the report with the images as they ended up.
pub fn run(ctx: &Context, req: LoadRequest) -> Result<(LoadReport, Vec<Image>)> {
    let archive = req.archive.map(|p| if p.as_os_str() == "-" { Source::Stdin } else { Source::File(p) });
    // A file is read whole first: its names and digests are checked before any node is touched.
    let mut images = match &archive {
        Some(Source::File(path)) => images_from_archive(&scan_file(path)?, &req.wanted, &path.display().to_string())?,
        _ => req.images,
    };
    let mut names: Vec<String> = Vec::new();
    for name in images.iter().flat_map(|i| i.names.iter().map(ImageRef::normalized)) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let (cluster, provider, nodes) = ctx.nodes(&req.select.cluster, Depth::Light, &names)?;
    let nodes = select_nodes(nodes, &req.select.nodes)?;
    let mut pipeline = Pipeline::new(ctx, provider, nodes, req.options);
    let mut outcomes = match &archive {
        _ if !req.transfer => pipeline.untouched(&images),
        Some(Source::Stdin) => {
            let (found, outcomes) = pipeline.load_stdin(&req.wanted)?;
            images = found;
            outcomes
        }
        _ => pipeline.load(&mut images, archive.as_ref())?,
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
    options: LoadOptions,
}

impl<'a> Pipeline<'a> {
    fn new(ctx: &'a Context, provider: Provider, nodes: Vec<Node>, options: LoadOptions) -> Self {
        let before = nodes
            .iter()
            .map(|node| {
                if !node.running {
                    return Err(format!(
                        "node {} is {}: start it with `{} start {}`, or leave it out with --nodes",
                        node.name,
                        node.state,
                        provider.name(),
                        node.name
                    ));
                }
                node.holdings().map(|h| h.images.clone())
            })
            .collect();
        let settle = Duration::from_secs(ctx.config.verify.settle_seconds);
        Pipeline { ctx, provider, nodes, before, settle, options }
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

    /// Plans every image on every node, retags, streams each source once to the nodes
    /// that need it, and removes what the moved names left behind.
    fn load(&mut self, images: &mut [Image], archive: Option<&Source>) -> Result<Outcomes> {
        let listings: Vec<&[CtrImage]> = self.before.iter().flatten().map(Vec::as_slice).collect();
        learn_config_digests(images, &listings);
        let misfits = self.platform_misfits(images)?;
        let steps: Vec<Vec<Option<Step>>> = images
            .iter()
            .zip(&misfits)
            .map(|(image, misfit)| {
                self.before
                    .iter()
                    .zip(misfit)
                    .map(|(b, m)| b.as_ref().ok().filter(|_| m.is_none()).map(|l| plan::plan(l, image)))
                    .collect()
            })
            .collect();
        let mut outcomes: Outcomes = steps
            .iter()
            .zip(&misfits)
            .map(|(row, misfit)| {
                row.iter()
                    .zip(&self.before)
                    .zip(misfit)
                    .map(|((step, before), misfit)| match (step, before, misfit) {
                        (_, _, Some(why)) => Outcome::failed(why.clone()),
                        (Some(Step::Skip), _, _) => Outcome::new(Action::Skipped),
                        (Some(Step::Retag { .. }), _, _) => Outcome::new(Action::Retagged),
                        (Some(Step::Transfer), _, _) => Outcome::new(Action::Loaded),
                        (None, Err(e), _) => Outcome::failed(e.clone()),
                        (None, Ok(_), _) => Outcome::failed("not planned"),
                    })
                    .collect()
            })
            .collect();
        self.retag(&steps, &mut outcomes);

        let needs = |i: usize, n: usize| matches!(steps[i][n], Some(Step::Transfer));
        let receiving: Vec<usize> = (0..self.nodes.len()).filter(|&n| (0..images.len()).any(|i| needs(i, n))).collect();
        self.survey_fully(&receiving);
        for (source, members) in sources(images, archive, |i| (0..self.nodes.len()).any(|n| needs(i, n))) {
            let targets: Vec<usize> = (0..self.nodes.len()).filter(|&n| members.iter().any(|&i| needs(i, n))).collect();
            let group: Vec<&Image> = members.iter().map(|&i| &images[i]).collect();
            let namer = |found: &[ArchiveImage]| names_for_group(found, &group, &source);
            let hints = LayerHints::new(&group.iter().map(|i| i.layers.clone()).collect::<Vec<_>>())
                .with_platforms(group.iter().flat_map(|i| i.by_platform.clone()).collect());
            let estimate: Option<u64> = source.size().or_else(|| group.iter().map(|i| i.size).sum());
            let (found, per_node) = self.stream(&targets, &source, &hints, estimate, &namer, &names_of(&group))?;
            for &i in &members {
                learn_identity(&mut images[i], &found);
            }
            for &n in &targets {
                for &i in members.iter().filter(|&&i| needs(i, n)) {
                    outcomes[i][n] = per_node.get(&n).cloned().unwrap_or_else(|| Outcome::failed("not loaded"));
                }
            }
        }
        self.tidy(images, &mut outcomes);
        Ok(outcomes)
    }

    /// What a transfer is planned with (containerd's config, blobs, snapshots), read for
    /// the nodes that will receive something: a node that needs nothing costs one light survey.
    fn survey_fully(&mut self, which: &[usize]) {
        let mut nodes: Vec<&mut Node> = self
            .nodes
            .iter_mut()
            .enumerate()
            .filter(|(n, node)| which.contains(n) && !node.holdings().is_ok_and(|h| h.complete))
            .map(|(_, node)| node)
            .collect();
        node::survey_fully(self.ctx.runner(), self.provider, &mut nodes);
    }

    /// Per image and node: why the node cannot run the image, judged by platform before
    /// anything is exported. An image no usable node can run is bad input.
    fn platform_misfits(&self, images: &[Image]) -> Result<Vec<Vec<Option<String>>>> {
        let usable = self.usable();
        let mut misfits = vec![vec![None; self.nodes.len()]; images.len()];
        for (i, image) in images.iter().enumerate() {
            let Some(built_for) = &image.platform else { continue };
            let mut refused: Vec<&str> = Vec::new();
            for &n in &usable {
                let Some(runs) = &self.nodes[n].platform else { continue };
                if !platform::runs_on(built_for, runs) {
                    misfits[i][n] = Some(format!(
                        "{} is built for {built_for}, but {} runs {runs}: {}",
                        image.requested,
                        self.nodes[n].name,
                        platform::fix(runs)
                    ));
                    refused.push(runs);
                }
            }
            if !usable.is_empty() && refused.len() == usable.len() {
                refused.sort();
                refused.dedup();
                return Err(Error::input(
                    format!(
                        "{} is built for {built_for}, but the cluster's nodes run {}: no node can run it",
                        image.requested,
                        refused.join(", ")
                    ),
                    platform::fix(refused[0]),
                ));
            }
        }
        Ok(misfits)
    }

    /// stdin can be read once and says what it holds only as it streams: every usable
    /// node gets it, and the images are known afterwards.
    fn load_stdin(&mut self, wanted: &[String]) -> Result<(Vec<Image>, Outcomes)> {
        let targets = self.usable();
        self.survey_fully(&targets);
        let chosen: std::cell::RefCell<Vec<Image>> = Default::default();
        let namer = |found: &[ArchiveImage]| {
            let mut images = images_from_archive(found, wanted, "stdin")?;
            for image in images.iter_mut() {
                learn_identity(image, found);
            }
            let names = found
                .iter()
                .map(|a| {
                    images
                        .iter()
                        .filter(|i| same_image(&i.identity, a))
                        .flat_map(|i| i.names.iter().map(ImageRef::normalized))
                        .collect()
                })
                .collect();
            *chosen.borrow_mut() = images;
            Ok(names)
        };
        let (_, per_node) = self.stream(&targets, &Source::Stdin, &LayerHints::default(), None, &namer, &[])?;
        let images = chosen.into_inner();
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
        self.tidy(&images, &mut outcomes);
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

    /// Streams one source to `targets`, each receiving what it lacks, with progress;
    /// removes what a failed import left.
    fn stream(
        &self,
        targets: &[usize],
        source: &Source,
        hints: &LayerHints,
        estimate: Option<u64>,
        namer: &transfer::Namer,
        wanted_names: &[String],
    ) -> Result<(Vec<ArchiveImage>, HashMap<usize, Outcome>)> {
        let mut per_node = HashMap::new();
        if targets.is_empty() {
            return Ok((Vec::new(), per_node));
        }
        let first = match self.pass(targets, source, hints, estimate, namer, HashMap::new()) {
            Ok(t) => t,
            Err(e) => {
                for &n in targets {
                    self.clean_up(n, wanted_names);
                }
                return Err(e);
            }
        };
        let again: Vec<usize> = targets
            .iter()
            .copied()
            .filter(|&n| first.nodes.iter().any(|r| r.again && r.node == self.nodes[n].name))
            .collect();
        let mut transferred = first;
        if !again.is_empty() {
            // A size guess proved wrong on these nodes: export again and decide by the
            // digests the first pass read.
            let paths = std::mem::take(&mut transferred.paths);
            let second = self.pass(&again, source, hints, estimate, namer, paths)?;
            for result in second.nodes {
                if let Some(slot) = transferred.nodes.iter_mut().find(|r| r.node == result.node) {
                    let sent = slot.sent;
                    *slot = transfer::NodeResult { sent: sent + result.sent, ..result };
                }
            }
            transferred.elapsed += second.elapsed;
        }
        let names: Vec<String> = transferred
            .images
            .iter()
            .flat_map(|a| a.names.iter().filter_map(|n| ImageRef::parse(n).ok()).map(|r| r.normalized()))
            .chain(wanted_names.iter().cloned())
            .collect();
        for result in transferred.nodes {
            let Some(&n) = targets.iter().find(|&&n| self.nodes[n].name == result.node) else { continue };
            let outcome = match result.result {
                Ok(()) => Outcome {
                    bytes: result.sent,
                    present: result.had,
                    seconds: transferred.elapsed.as_secs_f64(),
                    ..Outcome::new(Action::Loaded)
                },
                Err(e) => Outcome::failed(format!(
                    "import into {} failed: {e}{}{}",
                    result.node,
                    self.explain(n, &e),
                    self.clean_up(n, &names)
                )),
            };
            per_node.insert(n, outcome);
        }
        Ok((transferred.images, per_node))
    }

    /// One export streamed to `targets`, each deciding what it lacks (by `known` digests
    /// of the archive's paths when an earlier pass read them).
    fn pass(
        &self,
        targets: &[usize],
        source: &Source,
        hints: &LayerHints,
        estimate: Option<u64>,
        namer: &transfer::Namer,
        known: HashMap<String, String>,
    ) -> Result<transfer::Transferred> {
        let needs: Vec<NodeNeeds> = targets
            .iter()
            .map(|&n| match self.nodes[n].holdings() {
                Ok(holds) if !self.options.full => {
                    NodeNeeds::new(holds, false).excluding(hints.not_for(self.nodes[n].platform.as_deref()))
                }
                _ => NodeNeeds::everything(),
            })
            .collect();
        let lines: Vec<(String, Option<u64>)> = targets
            .iter()
            .zip(&needs)
            .map(|(&n, need)| (self.nodes[n].name.clone(), estimate.map(|e| self.expected_bytes(n, need, hints, e))))
            .collect();
        let progress =
            Progress::start(self.ctx.style, format!("{} → {} node(s)", source.describe(), targets.len()), lines);
        let lanes: Vec<Target> = targets
            .iter()
            .zip(needs)
            .zip(&progress.counters)
            .map(|((&n, needs), sent)| Target { node: &self.nodes[n], needs, sent: sent.clone() })
            .collect();
        let options = transfer::Options { spool_max: self.options.spool_max, known };
        let result = transfer::stream(self.provider, lanes, source, hints, &options, namer);
        progress.finish();
        result
    }

    /// What node `n` is expected to receive: the export's size less the layers it holds.
    fn expected_bytes(&self, n: usize, needs: &NodeNeeds, hints: &LayerHints, estimate: u64) -> u64 {
        let Ok(holds) = self.nodes[n].holdings() else { return estimate };
        let held: u64 = hints.layers().filter(|d| needs.has(d, hints)).filter_map(|d| holds.blobs.get(d)).sum();
        estimate.saturating_sub(held)
    }

    /// What an import's bare error means, for the failures with a known cause.
    fn explain(&self, n: usize, error: &str) -> String {
        let node = &self.nodes[n];
        if error.contains("no space left on device") {
            let free = import::free_space(self.runner(), self.provider, &node.name)
                .map(|kib| format!("{} free", crate::report::human_bytes(kib * 1024)))
                .unwrap_or_else(|e| format!("free space unknown: {e}"));
            return format!(
                "; {} ran out of disk under /var/lib/containerd ({free}): free space there \
                 (`{} exec {} crictl rmi --prune` removes images no container uses) or on the disk that holds the node, then load again",
                node.name,
                self.provider.name(),
                node.name
            );
        }
        if error.contains("filtered out") {
            let runs = node.platform.as_deref().unwrap_or("its platform");
            return format!(
                "; the image has no variant for {runs}, the platform {} runs: {}",
                node.name,
                platform::fix(runs)
            );
        }
        String::new()
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

    /// On each node that took a load: gives a reloaded image CRI's `sha256:<id>` record
    /// (CRI makes one only for names it has not seen, and a reload moves a name it has),
    /// then, unless told to keep them, removes the images the names moved away from when
    /// nothing else names them, and `import-*` records, so containerd collects their content.
    fn tidy(&self, images: &[Image], outcomes: &mut Outcomes) {
        let runner = self.runner();
        let keep = self.options.keep_superseded;
        let provider = self.provider;
        std::thread::scope(|scope| {
            let mut handles = Vec::new();
            for (n, node) in self.nodes.iter().enumerate() {
                let Ok(before) = &self.before[n] else { continue };
                let moved: Vec<&Image> = images
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| matches!(outcomes[*i][n].action, Action::Loaded | Action::Retagged))
                    .map(|(_, image)| image)
                    .collect();
                let ids = import::id_records_to_make(before, &moved);
                let doomed = if keep { Vec::new() } else { import::superseded(before, &moved) };
                if ids.is_empty() && doomed.is_empty() {
                    continue;
                }
                handles.push((
                    n,
                    scope.spawn(move || {
                        for (name, id) in &ids {
                            import::tag(runner, provider, &node.name, name, id)
                                .map_err(|e| format!("naming {name} as {id} failed: {e}"))?;
                        }
                        if !doomed.is_empty() {
                            import::remove(runner, provider, &node.name, &doomed)
                                .map_err(|e| format!("removing the superseded image failed: {e}"))?;
                        }
                        Ok::<(), String>(())
                    }),
                ));
            }
            for (n, handle) in handles {
                if let Err(e) = handle.join().expect("tidying panicked") {
                    for row in outcomes.iter_mut() {
                        if row[n].action != Action::Failed && row[n].error.is_none() {
                            row[n].error = Some(format!("{}: {e}", self.nodes[n].name));
                        }
                    }
                }
            }
        });
    }

    /// Verifies every image on every node that took part, concurrently. A node that
    /// needed nothing is judged by the survey that planned it, when that proves it.
    fn verify_all(&self, images: &[Image], outcomes: &mut Outcomes) {
        let (runner, provider, settle) = (self.runner(), self.provider, self.settle);
        std::thread::scope(|scope| {
            let mut handles = Vec::new();
            for (i, image) in images.iter().enumerate() {
                for (n, node) in self.nodes.iter().enumerate() {
                    match outcomes[i][n].action {
                        Action::Failed => {}
                        Action::Skipped if verify::from_survey(node, image).is_some() => {
                            outcomes[i][n].verdict = verify::from_survey(node, image);
                        }
                        _ => handles.push((
                            i,
                            n,
                            scope.spawn(move || verify::verify(runner, provider, node, image, settle)),
                        )),
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
                        bytes_present: o.present,
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

fn names_of(group: &[&Image]) -> Vec<String> {
    group.iter().flat_map(|i| i.names.iter().map(ImageRef::normalized)).collect()
}

fn same_image(identity: &crate::resolve::image::Identity, found: &ArchiveImage) -> bool {
    (identity.config.is_some() && identity.config == found.identity.config)
        || (identity.manifest.is_some() && identity.manifest == found.identity.manifest)
}

/// The names each exported image must answer to; an image the engine said it had but
/// the export does not hold means it changed in between.
fn names_for_group(found: &[ArchiveImage], group: &[&Image], source: &Source) -> Result<Vec<Vec<String>>> {
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
fn own_names(found: &ArchiveImage) -> impl Iterator<Item = String> + '_ {
    found.names.iter().filter_map(|n| ImageRef::parse(n).ok()).map(|r| r.normalized())
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
    if let Some(a) = found.iter().find(|a| same_image(&image.identity, a)) {
        // The names the archive gives it (Podman's localhost/...) are names on the node too.
        for name in a.names.iter().filter_map(|n| ImageRef::parse(n).ok()) {
            image.add_name(name);
        }
        let learned = a.identity.clone();
        image.identity.merge(&learned);
    }
}

fn scan_file(path: &Path) -> Result<Vec<ArchiveImage>> {
    let fix = "pass a docker-archive or OCI archive, as written by `docker save` or `podman save` and not altered since, or - for stdin";
    let file = std::fs::File::open(path)
        .map_err(|e| Error::input(format!("cannot open archive {}: {e}", path.display()), fix))?;
    transfer::scan(std::io::BufReader::with_capacity(1 << 20, file))
        .map(|(_, images)| images)
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
                layers: chosen.diff_ids.clone(),
                size: None,
                platform: chosen.platform.clone(),
                by_platform: chosen.by_platform.clone(),
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
            "../../tests/fixtures/containerd-2.1/ctr-images-ls.txt"
        ));
        let manifest = "sha256:50fd1c54b129cd11eed7c33c2f001f4bb5b9fe7e4490e9235007c687fcd22e28";
        let mut images = vec![Image {
            requested: "example.com/app/bb:dev".into(),
            names: vec![ImageRef::parse("example.com/app/bb:dev").unwrap()],
            identity: Identity { config: None, manifest: Some(manifest.into()) },
            engine: None,
            engine_ref: "example.com/app/bb:dev".into(),
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
