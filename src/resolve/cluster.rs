//! Which kind cluster, and which provider hosts its nodes.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::exec::Runner;
use crate::resolve::engine::EngineKind;
use crate::resolve::kubeconfig::{kind_cluster_for_context, merge, parse_kubeconfig, Kubeconfig};
use crate::resolve::provider::{NodeContainer, Provider};
use crate::resolve::reach::{self, Cause, NoAnswer};

/// Everything the cluster name may come from, gathered by the request stage.
#[derive(Debug, Clone, Default)]
pub struct ClusterInputs {
    /// `--cluster`
    pub flag: Option<String>,
    /// `KIND_CLUSTER_NAME`
    pub env: Option<String>,
    /// `cluster:` in kindload.yaml
    pub config: Option<String>,
    /// `--kube-context`, else `SKAFFOLD_KUBE_CONTEXT`
    pub kube_context: Option<String>,
    /// `KUBECONFIG`
    pub kubeconfig: Option<String>,
    pub home: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameSource {
    Flag,
    Env,
    Config,
    KubeContext(String),
    /// A kube context is set but is not a kind cluster's; `kind` is assumed.
    DefaultBesideContext(String),
    Default,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterName {
    pub name: String,
    pub source: NameSource,
}

impl ClusterName {
    pub fn describe_source(&self) -> String {
        match &self.source {
            NameSource::Flag => "--cluster".into(),
            NameSource::Env => "KIND_CLUSTER_NAME".into(),
            NameSource::Config => "kindload.yaml".into(),
            NameSource::KubeContext(c) => format!("kube context {c:?}"),
            NameSource::DefaultBesideContext(c) => {
                format!("default (kube context {c:?} is not a kind cluster)")
            }
            NameSource::Default => "default".into(),
        }
    }

    /// True when the name came from a kind context or was asked for explicitly.
    pub fn is_kind_context(&self) -> bool {
        !matches!(self.source, NameSource::DefaultBesideContext(_))
    }
}

/// `--cluster`, else `KIND_CLUSTER_NAME`, else kindload.yaml, else the kube context's kind cluster, else `kind`.
pub fn cluster_name(inputs: &ClusterInputs) -> Result<ClusterName> {
    let nonempty = |s: &Option<String>| s.as_ref().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    if let Some(name) = nonempty(&inputs.flag) {
        return Ok(ClusterName { name, source: NameSource::Flag });
    }
    if let Some(name) = nonempty(&inputs.env) {
        return Ok(ClusterName { name, source: NameSource::Env });
    }
    if let Some(name) = nonempty(&inputs.config) {
        return Ok(ClusterName { name, source: NameSource::Config });
    }
    let config = load_kubeconfig(inputs)?;
    let context = nonempty(&inputs.kube_context).or_else(|| config.current_context.clone());
    Ok(match context {
        Some(context) => match kind_cluster_for_context(&config, &context) {
            Some(name) => ClusterName { name, source: NameSource::KubeContext(context) },
            None => ClusterName { name: "kind".into(), source: NameSource::DefaultBesideContext(context) },
        },
        None => ClusterName { name: "kind".into(), source: NameSource::Default },
    })
}

fn kubeconfig_paths(inputs: &ClusterInputs) -> Vec<PathBuf> {
    match inputs.kubeconfig.as_deref().filter(|s| !s.is_empty()) {
        Some(list) => std::env::split_paths(list).filter(|p| !p.as_os_str().is_empty()).collect(),
        None => inputs.home.iter().map(|h| h.join(".kube").join("config")).collect(),
    }
}

/// Reads and merges kubeconfig files as kubectl does; missing files are skipped.
fn load_kubeconfig(inputs: &ClusterInputs) -> Result<Kubeconfig> {
    let mut configs = Vec::new();
    for path in kubeconfig_paths(inputs) {
        if let Some(cfg) = read_kubeconfig(&path)? {
            configs.push(cfg);
        }
    }
    Ok(merge(configs))
}

fn read_kubeconfig(path: &Path) -> Result<Option<Kubeconfig>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::input(
                format!("cannot read kubeconfig {}: {e}", path.display()),
                format!("make it readable (`chmod u+r {}`), or name the cluster with --cluster", path.display()),
            ))
        }
    };
    parse_kubeconfig(&text).map(Some).map_err(|e| {
        Error::input(
            format!("kubeconfig {} is not valid: {e}", path.display()),
            "repair the file, or name the cluster with --cluster",
        )
    })
}

