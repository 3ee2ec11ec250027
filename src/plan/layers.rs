//! Per node and layer: send it, or not. A node has a layer when its content store holds
//! the blob, or when its snapshotter holds the layer unpacked at every position the
//! images use it (kind discards blobs after unpacking, so the snapshot may be all there is).

use std::collections::{HashMap, HashSet};

use crate::digest::chain_ids;
use crate::plan::platform::runs_on;
use crate::resolve::holdings::Holdings;

/// What is known up front about the layers of the images being sent: per image, the
/// uncompressed digests bottom first (from the engine, or a scanned archive).
#[derive(Debug, Default, Clone)]
pub struct LayerHints {
    /// Uncompressed digest → the chain ids it is unpacked under.
    chains: HashMap<String, Vec<String>>,
    /// Every image's layers are known.
    pub complete: bool,
    /// For images of several platforms: each platform's blobs (manifest, config, layers).
    by_platform: Vec<(String, Vec<String>)>,
}

impl LayerHints {
    pub fn new(images: &[Vec<String>]) -> Self {
        let mut chains: HashMap<String, Vec<String>> = HashMap::new();
        for diff_ids in images {
            for (diff, chain) in diff_ids.iter().zip(chain_ids(diff_ids)) {
                chains.entry(diff.clone()).or_default().push(chain);
            }
        }
        let complete = !images.is_empty() && images.iter().all(|d| !d.is_empty());
        LayerHints { chains, complete, by_platform: Vec::new() }
    }

    pub fn with_platforms(mut self, by_platform: Vec<(String, Vec<String>)>) -> Self {
        self.by_platform = by_platform;
        self
    }

    /// Blobs only platforms a node on `node` cannot run use: it is sent none of them.
    pub fn not_for(&self, node: Option<&str>) -> HashSet<String> {
        let Some(node) = node else { return HashSet::new() };
        let (runs, other): (Vec<_>, Vec<_>) = self.by_platform.iter().partition(|(p, _)| runs_on(p, node));
        let wanted: HashSet<&String> = runs.iter().flat_map(|(_, blobs)| blobs).collect();
        other.iter().flat_map(|(_, blobs)| blobs).filter(|b| !wanted.contains(b)).cloned().collect()
    }

    pub fn layers(&self) -> impl Iterator<Item = &String> {
        self.chains.keys()
    }
}

/// A node's answer for one file of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Send,
    Skip,
    /// Its digest is not known until it has been read: decide then.
    Undecided,
}

/// What one node lacks, asked file by file while the archive streams.
#[derive(Debug, Clone, Default)]
pub struct NodeNeeds {
    /// Blob digest → size in bytes, as precise as containerd lists it.
    blobs: HashMap<String, u64>,
    snapshots: HashSet<String>,
    /// `--full`, or nothing known about the node: everything is sent.
    full: bool,
    /// Blobs of platforms the node cannot run.
    excluded: HashSet<String>,
    /// Layers the node lacks that another run claimed there: not sent, awaited.
    promised: HashSet<String>,
}

impl NodeNeeds {
    pub fn new(holds: &Holdings, full: bool) -> Self {
        NodeNeeds { blobs: holds.blobs.clone(), snapshots: holds.snapshots.clone(), full, ..Default::default() }
    }

    pub fn everything() -> Self {
        NodeNeeds { full: true, ..Default::default() }
    }

    /// Counts `layers`, which another run claimed on the node, as coming: they are not sent
    /// (see `transfer::lock`).
    pub fn promising(mut self, layers: HashSet<String>) -> Self {
        self.promised = layers;
        self
    }

    /// True when layer `digest` is not on the node but another run is bringing it.
    pub fn promised(&self, digest: &str) -> bool {
        !self.full && self.promised.contains(digest)
    }

    /// Leaves out the blobs of other platforms (see [`LayerHints::not_for`]).
    pub fn excluding(mut self, blobs: HashSet<String>) -> Self {
        self.excluded = blobs;
        self
    }

    /// True when the node has layer `digest`, by blob or by its unpacked chain.
    pub fn has(&self, digest: &str, hints: &LayerHints) -> bool {
        if self.full {
            return false;
        }
        self.blobs.contains_key(digest)
            || self.promised.contains(digest)
            || hints.chains.get(digest).is_some_and(|chains| chains.iter().all(|c| self.snapshots.contains(c)))
    }

    /// True when the node holds layer blob `blob`, or its snapshot under `chain` (a
    /// promised layer is not held yet).
    pub fn holds(&self, blob: &str, chain: Option<&str>) -> bool {
        !self.full && (self.blobs.contains_key(blob) || chain.is_some_and(|c| self.snapshots.contains(c)))
    }

