//! One writer thread per node: the reader hands each node the chunks meant for it, shared
//! not copied, through a bounded queue. A slow node holds the reader back only once its
//! queue is full, so memory stays bounded (queue length × chunk size per node) and nodes
//! that import at different speeds do not wait for each other chunk by chunk. Each write is
//! a wait on the node, judged by the watchdog: a node that takes no bytes for the stall
//! limit is cut loose (its import stopped), and the others go on.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::exec::Watch;

/// Chunks queued per node before the reader waits.
const QUEUE: usize = 24;

pub type Chunk = Arc<Vec<u8>>;

pub struct NodeStream {
    pub node: String,
    tx: Option<SyncSender<Chunk>>,
    writer: Option<JoinHandle<io::Result<()>>>,
    /// Bytes written to this node so far.
    pub sent: Arc<AtomicU64>,
}

impl NodeStream {
    pub fn start<W: Write + Send + 'static>(
        node: impl Into<String>,
        mut writer: W,
        sent: Arc<AtomicU64>,
        watch: Option<Watch>,
    ) -> Self {
        let (tx, rx) = sync_channel::<Chunk>(QUEUE);
        let counter = sent.clone();
        let handle = std::thread::spawn(move || {
            let mut failed: Option<io::Error> = None;
            for chunk in rx {
                if failed.is_some() {
                    // The node stopped reading (its import failed): drain so the reader goes on.
                    continue;
                }
                let waiting = watch.as_ref().map(Watch::waiting);
                match write_watched(&mut writer, &chunk, watch.as_ref()) {
                    Ok(()) => {
                        counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    }
                    Err(e) => failed = Some(e),
                }
                drop(waiting);
            }
            drop(writer);
            failed.map_or(Ok(()), Err)
        });
        NodeStream { node: node.into(), tx: Some(tx), writer: Some(handle), sent }
    }

    pub fn send(&self, chunk: &Chunk) {
        if let Some(tx) = &self.tx {
            // A send fails only when the writer thread is gone, which `close` reports.
            let _ = tx.send(chunk.clone());
        }
    }

    pub fn send_bytes(&self, bytes: Vec<u8>) {
        if !bytes.is_empty() {
            self.send(&Arc::new(bytes));
        }
    }

    /// Ends the node's input and waits until everything queued was written.
    pub fn close(&mut self) -> io::Result<()> {
        self.tx = None;
        match self.writer.take() {
            Some(handle) => handle.join().unwrap_or_else(|_| Err(io::Error::other("node writer panicked"))),
            None => Ok(()),
        }
    }
}

/// Writes in pieces, each piece the node takes counting as its progress.
fn write_watched(writer: &mut impl Write, mut bytes: &[u8], watch: Option<&Watch>) -> io::Result<()> {
    while !bytes.is_empty() {
        match writer.write(bytes) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => {
                bytes = &bytes[n..];
                if let Some(w) = watch {
                    w.touch();
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Drop for NodeStream {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Failing;
    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::BrokenPipe, "gone"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[derive(Clone, Default)]
    struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_chunk_arrives_in_order_and_a_dead_node_does_not_block_the_others() {
        let good = Shared::default();
        let mut a = NodeStream::start("a", good.clone(), Arc::new(AtomicU64::new(0)), None);
        let mut b = NodeStream::start("b", Failing, Arc::new(AtomicU64::new(0)), None);
        let mut expected = Vec::new();
        for i in 0..200u32 {
            let chunk: Chunk = Arc::new(vec![i as u8; 1000]);
            expected.extend_from_slice(&chunk);
            a.send(&chunk);
            b.send(&chunk);
        }
        a.close().unwrap();
        assert_eq!(b.close().unwrap_err().kind(), io::ErrorKind::BrokenPipe);
        assert_eq!(*good.0.lock().unwrap(), expected);
        assert_eq!(a.sent.load(Ordering::Relaxed), expected.len() as u64);
    }
}
