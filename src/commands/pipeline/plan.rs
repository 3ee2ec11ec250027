//! Planning: what each node lacks of each image (skip, retag or transfer), judged by
//! the survey and the platform; retags happen here, transfers are handed to `stream`.

use std::collections::HashMap;
use std::time::Instant;

use super::images::{learn_config_digests, learn_identity, names_for_group, names_of, sources};
use super::{Outcome, Outcomes, Pipeline};
use crate::error::{Error, Result};
use crate::plan::layers::LayerHints;
use crate::plan::{platform, Action, Step};
use crate::resolve::image::Image;
use crate::resolve::node::Node;
use crate::resolve::records::CtrImage;
use crate::transfer::archive::ArchiveImage;
use crate::transfer::export::{Export, Source};
use crate::transfer::{import, lock};

impl Pipeline<'_> {
    /// Plans every image on every node, retags, streams each source once to the nodes
    /// that need it, and removes what the moved names left behind.
    pub(super) fn load(&mut self, images: &mut [Image], archive: Option<&Source>) -> Result<Outcomes> {
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
                    .map(|(b, m)| b.as_ref().ok().filter(|_| m.is_none()).map(|l| crate::plan::plan(l, image)))
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
        let wanted: Vec<Vec<usize>> =
            (0..images.len()).map(|i| (0..self.nodes.len()).filter(|&n| needs(i, n)).collect()).collect();
        let pulled = self.through_registry(images, &wanted, &mut outcomes);
        super::registry::close_sessions(&self.sessions.pulls);
        let pulled = pulled?;
        let needs = |i: usize, n: usize| needs(i, n) && !pulled[i][n];
        let receiving: Vec<usize> = (0..self.nodes.len()).filter(|&n| (0..images.len()).any(|i| needs(i, n))).collect();
        let groups = sources(images, archive, |i| (0..self.nodes.len()).any(|n| needs(i, n)));
        // An engine's save spends most of its time before its first byte (Docker writes the
        // whole archive aside first): started now, that time passes while the nodes are
        // surveyed. Until read, it waits on a full pipe.
        let mut exports: Vec<Option<Export>> = groups
            .iter()
            .map(|(source, _)| matches!(source, Source::Engine { .. }).then(|| Export::open(source).ok()).flatten())
            .collect();
        // Layers are claimed by a run of one export only: one streaming several could wait
        // for a run that waits for its next export.
        let claimable: HashMap<String, Vec<String>> = match groups.len() == 1 && !self.options.full {
            true => receiving
                .iter()
                .map(|&n| {
                    let layers = (0..images.len()).filter(|&i| needs(i, n)).flat_map(|i| images[i].layers.clone());
                    (self.nodes[n].name.clone(), layers.collect())
                })
                .collect(),
            false => HashMap::new(),
        };
        let all_hints = LayerHints::new(&images.iter().map(|i| i.layers.clone()).collect::<Vec<_>>());
        self.survey_and_claim(&receiving, &names_of(&images.iter().collect::<Vec<_>>()), claimable, &all_hints);
        for (g, (source, members)) in groups.into_iter().enumerate() {
            let targets: Vec<usize> = (0..self.nodes.len()).filter(|&n| members.iter().any(|&i| needs(i, n))).collect();
            let group: Vec<&Image> = members.iter().map(|&i| &images[i]).collect();
            let namer = |found: &[ArchiveImage]| names_for_group(found, &group, &source);
            let hints = LayerHints::new(&group.iter().map(|i| i.layers.clone()).collect::<Vec<_>>())
                .with_platforms(group.iter().flat_map(|i| i.by_platform.clone()).collect());
            let estimate: Option<u64> = source.size().or_else(|| group.iter().map(|i| i.size).sum());
            let export = exports[g].take();
            let (found, per_node) =
                self.stream(&targets, &source, export, &hints, estimate, &namer, &names_of(&group))?;
            for &i in &members {
                learn_identity(&mut images[i], &found);
            }
            for &n in &targets {
                for &i in members.iter().filter(|&&i| needs(i, n)) {
                    let note = outcomes[i][n].note.take();
                    outcomes[i][n] = per_node.get(&n).cloned().unwrap_or_else(|| Outcome::failed("not loaded"));
                    outcomes[i][n].note = note;
                }
            }
        }
        // The nodes' sessions tidy, then go.
        self.tidy(images, &mut outcomes);
        self.let_go();
        Ok(outcomes)
    }

    /// On the nodes that will receive something: reads, under each node's survey lock, what
    /// a transfer is planned with (containerd's config, blobs, snapshots), and claims there
    /// the layers of `claimable` it lacks that no other run claimed. What other runs
    /// imported or claimed is not sent again. A node that needs nothing costs one light survey.
    pub(super) fn survey_and_claim(
        &mut self,
        which: &[usize],
        loading: &[String],
        claimable: HashMap<String, Vec<String>>,
        hints: &LayerHints,
    ) {
        let mut nodes: Vec<&mut Node> =
            self.nodes.iter_mut().enumerate().filter(|(n, _)| which.contains(n)).map(|(_, node)| node).collect();
        if nodes.is_empty() {
            return;
        }
        let who = lock::describe_run(&loading.join(", "));
        let claimable = lock::Claimable { layers: claimable, hints };
        let mut sessions = self.sessions.sideload.lock().expect("sessions");
        let held = nodes.iter().map(|node| sessions.remove(&node.name)).collect();
        drop(sessions);
        // The nodes that receive nothing are done with their sessions.
        super::registry::close_sessions(&self.sessions.sideload);
        self.claims =
            lock::survey_and_claim(self.provider, &mut nodes, held, &who, &claimable, super::retain::SESSION_FUNCTIONS);
    }

    /// Gives up every claim this run still holds.
    pub(super) fn let_go(&mut self) {
        self.claims = lock::NodeClaims::default();
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
}
