//! Export once; read the archive as it streams and send each node, as an OCI layout of its
//! own, only the blobs it lacks; import into containerd.

pub mod archive;
pub mod export;
pub mod fanout;
pub mod import;
pub mod layout;
pub mod lock;

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Seek, Write};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::digest::{self, Hasher};
use crate::error::{Error, Result};
use crate::plan::layers::{LayerHints, Need, NodeNeeds};
use crate::resolve::node::Node;
use crate::resolve::provider::Provider;
use archive::{clean_path, digest_from_path, is_metadata, named_tar_digest, ArchiveImage, Contents};
use export::{Export, Source};
use fanout::NodeStream;
use import::Import;

/// Bytes read from the export at a time, and shared between nodes.
const CHUNK: usize = 256 << 10;

/// One node to stream to, and what it lacks.
pub struct Target<'a> {
    pub node: &'a Node,
    pub needs: NodeNeeds,
    /// Counts bytes written to this node (for progress).
    pub sent: Arc<AtomicU64>,
}

/// How one node's transfer went.
#[derive(Debug, Clone)]
pub struct NodeResult {
    pub node: String,
    pub result: std::result::Result<(), String>,
    /// Bytes written to the node.
    pub sent: u64,
    /// Bytes of layers left out because the node had them.
    pub had: u64,
    /// A layer was left out by a guess the bytes proved wrong: send again, deciding by
    /// `Transferred::paths`.
    pub again: bool,
    /// The node took no bytes and made no progress for the stall limit.
    pub stalled: bool,
}

/// How one streamed archive went.
pub struct Transferred {
    pub images: Vec<ArchiveImage>,
    pub elapsed: Duration,
    pub nodes: Vec<NodeResult>,
    /// Every file's digest by path, for a second pass.
    pub paths: HashMap<String, String>,
}

#[derive(Default)]
pub struct Options {
    /// Largest layer spooled to a temporary file when its digest decides which nodes get it.
    pub spool_max: u64,
    /// Digests of the archive's files by path, learned by an earlier pass over the same
    /// export: a second pass decides by them (and still checks them against the bytes).
    pub known: HashMap<String, String>,
}

/// The names each image found in the archive must answer to on the nodes (none: leave it out).
pub type Namer<'a> = dyn Fn(&[ArchiveImage]) -> Result<Vec<Vec<String>>> + 'a;

/// Runs sending to the same nodes at once (see `lock`): a node's layers another run
/// promised are awaited before its index is sent, and a node's import ending lets the
/// runs waiting for what this one promised there go on.
pub trait Sharing: Sync {
    /// Waits until the runs that promised `layers` on `node` are done there; the layers
    /// still missing then.
    fn await_layers(&self, node: &str, layers: &[String]) -> std::result::Result<Vec<String>, String>;
    /// This run's import into `node` ended.
    fn done(&self, node: &str);
}

/// One node's side of the stream.
struct Lane {
    node: String,
    needs: NodeNeeds,
    stream: Option<NodeStream>,
    import: Option<Import>,
    failed: Option<String>,
    sent_blobs: HashSet<String>,
    had: u64,
    again: bool,
    /// The index, held back until the layers other runs promised (`awaited`) are there.
    closing: Option<Vec<u8>>,
    awaited: Vec<String>,
}

impl Lane {
    fn live(&self) -> bool {
        self.stream.is_some() && self.failed.is_none()
    }

    fn send(&mut self, bytes: Vec<u8>) {
        if let Some(s) = &self.stream {
            s.send_bytes(bytes);
        }
    }

    fn send_chunk(&self, chunk: &fanout::Chunk) {
        if let Some(s) = &self.stream {
            s.send(chunk);
        }
    }
}

