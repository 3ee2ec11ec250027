//! Which CLI dialect: Docker or Podman, as an engine (images) or a provider (nodes).

use std::fmt;

/// The CLI dialect kindload drives. Also names a node provider.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, schemars::JsonSchema, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    Docker,
    Podman,
}

impl EngineKind {
    pub fn program(self) -> &'static str {
        match self {
            EngineKind::Docker => "docker",
            EngineKind::Podman => "podman",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "docker" => Some(EngineKind::Docker),
            "podman" => Some(EngineKind::Podman),
            _ => None,
        }
    }

    /// Podman can write several images into one archive (`save -m`); Docker always can.
    pub fn save_args(self, images: &[String]) -> Vec<String> {
        let mut args = vec!["save".to_string()];
        if self == EngineKind::Podman {
            args.extend(["--format".into(), "docker-archive".into()]);
            if images.len() > 1 {
                args.push("--multi-image-archive".into());
            }
        }
        args.extend(images.iter().cloned());
        args
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.program())
    }
}
