//! Whether the engine runs beside kindload or elsewhere: Podman's remote client (Podman
//! machine, `podman --remote`), a Docker context or `DOCKER_HOST` (Docker Desktop, Colima,
//! OrbStack, Rancher Desktop). A remote engine reads none of kindload's files, so a path
//! handed to it (`podman push --cert-dir`) means nothing there.

use serde::Serialize;
use serde_json::Value;

use crate::exec::{Cmd, Runner};
use crate::resolve::engine_kind::EngineKind;

/// Where the engine runs, relative to kindload's files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Locality {
    /// Not asked: a load asks only when the registry route needs to know.
    #[default]
    Unasked,
    /// On this machine, reading the files kindload writes.
    Local,
    /// Behind a connection (`via` names it): a VM, another host, or a service of its own.
    Remote { via: String },
}

impl Locality {
    pub fn is_remote(&self) -> bool {
        matches!(self, Locality::Remote { .. })
    }

    /// How a remote engine is reached, for notes and `describe`.
    pub fn via(&self) -> Option<&str> {
        match self {
            Locality::Remote { via } => Some(via),
            _ => None,
        }
    }
}

/// The sockets a local Docker daemon answers on when no context or `DOCKER_HOST` says otherwise.
const LOCAL_DOCKER_SOCKETS: [&str; 2] = ["unix:///var/run/docker.sock", "unix:///run/docker.sock"];

/// Asks the engine's CLI where its engine runs: `podman version` (a remote client reports
/// the service it talks to as `Server`, a local one has none; `podman info` says the same as
/// `host.serviceIsRemote` but gathers much more, and is slower), or `docker context
/// inspect` (the current context's endpoint, which `DOCKER_CONTEXT`, `DOCKER_HOST` and the
/// CLI config's current context decide; no daemon is asked). An answer that cannot be read
/// leaves it `Unasked`.
pub fn locate(runner: &dyn Runner, kind: EngineKind) -> Locality {
    let args: &[&str] = match kind {
        EngineKind::Podman => &["version", "--format", "json"],
        EngineKind::Docker => &["context", "inspect"],
    };
    let Ok(out) = runner.output(&Cmd::new(kind.program()).args(args)) else { return Locality::Unasked };
    if !out.success() {
        return Locality::Unasked;
    }
    let env = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
    match kind {
        EngineKind::Podman => parse_podman_version(&out.stdout, env("CONTAINER_HOST").as_deref()),
        EngineKind::Docker => parse_docker_context(&out.stdout, env("DOCKER_HOST").as_deref()),
    }
    .unwrap_or_default()
}

/// `podman version --format json` → where the engine runs: remote when a `Server` answered
/// beside the `Client`, reached through `CONTAINER_HOST` or else Podman's default connection.
pub fn parse_podman_version(json: &str, container_host: Option<&str>) -> Option<Locality> {
    let v: Value = serde_json::from_str(json.trim()).ok()?;
    v.get("Client")?;
    if v.get("Server").is_none_or(Value::is_null) {
        return Some(Locality::Local);
    }
    let via = match container_host {
        Some(host) => format!("podman's service at {host}"),
        None => "podman's default connection, see `podman system connection list`".to_string(),
    };
    Some(Locality::Remote { via })
}

/// `podman info --format json` → where the engine runs: `host.serviceIsRemote`, reached
/// through `host.remoteSocket.path`.
pub fn parse_podman_info(json: &str) -> Option<Locality> {
    let v: Value = serde_json::from_str(json.trim()).ok()?;
    let remote = v.pointer("/host/serviceIsRemote").and_then(Value::as_bool)?;
    if !remote {
        return Some(Locality::Local);
    }
    let socket = v.pointer("/host/remoteSocket/path").and_then(Value::as_str).unwrap_or("its connection");
    Some(Locality::Remote { via: format!("podman's service at {socket}") })
}