/// Streams `source` into the targets' containerd at once: the export runs once, each node
/// gets the blobs it lacks. Per-node failures are returned, not raised.
/// `export` is `source` opened already (an engine's save started early), else it is opened here.
#[allow(clippy::too_many_arguments)]
pub fn stream(
    provider: Provider,
    targets: Vec<Target>,
    source: &Source,
    export: Option<Export>,
    hints: &LayerHints,
    options: &Options,
    namer: &Namer,
    sharing: &dyn Sharing,
) -> Result<Transferred> {
    let started = Instant::now();
    let mut export = match export {
        Some(export) => export,
        None => Export::open(source)?,
    };
    let mut lanes: Vec<Lane> = targets
        .into_iter()
        .map(|t| {
            let mut lane = Lane {
                node: t.node.name.clone(),
                needs: t.needs,
                stream: None,
                import: None,
                failed: None,
                sent_blobs: HashSet::new(),
                had: 0,
                again: false,
                closing: None,
                awaited: Vec::new(),
            };
            match Import::start(provider, t.node) {
                Ok((import, stdin)) => {
                    let watch = Some(import.watch.clone());
                    lane.stream = Some(NodeStream::start(t.node.name.clone(), stdin, t.sent, watch));
                    lane.import = Some(import);
                }
                Err(e) => lane.failed = Some(e.to_string()),
            }
            lane
        })
        .collect();
    let read = repack(&mut export.reader, &mut lanes, hints, options);
    let produced = export.finish();
    let mut paths = HashMap::new();
    let outcome = match (read, produced) {
        (_, Err(e)) => Err(e),
        (Err(e), Ok(())) => Err(stream_error(source, e)),
        (Ok(contents), Ok(())) => {
            paths = contents.files.iter().map(|(p, f)| (p.clone(), f.digest.clone())).collect();
            close_layouts(&contents, &mut lanes, namer, source, !options.known.is_empty())
        }
    };
    let nodes = finish(lanes, sharing);
    let images = outcome?;
    Ok(Transferred { images, elapsed: started.elapsed(), nodes, paths })
}

fn stream_error(source: &Source, e: io::Error) -> Error {
    if source.is_user_input() {
        Error::input(
            format!("{} is not an image archive: {e}", source.describe()),
            "pass a docker-archive or OCI archive, as written by `docker save` or `podman save`, unaltered",
        )
    } else {
        Error::failed(format!("reading the `{}` stream failed: {e}", source.describe()), "")
    }
}

/// Once the whole archive is read: what it holds, and each node's index of it.
fn close_layouts(
    contents: &Contents,
    lanes: &mut [Lane],
    namer: &Namer,
    source: &Source,
    second_pass: bool,
) -> Result<Vec<ArchiveImage>> {
    let images = archive::images_in(contents).map_err(|e| stream_error(source, io::Error::other(e)))?;
    let names = namer(&images)?;
    let entries: Vec<layout::Entry> = images
        .iter()
        .zip(names)
        .filter(|(_, names)| !names.is_empty())
        .map(|(image, names)| layout::Entry { image, names })
        .collect();
    for lane in lanes.iter_mut().filter(|l| l.live()) {
        let (lacking, awaited) = lacking_layers(lane, &entries);
        if !lacking.is_empty() && !second_pass {
            // A size guess left out a layer the node lacks: its stream ends without an
            // index, so nothing is imported, and a second pass sends what it lacks.
            lane.again = true;
            lane.failed = Some(format!("{} lacks layer(s) {}", lane.node, lacking.join(", ")));
            continue;
        }
        if !lacking.is_empty() {
            lane.failed = Some(format!(
                "{} would lack layer(s) {} that were left out of its stream; run again with --full",
                lane.node,
                lacking.join(", ")
            ));
            continue;
        }
        match awaited.is_empty() {
            true => lane.send(layout::closing(&entries)),
            false => {
                lane.closing = Some(layout::closing(&entries));
                lane.awaited = awaited;
            }
        }
    }
    Ok(images)
}

