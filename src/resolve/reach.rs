//! Why an engine or provider does not answer: which one, the address its CLI tried, the
//! cause, and the command or variable that fixes it.

use std::fmt;
use std::path::Path;

use crate::error::Error;
use crate::exec::ExecError;
use crate::resolve::engine_kind::EngineKind;

pub const DOCKER_DEFAULT_ADDRESS: &str = "unix:///var/run/docker.sock";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The program is not on PATH.
    NotInstalled,
    /// No socket file at the address: the daemon or service is not running.
    NoSocket,
    /// A socket (or port) is there but nothing accepts connections on it.
    Refused,
    /// The socket exists but this user may not connect to it.
    PermissionDenied,
    /// The Docker context the CLI was told to use does not exist (`address` is its name).
    NoContext,
    /// Anything else; the engine's own words say what.
    Other,
}

/// An engine (holding images) or provider (hosting nodes) that did not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoAnswer {
    pub kind: EngineKind,
    /// Where its CLI tried to reach the daemon or service; None for Podman without a service.
    pub address: Option<String>,
    /// The variable that named the address (DOCKER_HOST, CONTAINER_HOST), when one did.
    pub address_from: Option<&'static str>,
    pub cause: Cause,
    /// The engine's own last line of error output.
    pub detail: String,
}

impl NoAnswer {
    pub fn not_installed(kind: EngineKind) -> Self {
        NoAnswer {
            kind,
            address: None,
            address_from: None,
            cause: Cause::NotInstalled,
            detail: "not found on PATH".into(),
        }
    }

    /// From a command that could not start or exited non-zero.
    pub fn from_exec(kind: EngineKind, err: &ExecError, env: &dyn Fn(&str) -> Option<String>) -> Self {
        match err {
            ExecError::CouldNotStart { .. } if err.is_not_found() => NoAnswer::not_installed(kind),
            ExecError::Exited { stderr, .. } => diagnose(kind, stderr, env),
            other => {
                NoAnswer { kind, address: None, address_from: None, cause: Cause::Other, detail: other.to_string() }
            }
        }
    }

    /// True when the program is there but its daemon or service did not answer.
    pub fn is_unreachable(&self) -> bool {
        self.cause != Cause::NotInstalled
    }

    /// The command or variable that makes it answer.
    pub fn fix(&self) -> String {
        let addr = self.address.as_deref().unwrap_or(DOCKER_DEFAULT_ADDRESS);
        match (self.kind, self.cause, self.address_from) {
            (_, Cause::NoContext, from) => {
                let unset = from.map(|var| format!(", or `unset {var}`")).unwrap_or_default();
                format!(
                    "`docker context ls` lists the contexts there are: make {addr} (`docker context create {addr} --docker host=<endpoint>`) or pick another with `docker context use <name>`{unset}"
                )
            }
            (EngineKind::Docker, Cause::NotInstalled, _) => {
                "install Docker (`apt-get install docker.io`), or use Podman with `--engine podman`".into()
            }
            (EngineKind::Podman, Cause::NotInstalled, _) => {
                "install Podman (`apt-get install podman`), or use Docker with `--engine docker`".into()
            }
            (EngineKind::Docker, Cause::PermissionDenied, _) => format!(
                "add your user to the docker group (`sudo usermod -aG docker $USER`, then log in again) so it may use {addr}, or set DOCKER_HOST to a socket you may use"
            ),
            (EngineKind::Docker, Cause::NoSocket | Cause::Refused, Some(var)) => format!(
                "start what should serve {var}={addr} (for Podman's Docker API: `podman system service --time=0 {addr}`), or `unset {var}` to use the default daemon"
            ),
            (EngineKind::Docker, Cause::NoSocket | Cause::Refused, None) => {
                "start the Docker daemon (`sudo systemctl start docker`, or run `dockerd`), or use Podman with `--engine podman`"
                    .into()
            }
            (EngineKind::Podman, Cause::PermissionDenied, Some(var)) => {
                format!("let your user use {addr} (its owner and mode), or `unset {var}` to run Podman locally")
            }
            (EngineKind::Podman, Cause::PermissionDenied, None) => {
                format!("let your user use {addr} (its owner and mode), or run Podman locally without `--remote`")
            }
            (EngineKind::Podman, Cause::NoSocket | Cause::Refused, Some(var)) => format!(
                "start the service: `podman system service --time=0 {addr}`, or `unset {var}` to run Podman locally"
            ),
            (EngineKind::Podman, Cause::NoSocket | Cause::Refused, None) => {
                format!("start the service: `podman system service --time=0 {addr}`")
            }
            (kind, Cause::Other, _) => format!("run `{kind} info` to see what is wrong, and fix that"),
        }
    }
}

