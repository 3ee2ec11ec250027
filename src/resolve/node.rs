//! A node and the facts about its containerd that loading depends on.

use serde::Serialize;

use crate::exec::{Runner, Session};
use crate::resolve::containerd::{lenient_version, parse_config_dump, parse_containerd_version};
use crate::resolve::holdings::{parse_survey, section, survey_argv, Asked, Depth, Holdings, Section, READY};
use crate::resolve::platform;
use crate::resolve::provider::{NodeContainer, Provider};

/// What kindload needs to know about one node; also a row of `kindload nodes --output json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Node {
    pub name: String,
    pub role: String,
    pub provider: &'static str,
    pub running: bool,
    pub state: String,
    pub containerd_version: Option<String>,
    pub config_version: Option<i64>,
    pub snapshotter: Option<String>,
    /// containerd's CRI registry `config_path`: where `hosts.toml` files are read on every pull.
    pub config_path: Option<String>,
    pub crictl: bool,
    /// containerd's root directory (from its config dump).
    pub root: Option<String>,
    /// The platform the node runs images for, as `os/arch[/variant]`.
    pub platform: Option<String>,
    /// Problems found while probing, each a sentence with its fix.
    pub warnings: Vec<String>,
    /// What the node's containerd holds, or why it could not be read.
    #[serde(skip)]
    pub holds: Option<std::result::Result<Holdings, String>>,
    /// crictl's answers about the names asked for (`inspecti:<name>` sections).
    #[serde(skip)]
    pub cri_answers: Vec<Section>,
    /// For each registry host asked about: its `hosts.toml` and kindload's CA file under the
    /// hosts directory `config_path` names, as the node holds them (None: absent).
    #[serde(skip)]
    pub registry_hosts: Vec<RegistryHost>,
}

/// One registry host's files on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryHost {
    pub host: String,
    /// The hosts directory the files were read from.
    pub dir: String,
    pub hosts_toml: Option<String>,
    pub ca: Option<String>,
}

/// Surveys every running node concurrently (one `exec` each); stopped nodes are returned
/// with no facts. `names` are the image names crictl is asked about.
pub fn probe_all(
    runner: &dyn Runner,
    provider: Provider,
    containers: Vec<NodeContainer>,
    depth: Depth,
    names: &[String],
) -> Vec<Node> {
    probe_all_asking(runner, provider, containers, depth, &Asked { names, ..Default::default() })
}

/// As `probe_all`, asking what `asked` says (registry hosts, the records to list).
pub fn probe_all_asking(
    runner: &dyn Runner,
    provider: Provider,
    containers: Vec<NodeContainer>,
    depth: Depth,
    asked: &Asked,
) -> Vec<Node> {
    std::thread::scope(|scope| {
        let handles: Vec<_> =
            containers.into_iter().map(|c| scope.spawn(move || probe(runner, provider, c, depth, asked))).collect();
        handles.into_iter().map(|h| h.join().expect("node probe panicked")).collect()
    })
}

pub fn probe(runner: &dyn Runner, provider: Provider, container: NodeContainer, depth: Depth, asked: &Asked) -> Node {
    let mut node = Node::unsurveyed(provider, container);
    if node.running {
        node.survey(runner, provider, depth, asked);
    }
    node
}

/// As `probe_all_asking` at light depth, through a session per node that stays open after
/// the survey: `script` defines the survey functions, runs `survey light "$@"`, then prints
/// [`READY`] and waits on its stdin for more work. Each running node comes with its session.
pub fn probe_all_held(
    provider: Provider,
    containers: Vec<NodeContainer>,
    script: &str,
    asked: &Asked,
) -> Vec<(Node, Option<Session>)> {
    std::thread::scope(|scope| {
        let handles: Vec<_> =
            containers.into_iter().map(|c| scope.spawn(move || hold(provider, c, script, asked))).collect();
        handles.into_iter().map(|h| h.join().expect("node probe panicked")).collect()
    })
}