/// Layers of the named images that the node neither holds nor was sent: those it lacks,
/// and those another run promised to bring.
fn lacking_layers(lane: &Lane, entries: &[layout::Entry]) -> (Vec<String>, Vec<String>) {
    let (mut lacking, mut awaited) = (Vec::new(), Vec::new());
    for entry in entries {
        let chains = digest::chain_ids(&entry.image.diff_ids);
        for (i, layer) in entry.image.layers.iter().enumerate() {
            let chain = chains.get(i).map(String::as_str);
            if lane.sent_blobs.contains(layer) || lane.needs.holds(layer, chain) {
                continue;
            }
            let list = if lane.needs.promised(layer) { &mut awaited } else { &mut lacking };
            if !list.contains(layer) {
                list.push(layer.clone());
            }
        }
    }
    (lacking, awaited)
}

/// Ends every node's input and waits for each import, the nodes side by side: a node
/// waiting for another run's layers holds back no other.
fn finish(lanes: Vec<Lane>, sharing: &dyn Sharing) -> Vec<NodeResult> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = lanes.into_iter().map(|lane| scope.spawn(move || finish_lane(lane, sharing))).collect();
        handles.into_iter().map(|h| h.join().expect("a node's import panicked")).collect()
    })
}

/// Sends the held-back index once the promised layers are there (or ends the stream
/// without one, for a second pass, when a promise was not kept), ends the node's input,
/// waits for its import and tells the other runs it ended.
fn finish_lane(mut lane: Lane, sharing: &dyn Sharing) -> NodeResult {
    if let Some(closing) = lane.closing.take() {
        match sharing.await_layers(&lane.node, &lane.awaited) {
            Ok(missing) if missing.is_empty() => lane.send(closing),
            Ok(missing) => {
                lane.again = true;
                lane.failed =
                    Some(format!("{} lacks layer(s) {} another run was to bring", lane.node, missing.join(", ")));
            }
            Err(why) => lane.failed = Some(why),
        }
    }
    let written = lane.stream.as_mut().map(NodeStream::close);
    let sent = lane.stream.as_ref().map_or(0, |s| s.sent.load(std::sync::atomic::Ordering::Relaxed));
    let imported = lane.import.take().map(Import::finish);
    let stalled = matches!(&imported, Some(Err(e)) if e.is_stall());
    let result = match (lane.failed.take(), imported, written) {
        (Some(why), _, _) => Err(why),
        (None, Some(Err(e)), _) => Err(e.to_string()),
        (None, _, Some(Err(e))) => Err(format!("writing to the import failed: {e}")),
        (None, _, _) => Ok(()),
    };
    sharing.done(&lane.node);
    NodeResult { node: lane.node, result, sent, had: lane.had, again: lane.again, stalled }
}

/// Reads a whole archive (no node listening), every file hashed and the JSON ones kept:
/// what it holds, checked, before anything is sent. Every byte is consumed.
pub fn scan(reader: impl Read) -> io::Result<(Contents, Vec<ArchiveImage>)> {
    let contents = repack(reader, &mut [], &LayerHints::default(), &Options::default())?;
    let images = archive::images_in(&contents).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok((contents, images))
}

/// Reads the source archive entry by entry and sends each node what it needs.
fn repack(reader: impl Read, lanes: &mut [Lane], hints: &LayerHints, options: &Options) -> io::Result<Contents> {
    let mut archive = tar::Archive::new(reader);
    let mut contents = Contents::default();
    let mut unseen: HashSet<String> = hints.layers().cloned().collect();
    for entry in archive.entries()? {
        let mut entry = entry?;
        contents.entries += 1;
        let path = clean_path(&entry.path()?.to_string_lossy());
        let kind = entry.header().entry_type();
        if kind.is_symlink() {
            if let Some(target) = entry.link_name()? {
                contents.add_symlink(path, &target.to_string_lossy());
            }
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let size = entry.header().size()?;
        let first = read_chunk(&mut entry)?;
        if is_metadata(&path) || contents.keeps(&first, size) {
            let mut bytes = first;
            entry.read_to_end(&mut bytes)?;
            let mut hasher = Hasher::default();
            hasher.update(&bytes);
            let fact = hasher.fact();
            if !is_metadata(&path) {
                let file = Arc::new(layout::file(&layout::blob(&fact.digest), &bytes));
                for lane in lanes.iter_mut().filter(|l| l.live()) {
                    lane.send_chunk(&file);
                    lane.sent_blobs.insert(fact.digest.clone());
                }
            }
            let kept = contents.keeps(&bytes, size).then_some(bytes);
            contents.add_file(path, fact, kept);
            continue;
        }
        let fact = send_layer(&path, size, first, &mut entry, lanes, hints, &unseen, options)?;
        unseen.remove(&fact.digest);
        contents.add_file(path, fact, None);
    }
    io::copy(&mut archive.into_inner(), &mut io::sink())?;
    if contents.entries == 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "the archive is empty or not a tar archive"));
    }
    Ok(contents)
}

