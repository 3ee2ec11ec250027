//! One reader, many writers: every byte read from the export goes to each node still
//! listening. Memory stays bounded: a slow node slows the read instead of buffering.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub struct Sink<W> {
    pub node: String,
    writer: Option<W>,
    pub error: Option<io::Error>,
}

impl<W: Write> Sink<W> {
    pub fn new(node: impl Into<String>, writer: W) -> Self {
        Sink { node: node.into(), writer: Some(writer), error: None }
    }

    pub fn is_live(&self) -> bool {
        self.writer.is_some()
    }

    /// Closes the writer so the node sees end of input.
    pub fn close(&mut self) {
        self.writer = None;
    }
}

/// A reader that copies what it reads to every live sink and counts bytes.
pub struct Tee<R, W> {
    inner: R,
    pub sinks: Vec<Sink<W>>,
    bytes: Arc<AtomicU64>,
}

impl<R: Read, W: Write> Tee<R, W> {
    pub fn new(inner: R, sinks: Vec<Sink<W>>, bytes: Arc<AtomicU64>) -> Self {
        Tee { inner, sinks, bytes }
    }

    pub fn close_all(&mut self) {
        self.sinks.iter_mut().for_each(Sink::close);
    }
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        for sink in self.sinks.iter_mut() {
            if let Some(writer) = sink.writer.as_mut() {
                if let Err(e) = writer.write_all(&buf[..n]) {
                    // This node stopped reading (its import failed); the others go on.
                    sink.error = Some(e);
                    sink.writer = None;
                }
            }
        }
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        if n > 0 && !self.sinks.iter().any(Sink::is_live) {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "no node is reading the image stream any more"));
        }
        Ok(n)
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

    enum Either {
        Good(Vec<u8>),
        Bad(Failing),
    }
    impl Write for Either {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            match self {
                Either::Good(v) => v.write(b),
                Either::Bad(f) => f.write(b),
            }
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_live_sink_gets_every_byte_and_a_dead_one_is_dropped() {
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let bytes = Arc::new(AtomicU64::new(0));
        let sinks = vec![Sink::new("a", Either::Good(Vec::new())), Sink::new("b", Either::Bad(Failing))];
        let mut tee = Tee::new(io::Cursor::new(data.clone()), sinks, bytes.clone());
        io::copy(&mut tee, &mut io::sink()).unwrap();
        assert_eq!(bytes.load(Ordering::Relaxed), data.len() as u64);
        assert!(tee.sinks[1].error.is_some() && !tee.sinks[1].is_live());
        match tee.sinks[0].writer.take() {
            Some(Either::Good(got)) => assert_eq!(got, data),
            _ => panic!("sink a lost its writer"),
        }
    }

    #[test]
    fn all_sinks_gone_stops_the_read() {
        let sinks = vec![Sink::new("b", Failing)];
        let mut tee = Tee::new(io::Cursor::new(vec![1u8; 10]), sinks, Arc::new(AtomicU64::new(0)));
        let err = io::copy(&mut tee, &mut io::sink()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}
