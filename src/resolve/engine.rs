//! The engine: where locally built images live (Docker or Podman), and how we found it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Result;
use crate::exec::{Cmd, Runner};
use crate::resolve::reach::{self, diagnose, Cause, NoAnswer};
use crate::resolve::remote;

pub use crate::resolve::engine_kind::EngineKind;
pub use crate::resolve::remote::Locality;

/// When a build pulls its base images.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PullPolicy {
    /// Only local images; a missing base is an error naming it. No registry is contacted.
    Never,
    /// Pull a base only when it is not present locally.
    #[default]
    Missing,
    /// Pull every base, even when present locally.
    Always,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Never => "never",
            PullPolicy::Missing => "missing",
            PullPolicy::Always => "always",
        }
    }
}

/// A detected, answering engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Engine {
    pub kind: EngineKind,
    /// How it was chosen: flag, environment, or found on PATH.
    pub detected_by: String,
    pub server_version: Option<String>,
    /// A `docker` CLI whose backend is really Podman (podman-docker shim or a Podman socket).
    pub podman_backend: bool,
    pub rootless: bool,
    /// Docker's containerd image store: `.Id` is a manifest digest and `save` writes an OCI layout.
    pub containerd_store: bool,
    /// Whether the engine runs beside kindload (and reads its files) or behind a connection.
    pub locality: Locality,
}

impl Engine {
    /// An engine to ask directly, before (or instead of) asking it about itself: a load
    /// needs only `image inspect` and `save`, so the first answer is the image itself.
    pub fn unprobed(kind: EngineKind, detected_by: &str) -> Self {
        Engine {
            kind,
            detected_by: detected_by.into(),
            server_version: None,
            podman_backend: kind == EngineKind::Podman,
            rootless: false,
            containerd_store: false,
            locality: Locality::Unasked,
        }
    }

    pub fn program(&self) -> &'static str {
        self.kind.program()
    }

    pub fn cmd(&self) -> Cmd {
        Cmd::new(self.program())
    }

    /// `build -t TAG -f FILE [pull flag] [--platform P] [--build-arg K=V]... CONTEXT`.
    ///
    /// The pull policy in the engine's own terms: Podman takes `--pull=never|missing|always`;
    /// Docker's `--pull` means always, and without it a base is pulled only when missing.
    /// Docker has no "never": the caller checks every base locally before building.
    pub fn build_cmd(&self, spec: &BuildSpec) -> Cmd {
        let mut cmd = self.cmd().args(["build", "-t", spec.tag, "-f"]).arg(spec.file);
        match (self.kind, spec.pull) {
            (EngineKind::Podman, policy) => cmd = cmd.arg(format!("--pull={}", policy.as_str())),
            (EngineKind::Docker, PullPolicy::Always) => cmd = cmd.arg("--pull"),
            (EngineKind::Docker, PullPolicy::Missing | PullPolicy::Never) => {}
        }
        if spec.insecure_bases && self.kind == EngineKind::Podman {
            cmd = cmd.arg("--tls-verify=false");
        }
        if !spec.platforms.is_empty() {
            cmd = cmd.arg("--platform").arg(spec.platforms.join(","));
        }
        for (key, value) in spec.build_args {
            cmd = cmd.arg("--build-arg").arg(format!("{key}={value}"));
        }
        cmd.arg(spec.context)
    }

    /// `push IMAGE`; Podman verifies TLS unless told not to, Docker decides by its daemon config.
    pub fn push_cmd(&self, image: &str, insecure: bool) -> Cmd {
        let cmd = self.cmd().arg("push");
        let cmd = if insecure && self.kind == EngineKind::Podman { cmd.arg("--tls-verify=false") } else { cmd };
        cmd.arg(image)
    }

    pub fn describe(&self) -> String {
        let mut s = format!("{}", self.kind);
        if let Some(v) = &self.server_version {
            s.push_str(&format!(" {v}"));
        }
        let mut notes = Vec::new();
        if self.podman_backend && self.kind == EngineKind::Docker {
            notes.push("backed by Podman");
        }
        if self.rootless {
            notes.push("rootless");
        }
        if self.containerd_store {
            notes.push("containerd image store");
        }
        let remote = self.locality.via().map(|via| format!("remote: {via}"));
        notes.extend(remote.as_deref());
        if !notes.is_empty() {
            s.push_str(&format!(" ({})", notes.join(", ")));
        }
        s
    }
}

