//! Every image on every node that took part, verified concurrently.

use super::{Outcomes, Pipeline};
use crate::plan::Action;
use crate::resolve::image::Image;

impl Pipeline<'_> {
    /// Verifies every image on every node that took part, concurrently. A node that
    /// needed nothing is judged by the survey that planned it, when that proves it; one that
    /// pulled from the registry by what it held right after, read in the same exec.
    pub(super) fn verify_all(&self, images: &[Image], outcomes: &mut Outcomes) {
        let (runner, provider, settle) = (self.runner(), self.provider, self.settle);
        std::thread::scope(|scope| {
            let mut handles = Vec::new();
            for (i, image) in images.iter().enumerate() {
                for (n, node) in self.nodes.iter().enumerate() {
                    match outcomes[i][n].action {
                        Action::Failed => {}
                        // Read back in the same exec as the load, after it.
                        _ if outcomes[i][n].verdict.as_ref().is_some_and(|v| v.verified) => {}
                        Action::Skipped if crate::verify::from_survey(node, image).is_some() => {
                            outcomes[i][n].verdict = crate::verify::from_survey(node, image);
                        }
                        _ => handles.push((
                            i,
                            n,
                            scope.spawn(move || crate::verify::verify(runner, provider, node, image, settle)),
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
}
