//! Which push carries an image to the cluster's registry: kindload's own push of what the
//! engine exports, or the engine's push. One rule, measured per engine (bench case 10): the
//! push that costs least over the loop of a first load and the reloads that follow. Only
//! Podman's depends on what the registry holds, so only Podman's asks it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::resolve::engine::{Engine, EngineKind};

/// The two pushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PushWith {
    /// kindload streams the engine's `save` into the registry: every layer as it is
    /// exported, uncompressed, each blob the registry holds skipped.
    Own,
    /// `docker push` / `podman push`: the engine sends what it knows the registry lacks.
    Engine,
}

impl PushWith {
    pub fn as_str(self) -> &'static str {
        match self {
            PushWith::Own => "own",
            PushWith::Engine => "engine",
        }
    }
}

/// A push the user asked for, and where they asked (`KINDLOAD_PUSH`, `--push`, kindload.yaml).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushSetting {
    pub with: PushWith,
    pub from: String,
}

/// The push picked for one image, and why, as the report gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushChoice {
    pub with: PushWith,
    pub why: String,
}

/// True when the environment says this is a CI job (GitHub Actions, GitLab CI, CircleCI,
/// Buildkite, Travis and most others set `CI=true`): a load there is not followed by reloads.
pub fn in_ci(value: Option<&str>) -> bool {
    value
        .map(str::trim)
        .is_some_and(|v| !v.is_empty() && !matches!(v.to_ascii_lowercase().as_str(), "false" | "0" | "no"))
}

/// Picks the push for an image from `engine`; `earlier` tells, when asked, whether the
/// registry already holds a version of the image's repository.
pub fn choose(setting: Option<&PushSetting>, engine: &Engine, ci: bool, earlier: impl FnOnce() -> bool) -> PushChoice {
    if let Some(setting) = setting {
        return PushChoice { with: setting.with, why: format!("{} asks for it", setting.from) };
    }
    let choice = |with, why: &str| PushChoice { with, why: why.to_string() };
    // An engine behind a connection gets its local rule: where the registry runs beside it
    // (Podman machine, Docker Desktop), its push stays inside that VM, where kindload's would
    // carry the whole export out and back in. One that cannot reach the registry is sideloaded.
    match (engine.kind, engine.containerd_store) {
        (EngineKind::Docker, true) => choice(
            PushWith::Engine,
            "Docker's containerd store pushes the compressed layers it stores as they are, where kindload's push must wait for `docker save`",
        ),
        (EngineKind::Docker, false) if ci => choice(
            PushWith::Own,
            "CI is set, so no reload follows: kindload's push skips Docker's compression of every layer",
        ),
        (EngineKind::Docker, false) => choice(
            PushWith::Engine,
            "Docker's classic store trusts only layers it pushed itself: after kindload's push its next push would send every layer again (CI=true picks kindload's push)",
        ),
        (EngineKind::Podman, _) if earlier() => choice(
            PushWith::Engine,
            "the registry holds an earlier version: Podman's push sends only the changed layers, and reuses those kindload's push sent",
        ),
        (EngineKind::Podman, _) => choice(
            PushWith::Own,
            "the registry holds no version yet: kindload's push sends the layers as Podman stores them, uncompressed, and Podman's later pushes reuse them",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::engine::Locality;

    fn engine(kind: EngineKind, containerd_store: bool) -> Engine {
        let mut e = Engine::unprobed(kind, "test");
        e.containerd_store = containerd_store;
        e.locality = Locality::Local;
        e
    }

    #[test]
    fn each_engine_gets_the_push_that_costs_least() {
        let never = || -> bool { panic!("only Podman's push depends on what the registry holds") };
        let docker = engine(EngineKind::Docker, false);
        assert_eq!(choose(None, &docker, false, never).with, PushWith::Engine);
        let ci = choose(None, &docker, true, never);
        assert_eq!(ci.with, PushWith::Own);
        assert!(ci.why.starts_with("CI is set"), "{}", ci.why);
        assert_eq!(choose(None, &engine(EngineKind::Docker, true), true, never).with, PushWith::Engine);
        let podman = engine(EngineKind::Podman, false);
        let first = choose(None, &podman, false, || false);
        assert_eq!(first.with, PushWith::Own);
        assert!(first.why.starts_with("the registry holds no version yet"), "{}", first.why);
        assert_eq!(choose(None, &podman, true, || true).with, PushWith::Engine);
    }

    #[test]
    fn a_setting_decides_first_and_a_remote_engine_keeps_its_rule() {
        let mut podman = engine(EngineKind::Podman, false);
        podman.locality = Locality::Remote { via: "podman's service at unix:///p.sock".into() };
        assert_eq!(choose(None, &podman, false, || true).with, PushWith::Engine);
        let mut docker = engine(EngineKind::Docker, false);
        docker.locality = Locality::Remote { via: "docker context colima".into() };
        assert_eq!(choose(None, &docker, true, || true).with, PushWith::Own);
        let setting = PushSetting { with: PushWith::Engine, from: "KINDLOAD_PUSH=engine".into() };
        let chosen = choose(Some(&setting), &podman, true, || false);
        assert_eq!(chosen, PushChoice { with: PushWith::Engine, why: "KINDLOAD_PUSH=engine asks for it".into() });
    }

    #[test]
    fn ci_is_any_value_but_false() {
        for yes in ["true", "1", "yes", "True"] {
            assert!(in_ci(Some(yes)), "{yes}");
        }
        for no in [None, Some(""), Some("false"), Some("0"), Some("FALSE")] {
            assert!(!in_ci(no), "{no:?}");
        }
    }
}
