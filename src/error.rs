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

    /// No engine (holding images) or provider (hosting nodes) answered; the message names
    /// each one tried, the address its CLI tried, and why (see `resolve::reach`).
    #[error("{message}")]
    NoEngine { message: String, fix: String },

    #[error("{message}")]
    ClusterNotFound { name: String, message: String, fix: String },

    #[error("{message}")]
    ImageNotFound { image: String, message: String, fix: String },

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
            | Error::NoEngine { .. }
            | Error::ClusterNotFound { .. }
            | Error::ImageNotFound { .. }
            | Error::Input { .. } => EXIT_USAGE,
            Error::Exec(_) | Error::Failed { .. } => EXIT_FAILED,
        }
    }

    /// What the user can do about it, printed after the error.
    pub fn fix(&self) -> Option<String> {
        let fix = match self {
            Error::Usage { fix, .. }
            | Error::Input { fix, .. }
            | Error::Failed { fix, .. }
            | Error::NoEngine { fix, .. }
            | Error::ClusterNotFound { fix, .. }
            | Error::ImageNotFound { fix, .. } => fix.clone(),
            Error::BadReference { .. } => {
                "write it as [host[:port]/]path[:tag][@sha256:<64 hex>], lowercase path, e.g. app:dev or localhost:5000/team/app:v1".into()
            }
            Error::Exec(e) => return e.fix(),
        };
        (!fix.is_empty()).then_some(fix)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_errors_exit_2_and_failures_exit_1() {
        assert_eq!(Error::usage("x", "y").exit_code(), 2);
        let missing = Error::ClusterNotFound { name: "dev".into(), message: "m".into(), fix: "f".into() };
        assert_eq!(missing.exit_code(), 2);
        assert_eq!(missing.fix().as_deref(), Some("f"));
        assert_eq!(Error::failed("x", "y").exit_code(), 1);
    }
}
