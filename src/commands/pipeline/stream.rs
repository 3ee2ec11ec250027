//! The transfer: one export per source streamed to every node that needs it, each
//! receiving only what it lacks; a failed import is explained and cleaned up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use super::images::{images_from_archive, learn_identity, same_image};
use super::{Outcome, Outcomes, Pipeline};
use crate::error::Result;
use crate::plan::layers::{LayerHints, NodeNeeds};
use crate::plan::{platform, Action};
use crate::report::progress::Progress;
use crate::report::Transport;
use crate::resolve::image::Image;
use crate::resolve::reference::ImageRef;
use crate::transfer::archive::ArchiveImage;
use crate::transfer::export::{Export, Source};
use crate::transfer::{self, import, Target};

impl Pipeline<'_> {
    /// stdin can be read once and says what it holds only as it streams: every usable
    /// node gets it, and the images are known afterwards.
    pub(super) fn load_stdin(&mut self, wanted: &[String]) -> Result<(Vec<Image>, Outcomes)> {
        let targets = self.usable();
        self.survey_and_claim(
            &targets,
            &["an archive from stdin".to_string()],
            Default::default(),
            &LayerHints::default(),
        );
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
        let (_, per_node) = self.stream(&targets, &Source::Stdin, None, &LayerHints::default(), None, &namer, &[])?;
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
        self.let_go();
        Ok((images, outcomes))
    }

    /// Streams one source to `targets`, each receiving what it lacks, with progress;
    /// removes what a failed import left. `export` is `source` when already opened.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn stream(
        &self,
        targets: &[usize],
        source: &Source,
        export: Option<Export>,
        hints: &LayerHints,
        estimate: Option<u64>,
        namer: &transfer::Namer,
        wanted_names: &[String],
    ) -> Result<(Vec<ArchiveImage>, HashMap<usize, Outcome>)> {
        let mut per_node = HashMap::new();
        // A node whose survey lock could not be had (a stuck run holds it) is not sent to.
        let (targets, locked_out): (Vec<usize>, Vec<usize>) =
            targets.iter().partition(|&&n| self.claims.holds(&self.nodes[n].name));
        for n in locked_out {
            let why = self.nodes[n].holdings().err().unwrap_or_else(|| "its survey lock was not taken".into());
            per_node.insert(n, Outcome::failed(why));
        }
        let targets = &targets[..];
        if targets.is_empty() {
            // nobody to read it: the save ends on its closed pipe
            let _ = export.map(Export::finish);
            return Ok((Vec::new(), per_node));
        }
        let first = match self.pass(targets, source, export, hints, estimate, namer, HashMap::new()) {
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
            let second = self.pass(&again, source, None, hints, estimate, namer, paths)?;
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
                    transport: Some(Transport::Sideload),
                    ..Outcome::new(Action::Loaded)
                },
                Err(e) => Outcome::failed(format!(
                    "import into {} failed: {e}{}{}",
                    result.node,
                    self.explain(n, &e, result.stalled),
                    self.clean_up(n, &names)
                )),
            };
            per_node.insert(n, outcome);
        }
        Ok((transferred.images, per_node))
    }

    /// One export streamed to `targets`, each deciding what it lacks (by `known` digests
    /// of the archive's paths when an earlier pass read them).
    #[allow(clippy::too_many_arguments)]
    fn pass(
        &self,
        targets: &[usize],
        source: &Source,
        export: Option<Export>,
        hints: &LayerHints,
        estimate: Option<u64>,
        namer: &transfer::Namer,
        known: HashMap<String, String>,
    ) -> Result<transfer::Transferred> {
        // A second pass (`known` digests) awaits no other run: it sends what is missing.
        let first = known.is_empty();
        let needs: Vec<NodeNeeds> = targets
            .iter()
            .map(|&n| match self.nodes[n].holdings() {
                Ok(holds) if !self.options.full => NodeNeeds::new(holds, false)
                    .excluding(hints.not_for(self.nodes[n].platform.as_deref()))
                    .promising(if first { self.claims.theirs(&self.nodes[n].name) } else { Default::default() }),
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
        let nodes: Vec<&str> = targets.iter().map(|&n| self.nodes[n].name.as_str()).collect();
        let result = self.telling_waiters(&nodes, &progress.counters, || {
            transfer::stream(self.provider, lanes, source, export, hints, &options, namer, &self.claims)
        });
        progress.finish();
        result
    }

    /// Runs `work` while telling the runs waiting on this one at these nodes, twice a second,
    /// how many bytes each node has taken: their wait is judged by this progress.
    fn telling_waiters<T>(&self, nodes: &[&str], sent: &[Arc<AtomicU64>], work: impl FnOnce() -> T) -> T {
        let (done, ticks) = mpsc::channel::<()>();
        std::thread::scope(|scope| {
            scope.spawn(move || {
                let mut told = vec![u64::MAX; nodes.len()];
                while let Err(RecvTimeoutError::Timeout) = ticks.recv_timeout(Duration::from_millis(500)) {
                    for ((node, counter), told) in nodes.iter().zip(sent).zip(told.iter_mut()) {
                        let now = counter.load(Ordering::Relaxed);
                        if now != *told {
                            *told = now;
                            self.claims.tell(node, &format!("has sent it {}", crate::report::human_bytes(now)));
                        }
                    }
                }
            });
            let result = work();
            drop(done);
            result
        })
    }

    /// What node `n` is expected to receive: the export's size less the layers it holds.
    fn expected_bytes(&self, n: usize, needs: &NodeNeeds, hints: &LayerHints, estimate: u64) -> u64 {
        let Ok(holds) = self.nodes[n].holdings() else { return estimate };
        let held: u64 = hints.layers().filter(|d| needs.has(d, hints)).filter_map(|d| holds.blobs.get(d)).sum();
        estimate.saturating_sub(held)
    }

    /// What an import's bare error means, for the failures with a known cause.
    fn explain(&self, n: usize, error: &str, stalled: bool) -> String {
        let node = &self.nodes[n];
        if stalled {
            let argv = import::active_ingests_argv();
            let ingests = match self.runner().stdout(&self.provider.exec(&node.name, &argv).cleanup()) {
                Ok(text) => {
                    let ours = crate::transfer::layout::ingest_prefix();
                    let others: Vec<String> =
                        import::parse_active_ingests(&text).into_iter().filter(|i| !i.starts_with(&ours)).collect();
                    match others.is_empty() {
                        true => "no other ingest in progress there".to_string(),
                        false => format!("ingests in progress there: {}", others.join("; ")),
                    }
                }
                Err(e) => format!("its ingests could not be listed: {e}"),
            };
            return format!(
                "; {} took no bytes and made no progress ({ingests}): check that its containerd answers \
                 (`{} exec {} ctr version`) and that the disk under it is not full or frozen, then load again; \
                 if it is only slow, allow more with --stall-timeout",
                node.name,
                self.provider.name(),
                node.name
            );
        }
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
        match import::clean_up(self.runner(), self.provider, &self.nodes[n], before, names) {
            Ok(removed) if !removed.is_empty() => format!(" (removed what it left: {})", removed.join(", ")),
            Ok(_) => String::new(),
            Err(e) => format!(" (and removing what it left failed: {e})"),
        }
    }
}