    /// For a layer file of `size` bytes whose digest is `known` (from its name), or not
    /// yet known. `unseen` are the hinted layers not yet met in the stream.
    ///
    /// An unnamed file is one of the unseen layers. When the node has all or none of them
    /// the answer does not depend on which. Otherwise its size tells: a file whose size is
    /// that of no unseen layer the node holds is one it lacks; one whose size matches is
    /// taken as the held layer (checked by hash once read, and sent in a second pass if
    /// the guess was wrong). Only when a held layer's size is unknown (its blob discarded)
    /// must the file be read before deciding.
    pub fn need(&self, known: Option<&str>, size: u64, hints: &LayerHints, unseen: &HashSet<String>) -> Need {
        if self.full {
            return Need::Send;
        }
        if let Some(digest) = known {
            return if self.has(digest, hints) || self.excluded.contains(digest) { Need::Skip } else { Need::Send };
        }
        if !hints.complete || unseen.is_empty() {
            return Need::Undecided;
        }
        let (held, lacking): (Vec<&String>, Vec<&String>) = unseen.iter().partition(|d| self.has(d, hints));
        if lacking.is_empty() {
            return Need::Skip;
        }
        if held.is_empty() {
            return Need::Send;
        }
        let sizes: Option<Vec<u64>> = held.iter().map(|d| self.blobs.get(*d).copied()).collect();
        match sizes {
            Some(sizes) if sizes.iter().any(|&s| same_size(s, size)) => Need::Skip,
            Some(_) => Need::Send,
            None => Need::Undecided,
        }
    }
}

/// containerd lists sizes to four significant digits (`100.0MB`): equal within that.
fn same_size(listed: u64, exact: u64) -> bool {
    listed.abs_diff(exact) <= exact / 1000 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn holdings(blobs: &[String], snapshots: &[String]) -> Holdings {
        Holdings {
            blobs: blobs.iter().map(|b| (b.clone(), 1000)).collect(),
            snapshots: snapshots.iter().cloned().collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_node_has_a_layer_by_blob_or_by_its_chain_snapshot() {
        let hints = LayerHints::new(&[vec![d('a'), d('b')]]);
        let chains = chain_ids(&[d('a'), d('b')]);
        let by_blob = NodeNeeds::new(&holdings(&[d('b')], &[]), false);
        assert!(by_blob.has(&d('b'), &hints) && !by_blob.has(&d('a'), &hints));
        // Unpacked with blobs discarded: the chain id, not the diff id, names the top layer.
        let unpacked = NodeNeeds::new(&holdings(&[], &chains), false);
        assert!(unpacked.has(&d('a'), &hints) && unpacked.has(&d('b'), &hints));
        let wrong_position = NodeNeeds::new(&holdings(&[], &[d('b')]), false);
        assert!(!wrong_position.has(&d('b'), &hints));
        assert_eq!(
            NodeNeeds::new(&holdings(&[d('a')], &[]), true).need(Some(&d('a')), 10, &hints, &HashSet::new()),
            Need::Send
        );
    }

    #[test]
    fn a_node_is_sent_only_its_platforms_blobs() {
        let hints = LayerHints::new(&[vec![]]).with_platforms(vec![
            ("linux/amd64".into(), vec![d('m'), d('a'), d('s')]),
            ("linux/arm64".into(), vec![d('n'), d('b'), d('s')]),
        ]);
        let skip = hints.not_for(Some("linux/amd64"));
        assert_eq!(skip, [d('n'), d('b')].into_iter().collect(), "the shared blob s is wanted");
        let needs = NodeNeeds::new(&holdings(&[], &[]), false).excluding(skip);
        assert_eq!(needs.need(Some(&d('b')), 1, &hints, &HashSet::new()), Need::Skip);
        assert_eq!(needs.need(Some(&d('a')), 1, &hints, &HashSet::new()), Need::Send);
        assert!(hints.not_for(None).is_empty());
    }

    #[test]
    fn an_unnamed_layer_is_decided_when_the_answer_cannot_depend_on_which_it_is() {
        let hints = LayerHints::new(&[vec![d('a'), d('b')]]);
        let unseen: HashSet<String> = [d('a'), d('b')].into();
        let empty = NodeNeeds::new(&holdings(&[], &[]), false);
        let all = NodeNeeds::new(&holdings(&[d('a'), d('b')], &[]), false);
        let half = NodeNeeds::new(&holdings(&[d('a')], &[]), false);
        assert_eq!(empty.need(None, 1000, &hints, &unseen), Need::Send);
        assert_eq!(all.need(None, 1000, &hints, &unseen), Need::Skip);
        // It holds `a` (1000 bytes, as listed): a file of another size is `b`.
        assert_eq!(half.need(None, 1000, &hints, &unseen), Need::Skip);
        assert_eq!(half.need(None, 1001, &hints, &unseen), Need::Skip, "within containerd's rounding");
        assert_eq!(half.need(None, 5000, &hints, &unseen), Need::Send);
        assert_eq!(half.need(None, 1000, &LayerHints::default(), &unseen), Need::Undecided);
        // Its `a` is unpacked with the blob discarded: no size to go by.
        let chains = chain_ids(&[d('a'), d('b')]);
        let unpacked = NodeNeeds::new(&holdings(&[], &chains[..1]), false);
        assert_eq!(unpacked.need(None, 5000, &hints, &unseen), Need::Undecided);
    }
}
