//! Where the archive stream comes from: an engine's `save`, a file, or stdin.

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;
use std::process::Child;

use crate::error::{Error, Result};
use crate::exec::{self, Cmd, StderrDrain, Watch};
use crate::resolve::engine::Engine;

#[derive(Debug, Clone)]
pub enum Source {
    /// `<engine> save REF...`: one archive for every image from that engine.
    Engine {
        engine: Engine,
        refs: Vec<String>,
    },
    File(PathBuf),
    Stdin,
}

impl Source {
    pub fn describe(&self) -> String {
        match self {
            Source::Engine { engine, .. } => format!("{} save", engine.kind),
            Source::File(path) => path.display().to_string(),
            Source::Stdin => "stdin".into(),
        }
    }

    /// The bytes in the stream, when known up front (for a progress bar).
    pub fn size(&self) -> Option<u64> {
        match self {
            Source::File(path) => std::fs::metadata(path).ok().map(|m| m.len()),
            _ => None,
        }
    }

    pub fn is_user_input(&self) -> bool {
        !matches!(self, Source::Engine { .. })
    }

    pub fn save_cmd(engine: &Engine, refs: &[String]) -> Cmd {
        engine.cmd().args(engine.kind.save_args(refs))
    }
}

/// An open stream; `finish` reports how the producer ended.
pub struct Export {
    pub reader: Box<dyn Read + Send>,
    producer: Option<(Child, Cmd, StderrDrain, Watch)>,
}

impl Export {
    pub fn open(source: &Source) -> Result<Export> {
        match source {
            Source::Engine { engine, refs } => {
                let cmd = Source::save_cmd(engine, refs);
                let (mut child, watch) = exec::spawn(&cmd, false, true)?;
                let stdout = child.stdout.take().expect("stdout is piped");
                let stderr = exec::drain(child.stderr.take(), &watch);
                let reader = Watched { inner: stdout, watch: watch.clone() };
                Ok(Export { reader: Box::new(reader), producer: Some((child, cmd, stderr, watch)) })
            }
            Source::File(path) => {
                let file = File::open(path).map_err(|e| {
                    Error::input(
                        format!("cannot open archive {}: {e}", path.display()),
                        "pass an existing file written by `docker save` or `podman save`, or - for stdin",
                    )
                })?;
                Ok(Export { reader: Box::new(io::BufReader::with_capacity(1 << 20, file)), producer: None })
            }
            Source::Stdin => Ok(Export { reader: Box::new(io::stdin()), producer: None }),
        }
    }

    /// Waits for the producer; a failed `save` is an error carrying its stderr.
    pub fn finish(self) -> Result<()> {
        drop(self.reader);
        if let Some((child, cmd, stderr, watch)) = self.producer {
            exec::finish(child, &cmd, stderr, &watch)?;
        }
        Ok(())
    }
}

/// The producer's stdout, judged only while read: a reader held up by a slow node is not
/// the producer's stall.
struct Watched<R> {
    inner: R,
    watch: Watch,
}

impl<R: Read> Read for Watched<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let _waiting = self.watch.waiting();
        let n = self.inner.read(buf)?;
        self.watch.touch();
        Ok(n)
    }
}
