//! Skaffold's side of the contract: the environment it gives a custom builder and its
//! lifecycle hooks, and the image reference it deploys after a local build.
//!
//! The environment is read through an injected lookup so every rule here is unit-testable
//! without touching the process environment.

use std::collections::HashSet;
use std::path::PathBuf;

use crate::error::{Error, Result};

/// Reads one environment variable; `None` when it is unset.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// What Skaffold gives `build.artifacts[].custom.buildCommand`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomBuildEnv {
    /// `$IMAGE`: the ref to build, tagger output with the default repo applied.
    pub image: String,
    /// `$PUSH_IMAGE`: push to a registry (true) or leave the image local (false).
    pub push_image: bool,
    /// `$BUILD_CONTEXT`: absolute path of the artifact's context.
    pub build_context: PathBuf,
    /// `$PLATFORMS`: empty when unset or empty; `all` is kept as `["all"]`.
    pub platforms: Vec<String>,
    /// `$SKIP_TEST`.
    pub skip_test: bool,
    /// `$IMAGE_REPO`: `$IMAGE` without tag or digest.
    pub image_repo: Option<String>,
    /// `$IMAGE_TAG`.
    pub image_tag: Option<String>,
}

/// Variables Skaffold always sets for a custom builder, in the order they are reported.
const CUSTOM_BUILD_REQUIRED: [&str; 3] = ["IMAGE", "PUSH_IMAGE", "BUILD_CONTEXT"];

/// Custom builder (`build.artifacts[].custom.buildCommand`): `IMAGE`, `PUSH_IMAGE` and
/// `BUILD_CONTEXT` are required; a missing one is a usage error that names every missing
/// variable and shows how to run `kindload build` by hand.
pub fn custom_build_env(lookup: Lookup) -> Result<CustomBuildEnv> {
    let missing: Vec<&str> =
        CUSTOM_BUILD_REQUIRED.into_iter().filter(|name| non_empty(lookup, name).is_none()).collect();
    if !missing.is_empty() {
        return Err(missing_custom_build_vars(&missing));
    }
    let required = |name: &str| non_empty(lookup, name).unwrap_or_default();
    Ok(CustomBuildEnv {
        image: required("IMAGE"),
        push_image: parse_push_image("PUSH_IMAGE", &required("PUSH_IMAGE"))?,
        build_context: PathBuf::from(required("BUILD_CONTEXT")),
        platforms: non_empty(lookup, "PLATFORMS").map(|p| split_list(&p)).unwrap_or_default(),
        skip_test: non_empty(lookup, "SKIP_TEST").is_some_and(|v| is_truthy(&v)),
        image_repo: non_empty(lookup, "IMAGE_REPO"),
        image_tag: non_empty(lookup, "IMAGE_TAG"),
    })
}

fn missing_custom_build_vars(missing: &[&str]) -> Error {
    let plural = if missing.len() == 1 { "" } else { "s" };
    Error::usage(
        format!(
            "missing environment variable{plural} {}: `kindload build` is meant to run as \
             Skaffold's custom builder (build.artifacts[].custom.buildCommand), which sets them",
            missing.join(", ")
        ),
        "run it from Skaffold with `custom: {buildCommand: kindload build}`, or by hand with the \
         variables set, e.g. `IMAGE=app:dev PUSH_IMAGE=false BUILD_CONTEXT=. kindload build`",
    )
}

/// What Skaffold gives a build hook (`build.artifacts[].hooks.before/after`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildHookEnv {
    /// `$SKAFFOLD_IMAGE`: the tag the build produces (before any retag by image id).
    pub image: String,
    /// `$SKAFFOLD_PUSH_IMAGE`.
    pub push_image: bool,
    /// `$SKAFFOLD_IMAGE_REPO`: the image's path without its last component (not the same
    /// as a custom builder's `$IMAGE_REPO`); `None` for a single-component name.
    pub image_repo: Option<String>,
    /// `$SKAFFOLD_IMAGE_TAG`.
    pub image_tag: Option<String>,
    /// `$SKAFFOLD_BUILD_CONTEXT`: absolute path of the artifact's context.
    pub build_context: Option<PathBuf>,
}