impl fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.cause == Cause::NotInstalled {
            return write!(f, "{} is not installed (not found on PATH)", self.kind);
        }
        write!(f, "{} does not answer", self.kind)?;
        if self.cause == Cause::NoContext {
            let name = self.address.as_deref().unwrap_or_default();
            let from = self.address_from.map(|var| format!(" (from {var})")).unwrap_or_default();
            return write!(f, ": its context {name}{from} does not exist");
        }
        if let Some(addr) = &self.address {
            write!(f, " at {addr}")?;
            if let Some(var) = self.address_from {
                write!(f, " (from {var})")?;
            }
        }
        let why = match self.cause {
            Cause::NoSocket => "no socket there: its daemon or service is not running",
            Cause::Refused => "the socket is there but nothing serves it (connection refused)",
            Cause::PermissionDenied => "permission denied on the socket",
            Cause::NotInstalled | Cause::NoContext | Cause::Other => "",
        };
        if !why.is_empty() {
            write!(f, ": {why}")?;
        }
        if !self.detail.is_empty() {
            write!(f, " [{}]", self.detail)?;
        }
        Ok(())
    }
}

/// Classifies an engine's error output: which address its CLI tried and why it failed.
pub fn diagnose(kind: EngineKind, stderr: &str, env: &dyn Fn(&str) -> Option<String>) -> NoAnswer {
    let detail = stderr.trim().lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("").to_string();
    if let Some(context) = missing_context(stderr).filter(|_| kind == EngineKind::Docker) {
        let from = env("DOCKER_CONTEXT").is_some_and(|v| v == context).then_some("DOCKER_CONTEXT");
        return NoAnswer { kind, address: Some(context), address_from: from, cause: Cause::NoContext, detail };
    }
    let var = match kind {
        EngineKind::Docker => "DOCKER_HOST",
        EngineKind::Podman => "CONTAINER_HOST",
    };
    let from_env = env(var).filter(|v| !v.trim().is_empty());
    let address = match kind {
        EngineKind::Docker => {
            address_after(stderr, "daemon socket at ").or_else(|| address_after(stderr, "Docker daemon at "))
        }
        EngineKind::Podman => None,
    }
    .or_else(|| from_env.clone())
    .or_else(|| dialed_socket(stderr))
    .or_else(|| (kind == EngineKind::Docker).then(|| DOCKER_DEFAULT_ADDRESS.to_string()));
    let address_from = match (&from_env, &address) {
        (Some(v), Some(a)) if v == a => Some(var),
        _ => None,
    };
    let lower = stderr.to_ascii_lowercase();
    let cause = if lower.contains("permission denied") {
        Cause::PermissionDenied
    } else if lower.contains("connection refused") {
        Cause::Refused
    } else if lower.contains("no such file or directory") {
        Cause::NoSocket
    } else if lower.contains("cannot connect to the docker daemon") || lower.contains("cannot connect to podman") {
        // Docker says the same for a missing socket and a refused one: look.
        match address.as_deref().and_then(|a| a.strip_prefix("unix://")) {
            Some(path) if Path::new(path).exists() => Cause::Refused,
            Some(_) => Cause::NoSocket,
            None => Cause::Refused,
        }
    } else {
        Cause::Other
    };
    NoAnswer { kind, address, address_from, cause, detail }
}

/// The word after `marker`, without trailing punctuation: `... daemon at unix:///x.sock. Is ...`.
fn address_after(text: &str, marker: &str) -> Option<String> {
    let start = text.find(marker)? + marker.len();
    let word = text[start..].split_whitespace().next()?;
    let word = word.trim_end_matches(['.', ':', ',']);
    word.contains("://").then(|| word.to_string())
}

/// `... unable to resolve docker endpoint: context "dev": context not found: ...` → `dev`.
fn missing_context(text: &str) -> Option<String> {
    let end = text.find("\": context not found")?;
    let start = text[..end].rfind("context \"")? + "context \"".len();
    Some(text[start..end].to_string())
}

/// `dial unix /run/podman/podman.sock: connect: ...` → `unix:///run/podman/podman.sock`.
fn dialed_socket(text: &str) -> Option<String> {
    let start = text.find("dial unix ")? + "dial unix ".len();
    let path = text[start..].split_whitespace().next()?.trim_end_matches(':');
    Some(format!("unix://{path}"))
}

// ---------------------------------------------------------------- the errors they make

