//! After the transfer: CRI's id records for reloaded names, and the versions they
//! superseded removed, so nodes hold one version.

use super::{Outcomes, Pipeline};
use crate::plan::Action;
use crate::report::Transport;
use crate::resolve::image::Image;
use crate::transfer::import;

impl Pipeline<'_> {
    /// On each node that took a load: gives a reloaded image CRI's `sha256:<id>` record
    /// (CRI makes one only for names it has not seen, and a reload moves a name it has),
    /// then, unless told to keep them, removes the images the names moved away from when
    /// nothing else names them, and `import-*` records, so containerd collects their content.
    pub(super) fn tidy(&self, images: &[Image], outcomes: &mut Outcomes) {
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
                    // The registry route tidied in the node's own exec.
                    .filter(|(i, _)| matches!(outcomes[*i][n].action, Action::Loaded | Action::Retagged))
                    .filter(|(i, _)| outcomes[*i][n].transport != Some(Transport::Registry))
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
}
