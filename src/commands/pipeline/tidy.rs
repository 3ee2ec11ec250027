//! After the transfer, on each node that took a load or a retag, in the node's session (or
//! an `exec` of its own where it has none): CRI's id records for reloaded names, the
//! versions they superseded removed, kindload's label on every name loaded, and the older
//! versions of their repositories beyond `--keep` removed (`retain`), so a node holds the
//! versions asked for and no more. What CRI then says of the names is the verification's
//! first look.

use super::{retain, Outcomes, Pipeline};
use crate::exec::Session;
use crate::plan::Action;
use crate::report::{RetentionReport, Transport};
use crate::resolve::holdings::{parse_survey, section, Section, READY};
use crate::resolve::image::{Identity, Image};
use crate::resolve::reference::ImageRef;
use crate::transfer::import;

impl Pipeline<'_> {
    /// On each node that took a sideload or a retag: gives a reloaded image CRI's
    /// `sha256:<id>` record (CRI makes one only for names it has not seen, and a reload moves
    /// a name it has); unless told to keep them, removes the images the names moved away
    /// from when nothing else names them, and `import-*` records, so containerd collects
    /// their content; labels the names and applies the retention policy. Nodes that needed
    /// nothing cost nothing here; the registry route did all this in its own session.
    pub(super) fn tidy(&self, images: &[Image], outcomes: &mut Outcomes) {
        let keep_superseded = self.options.keep_superseded;
        std::thread::scope(|scope| {
            let mut handles = Vec::new();
            for (n, node) in self.nodes.iter().enumerate() {
                let Ok(before) = &self.before[n] else { continue };
                let moved: Vec<(usize, &Image)> = images
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| matches!(outcomes[*i][n].action, Action::Loaded | Action::Retagged))
                    .filter(|(i, _)| outcomes[*i][n].transport != Some(Transport::Registry))
                    .collect();
                if moved.is_empty() {
                    continue;
                }
                let moved_images: Vec<&Image> = moved.iter().map(|(_, image)| *image).collect();
                let ids = import::id_records_to_make(before, &moved_images);
                let doomed = if keep_superseded { Vec::new() } else { import::superseded(before, &moved_images) };
                let labelled: Vec<String> =
                    moved_images.iter().flat_map(|i| i.names.iter().map(ImageRef::normalized)).collect();
                // CRI's id records, read back with the labelled names where crictl is absent.
                let read: Vec<&Identity> = moved_images.iter().map(|i| &i.identity).collect();
                let retention = retain::retain_args(self.keep, self.stamp, &read, &labelled);
                let args = retain::tidy_args(&ids, &doomed, retention);
                handles.push((n, moved, scope.spawn(move || self.tidy_node(&node.name, &args, &labelled))));
            }
            for (n, moved, handle) in handles {
                let (result, read_back) = handle.join().expect("tidying panicked");
                for (i, image) in moved {
                    let proved = crate::verify::read_back(&self.nodes[n], image, &read_back);
                    if outcomes[i][n].action != Action::Failed && proved.is_some() {
                        outcomes[i][n].verdict = proved;
                    }
                }
                if let Err(e) = result {
                    for row in outcomes.iter_mut() {
                        if row[n].action != Action::Failed && row[n].error.is_none() {
                            row[n].error = Some(format!("{}: {e}", self.nodes[n].name));
                        }
                    }
                }
            }
        });
    }

    /// Tidies one node, in its session when this run holds one, and records its
    /// retention. Whether it went well, and what the node printed of the names after.
    fn tidy_node(&self, node: &str, args: &[String], labelled: &[String]) -> (Result<(), String>, Vec<Section>) {
        let mut read_back = Vec::new();
        let result = match self.claims.call(node, args) {
            Some(mut session) => self.tidy_in(&mut session, node, labelled, &mut read_back),
            None => {
                let argv = retain::tidy_argv(args);
                let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
                match Session::start(&self.provider.exec_stdin(node, &argv)) {
                    Ok(mut session) => self
                        .tidy_in(&mut session, node, labelled, &mut read_back)
                        .and_then(|()| session.close().map_err(|e| format!("tidying failed: {e}"))),
                    Err(e) => Err(format!("tidying failed: {e}")),
                }
            }
        };
        (result, read_back)
    }

    /// Reads the tidying `session` runs to its end. The retention runs even when naming or
    /// the superseded removal failed: those are reported, and the tidying brought to its end.
    fn tidy_in(
        &self,
        session: &mut Session,
        node: &str,
        labelled: &[String],
        read_back: &mut Vec<Section>,
    ) -> Result<(), String> {
        let listed = session.read_until(READY).map(|t| parse_survey(&t));
        let listed = listed.map_err(|e| format!("tidying failed: {e}"))?;
        let mut failed = Vec::new();
        for s in listed.iter().filter(|s| s.name.starts_with("tag:") && !s.ok()) {
            failed.push(format!("naming the image as {} failed: {}", &s.name[4..], s.body.trim()));
        }
        if let Some(s) = section(&listed, "superseded").filter(|s| !s.ok()) {
            failed.push(format!("removing the superseded image failed: {}", s.body.trim()));
        }
        let scope = retain::Scope { keep: self.keep, labelled, run_names: &self.run_names };
        let retained: Option<RetentionReport> = retain::settle(session, node, &listed, &scope)
            .map_err(|e| format!("removing older versions failed: {e}"))?;
        let after = session.read_until(retain::TIDIED).map_err(|e| format!("tidying failed: {e}"))?;
        *read_back = retain::read_back(&listed, parse_survey(&after));
        if let Some(report) = retained {
            retain::record(&self.retained, report);
        }
        match failed.is_empty() {
            true => Ok(()),
            false => Err(failed.join("; ")),
        }
    }
}
