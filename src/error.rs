//! The one error type. Every variant knows its exit status and, where there is one, the fix.

use crate::exec::ExecError;
use crate::resolve::engine::EngineKind;
use crate::resolve::reach::NoAnswer;

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

    /// No engine (holding images) or provider (hosting nodes) answered: each one tried,
    /// the address its CLI tried, and why.
    #[error("{}", no_engine_text(role, chosen_by.as_deref(), tried))]
    NoEngine { role: &'static str, chosen_by: Option<String>, tried: Vec<NoAnswer> },

    /// `silent`: providers that did not answer, so they may hold the cluster.
    #[error(
        "kind cluster {name:?} not found: no containers labelled io.x-k8s.kind.cluster={name} on {searched}{}",
        silent_text(silent)
    )]
    ClusterNotFound { name: String, searched: String, silent: Vec<NoAnswer> },

    /// `answered`: each engine that answered, with its own words; `silent`: those that did not.
    #[error("{}", image_not_found_text(image, answered, silent))]
    ImageNotFound { image: String, answered: Vec<(EngineKind, String)>, silent: Vec<NoAnswer> },

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
            Error::Usage { fix, .. } | Error::Input { fix, .. } | Error::Failed { fix, .. } => {
                fix.clone()
            }
            Error::BadReference { .. } => {
                "write it as [host[:port]/]path[:tag][@sha256:<64 hex>], lowercase path, e.g. app:dev or localhost:5000/team/app:v1".into()
            }
            Error::NoEngine { tried, .. } if tried.len() > 1 && tried.iter().all(|n| !n.is_unreachable()) => {
                "install Docker (`apt-get install docker.io`) or Podman (`apt-get install podman`), and make sure it is on PATH".into()
            }
            Error::NoEngine { tried, .. } => join_fixes(tried.iter().map(|n| (n.kind, n.fix())).collect()),
            Error::ClusterNotFound { name, silent, .. } => {
                let create = format!(
                    "create it with `kind create cluster --name {name}`, or name an existing one with --cluster (see `kind get clusters`); for a Podman-hosted cluster set --provider podman (or KIND_EXPERIMENTAL_PROVIDER=podman)"
                );
                let mut fixes: Vec<(EngineKind, String)> =
                    silent.iter().filter(|n| n.is_unreachable()).map(|n| (n.kind, n.fix())).collect();
                if fixes.is_empty() {
                    create
                } else {
                    fixes.push((EngineKind::Docker, create));
                    fixes.into_iter().map(|(_, f)| f).collect::<Vec<_>>().join("; otherwise ")
                }
            }
            Error::ImageNotFound { answered, silent, .. } => {
                let listing: Vec<String> = answered.iter().map(|(k, _)| format!("`{k} images`")).collect();
                let mut fix = format!(
                    "build or pull the image first; check its name with {}",
                    if listing.is_empty() { "`docker images` or `podman images`".into() } else { listing.join(" and ") }
                );
                let unreachable: Vec<&NoAnswer> = silent.iter().filter(|n| n.is_unreachable()).collect();
                if unreachable.is_empty() {
                    fix.push_str(", or pick the engine that has it with --engine docker|podman (or KINDLOAD_ENGINE)");
                } else {
                    let reach: Vec<String> =
                        unreachable.iter().map(|n| format!("if {} has it, {}", n.kind, n.fix())).collect();
                    fix = format!("{}; otherwise {fix}", reach.join("; "));
                }
                fix
            }
            Error::Exec(e) => return e.fix(),
        };
        (!fix.is_empty()).then_some(fix)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn no_engine_text(role: &str, chosen_by: Option<&str>, tried: &[NoAnswer]) -> String {
    let each: Vec<String> = tried.iter().map(ToString::to_string).collect();
    match chosen_by {
        Some(source) => format!("the {role} chosen by {source} cannot be used: {}", each.join("; ")),
        None if tried.iter().all(|n| !n.is_unreachable()) => format!("no container {role} found: {}", each.join("; ")),
        None => format!("no container {role} answers: {}", each.join("; ")),
    }
}

fn silent_text(silent: &[NoAnswer]) -> String {
    let each: Vec<String> = silent.iter().filter(|n| n.is_unreachable()).map(ToString::to_string).collect();
    if each.is_empty() {
        String::new()
    } else {
        format!("; not searched, because it did not answer: {}", each.join("; "))
    }
}

fn image_not_found_text(image: &str, answered: &[(EngineKind, String)], silent: &[NoAnswer]) -> String {
    let names: Vec<String> = answered.iter().map(|(k, _)| k.to_string()).collect();
    let words: Vec<String> = answered.iter().map(|(k, w)| format!("{k}: {w}")).collect();
    let unreachable: Vec<String> = silent.iter().filter(|n| n.is_unreachable()).map(ToString::to_string).collect();
    let answered_text = match names.len() {
        0 => "no engine answered".to_string(),
        1 if unreachable.is_empty() => format!("{} answered", names[0]),
        1 => format!("{} answered, the only engine that did", names[0]),
        _ => format!("{} both answered", names.join(" and ")),
    };
    let mut text = format!(
        "image {image:?} not found in {}: {answered_text} ({})",
        if names.is_empty() { "any engine".to_string() } else { names.join(" or ") },
        words.join("; ")
    );
    if !unreachable.is_empty() {
        text.push_str(&format!("; not searched: {}", unreachable.join("; ")));
    }
    text
}

/// One fix per engine, or several each saying which engine it is for.
fn join_fixes(fixes: Vec<(EngineKind, String)>) -> String {
    match fixes.len() {
        1 => fixes.into_iter().next().map(|(_, f)| f).unwrap_or_default(),
        _ => fixes.into_iter().map(|(k, f)| format!("for {k}: {f}")).collect::<Vec<_>>().join("; "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_errors_exit_2_and_failures_exit_1() {
        assert_eq!(Error::usage("x", "y").exit_code(), 2);
        let missing = Error::ClusterNotFound { name: "dev".into(), searched: "docker".into(), silent: Vec::new() };
        assert_eq!(missing.exit_code(), 2);
        assert!(missing.fix().unwrap().contains("kind create cluster --name dev"));
        assert_eq!(Error::failed("x", "y").exit_code(), 1);
    }
}