/// Build hook environment; `Ok(None)` when `SKAFFOLD_IMAGE` is unset, i.e. not in a build
/// hook. A `SKAFFOLD_PUSH_IMAGE` other than `true`/`false` is a usage error.
pub fn build_hook_env(lookup: Lookup) -> Result<Option<BuildHookEnv>> {
    let Some(image) = non_empty(lookup, "SKAFFOLD_IMAGE") else {
        return Ok(None);
    };
    let push_image = match non_empty(lookup, "SKAFFOLD_PUSH_IMAGE") {
        Some(value) => parse_push_image("SKAFFOLD_PUSH_IMAGE", &value)?,
        None => false,
    };
    Ok(Some(BuildHookEnv {
        image,
        push_image,
        image_repo: non_empty(lookup, "SKAFFOLD_IMAGE_REPO"),
        image_tag: non_empty(lookup, "SKAFFOLD_IMAGE_TAG"),
        build_context: non_empty(lookup, "SKAFFOLD_BUILD_CONTEXT").map(PathBuf::from),
    }))
}

/// What Skaffold gives deploy and render hooks (`deploy.*.hooks`, `manifests.hooks`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeployHookEnv {
    /// `$SKAFFOLD_KUBE_CONTEXT`: names the cluster when no `--cluster` is given.
    pub kube_context: Option<String>,
    /// `$SKAFFOLD_NAMESPACES`, comma-separated.
    pub namespaces: Vec<String>,
    /// `$SKAFFOLD_RUN_ID`: deploy hooks only.
    pub run_id: Option<String>,
    /// `$SKAFFOLD_WORK_DIR`: the directory Skaffold runs in.
    pub work_dir: Option<PathBuf>,
}

/// Deploy or render hook environment; every variable is optional.
pub fn deploy_hook_env(lookup: Lookup) -> DeployHookEnv {
    DeployHookEnv {
        kube_context: non_empty(lookup, "SKAFFOLD_KUBE_CONTEXT"),
        namespaces: non_empty(lookup, "SKAFFOLD_NAMESPACES").map(|n| split_list(&n)).unwrap_or_default(),
        run_id: non_empty(lookup, "SKAFFOLD_RUN_ID"),
        work_dir: non_empty(lookup, "SKAFFOLD_WORK_DIR").map(PathBuf::from),
    }
}

/// The ref Skaffold deploys after a local build without push: it tags the built image as
/// `<repo>:<image id hex>` and rewrites the manifests to that, so the kubelet asks for this
/// name, not `$IMAGE`.
///
/// `image` is the built ref (`$IMAGE`; may carry a tag and/or digest and a registry host
/// with a port); `image_id` is `sha256:<hex>` or bare hex.
pub fn deployed_ref(image: &str, image_id: &str) -> String {
    let id = image_id.trim();
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    format!("{}:{hex}", repository_of(image))
}

/// The name part of a ref: without `@digest`, without `:tag`, and lowercased as Skaffold's
/// reference parser does. A colon before the last `/` belongs to a `host:port`.
fn repository_of(image: &str) -> String {
    let image = image.trim();
    let without_digest = image.split_once('@').map_or(image, |(name, _)| name);
    let path_start = without_digest.rfind('/').map_or(0, |slash| slash + 1);
    let without_tag = match without_digest[path_start..].find(':') {
        Some(colon) => &without_digest[..path_start + colon],
        None => without_digest,
    };
    without_tag.to_ascii_lowercase()
}

/// Values of the variables Skaffold sets for `requires` aliases, as `(alias, value)` pairs
/// for `--build-arg ALIAS=value`. Aliases are arbitrary names, so they cannot be told apart
/// from the rest of the environment: the caller names them. Unset aliases are skipped,
/// repeated ones reported once.
pub fn required_artifact_args(lookup: Lookup, aliases: &[String]) -> Vec<(String, String)> {
    let mut seen = HashSet::new();
    aliases
        .iter()
        .filter(|alias| seen.insert(alias.as_str()))
        .filter_map(|alias| non_empty(lookup, alias).map(|value| (alias.clone(), value)))
        .collect()
}

/// A variable's value, treating set-but-empty as unset: Skaffold writes `NAME=` for
/// fields it has no value for (e.g. `SKAFFOLD_IMAGE_REPO` of a one-component name).
fn non_empty(lookup: Lookup, name: &str) -> Option<String> {
    lookup(name).filter(|value| !value.trim().is_empty())
}

/// Skaffold formats the push flag with Go's `%t`, so anything but `true`/`false` means the
/// variable was set by something else and guessing would risk a wrong push or load.
fn parse_push_image(name: &str, value: &str) -> Result<bool> {
    match value.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(Error::usage(
            format!("{name} must be `true` or `false`, got {other:?}"),
            format!("set {name}=false to load into the kind cluster, or {name}=true to push"),
        )),
    }
}

