//! After the transfer, on each node that took a load or a retag, in one `exec`: CRI's id
//! records for reloaded names, the versions they superseded removed, kindload's label on
//! every name loaded, and the older versions of their repositories beyond `--keep` removed
//! (`retain`), so a node holds the versions asked for and no more.

use super::{retain, Outcomes, Pipeline};
use crate::exec::Session;
use crate::plan::Action;
use crate::report::Transport;
use crate::resolve::holdings::{parse_survey, section, READY};
use crate::resolve::image::Image;
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
        let provider = self.provider;
        std::thread::scope(|scope| {
            let mut handles = Vec::new();
            for (n, node) in self.nodes.iter().enumerate() {
                let Ok(before) = &self.before[n] else { continue };
                let moved: Vec<&Image> = images
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| matches!(outcomes[*i][n].action, Action::Loaded | Action::Retagged))
                    .filter(|(i, _)| outcomes[*i][n].transport != Some(Transport::Registry))
                    .map(|(_, image)| image)
                    .collect();
                if moved.is_empty() {
                    continue;
                }
                let ids = import::id_records_to_make(before, &moved);
                let doomed = if keep_superseded { Vec::new() } else { import::superseded(before, &moved) };
                let labelled: Vec<String> =
                    moved.iter().flat_map(|i| i.names.iter().map(ImageRef::normalized)).collect();
                handles.push((
                    n,
                    scope.spawn(move || {
                        let argv = retain::tidy_argv(&ids, &doomed, self.keep, self.stamp, &labelled);
                        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
                        let mut session = Session::start(&provider.exec_stdin(&node.name, &argv))
                            .map_err(|e| format!("tidying failed: {e}"))?;
                        let listed = session.read_until(READY).map(|t| parse_survey(&t));
                        let listed = listed.map_err(|e| format!("tidying failed: {e}"))?;
                        // The retention runs even when naming or the superseded removal failed:
                        // those are reported, and the session is brought to its end.
                        let mut failed = Vec::new();
                        for s in listed.iter().filter(|s| s.name.starts_with("tag:") && !s.ok()) {
                            failed.push(format!("naming the image as {} failed: {}", &s.name[4..], s.body.trim()));
                        }
                        if let Some(s) = section(&listed, "superseded").filter(|s| !s.ok()) {
                            failed.push(format!("removing the superseded image failed: {}", s.body.trim()));
                        }
                        let scope = retain::Scope { keep: self.keep, labelled: &labelled, run_names: &self.run_names };
                        let retained = retain::settle(&mut session, &node.name, &listed, &scope)
                            .map_err(|e| format!("removing older versions failed: {e}"))?;
                        session.close().map_err(|e| format!("tidying failed: {e}"))?;
                        if let Some(report) = retained {
                            retain::record(&self.retained, report);
                        }
                        if !failed.is_empty() {
                            return Err(failed.join("; "));
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
}
