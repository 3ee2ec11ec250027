//! The optional `kindload.yaml`: project defaults below flags and environment.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::resolve::engine::{EngineKind, PullPolicy};

pub const FILE_NAME: &str = "kindload.yaml";

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// kind cluster name, used when neither --cluster nor KIND_CLUSTER_NAME is set.
    pub cluster: Option<String>,
    /// Engine holding the images (docker or podman), below --engine and KINDLOAD_ENGINE.
    pub engine: Option<EngineKind>,
    /// Engine hosting the nodes, below --provider and KIND_EXPERIMENTAL_PROVIDER.
    pub provider: Option<EngineKind>,
    #[serde(default)]
    pub verify: VerifyPolicy,
    /// Registries reached without TLS verification when pushing or pulling bases (loopback registries always are).
    #[serde(default)]
    pub insecure_registries: Vec<String>,
    /// When `kindload build` pulls base images: never, missing (default) or always; below --pull.
    pub pull: Option<PullPolicy>,
    /// Seconds a step may make no progress before it is stopped and the load fails (default 60);
    /// below --stall-timeout and KINDLOAD_STALL_TIMEOUT.
    pub stall_timeout_seconds: Option<u64>,
    /// Versions of each repository a node keeps of those kindload loaded: a count (default 2,
    /// the current one and the one a rollback needs) or `all` (nothing removed); below --keep.
    pub keep: Option<KeepSetting>,
    /// How images reach the cluster's registry: `own` or `engine`; below --push and
    /// KINDLOAD_PUSH (default: the cheaper one for the engine).
    pub push: Option<crate::plan::push::PushWith>,
}

/// `keep:` in kindload.yaml.
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[serde(untagged)]
pub enum KeepSetting {
    Count(std::num::NonZeroU32),
    All(KeepAll),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeepAll {
    All,
}

impl<'de> Deserialize<'de> for KeepSetting {
    /// By hand, so that a wrong value is named with what is accepted.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(u64),
            Word(String),
        }
        let wrong = || serde::de::Error::custom("keep: give a number of versions, 1 or more, or `all`");
        match Raw::deserialize(deserializer).map_err(|_| wrong())? {
            Raw::Count(n) => {
                u32::try_from(n).ok().and_then(std::num::NonZeroU32::new).map(KeepSetting::Count).ok_or_else(wrong)
            }
            Raw::Word(word) if word == "all" => Ok(KeepSetting::All(KeepAll::All)),
            Raw::Word(_) => Err(wrong()),
        }
    }
}

impl From<KeepSetting> for crate::plan::retention::Keep {
    fn from(setting: KeepSetting) -> Self {
        match setting {
            KeepSetting::Count(n) => crate::plan::retention::Keep::Newest(n.get()),
            KeepSetting::All(_) => crate::plan::retention::Keep::All,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyPolicy {
    /// `fail` (default): a node that cannot see the image fails the run (exit 1).
    /// `warn`: report it and exit 0.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// Seconds to wait for CRI to index a fresh import before judging.
    #[serde(default = "default_settle")]
    pub settle_seconds: u64,
}

impl Default for VerifyPolicy {
    fn default() -> Self {
        VerifyPolicy { on_failure: OnFailure::Fail, settle_seconds: default_settle() }
    }
}

fn default_settle() -> u64 {
    10
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    #[default]
    Fail,
    Warn,
}

/// `--config`, else `KINDLOAD_CONFIG`, else the nearest `kindload.yaml` from `start` upwards.
pub fn find(explicit: Option<&Path>, start: &Path) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return Some(path.to_path_buf());
    }
    start.ancestors().map(|dir| dir.join(FILE_NAME)).find(|p| p.is_file())
}

pub fn load(path: Option<&Path>) -> Result<Config> {
    let Some(path) = path else { return Ok(Config::default()) };
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::input(
            format!("cannot read {}: {e}", path.display()),
            "fix the path given by --config or KINDLOAD_CONFIG",
        )
    })?;
    parse(&text).map_err(|e| {
        Error::input(
            format!("{} is not a valid kindload config: {e}", path.display()),
            "see schemas/kindload-config.schema.json for the fields: cluster, engine, provider, verify, insecure_registries, pull, stall_timeout_seconds, keep, push",
        )
    })
}

pub fn parse(text: &str) -> std::result::Result<Config, String> {
    if text.trim().is_empty() {
        return Ok(Config::default());
    }
    serde_yaml::from_str(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_config_parses() {
        let cfg = parse(
            "cluster: dev\nengine: podman\nprovider: docker\nverify:\n  on_failure: warn\n  settle_seconds: 3\ninsecure_registries: [registry.lan:5000]\npull: never\n",
        )
        .unwrap();
        assert_eq!(cfg.cluster.as_deref(), Some("dev"));
        assert_eq!(cfg.engine, Some(EngineKind::Podman));
        assert_eq!(cfg.verify, VerifyPolicy { on_failure: OnFailure::Warn, settle_seconds: 3 });
        assert_eq!(cfg.insecure_registries, ["registry.lan:5000"]);
        assert_eq!(cfg.pull, Some(PullPolicy::Never));
        assert!(parse("pull: sometimes\n").is_err());
    }

    #[test]
    fn keep_is_a_count_or_all() {
        use crate::plan::retention::Keep;
        assert_eq!(parse("keep: 3\n").unwrap().keep.map(Keep::from), Some(Keep::Newest(3)));
        assert_eq!(parse("keep: all\n").unwrap().keep.map(Keep::from), Some(Keep::All));
        assert_eq!(parse("cluster: dev\n").unwrap().keep, None);
        assert!(parse("keep: 0\n").unwrap_err().contains("1 or more"), "0 would remove the version just loaded");
        assert!(parse("keep: some\n").unwrap_err().contains("`all`"));
    }

    #[test]
    fn push_is_own_or_engine() {
        use crate::plan::push::PushWith;
        assert_eq!(parse("push: own\n").unwrap().push, Some(PushWith::Own));
        assert_eq!(parse("push: engine\n").unwrap().push, Some(PushWith::Engine));
        assert_eq!(parse("cluster: dev\n").unwrap().push, None);
        assert!(parse("push: fast\n").unwrap_err().contains("own"));
    }

    #[test]
    fn empty_and_unknown() {
        assert_eq!(parse("").unwrap(), Config::default());
        assert!(parse("clustr: dev\n").unwrap_err().contains("clustr"));
        assert!(parse("engine: nerdctl\n").is_err());
    }

    #[test]
    fn nearest_file_upwards_wins() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        std::fs::create_dir_all(&nested).unwrap();
        std::fs::write(dir.path().join(FILE_NAME), "cluster: top\n").unwrap();
        assert_eq!(find(None, &nested), Some(dir.path().join(FILE_NAME)));
        std::fs::write(dir.path().join("a").join(FILE_NAME), "cluster: mid\n").unwrap();
        assert_eq!(find(None, &nested), Some(dir.path().join("a").join(FILE_NAME)));
    }
}