fn is_truthy(value: &str) -> bool {
    let value = value.trim();
    value.eq_ignore_ascii_case("true") || value == "1"
}

fn split_list(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|item| !item.is_empty()).map(String::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn lookup_in(vars: &HashMap<String, String>) -> impl Fn(&str) -> Option<String> + '_ {
        move |name| vars.get(name).cloned()
    }

    const HEX: &str = "3f1c9a0e5b7d2c4f6a8e0b1d3c5f7a9e2b4d6f8a0c2e4b6d8f0a1c3e5b7d9f1a";

    #[test]
    fn custom_build_reads_the_whole_contract() {
        let vars = env(&[
            ("IMAGE", "localhost:5000/team/app:v1"),
            ("PUSH_IMAGE", "false"),
            ("BUILD_CONTEXT", "/src/app"),
            ("PLATFORMS", "linux/amd64, linux/arm64"),
            ("SKIP_TEST", "true"),
            ("IMAGE_REPO", "localhost:5000/team/app"),
            ("IMAGE_TAG", "v1"),
        ]);
        let got = custom_build_env(&lookup_in(&vars)).unwrap();
        assert_eq!(
            got,
            CustomBuildEnv {
                image: "localhost:5000/team/app:v1".into(),
                push_image: false,
                build_context: PathBuf::from("/src/app"),
                platforms: vec!["linux/amd64".into(), "linux/arm64".into()],
                skip_test: true,
                image_repo: Some("localhost:5000/team/app".into()),
                image_tag: Some("v1".into()),
            }
        );
    }

    #[test]
    fn custom_build_optional_variables_default_to_empty() {
        let vars = env(&[
            ("IMAGE", "app:dev"),
            ("PUSH_IMAGE", "true"),
            ("BUILD_CONTEXT", "."),
            ("PLATFORMS", ""),
            ("IMAGE_TAG", ""),
        ]);
        let got = custom_build_env(&lookup_in(&vars)).unwrap();
        assert!(got.push_image);
        assert!(got.platforms.is_empty());
        assert!(!got.skip_test);
        assert_eq!(got.image_repo, None);
        assert_eq!(got.image_tag, None);
    }

    #[test]
    fn custom_build_keeps_platforms_all_as_is() {
        let vars = env(&[("IMAGE", "a"), ("PUSH_IMAGE", "false"), ("BUILD_CONTEXT", "."), ("PLATFORMS", "all")]);
        assert_eq!(custom_build_env(&lookup_in(&vars)).unwrap().platforms, vec!["all".to_string()]);
    }

    #[test]
    fn custom_build_names_every_missing_variable_and_shows_a_manual_run() {
        let vars = env(&[("PUSH_IMAGE", "false"), ("BUILD_CONTEXT", "")]);
        let err = custom_build_env(&lookup_in(&vars)).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let message = err.to_string();
        assert!(message.contains("IMAGE, BUILD_CONTEXT"), "{message}");
        assert!(!message.contains("PUSH_IMAGE"), "{message}");
        assert!(message.contains("custom builder"), "{message}");
        let fix = err.fix().unwrap();
        assert!(fix.contains("IMAGE=app:dev PUSH_IMAGE=false BUILD_CONTEXT=. kindload build"), "{fix}");
    }

    #[test]
    fn custom_build_with_nothing_set_lists_all_three() {
        let vars = env(&[]);
        let message = custom_build_env(&lookup_in(&vars)).unwrap_err().to_string();
        assert!(message.contains("variables IMAGE, PUSH_IMAGE, BUILD_CONTEXT"), "{message}");
    }

    #[test]
    fn push_image_must_be_exactly_true_or_false() {
        for bad in ["yes", "1", "TRUE", "False"] {
            let vars = env(&[("IMAGE", "a"), ("PUSH_IMAGE", bad), ("BUILD_CONTEXT", ".")]);
            let err = custom_build_env(&lookup_in(&vars)).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn build_hook_is_none_outside_a_hook() {
        let vars = env(&[("SKAFFOLD_PUSH_IMAGE", "false"), ("SKAFFOLD_IMAGE", "")]);
        assert_eq!(build_hook_env(&lookup_in(&vars)).unwrap(), None);
    }

    #[test]
    fn build_hook_reads_skaffold_variables() {
        let vars = env(&[
            ("SKAFFOLD_IMAGE", "localhost:5000/team/app:v1"),
            ("SKAFFOLD_PUSH_IMAGE", "true"),
            ("SKAFFOLD_IMAGE_REPO", "localhost:5000/team"),
            ("SKAFFOLD_IMAGE_TAG", "v1"),
            ("SKAFFOLD_BUILD_CONTEXT", "/src/app"),
        ]);
        let got = build_hook_env(&lookup_in(&vars)).unwrap().unwrap();
        assert_eq!(
            got,
            BuildHookEnv {
                image: "localhost:5000/team/app:v1".into(),
                push_image: true,
                image_repo: Some("localhost:5000/team".into()),
                image_tag: Some("v1".into()),
                build_context: Some(PathBuf::from("/src/app")),
            }
        );
    }

    #[test]
    fn build_hook_for_a_one_component_name_has_no_repo() {
        let vars = env(&[("SKAFFOLD_IMAGE", "app:v1"), ("SKAFFOLD_PUSH_IMAGE", "false"), ("SKAFFOLD_IMAGE_REPO", "")]);
        let got = build_hook_env(&lookup_in(&vars)).unwrap().unwrap();
        assert!(!got.push_image);
        assert_eq!(got.image_repo, None);
        assert_eq!(got.build_context, None);
    }

    #[test]
    fn build_hook_rejects_a_garbled_push_flag() {
        let vars = env(&[("SKAFFOLD_IMAGE", "app:v1"), ("SKAFFOLD_PUSH_IMAGE", "maybe")]);
        let err = build_hook_env(&lookup_in(&vars)).unwrap_err();
        assert!(err.to_string().contains("SKAFFOLD_PUSH_IMAGE"), "{err}");
    }

    #[test]
    fn deploy_hook_splits_namespaces() {
        let vars = env(&[
            ("SKAFFOLD_KUBE_CONTEXT", "kind-dev"),
            ("SKAFFOLD_NAMESPACES", "default,apps, ,tools"),
            ("SKAFFOLD_RUN_ID", "1f2e"),
            ("SKAFFOLD_WORK_DIR", "/src"),
        ]);
        assert_eq!(
            deploy_hook_env(&lookup_in(&vars)),
            DeployHookEnv {
                kube_context: Some("kind-dev".into()),
                namespaces: vec!["default".into(), "apps".into(), "tools".into()],
                run_id: Some("1f2e".into()),
                work_dir: Some(PathBuf::from("/src")),
            }
        );
    }

    #[test]
    fn deploy_hook_outside_skaffold_is_empty() {
        let vars = env(&[]);
        assert_eq!(deploy_hook_env(&lookup_in(&vars)), DeployHookEnv::default());
    }

    #[test]
    fn deployed_ref_replaces_the_tag_with_the_image_id() {
        assert_eq!(deployed_ref("app:v1", &format!("sha256:{HEX}")), format!("app:{HEX}"));
        assert_eq!(deployed_ref("app", HEX), format!("app:{HEX}"));
        assert_eq!(deployed_ref("team/app:v1", HEX), format!("team/app:{HEX}"));
    }

    #[test]
    fn deployed_ref_keeps_a_registry_port() {
        assert_eq!(
            deployed_ref("localhost:5000/app:v1", &format!("sha256:{HEX}")),
            format!("localhost:5000/app:{HEX}")
        );
        assert_eq!(deployed_ref("localhost:5000/app", HEX), format!("localhost:5000/app:{HEX}"));
    }

    #[test]
    fn deployed_ref_drops_tag_and_digest() {
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(deployed_ref(&format!("app:v1@{digest}"), HEX), format!("app:{HEX}"));
        assert_eq!(
            deployed_ref(&format!("registry.io:443/team/app@{digest}"), HEX),
            format!("registry.io:443/team/app:{HEX}")
        );
    }

    #[test]
    fn deployed_ref_lowercases_the_name_like_skaffold() {
        assert_eq!(deployed_ref("Team/App:V1", HEX), format!("team/app:{HEX}"));
    }

    #[test]
    fn required_artifact_args_returns_set_aliases_in_order() {
        let vars =
            env(&[("BASE", "localhost:5000/base:abc"), ("TOOLS", "tools:def"), ("EMPTY", ""), ("UNRELATED", "x")]);
        let aliases: Vec<String> = ["TOOLS", "MISSING", "BASE", "EMPTY", "TOOLS"].map(String::from).to_vec();
        assert_eq!(
            required_artifact_args(&lookup_in(&vars), &aliases),
            vec![
                ("TOOLS".to_string(), "tools:def".to_string()),
                ("BASE".to_string(), "localhost:5000/base:abc".to_string()),
            ]
        );
    }
}