fn hold(provider: Provider, container: NodeContainer, script: &str, asked: &Asked) -> (Node, Option<Session>) {
    let mut node = Node::unsurveyed(provider, container);
    if !node.running {
        return (node, None);
    }
    let args = asked.args();
    let mut argv: Vec<&str> = vec!["sh", "-c", script, "kindload-session"];
    argv.extend(args.iter().map(String::as_str));
    let started = Session::start(&provider.exec_stdin(&node.name, &argv));
    match started.and_then(|mut session| session.read_until(READY).map(|text| (session, text))) {
        Ok((session, text)) => {
            node.learn(&parse_survey(&text), Depth::Light);
            (node, Some(session))
        }
        Err(e) => {
            node.could_not_survey(&format!("{e}{}", e.hint()));
            (node, None)
        }
    }
}

impl Node {
    /// A node as its container shows it, before any survey; a stopped one says how to start it.
    fn unsurveyed(provider: Provider, container: NodeContainer) -> Node {
        let mut node = Node {
            name: container.name,
            role: container.role,
            provider: provider.name(),
            running: container.running,
            state: container.state,
            containerd_version: None,
            config_version: None,
            snapshotter: None,
            config_path: None,
            crictl: false,
            root: None,
            platform: None,
            warnings: Vec::new(),
            holds: None,
            cri_answers: Vec::new(),
            registry_hosts: Vec::new(),
        };
        if !node.running {
            node.warnings.push(format!(
                "node {} is {}: start it with `{} start {}`",
                node.name,
                node.state,
                provider.name(),
                node.name
            ));
        }
        node
    }

    pub(crate) fn could_not_survey(&mut self, e: &dyn std::fmt::Display) {
        self.holds = Some(Err(format!("cannot survey {}: {e}", self.name)));
        self.warnings.push(format!("could not look inside node {}: {e}", self.name));
    }
}

impl Node {
    fn survey(&mut self, runner: &dyn Runner, provider: Provider, depth: Depth, asked: &Asked) {
        let argv = survey_argv(depth, asked);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        match runner.run(&provider.exec(&self.name, &argv)) {
            Ok(out) => self.learn(&parse_survey(&out.stdout), depth),
            Err(e) => self.could_not_survey(&format!("{e}{}", e.hint())),
        }
    }

    /// Takes in what the survey printed.
    pub(crate) fn learn(&mut self, sections: &[Section], depth: Depth) {
        if depth == Depth::Holdings {
            // The records, the platform and CRI's answers are the light survey's.
            self.learn_containerd(sections);
            let records = self.holds.as_ref().and_then(|h| h.as_ref().ok()).map(|h| h.images.clone());
            let holds = Holdings::with_records(sections, self.import_snapshotter(), records.unwrap_or_default());
            self.holds = Some(holds.map_err(|e| format!("cannot list what {} holds: {e}", self.name)));
            return;
        }
        self.platform = section(sections, "arch").filter(|s| s.ok()).and_then(|s| platform::from_uname(&s.body));
        if depth == Depth::Light {
            self.crictl = section(sections, "crictl").is_some_and(Section::ok);
            self.cri_answers = sections.iter().filter(|s| s.name.starts_with("inspecti:")).cloned().collect();
        }
        if depth == Depth::Full {
            self.crictl = section(sections, "crictl").is_some_and(Section::ok);
            self.learn_containerd(sections);
        }
        self.learn_registry_hosts(sections);
        self.holds = Some(
            Holdings::from_survey(sections, self.import_snapshotter())
                .map_err(|e| format!("cannot list what {} holds: {e}", self.name)),
        );
    }

    fn learn_containerd(&mut self, sections: &[Section]) {
        match section(sections, "version") {
            Some(s) if s.ok() => self.containerd_version = parse_containerd_version(&s.body),
            Some(s) => self.warnings.push(format!("could not ask containerd its version: {}", s.body.trim())),
            None => self.warnings.push("could not ask containerd its version".into()),
        }
        self.learn_config(sections);
    }

    fn learn_registry_hosts(&mut self, sections: &[Section]) {
        let Some(dir) = section(sections, "hosts-dir").map(|s| s.body.trim().to_string()) else { return };
        let file = |name: String| section(sections, &name).filter(|s| s.ok()).map(|s| s.body.clone());
        self.registry_hosts = sections
            .iter()
            .filter_map(|s| s.name.strip_prefix("hosts:"))
            .map(|host| RegistryHost {
                host: host.to_string(),
                dir: dir.clone(),
                hosts_toml: file(format!("hosts:{host}")),
                ca: file(format!("ca:{host}")),
            })
            .collect();
    }