/// What to build, and how.
pub struct BuildSpec<'a> {
    pub tag: &'a str,
    pub file: &'a std::path::Path,
    pub context: &'a std::path::Path,
    pub platforms: &'a [String],
    pub build_args: &'a [(String, String)],
    pub pull: PullPolicy,
    /// Every base comes from a registry reached without TLS verification (loopback or listed).
    pub insecure_bases: bool,
}

/// Where an explicit choice came from, if any.
pub struct EngineChoice {
    pub kind: EngineKind,
    pub source: &'static str,
}

/// The engines to look for images in: those that answered, and those that did not (so that
/// an image found in none can say which engines were really asked).
#[derive(Debug, Clone, Default)]
pub struct Engines {
    pub answering: Vec<Engine>,
    pub silent: Vec<NoAnswer>,
    /// Set when the user named the engine: then its silence is the error.
    pub chosen_by: Option<String>,
}

impl Engines {
    pub fn only(engine: Engine) -> Self {
        Engines { answering: vec![engine], silent: Vec::new(), chosen_by: None }
    }

    /// Engines to ask for images in order, none asked anything yet: `choice` alone, else
    /// Docker then Podman. An engine that does not answer is found out by the lookup.
    pub fn unprobed(choice: Option<EngineChoice>) -> Self {
        match choice {
            Some(c) => Engines {
                answering: vec![Engine::unprobed(c.kind, c.source)],
                silent: Vec::new(),
                chosen_by: Some(c.source.to_string()),
            },
            None => Engines {
                answering: [EngineKind::Docker, EngineKind::Podman]
                    .into_iter()
                    .map(|k| Engine::unprobed(k, "found on PATH"))
                    .collect(),
                silent: Vec::new(),
                chosen_by: None,
            },
        }
    }

    /// Engines installed but not answering (a stopped daemon, a dead socket), worth a fix.
    pub fn unreachable(&self) -> impl Iterator<Item = &NoAnswer> {
        self.silent.iter().filter(|n| n.is_unreachable())
    }
}

impl std::ops::Deref for Engines {
    type Target = [Engine];
    fn deref(&self) -> &[Engine] {
        &self.answering
    }
}

impl<'a> IntoIterator for &'a Engines {
    type Item = &'a Engine;
    type IntoIter = std::slice::Iter<'a, Engine>;
    fn into_iter(self) -> Self::IntoIter {
        self.answering.iter()
    }
}

/// Detects the engine: an explicit choice wins; otherwise `docker`, then `podman`, each
/// confirmed by asking it; neither answering is an error naming each, its address and fix.
pub fn detect(runner: &dyn Runner, choice: Option<EngineChoice>) -> Result<Engine> {
    if let Some(choice) = choice {
        return probe(runner, choice.kind, choice.source)
            .map_err(|why| reach::no_engine("engine", Some(choice.source), &[why]));
    }
    let all = detect_all(runner);
    match all.answering.into_iter().next() {
        Some(engine) => Ok(engine),
        None => Err(reach::no_engine("engine", None, &all.silent)),
    }
}

/// Every engine, in detection order: those that answer, and why the others do not.
pub fn detect_all(runner: &dyn Runner) -> Engines {
    let mut engines = Engines::default();
    for kind in [EngineKind::Docker, EngineKind::Podman] {
        match probe(runner, kind, "found on PATH") {
            Ok(engine) => engines.answering.push(engine),
            Err(why) => engines.silent.push(why),
        }
    }
    engines
}

