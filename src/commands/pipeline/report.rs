//! The outcomes as the report printed or written as JSON.

use super::{Outcome, Outcomes, Pipeline};
use crate::report::{ImageReport, LoadReport, NodeReport, Transport};
use crate::resolve::image::Image;
use crate::transfer::export::Source;

impl Pipeline<'_> {
    pub(super) fn report(
        &self,
        cluster: &str,
        images: &[Image],
        outcomes: &Outcomes,
        archive: Option<&Source>,
    ) -> LoadReport {
        let images: Vec<ImageReport> = images
            .iter()
            .zip(outcomes)
            .enumerate()
            .map(|(i, (image, row))| ImageReport {
                reference: image.requested.clone(),
                normalized: image.normalized(),
                names: image.names.iter().map(|n| n.normalized()).collect(),
                id: row
                    .iter()
                    .find_map(|o| o.verdict.as_ref().and_then(|v| v.id.clone()))
                    .unwrap_or_else(|| image.identity.id()),
                transport: transport_of(row),
                push: self.pushes.lock().expect("push reports").get(i).cloned().flatten(),
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
                        transport: o.transport,
                        note: o.note.clone(),
                        error: o.error.clone(),
                    })
                    .collect(),
            })
            .collect();
        let ok =
            !self.nodes.is_empty() && !images.is_empty() && images.iter().all(|i| i.nodes.iter().all(|n| n.verified));
        let retention = self.retained.lock().expect("retention reports").clone();
        LoadReport {
            cluster: cluster.to_string(),
            provider: self.provider.name().to_string(),
            ok,
            images,
            retention,
            error: None,
        }
    }
}

/// The transports an image's loads used, in a fixed order.
fn transport_of(row: &[Outcome]) -> Option<String> {
    let used: Vec<&str> = [(Transport::Registry, "registry"), (Transport::Sideload, "sideload")]
        .iter()
        .filter(|(t, _)| row.iter().any(|o| o.transport == Some(*t)))
        .map(|(_, name)| *name)
        .collect();
    (!used.is_empty()).then(|| used.join("+"))
}
