//! Which kind cluster a kube context means, read from kubeconfig files the way kubectl
//! merges them. Only contexts matter here; users, clusters and credentials are ignored.

use serde::Deserialize;

const KIND_PREFIX: &str = "kind-";
const KIND_SUFFIX: &str = "@kind";

/// Parsed kubeconfig: current-context and each context's name → cluster field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kubeconfig {
    pub current_context: Option<String>,
    /// (context name, the context's `cluster` field), in file order.
    pub contexts: Vec<(String, String)>,
}

#[derive(Deserialize, Default)]
struct RawKubeconfig {
    #[serde(rename = "current-context")]
    current_context: Option<String>,
    contexts: Option<Vec<RawNamedContext>>,
}

#[derive(Deserialize)]
struct RawNamedContext {
    name: String,
    context: Option<RawContext>,
}

#[derive(Deserialize)]
struct RawContext {
    cluster: Option<String>,
}

/// Parses one kubeconfig file. An empty file is an empty config, as kubectl treats it.
pub fn parse_kubeconfig(yaml: &str) -> Result<Kubeconfig, String> {
    let raw: Option<RawKubeconfig> =
        serde_yaml::from_str(yaml).map_err(|e| format!("kubeconfig is not valid YAML: {e}"))?;
    let raw = raw.unwrap_or_default();
    let contexts = raw
        .contexts
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.name, c.context.and_then(|c| c.cluster).unwrap_or_default()))
        .collect();
    // kubectl reads `current-context: ""` as unset.
    let current_context = raw.current_context.filter(|c| !c.is_empty());
    Ok(Kubeconfig { current_context, contexts })
}

/// Merges several files like kubectl does for `KUBECONFIG=a:b`: the first file that sets
/// current-context wins, and the first definition of a context name wins.
pub fn merge(configs: Vec<Kubeconfig>) -> Kubeconfig {
    let mut merged = Kubeconfig::default();
    for config in configs {
        if merged.current_context.is_none() {
            merged.current_context = config.current_context;
        }
        for (name, cluster) in config.contexts {
            if !merged.contexts.iter().any(|(known, _)| *known == name) {
                merged.contexts.push((name, cluster));
            }
        }
    }
    merged
}

/// kind's cluster name for a context: the context's `cluster` with a `kind-` prefix or
/// `@kind` suffix stripped (for an unknown context, or one without a cluster, the context
/// name itself); `None` when neither marker is present, i.e. not a kind cluster.
pub fn kind_cluster_for_context(cfg: &Kubeconfig, context: &str) -> Option<String> {
    let cluster = cfg
        .contexts
        .iter()
        .find(|(name, _)| name == context)
        .map(|(_, cluster)| cluster.as_str())
        .filter(|cluster| !cluster.is_empty())
        .unwrap_or(context);
    strip_kind_marker(cluster)
}

fn strip_kind_marker(name: &str) -> Option<String> {
    let stripped = name.strip_prefix(KIND_PREFIX).or_else(|| name.strip_suffix(KIND_SUFFIX))?;
    (!stripped.is_empty()).then(|| stripped.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape `kind create cluster --name dev` writes.
    const KIND_DEV: &str = r#"
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: LS0tLS1CRUdJTi==
    server: https://127.0.0.1:40123
  name: kind-dev
contexts:
- context:
    cluster: kind-dev
    user: kind-dev
  name: kind-dev
current-context: kind-dev
kind: Config
preferences: {}
users:
- name: kind-dev
  user:
    client-certificate-data: LS0tLS1CRUdJTi==
    client-key-data: LS0tLS1CRUdJTi==
"#;

    const MIXED: &str = r#"
apiVersion: v1
kind: Config
current-context: gke_proj_europe-west1_prod
contexts:
- name: gke_proj_europe-west1_prod
  context:
    cluster: gke_proj_europe-west1_prod
    user: gke_proj_europe-west1_prod
    namespace: web
- name: admin@old
  context:
    cluster: old@kind
    user: admin
- name: renamed
  context:
    cluster: kind-staging
- name: kind-nocluster
  context:
    user: someone
"#;

    fn parse(yaml: &str) -> Kubeconfig {
        parse_kubeconfig(yaml).unwrap()
    }

    #[test]
    fn kind_written_kubeconfig() {
        let cfg = parse(KIND_DEV);
        assert_eq!(cfg.current_context.as_deref(), Some("kind-dev"));
        assert_eq!(cfg.contexts, [("kind-dev".to_string(), "kind-dev".to_string())]);
        assert_eq!(kind_cluster_for_context(&cfg, "kind-dev").as_deref(), Some("dev"));
    }

    #[test]
    fn cluster_field_decides_not_the_context_name() {
        let cfg = parse(MIXED);
        assert_eq!(cfg.contexts.len(), 4);
        assert_eq!(kind_cluster_for_context(&cfg, "admin@old").as_deref(), Some("old"));
        assert_eq!(kind_cluster_for_context(&cfg, "renamed").as_deref(), Some("staging"));
        assert_eq!(kind_cluster_for_context(&cfg, "gke_proj_europe-west1_prod"), None);
    }

    #[test]
    fn unknown_context_or_missing_cluster_falls_back_to_the_context_name() {
        let cfg = parse(MIXED);
        assert_eq!(kind_cluster_for_context(&cfg, "kind-elsewhere").as_deref(), Some("elsewhere"));
        assert_eq!(kind_cluster_for_context(&cfg, "x@kind").as_deref(), Some("x"));
        assert_eq!(kind_cluster_for_context(&cfg, "minikube"), None);
        assert_eq!(kind_cluster_for_context(&cfg, "kind-nocluster").as_deref(), Some("nocluster"));
        assert_eq!(kind_cluster_for_context(&cfg, "kind-"), None, "an empty name is no cluster");
    }

    #[test]
    fn empty_files() {
        for yaml in ["", "\n", "# nothing yet\n", "---\n", "apiVersion: v1\nkind: Config\ncurrent-context: \"\"\n"] {
            assert_eq!(parse(yaml), Kubeconfig::default(), "{yaml:?}");
        }
    }

    #[test]
    fn invalid_yaml_is_an_error() {
        assert!(parse_kubeconfig("contexts: [\n").is_err());
        assert!(parse_kubeconfig("contexts: 3\n").is_err());
    }

    #[test]
    fn merge_takes_the_first_current_context_and_first_definition() {
        let first = parse("contexts:\n- name: shared\n  context:\n    cluster: kind-first\n");
        let second = parse(MIXED);
        let third =
            parse("current-context: kind-dev\ncontexts:\n- name: shared\n  context:\n    cluster: kind-third\n");
        let merged = merge(vec![first, second, third]);
        assert_eq!(merged.current_context.as_deref(), Some("gke_proj_europe-west1_prod"));
        assert_eq!(kind_cluster_for_context(&merged, "shared").as_deref(), Some("first"));
        let names: Vec<&str> = merged.contexts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["shared", "gke_proj_europe-west1_prod", "admin@old", "renamed", "kind-nocluster"]);
        assert_eq!(merge(vec![]), Kubeconfig::default());
    }
}