/// Asks the engine about itself; the error says why it does not count as present.
pub fn probe(runner: &dyn Runner, kind: EngineKind, detected_by: &str) -> std::result::Result<Engine, NoAnswer> {
    if !runner.installed(kind.program()) {
        return Err(NoAnswer::not_installed(kind));
    }
    let env = |k: &str| std::env::var(k).ok();
    let ask = |args: &[&str]| {
        runner.output(&Cmd::new(kind.program()).args(args)).map_err(|e| NoAnswer::from_exec(kind, &e, &env))
    };
    let odd = |what: String| NoAnswer { kind, address: None, address_from: None, cause: Cause::Other, detail: what };
    match kind {
        EngineKind::Docker => {
            let version = ask(&["version", "--format", "{{json .}}"])?;
            let (server_version, podman_backend) =
                parse_docker_version(&version.stdout).ok_or_else(|| diagnose(kind, &version.stderr, &env))?;
            let info = ask(&["info", "--format", "{{json .}}"])?;
            if !info.success() {
                return Err(diagnose(kind, &info.stderr, &env));
            }
            let (rootless, containerd_store) = parse_docker_info(&info.stdout).map_err(odd)?;
            Ok(Engine {
                kind,
                detected_by: detected_by.into(),
                server_version,
                podman_backend,
                rootless,
                containerd_store: containerd_store && !podman_backend,
                locality: remote::locate(runner, kind),
            })
        }
        EngineKind::Podman => {
            let out = ask(&["info", "--format", "json"])?;
            if !out.success() {
                return Err(diagnose(kind, &out.stderr, &env));
            }
            let (server_version, rootless) = parse_podman_info(&out.stdout).map_err(odd)?;
            Ok(Engine {
                kind,
                detected_by: detected_by.into(),
                server_version,
                podman_backend: true,
                rootless,
                containerd_store: false,
                locality: remote::parse_podman_info(&out.stdout).unwrap_or_default(),
            })
        }
    }
}

/// `docker version --format '{{json .}}'` → (server version, backed by Podman), or None when
/// no server answered. The podman-docker shim prints Podman's client-only JSON (`APIVersion`
/// equal to its version, no `Server`); Docker's API served by Podman lists a "Podman Engine" component.
pub fn parse_docker_version(json: &str) -> Option<(Option<String>, bool)> {
    let v: Value = serde_json::from_str(json.trim()).ok()?;
    let client_is_podman = v.pointer("/Client/APIVersion").is_some() && v.pointer("/Client/ApiVersion").is_none();
    let Some(server) = v.get("Server").filter(|s| !s.is_null()) else {
        let version = v.pointer("/Client/Version").and_then(Value::as_str).map(str::to_string);
        return client_is_podman.then_some((version, true));
    };
    let components = server.get("Components").and_then(Value::as_array).cloned().unwrap_or_default();
    let component_named = |name: &str| components.iter().find(|c| c.get("Name").and_then(Value::as_str) == Some(name));
    let podman = component_named("Podman Engine").is_some() || client_is_podman;
    let version = server
        .get("Version")
        .and_then(Value::as_str)
        .or_else(|| component_named("Engine").and_then(|c| c.get("Version")).and_then(Value::as_str))
        .map(str::to_string);
    Some((version, podman))
}

/// `docker info --format '{{json .}}'` → (rootless, containerd image store). A podman-docker
/// shim answers with Podman's info shape instead.
pub fn parse_docker_info(json: &str) -> std::result::Result<(bool, bool), String> {
    let v: Value = serde_json::from_str(json.trim()).map_err(|e| format!("unexpected `docker info` output: {e}"))?;
    if v.get("host").is_some() {
        return Ok((podman_rootless(&v), false));
    }
    let security = v.get("SecurityOptions").map(Value::to_string).unwrap_or_default();
    let driver_status = v.get("DriverStatus").map(Value::to_string).unwrap_or_default();
    Ok((security.contains("name=rootless"), driver_status.contains("io.containerd.snapshotter")))
}

/// `podman info --format json` → (version, rootless).
pub fn parse_podman_info(json: &str) -> std::result::Result<(Option<String>, bool), String> {
    let v: Value = serde_json::from_str(json.trim()).map_err(|e| format!("unexpected `podman info` output: {e}"))?;
    let version = v.pointer("/version/Version").and_then(Value::as_str).map(str::to_string);
    Ok((version, podman_rootless(&v)))
}

