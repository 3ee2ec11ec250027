//! Export once, stream to every node that needs it, import into containerd.

pub mod archive;
pub mod export;
pub mod fanout;
pub mod import;

use std::io::BufReader;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::resolve::node::Node;
use crate::resolve::provider::Provider;
use archive::ArchiveImage;
use export::{Export, Source};
use fanout::{Sink, Tee};
use import::Import;

/// How one streamed archive went.
pub struct Transferred {
    pub images: Vec<ArchiveImage>,
    pub elapsed: Duration,
    /// Per node: Ok, or why its import failed.
    pub nodes: Vec<(String, std::result::Result<(), String>)>,
}

/// Streams `source` into every node's containerd at once. The export runs once; each
/// node's import reads the same bytes. Per-node import failures are returned, not raised.
pub fn stream(provider: Provider, nodes: &[&Node], source: &Source, bytes: Arc<AtomicU64>) -> Result<Transferred> {
    let started = Instant::now();
    let mut export = Export::open(source)?;
    let mut imports = Vec::new();
    let mut sinks = Vec::new();
    let mut failed = Vec::new();
    for node in nodes {
        match Import::start(provider, node) {
            Ok((import, stdin)) => {
                sinks.push(Sink::new(node.name.clone(), stdin));
                imports.push(import);
            }
            Err(e) => failed.push((node.name.clone(), Err(e.to_string()))),
        }
    }
    let scanned = {
        let mut tee = Tee::new(&mut export.reader, sinks, bytes);
        let scanned = archive::scan(BufReader::with_capacity(1 << 20, &mut tee));
        tee.close_all();
        scanned
    };
    let mut results: Vec<(String, std::result::Result<(), String>)> =
        imports.into_iter().map(|i| (i.node.clone(), i.finish().map_err(|e| e.to_string()))).collect();
    results.extend(failed);
    let produced = export.finish();
    let images = match (scanned, produced) {
        (_, Err(e)) => return Err(e),
        (Err(e), Ok(())) if source.is_user_input() => {
            return Err(Error::input(
                format!("{} is not an image archive: {e}", source.describe()),
                "pass a docker-archive or OCI archive, as written by `docker save` or `podman save`",
            ))
        }
        (Err(e), Ok(())) => {
            return Err(Error::failed(format!("reading the `{}` stream failed: {e}", source.describe()), ""))
        }
        (Ok(images), Ok(())) => images,
    };
    Ok(Transferred { images, elapsed: started.elapsed(), nodes: results })
}
