//! Digests computed from bytes: identity is what content hashes to, never what a file is called.

use sha2::{Digest, Sha256};

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    let mut hasher = Hasher::default();
    hasher.update(bytes);
    hasher.finish()
}

/// What a regular file in an archive turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFact {
    pub digest: String,
    pub size: u64,
    pub gzip: bool,
}

/// An incremental sha256 that also remembers the first bytes (to tell gzip from tar).
#[derive(Default, Clone)]
pub struct Hasher {
    inner: Sha256,
    pub size: u64,
    pub head: Vec<u8>,
}

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        if self.head.len() < 4 {
            let take = (4 - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..take]);
        }
        self.inner.update(bytes);
        self.size += bytes.len() as u64;
    }

    pub fn finish(self) -> String {
        format!("sha256:{}", hex(&self.inner.finalize()))
    }

    /// Digest, size and compression of what was hashed.
    pub fn fact(self) -> FileFact {
        let gzip = self.head.starts_with(&[0x1f, 0x8b]);
        let size = self.size;
        FileFact { digest: self.finish(), size, gzip }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The snapshot key containerd commits each layer under, bottom first: the chain id
/// (`chain[0] = diff[0]`, `chain[n] = sha256(chain[n-1] + " " + diff[n])`).
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut chain: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff in diff_ids {
        let next = match chain.last() {
            None => diff.clone(),
            Some(parent) => sha256(format!("{parent} {diff}").as_bytes()),
        };
        chain.push(next);
    }
    chain
}

/// `sha256:<64 lowercase hex>`.
pub fn is_digest(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_bytes() {
        assert_eq!(sha256(b""), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        let mut h = Hasher::default();
        h.update(b"\x1f\x8b");
        h.update(b"rest");
        assert_eq!((h.head.as_slice(), h.size), (&b"\x1f\x8bre"[..], 6));
    }

    #[test]
    fn chain_ids_match_containerd_snapshots() {
        // Seen on a containerd 2.1 node after importing a two-layer image: the snapshots
        // were the first diff id and this chain id.
        let diffs = [
            "sha256:9a695234dd2c5bbbcee2dc7d5c0d76629f325c7ae0d14502a6955b7f4e112d18".to_string(),
            "sha256:53515897ed19bacbde300eefd1bceb6fe1c20cc903478437bea7297b752c80da".to_string(),
        ];
        assert_eq!(
            chain_ids(&diffs),
            [diffs[0].clone(), "sha256:4909955fa8b1d3007a29981eb31d23c85fde54a27e118350dbfc4ae7d1adca8a".to_string()]
        );
    }
}
