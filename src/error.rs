//! The one error type. Every variant knows its exit status and, where there is one, the fix.

use crate::exec::ExecError;

/// Exit status for bad usage or input (a typo the user can fix).
pub const EXIT_USAGE: i32 = 2;
/// Exit status when loading or verification failed.
pub const EXIT_FAILED: i32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{message}")]
    Usage { message: String, fix: String },

    #[error("invalid image reference {input:?}: {reason}")]
    BadReference { input: String, reason: String },

    #[error("no container engine found: {looked}")]
    EngineNotFound { looked: String },

    #[error("kind cluster {name:?} not found: no containers labelled io.x-k8s.kind.cluster={name} on {searched}")]
    ClusterNotFound { name: String, searched: String },

    #[error("image {image:?} not found in {engine}: {detail}")]
    ImageNotFound { image: String, engine: String, detail: String },

    #[error("{message}")]
    Input { message: String, fix: String },

    #[error(transparent)]
    Exec(#[from] ExecError),

    #[error("{message}")]
    Failed { message: String, fix: String },
}

impl Error {
    pub fn usage(message: impl Into<String>, fix: impl Into<String>) -> Self {
        Error::Usage { message: message.into(), fix: fix.into() }
    }

    pub fn input(message: impl Into<String>, fix: impl Into<String>) -> Self {
        Error::Input { message: message.into(), fix: fix.into() }
    }

    pub fn failed(message: impl Into<String>, fix: impl Into<String>) -> Self {
        Error::Failed { message: message.into(), fix: fix.into() }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage { .. }
            | Error::BadReference { .. }
            | Error::EngineNotFound { .. }
            | Error::ClusterNotFound { .. }
            | Error::ImageNotFound { .. }
            | Error::Input { .. } => EXIT_USAGE,
            Error::Exec(_) | Error::Failed { .. } => EXIT_FAILED,
        }
    }

    /// What the user can do about it, printed after the error.
    pub fn fix(&self) -> Option<String> {
        let fix = match self {
            Error::Usage { fix, .. } | Error::Input { fix, .. } | Error::Failed { fix, .. } => {
                fix.clone()
            }
            Error::BadReference { .. } => {
                "write it as [host[:port]/]path[:tag][@sha256:<64 hex>], lowercase path, e.g. app:dev or localhost:5000/team/app:v1".into()
            }
            Error::EngineNotFound { .. } => {
                "install Docker or Podman and make sure it answers (`docker info` / `podman info`), or pick one with --engine / KINDLOAD_ENGINE".into()
            }
            Error::ClusterNotFound { name, .. } => format!(
                "create it with `kind create cluster --name {name}`, or name an existing one with --cluster (see `kind get clusters`); for Podman-hosted clusters use --provider podman"
            ),
            Error::ImageNotFound { engine, .. } => format!(
                "build or pull the image first, check the name with `{engine} images`, or pick the engine that has it with --engine"
            ),
            Error::Exec(e) => return e.fix(),
        };
        (!fix.is_empty()).then_some(fix)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Prints `error: ...`, its causes, and the fix; returns the exit status.
pub fn report(err: &Error) -> i32 {
    eprintln!("error: {err}");
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        eprintln!("caused by: {cause}");
        source = cause.source();
    }
    if let Some(fix) = err.fix() {
        eprintln!("fix: {fix}");
    }
    err.exit_code()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_errors_exit_2_and_failures_exit_1() {
        assert_eq!(Error::usage("x", "y").exit_code(), 2);
        let missing = Error::ClusterNotFound { name: "dev".into(), searched: "docker".into() };
        assert_eq!(missing.exit_code(), 2);
        assert!(missing.fix().unwrap().contains("kind create cluster --name dev"));
        assert_eq!(Error::failed("x", "y").exit_code(), 1);
    }
}
