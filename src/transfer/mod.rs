//! Export once, stream to every node that needs it, import into containerd.

pub mod archive;
pub mod export;
pub mod fanout;
pub mod import;