/// No engine (`role` "engine") or provider ("provider") answered: each one tried, where, why.
pub fn no_engine(role: &str, chosen_by: Option<&str>, tried: &[NoAnswer]) -> Error {
    let each: Vec<String> = tried.iter().map(ToString::to_string).collect();
    let message = match chosen_by {
        Some(source) => format!("the {role} chosen by {source} cannot be used: {}", each.join("; ")),
        None if tried.iter().all(|n| !n.is_unreachable()) => format!("no container {role} found: {}", each.join("; ")),
        None => format!("no container {role} answers: {}", each.join("; ")),
    };
    let fix = if tried.len() > 1 && tried.iter().all(|n| !n.is_unreachable()) {
        "install Docker (`apt-get install docker.io`) or Podman (`apt-get install podman`), and make sure it is on PATH"
            .into()
    } else {
        join_fixes(tried.iter().map(|n| (n.kind, n.fix())).collect())
    };
    Error::NoEngine { message, fix }
}

/// No node of cluster `name` on the providers `searched`; `silent`: providers that did not
/// answer, so they may hold the cluster.
pub fn cluster_not_found(name: &str, searched: &str, silent: &[NoAnswer]) -> Error {
    let unreachable: Vec<&NoAnswer> = silent.iter().filter(|n| n.is_unreachable()).collect();
    let mut message =
        format!("kind cluster {name:?} not found: no containers labelled io.x-k8s.kind.cluster={name} on {searched}");
    if !unreachable.is_empty() {
        let each: Vec<String> = unreachable.iter().map(ToString::to_string).collect();
        message.push_str(&format!("; not searched, because it did not answer: {}", each.join("; ")));
    }
    let create = format!(
        "create it with `kind create cluster --name {name}`, or name an existing one with --cluster (see `kind get clusters`); for a Podman-hosted cluster set --provider podman (or KIND_EXPERIMENTAL_PROVIDER=podman)"
    );
    let fix = if unreachable.is_empty() {
        create
    } else {
        let mut fixes: Vec<String> = unreachable.iter().map(|n| n.fix()).collect();
        fixes.push(create);
        fixes.join("; otherwise ")
    };
    Error::ClusterNotFound { name: name.to_string(), message, fix }
}