/// Streams one layer to the nodes that lack it. A layer whose digest only its bytes tell
/// (docker-archive's `<id>/layer.tar`) is spooled when nodes differ on it, then sent to
/// those that turn out to lack it.
#[allow(clippy::too_many_arguments)]
fn send_layer(
    path: &str,
    size: u64,
    first: Vec<u8>,
    entry: &mut impl Read,
    lanes: &mut [Lane],
    hints: &LayerHints,
    unseen: &HashSet<String>,
    options: &Options,
) -> io::Result<crate::digest::FileFact> {
    let known = digest_from_path(path).or_else(|| named_tar_digest(path)).or_else(|| options.known.get(path).cloned());
    let mut needs: Vec<Need> = lanes
        .iter()
        .map(|l| if l.live() { l.needs.need(known.as_deref(), size, hints, unseen) } else { Need::Skip })
        .collect();
    let mut spool = match needs.contains(&Need::Undecided) && size <= options.spool_max {
        true => Some(tempfile::tempfile()?),
        false => None,
    };
    if spool.is_none() {
        needs.iter_mut().filter(|n| **n == Need::Undecided).for_each(|n| *n = Need::Send);
    }
    let out_path = layout::blob(known.as_deref().unwrap_or(path));
    for (lane, _) in lanes.iter_mut().zip(&needs).filter(|(_, n)| **n == Need::Send) {
        lane.send(layout::header(&out_path, size));
    }
    let mut hasher = Hasher::default();
    let mut chunk = first;
    while !chunk.is_empty() {
        hasher.update(&chunk);
        if let Some(file) = spool.as_mut() {
            file.write_all(&chunk)?;
        }
        let shared = Arc::new(chunk);
        for (lane, _) in lanes.iter().zip(&needs).filter(|(_, n)| **n == Need::Send) {
            lane.send_chunk(&shared);
        }
        chunk = read_chunk(entry)?;
    }
    let fact = hasher.fact();
    if fact.size != size {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("{path} ended early")));
    }
    if let Some(claimed) = &known {
        if claimed != &fact.digest {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{path} does not hash to the digest its name claims (its content is {})", fact.digest),
            ));
        }
    }
    for (lane, need) in lanes.iter_mut().zip(needs.iter_mut()) {
        if *need == Need::Undecided {
            *need = if lane.needs.has(&fact.digest, hints) { Need::Skip } else { Need::Send };
            if *need == Need::Send {
                let file = spool.as_mut().expect("undecided layers are spooled");
                file.rewind()?;
                lane.send(layout::header(&layout::blob(&fact.digest), size));
                loop {
                    let piece = read_chunk(file)?;
                    if piece.is_empty() {
                        break;
                    }
                    lane.send(piece);
                }
            }
        }
        match need {
            Need::Send => {
                lane.send(layout::padding(size));
                lane.sent_blobs.insert(fact.digest.clone());
            }
            _ if lane.live() && lane.needs.has(&fact.digest, hints) && !lane.needs.promised(&fact.digest) => {
                lane.had += size
            }
            _ => {}
        }
    }
    Ok(fact)
}

/// Up to CHUNK bytes (fewer only at the end).
fn read_chunk(reader: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; CHUNK];
    let mut filled = 0;
    while filled < CHUNK {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}