    fn learn_config(&mut self, sections: &[Section]) {
        match section(sections, "config") {
            Some(s) if s.ok() => match parse_config_dump(&s.body) {
                Ok(facts) => {
                    self.config_version = facts.version;
                    self.snapshotter = facts.snapshotter;
                    self.config_path = facts.config_path;
                    self.root = facts.root;
                    self.warnings.extend(facts.warnings);
                }
                Err(e) => self.warnings.push(format!("could not read `containerd config dump`: {e}")),
            },
            Some(s) => self.warnings.push(format!("`containerd config dump` failed: {}", s.body.trim())),
            None => self.warnings.push("`containerd config dump` printed nothing".into()),
        }
    }

    /// A running containerd 2.1 node with `config_path` set and nothing surveyed, as unit
    /// tests start from.
    #[cfg(test)]
    pub fn for_tests(name: &str) -> Node {
        Node {
            name: name.into(),
            role: "worker".into(),
            provider: "docker",
            running: true,
            state: "running".into(),
            containerd_version: Some("2.1.9".into()),
            config_version: Some(3),
            snapshotter: Some("overlayfs".into()),
            config_path: Some("/etc/containerd/certs.d".into()),
            crictl: false,
            root: None,
            platform: None,
            warnings: vec![],
            holds: None,
            cri_answers: vec![],
            registry_hosts: vec![],
        }
    }

    /// What the node holds, or why it cannot take part.
    pub fn holdings(&self) -> std::result::Result<&Holdings, String> {
        match &self.holds {
            Some(Ok(h)) => Ok(h),
            Some(Err(e)) => Err(e.clone()),
            None => Err(format!("node {} was not surveyed", self.name)),
        }
    }

    /// The snapshotter to import with: the node's CRI snapshotter, or containerd's default.
    pub fn import_snapshotter(&self) -> &str {
        self.snapshotter.as_deref().unwrap_or("overlayfs")
    }

    /// containerd's major version, from its version output or else its config version
    /// (3 and later are 2.x configs).
    pub fn containerd_major(&self) -> Option<u64> {
        self.containerd_version
            .as_deref()
            .and_then(lenient_version)
            .map(|v| v.major)
            .or_else(|| self.config_version.filter(|&v| v >= 3).map(|_| 2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::fake::FakeRunner;
    use crate::resolve::engine::EngineKind;

    fn container(running: bool) -> NodeContainer {
        NodeContainer {
            name: "kind-control-plane".into(),
            role: "control-plane".into(),
            running,
            state: if running { "running" } else { "exited" }.into(),
        }
    }

    #[test]
    fn probes_containerd_2_without_crictl() {
        let survey = format!(
            "@@kindload version 0\n{}@@kindload config 0\n{}@@kindload images 0\n{}@@kindload content 0\n\n@@kindload snapshots:overlayfs 0\nKEY PARENT KIND\n",
            include_str!("../../tests/fixtures/containerd-2.1/containerd--version.txt"),
            include_str!("../../tests/fixtures/containerd-2.1/containerd-config-dump.toml"),
            include_str!("../../tests/fixtures/containerd-2.1/ctr-images-ls.txt"),
        );
        let runner = FakeRunner::new().on(&["docker", "exec", "kind-control-plane", "sh", "-c"], 0, &survey, "");
        let node = probe(&runner, Provider::new(EngineKind::Docker), container(true), Depth::Full, &Asked::default());
        assert_eq!(node.containerd_version.as_deref(), Some("2.1.9+unknown"));
        assert_eq!(node.config_version, Some(3));
        assert_eq!(node.snapshotter.as_deref(), Some("overlayfs"));
        assert_eq!(node.containerd_major(), Some(2));
        assert!(!node.crictl);
        assert!(node.warnings.is_empty(), "{:?}", node.warnings);
        assert_eq!(node.holdings().unwrap().images.len(), 2);
    }

    #[test]
    fn stopped_node_is_not_probed_and_says_how_to_start_it() {
        let runner = FakeRunner::new();
        let node = probe(&runner, Provider::new(EngineKind::Podman), container(false), Depth::Full, &Asked::default());
        assert!(runner.seen.lock().unwrap().is_empty());
        assert_eq!(
            node.warnings,
            ["node kind-control-plane is exited: start it with `podman start kind-control-plane`"]
        );
    }
}
