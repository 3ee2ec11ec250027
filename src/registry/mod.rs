//! Registry mode: a real OCI registry (CNCF Distribution) as a container beside the nodes,
//! serving TLS with a certificate from kindload's local CA, trusted by every node's
//! containerd through `hosts.toml`, and pushed to by kindload itself over the registry API.

pub mod ca;
pub mod client;
pub mod container;
pub mod hosts;
pub mod lock;
pub mod manifests;
pub mod push;

use std::path::PathBuf;

use serde::Serialize;

pub const DEFAULT_NAME: &str = "kindload-registry";
pub const DEFAULT_PORT: u16 = 5001;
pub const DEFAULT_IMAGE: &str = "registry:2";
/// The port the registry listens on inside its container.
pub const CONTAINER_PORT: u16 = 5000;

/// kindload's state directory: `KINDLOAD_STATE_DIR`, else `$XDG_STATE_HOME/kindload`, else
/// `~/.local/state/kindload`.
pub fn state_dir() -> Option<PathBuf> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    env("KINDLOAD_STATE_DIR")
        .map(PathBuf::from)
        .or_else(|| env("XDG_STATE_HOME").map(|d| PathBuf::from(d).join("kindload")))
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".local/state/kindload")))
}

/// The repository an image is pushed to in the registry: its path, Docker Hub's `library/`
/// left out (an image already named for the registry keeps its path).
pub fn repo_of(reference: &crate::resolve::reference::ImageRef) -> String {
    match reference.domain() {
        "docker.io" => reference.path().strip_prefix("library/").unwrap_or(reference.path()).to_string(),
        _ => reference.path().to_string(),
    }
}

/// `kindload registry status --output json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Status {
    pub name: String,
    pub running: bool,
    /// Container state as the provider reports it (`running`, `exited`, `absent`).
    pub state: String,
    /// Where the host pushes: `localhost:5001`.
    pub host_address: String,
    /// Where nodes and pods reach it: `kindload-registry:5000`.
    pub cluster_address: String,
    /// kindload's CA certificate (PEM), to give to pods and tools that pull.
    pub ca_path: String,
    /// Days until the registry's certificate expires.
    pub certificate_days_left: Option<i64>,
    /// The clusters whose nodes trust it (a cluster whose nodes cannot be read is named with why).
    pub clusters: Vec<String>,
    /// The nodes of the cluster asked about.
    pub nodes: Vec<NodeTrust>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct NodeTrust {
    pub name: String,
    /// The node's containerd resolves `localhost:PORT` to the registry and trusts the CA.
    pub trusted: bool,
    /// containerd's `config_path`, where `hosts.toml` files are read; None when unset.
    pub config_path: Option<String>,
    /// Why not trusted, and the fix.
    pub problem: Option<String>,
}