/// `docker context inspect` (the current context) → where the daemon runs. The default
/// context names `DOCKER_HOST` when it is set, the local socket otherwise; any other
/// endpoint is a daemon of its own, as Docker Desktop's, Colima's and OrbStack's are.
pub fn parse_docker_context(json: &str, docker_host: Option<&str>) -> Option<Locality> {
    let v: Value = serde_json::from_str(json.trim()).ok()?;
    let context = v.as_array().and_then(|a| a.first()).unwrap_or(&v);
    let name = context.get("Name").and_then(Value::as_str)?;
    let host = context.pointer("/Endpoints/docker/Host").and_then(Value::as_str)?;
    if LOCAL_DOCKER_SOCKETS.contains(&host) {
        return Some(Locality::Local);
    }
    let via = match docker_host.filter(|h| !h.is_empty() && name == "default") {
        Some(_) => format!("DOCKER_HOST={host}"),
        None => format!("docker context {name} at {host}"),
    };
    Some(Locality::Remote { via })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::fake::FakeRunner;

    const LOCAL_INFO: &str = include_str!("../../tests/fixtures/engines/podman-4.3-info.json");
    const REMOTE_INFO: &str = include_str!("../../tests/fixtures/engines/podman-4.3-remote-client-info.json");
    const LOCAL_VERSION: &str = include_str!("../../tests/fixtures/engines/podman-4.3-version.json");
    const REMOTE_VERSION: &str = include_str!("../../tests/fixtures/engines/podman-4.3-remote-client-version.json");
    const DEFAULT_CONTEXT: &str = include_str!("../../tests/fixtures/engines/docker-28.2-context-inspect-default.json");
    const NAMED_CONTEXT: &str = include_str!("../../tests/fixtures/engines/docker-28.2-context-inspect-named.json");
    const DOCKER_HOST_CONTEXT: &str =
        include_str!("../../tests/fixtures/engines/docker-28.2-context-inspect-docker-host.json");

    #[test]
    fn podman_says_whether_its_service_is_remote() {
        assert_eq!(parse_podman_info(LOCAL_INFO), Some(Locality::Local));
        let remote = parse_podman_info(REMOTE_INFO).unwrap();
        assert!(remote.is_remote());
        assert!(remote.via().unwrap().starts_with("podman's service at unix:///"), "{remote:?}");
        assert_eq!(parse_podman_info("not json"), None);
        assert_eq!(parse_podman_info(r#"{"host":{}}"#), None, "an info without the field tells nothing");
    }

    #[test]
    fn podman_version_names_a_server_only_when_remote() {
        assert_eq!(parse_podman_version(LOCAL_VERSION, None), Some(Locality::Local));
        let remote = parse_podman_version(REMOTE_VERSION, Some("unix:///run/p.sock")).unwrap();
        assert_eq!(remote.via(), Some("podman's service at unix:///run/p.sock"));
        let machine = parse_podman_version(REMOTE_VERSION, None).unwrap();
        assert!(machine.via().unwrap().contains("podman system connection list"), "{machine:?}");
        assert_eq!(parse_podman_version("{}", None), None, "no client: not podman's answer");
    }

    #[test]
    fn docker_context_endpoint_tells_where_the_daemon_runs() {
        assert_eq!(parse_docker_context(DEFAULT_CONTEXT, None), Some(Locality::Local));
        let named = parse_docker_context(NAMED_CONTEXT, None).unwrap();
        assert!(named.via().unwrap().starts_with("docker context kindload-second at unix:///"), "{named:?}");
        let host = parse_docker_context(DOCKER_HOST_CONTEXT, Some("unix:///elsewhere/docker.sock")).unwrap();
        assert!(host.via().unwrap().starts_with("DOCKER_HOST=unix:///"), "{host:?}");
        assert_eq!(parse_docker_context("[]", None), None);
    }

    #[test]
    fn docker_desktop_and_colima_contexts_are_remote() {
        let context = |name: &str, host: &str| {
            format!(
                r#"[{{"Name":"{name}","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":false}}}}}}]"#
            )
        };
        let desktop = context("desktop-linux", "unix:///Users/dev/.docker/run/docker.sock");
        assert!(parse_docker_context(&desktop, None).unwrap().is_remote());
        let colima = context("colima", "unix:///Users/dev/.colima/default/docker.sock");
        assert_eq!(
            parse_docker_context(&colima, None).unwrap().via(),
            Some("docker context colima at unix:///Users/dev/.colima/default/docker.sock")
        );
        let ssh = context("build-box", "ssh://dev@build-box");
        assert!(parse_docker_context(&ssh, None).unwrap().is_remote());
    }

    #[test]
    fn an_engine_that_cannot_say_stays_unasked() {
        let runner = FakeRunner::new().on(&["podman", "version"], 125, "", "Error: unable to connect to Podman socket");
        assert_eq!(locate(&runner, EngineKind::Podman), Locality::Unasked);
        let runner = FakeRunner::new().on(&["podman", "version"], 0, REMOTE_VERSION, "");
        assert!(locate(&runner, EngineKind::Podman).is_remote());
    }
}