/// The provider hosting the cluster and its node containers. An explicit provider is the
/// only one asked; otherwise Docker, then Podman, whichever has the cluster's containers.
/// A provider that does not answer is named with the address tried and the fix.
pub fn find_cluster(
    runner: &dyn Runner,
    name: &ClusterName,
    provider: Option<EngineKind>,
) -> Result<(Provider, Vec<NodeContainer>)> {
    let candidates: Vec<EngineKind> = match provider {
        Some(kind) => vec![kind],
        None => vec![EngineKind::Docker, EngineKind::Podman],
    };
    let env = |k: &str| std::env::var(k).ok();
    let mut searched = Vec::new();
    let mut silent = Vec::new();
    let mut last_error = None;
    for kind in candidates {
        if !runner.installed(kind.program()) {
            searched.push(format!("{kind} (not installed)"));
            continue;
        }
        let provider = Provider::new(kind);
        match provider.nodes(runner, &name.name) {
            Ok(nodes) if !nodes.is_empty() => return Ok((provider, nodes)),
            Ok(_) => searched.push(kind.to_string()),
            Err(Error::Exec(e)) => {
                let why = NoAnswer::from_exec(kind, &e, &env);
                if why.cause == Cause::Other {
                    searched.push(format!("{kind} (not answering)"));
                    last_error = Some(Error::Exec(e));
                } else if why.cause == Cause::NotInstalled {
                    searched.push(format!("{kind} (not installed)"));
                } else {
                    silent.push(why);
                }
            }
            Err(e) => {
                searched.push(format!("{kind} (not answering)"));
                last_error = Some(e);
            }
        }
    }
    if searched.iter().all(|s| s.ends_with("(not installed)")) && !silent.is_empty() {
        let chosen_by = provider.map(|_| "--provider, KIND_EXPERIMENTAL_PROVIDER or kindload.yaml".to_string());
        return Err(reach::no_engine("provider", chosen_by.as_deref(), &silent));
    }
    let mut searched = searched.join(", ");
    if let Some(e) = last_error {
        searched.push_str(&format!("; {e}"));
    }
    searched.push_str(&format!(" (cluster name from {})", name.describe_source()));
    Err(reach::cluster_not_found(&name.name, &searched, &silent))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kubeconfig_file(dir: &Path, file: &str, current: &str) -> String {
        let text = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: {current}\ncontexts:\n- name: kind-dev\n  context:\n    cluster: kind-dev\n    user: kind-dev\n- name: gke\n  context:\n    cluster: gke_project_zone_prod\n    user: me\nclusters: []\nusers: []\n"
        );
        let path = dir.join(file);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }

    #[test]
    fn flag_beats_env_beats_context() {
        let mut inputs = ClusterInputs {
            flag: Some("a".into()),
            env: Some("b".into()),
            kube_context: Some("kind-c".into()),
            ..Default::default()
        };
        assert_eq!(cluster_name(&inputs).unwrap().name, "a");
        inputs.flag = None;
        assert_eq!(cluster_name(&inputs).unwrap().source, NameSource::Env);
        inputs.env = Some(String::new());
        let from_context = cluster_name(&inputs).unwrap();
        assert_eq!(from_context.name, "c", "empty KIND_CLUSTER_NAME is unset");
        assert_eq!(from_context.source, NameSource::KubeContext("kind-c".into()));
    }

    #[test]
    fn kube_context_names_the_kind_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let file = kubeconfig_file(dir.path(), "config", "kind-dev");
        let inputs = ClusterInputs { kubeconfig: Some(file), ..Default::default() };
        let name = cluster_name(&inputs).unwrap();
        assert_eq!(name.name, "dev");
        assert_eq!(name.source, NameSource::KubeContext("kind-dev".into()));
    }

    #[test]
    fn explicit_kube_context_beats_current_and_non_kind_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = kubeconfig_file(dir.path(), "config", "kind-dev");
        let inputs = ClusterInputs { kubeconfig: Some(file), kube_context: Some("gke".into()), ..Default::default() };
        let name = cluster_name(&inputs).unwrap();
        assert_eq!(name.name, "kind");
        assert!(!name.is_kind_context());
    }

    #[test]
    fn no_kubeconfig_means_kind() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = ClusterInputs { home: Some(dir.path().to_path_buf()), ..Default::default() };
        assert_eq!(cluster_name(&inputs).unwrap(), ClusterName { name: "kind".into(), source: NameSource::Default });
    }

    #[test]
    fn broken_kubeconfig_is_an_input_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, "contexts: [oops").unwrap();
        let inputs = ClusterInputs { kubeconfig: Some(path.to_string_lossy().into()), ..Default::default() };
        let err = cluster_name(&inputs).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("is not valid"), "{err}");
    }

    const DEAD_DOCKER: &str =
        "Cannot connect to the Docker daemon at unix:///kindload-test/no/docker.sock. Is the docker daemon running?";

    fn named(name: &str) -> ClusterName {
        ClusterName { name: name.into(), source: NameSource::Flag }
    }

    #[test]
    fn a_chosen_provider_that_does_not_answer_is_named_with_its_socket() {
        use crate::exec::fake::FakeRunner;
        let runner = FakeRunner::new().on(&["docker", "ps"], 1, "", DEAD_DOCKER);
        let err = find_cluster(&runner, &named("dev"), Some(EngineKind::Docker)).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let text = err.to_string();
        assert!(text.starts_with("the provider chosen by --provider"), "{text}");
        assert!(text.contains("docker does not answer at unix:///kindload-test/no/docker.sock"), "{text}");
        assert!(err.fix().unwrap().contains("`sudo systemctl start docker`"), "{:?}", err.fix());
    }

    #[test]
    fn a_cluster_missing_where_searched_names_the_provider_that_did_not_answer() {
        use crate::exec::fake::FakeRunner;
        let runner = FakeRunner::new().on(&["docker", "ps"], 1, "", DEAD_DOCKER).on(&["podman", "ps"], 0, "", "");
        let err = find_cluster(&runner, &named("dev"), None).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let text = err.to_string();
        assert!(text.contains("on podman (cluster name from --cluster)"), "{text}");
        assert!(text.contains("not searched, because it did not answer: docker does not answer at unix:///kindload-test/no/docker.sock"), "{text}");
        let fix = err.fix().unwrap();
        assert!(fix.starts_with("start the Docker daemon") && fix.contains("kind create cluster --name dev"), "{fix}");
    }
}