/// `answered`: each engine that answered, with its own words; `silent`: those that did not.
pub fn image_not_found(image: &str, answered: &[(EngineKind, String)], silent: &[NoAnswer]) -> Error {
    let names: Vec<String> = answered.iter().map(|(k, _)| k.to_string()).collect();
    let words: Vec<String> = answered.iter().map(|(k, w)| format!("{k}: {w}")).collect();
    let unreachable: Vec<&NoAnswer> = silent.iter().filter(|n| n.is_unreachable()).collect();
    let answered_text = match names.len() {
        0 => "no engine answered".to_string(),
        1 if unreachable.is_empty() => format!("{} answered", names[0]),
        1 => format!("{} answered, the only engine that did", names[0]),
        _ => format!("{} both answered", names.join(" and ")),
    };
    let mut message = format!(
        "image {image:?} not found in {}: {answered_text} ({})",
        if names.is_empty() { "any engine".to_string() } else { names.join(" or ") },
        words.join("; ")
    );
    if !unreachable.is_empty() {
        let each: Vec<String> = unreachable.iter().map(ToString::to_string).collect();
        message.push_str(&format!("; not searched: {}", each.join("; ")));
    }
    let listing: Vec<String> = answered.iter().map(|(k, _)| format!("`{k} images`")).collect();
    let mut fix = format!(
        "build or pull the image first; check its name with {}",
        if listing.is_empty() { "`docker images` or `podman images`".into() } else { listing.join(" and ") }
    );
    if unreachable.is_empty() {
        fix.push_str(", or pick the engine that has it with --engine docker|podman (or KINDLOAD_ENGINE)");
    } else {
        let reach: Vec<String> = unreachable.iter().map(|n| format!("if {} has it, {}", n.kind, n.fix())).collect();
        fix = format!("{}; otherwise {fix}", reach.join("; "));
    }
    Error::ImageNotFound { image: image.to_string(), message, fix }
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

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn docker_with_a_dead_docker_host() {
        let env = |k: &str| (k == "DOCKER_HOST").then(|| "unix:///nonexistent.sock".to_string());
        let d = diagnose(
            EngineKind::Docker,
            "Cannot connect to the Docker daemon at unix:///nonexistent.sock. Is the docker daemon running?\n",
            &env,
        );
        assert_eq!(d.address.as_deref(), Some("unix:///nonexistent.sock"));
        assert_eq!(d.address_from, Some("DOCKER_HOST"));
        assert_eq!(d.cause, Cause::NoSocket);
        let text = d.to_string();
        assert!(text.starts_with("docker does not answer at unix:///nonexistent.sock (from DOCKER_HOST)"), "{text}");
        assert!(d.fix().contains("`unset DOCKER_HOST`"), "{}", d.fix());
        assert!(d.fix().contains("`podman system service --time=0 unix:///nonexistent.sock`"), "{}", d.fix());
    }

    #[test]
    fn docker_permission_denied_names_the_socket_and_the_group() {
        let d = diagnose(
            EngineKind::Docker,
            "permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock: Get \"http://%2Fvar%2Frun%2Fdocker.sock/v1.50/version\": dial unix /var/run/docker.sock: connect: permission denied",
            &no_env,
        );
        assert_eq!((d.address.as_deref(), d.cause), (Some("unix:///var/run/docker.sock"), Cause::PermissionDenied));
        assert!(d.fix().contains("`sudo usermod -aG docker $USER`"), "{}", d.fix());
    }

    #[test]
    fn docker_stopped_daemon_on_the_default_socket() {
        let d = diagnose(
            EngineKind::Docker,
            "Cannot connect to the Docker daemon at unix:///kindload-test/no/docker.sock. Is the docker daemon running?",
            &no_env,
        );
        assert_eq!(d.cause, Cause::NoSocket);
        assert_eq!(d.address_from, None);
        assert!(d.fix().contains("`sudo systemctl start docker`"), "{}", d.fix());
    }

    #[test]
    fn podman_service_not_served() {
        let env = |k: &str| (k == "CONTAINER_HOST").then(|| "unix:///tmp/podman.sock".to_string());
        let d = diagnose(
            EngineKind::Podman,
            "Cannot connect to Podman. Please verify your connection to the Linux system using `podman system connection list`, or try `podman machine init` and `podman machine start` to manage a new Linux VM\nError: unable to connect to Podman socket: Get \"http://d/v4.3.1/libpod/_ping\": dial unix /tmp/podman.sock: connect: connection refused\n",
            &env,
        );
        assert_eq!(d.address.as_deref(), Some("unix:///tmp/podman.sock"));
        assert_eq!((d.address_from, d.cause), (Some("CONTAINER_HOST"), Cause::Refused));
        assert!(d.to_string().contains("connection refused"), "{d}");
        assert!(d.fix().contains("`podman system service --time=0 unix:///tmp/podman.sock`"), "{}", d.fix());
        assert!(d.fix().contains("`unset CONTAINER_HOST`"), "{}", d.fix());
    }

    #[test]
    fn podman_remote_without_the_variable_names_the_dialed_socket() {
        let d = diagnose(
            EngineKind::Podman,
            "Error: unable to connect to Podman socket: Get \"http://d/v4.3.1/libpod/_ping\": dial unix /run/podman/podman.sock: connect: no such file or directory",
            &no_env,
        );
        assert_eq!(d.address.as_deref(), Some("unix:///run/podman/podman.sock"));
        assert_eq!((d.address_from, d.cause), (None, Cause::NoSocket));
    }

    #[test]
    fn a_docker_context_that_does_not_exist_is_named_not_the_default_socket() {
        let stderr = include_str!("../../tests/fixtures/engines/docker-28.2-missing-context.txt");
        let env = |k: &str| (k == "DOCKER_CONTEXT").then(|| "kindload-missing".to_string());
        let d = diagnose(EngineKind::Docker, stderr, &env);
        assert_eq!((d.cause, d.address.as_deref()), (Cause::NoContext, Some("kindload-missing")));
        let text = d.to_string();
        assert_eq!(text, "docker does not answer: its context kindload-missing (from DOCKER_CONTEXT) does not exist");
        assert!(d.fix().starts_with("`docker context ls` lists the contexts there are"), "{}", d.fix());
        assert!(d.fix().ends_with("or `unset DOCKER_CONTEXT`"), "{}", d.fix());
        // named by the CLI config's current context instead: nothing to unset
        let d = diagnose(EngineKind::Docker, stderr, &no_env);
        assert_eq!(d.address_from, None);
        assert!(!d.fix().contains("unset"), "{}", d.fix());
    }

    #[test]
    fn anything_else_points_at_info() {
        let d = diagnose(EngineKind::Podman, "Error: database is locked", &no_env);
        assert_eq!((d.cause, d.address.as_deref()), (Cause::Other, None));
        assert_eq!(d.fix(), "run `podman info` to see what is wrong, and fix that");
        assert_eq!(d.to_string(), "podman does not answer [Error: database is locked]");
    }
}