fn podman_rootless(v: &Value) -> bool {
    v.pointer("/host/security/rootless").and_then(Value::as_bool).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::fake::FakeRunner;

    const DOCKER_VERSION: &str = include_str!("../../tests/fixtures/engines/docker-20.10-version.json");
    const DOCKER_INFO: &str = include_str!("../../tests/fixtures/engines/docker-20.10-info.json");
    const DOCKER_API_ON_PODMAN: &str =
        include_str!("../../tests/fixtures/engines/docker-api-on-podman-4.3-version.json");
    const PODMAN_VERSION: &str = include_str!("../../tests/fixtures/engines/podman-4.3-version.json");
    const PODMAN_INFO: &str = include_str!("../../tests/fixtures/engines/podman-4.3-info.json");
    const STORE_DRIVER_STATUS: &str =
        include_str!("../../tests/fixtures/engines/docker-28.5-containerd-store-driverstatus.json");

    #[test]
    fn docker_classic_store() {
        assert_eq!(parse_docker_version(DOCKER_VERSION), Some((Some("20.10.24+dfsg1".into()), false)));
        assert_eq!(parse_docker_info(DOCKER_INFO).unwrap(), (false, false));
    }

    #[test]
    fn docker_containerd_store_is_recognised() {
        let info =
            format!(r#"{{"DriverStatus":{STORE_DRIVER_STATUS},"SecurityOptions":["name=seccomp,profile=builtin"]}}"#);
        assert_eq!(parse_docker_info(&info).unwrap(), (false, true));
        let rootless = r#"{"DriverStatus":[],"SecurityOptions":["name=seccomp,profile=builtin","name=rootless"]}"#;
        assert_eq!(parse_docker_info(rootless).unwrap(), (true, false));
    }

    #[test]
    fn docker_api_served_by_podman_is_recognised() {
        assert_eq!(parse_docker_version(DOCKER_API_ON_PODMAN), Some((Some("4.3.1".into()), true)));
    }

    #[test]
    fn podman_docker_shim_is_recognised() {
        // The shim runs podman, which prints a client-only version and Podman's info.
        assert_eq!(parse_docker_version(PODMAN_VERSION), Some((Some("4.3.1".into()), true)));
        assert_eq!(parse_docker_info(PODMAN_INFO).unwrap(), (false, false));
    }

    #[test]
    fn a_docker_client_without_daemon_does_not_count() {
        let client_only = r#"{"Client":{"Version":"28.2.2","ApiVersion":"1.50"},"Server":null}"#;
        assert_eq!(parse_docker_version(client_only), None);
    }

    #[test]
    fn docker_first_then_podman() {
        let runner = FakeRunner::new()
            .on(&["docker", "version"], 1, "", "Cannot connect to the Docker daemon at unix:///var/run/docker.sock")
            .on(&["podman", "info"], 0, PODMAN_INFO, "");
        let e = detect(&runner, None).unwrap();
        assert_eq!(e.kind, EngineKind::Podman);
        assert_eq!(e.server_version.as_deref(), Some("4.3.1"));
        assert_eq!(e.detected_by, "found on PATH");
    }

    #[test]
    fn docker_answering_wins() {
        let runner = FakeRunner::new().on(&["docker", "version"], 0, DOCKER_VERSION, "").on(
            &["docker", "info"],
            0,
            DOCKER_INFO,
            "",
        );
        let e = detect(&runner, None).unwrap();
        assert_eq!((e.kind, e.podman_backend, e.containerd_store), (EngineKind::Docker, false, false));
    }

    #[test]
    fn neither_engine_names_what_was_looked_for() {
        let runner = FakeRunner::new().on(
            &["docker", "version"],
            1,
            "",
            "Cannot connect to the Docker daemon at unix:///kindload-test/no/docker.sock. Is the docker daemon running?",
        );
        let err = detect(&runner, None).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("no container engine answers: docker does not answer at unix:///kindload-test/no/docker.sock: no socket there"), "{text}");
        assert!(text.contains("podman is not installed (not found on PATH)"), "{text}");
        assert_eq!(err.exit_code(), 2);
        let fix = err.fix().unwrap();
        assert!(fix.contains("for docker: start the Docker daemon (`sudo systemctl start docker`"), "{fix}");
        assert!(fix.contains("for podman: install Podman (`apt-get install podman`)"), "{fix}");
    }

    #[test]
    fn a_program_not_on_path_is_not_installed_without_running_it() {
        let runner = FakeRunner::new().missing("docker").missing("podman");
        let err = detect(&runner, None).unwrap_err();
        assert!(runner.seen.lock().unwrap().is_empty(), "asked {:?}", runner.seen.lock().unwrap());
        let text = err.to_string();
        assert!(text.starts_with("no container engine found: docker is not installed (not found on PATH)"), "{text}");
        assert!(text.contains("podman is not installed (not found on PATH)"), "{text}");
    }

    #[test]
    fn explicit_choice_is_not_second_guessed() {
        let runner = FakeRunner::new().on(&["docker", "version"], 0, DOCKER_VERSION, "").on(
            &["podman", "info"],
            125,
            "",
            "Error: unable to connect to Podman socket: Get \"http://d/v4.3.1/libpod/_ping\": dial unix /kindload-test/podman.sock: connect: no such file or directory",
        );
        let err = detect(&runner, Some(EngineChoice { kind: EngineKind::Podman, source: "--engine" })).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string().starts_with(
                "the engine chosen by --engine cannot be used: podman does not answer at unix:///kindload-test/podman.sock"
            ),
            "{err}"
        );
        assert!(err.fix().unwrap().contains("`podman system service --time=0 unix:///kindload-test/podman.sock`"));
    }

    #[test]
    fn build_and_push_argv() {
        let e = Engine {
            kind: EngineKind::Podman,
            detected_by: String::new(),
            server_version: None,
            podman_backend: true,
            rootless: false,
            containerd_store: false,
            locality: Locality::Unasked,
        };
        let platforms = ["linux/amd64".to_string(), "linux/arm64".to_string()];
        let build_args = [("BASE".to_string(), "base:abc".to_string())];
        let spec = BuildSpec {
            tag: "app:dev",
            file: std::path::Path::new("/src/Containerfile"),
            context: std::path::Path::new("/src"),
            platforms: &platforms,
            build_args: &build_args,
            pull: PullPolicy::Missing,
            insecure_bases: false,
        };
        let cmd = e.build_cmd(&spec);
        assert_eq!(
            cmd.argv(),
            [
                "podman",
                "build",
                "-t",
                "app:dev",
                "-f",
                "/src/Containerfile",
                "--pull=missing",
                "--platform",
                "linux/amd64,linux/arm64",
                "--build-arg",
                "BASE=base:abc",
                "/src"
            ]
        );
        assert_eq!(
            e.push_cmd("127.0.0.1:5000/app:dev", true).argv(),
            ["podman", "push", "--tls-verify=false", "127.0.0.1:5000/app:dev"]
        );
        let docker = Engine { kind: EngineKind::Docker, ..e.clone() };
        assert_eq!(
            docker.push_cmd("127.0.0.1:5000/app:dev", true).argv(),
            ["docker", "push", "127.0.0.1:5000/app:dev"]
        );
    }

    #[test]
    fn pull_policy_in_each_engines_terms() {
        let podman = Engine {
            kind: EngineKind::Podman,
            detected_by: String::new(),
            server_version: None,
            podman_backend: true,
            rootless: false,
            containerd_store: false,
            locality: Locality::Unasked,
        };
        let docker = Engine { kind: EngineKind::Docker, podman_backend: false, ..podman.clone() };
        let argv = |engine: &Engine, pull: PullPolicy, insecure_bases: bool| {
            let spec = BuildSpec {
                tag: "app:dev",
                file: std::path::Path::new("/src/Dockerfile"),
                context: std::path::Path::new("/src"),
                platforms: &[],
                build_args: &[],
                pull,
                insecure_bases,
            };
            engine.build_cmd(&spec).argv()[5..].to_vec()
        };
        assert_eq!(argv(&podman, PullPolicy::Never, false), ["/src/Dockerfile", "--pull=never", "/src"]);
        assert_eq!(
            argv(&podman, PullPolicy::Always, true),
            ["/src/Dockerfile", "--pull=always", "--tls-verify=false", "/src"]
        );
        assert_eq!(argv(&docker, PullPolicy::Always, true), ["/src/Dockerfile", "--pull", "/src"]);
        assert_eq!(argv(&docker, PullPolicy::Missing, false), ["/src/Dockerfile", "/src"]);
        assert_eq!(argv(&docker, PullPolicy::Never, false), ["/src/Dockerfile", "/src"]);
    }

    #[test]
    fn podman_saves_several_images_into_one_docker_archive() {
        let images = vec!["a:1".to_string(), "b:2".to_string()];
        assert_eq!(
            EngineKind::Podman.save_args(&images),
            ["save", "--format", "docker-archive", "--multi-image-archive", "a:1", "b:2"]
        );
        assert_eq!(EngineKind::Docker.save_args(&images), ["save", "a:1", "b:2"]);
    }
}
