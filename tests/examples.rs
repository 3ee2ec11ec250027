//! The Skaffold examples under `skaffold-examples/` must be valid `skaffold/v4beta14`
//! configs that hang together: the structs below mirror the parts of Skaffold's schema the
//! examples use, with the schema's field names, and reject any other field, so a misspelt
//! or invented field fails here instead of in front of a user.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

const API_VERSION: &str = "skaffold/v4beta14";
const EXPECTED_EXAMPLES: [&str; 5] = ["build-hook", "custom-build", "podman", "registry", "render-deploy-hooks"];

// --- skaffold/v4beta14, the parts the examples use ---

mod v4beta14 {
    // Fields are mirrored so that valid configs are accepted; the checks read only some.
    #![allow(dead_code)]

    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct SkaffoldConfig {
        pub api_version: String,
        pub kind: String,
        pub metadata: Option<Metadata>,
        pub build: Option<BuildConfig>,
        pub manifests: Option<RenderConfig>,
        pub deploy: Option<DeployConfig>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Metadata {
        pub name: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct BuildConfig {
        #[serde(default)]
        pub artifacts: Vec<Artifact>,
        pub local: Option<LocalBuild>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct LocalBuild {
        pub push: Option<bool>,
        pub try_import_missing: Option<bool>,
        #[serde(rename = "useDockerCLI")]
        pub use_docker_cli: Option<bool>,
        pub use_buildkit: Option<bool>,
        pub concurrency: Option<u32>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Artifact {
        pub image: String,
        pub context: Option<String>,
        pub hooks: Option<BuildHooks>,
        pub docker: Option<DockerArtifact>,
        pub custom: Option<CustomArtifact>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct DockerArtifact {
        pub dockerfile: Option<String>,
        pub target: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct CustomArtifact {
        pub build_command: Option<String>,
        pub dependencies: Option<CustomDependencies>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct CustomDependencies {
        pub dockerfile: Option<DockerfileDependency>,
        pub command: Option<String>,
        #[serde(default)]
        pub paths: Vec<String>,
        #[serde(default)]
        pub ignore: Vec<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct DockerfileDependency {
        pub path: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct BuildHooks {
        #[serde(default)]
        pub before: Vec<HostHook>,
        #[serde(default)]
        pub after: Vec<HostHook>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct HostHook {
        pub command: Vec<String>,
        #[serde(default)]
        pub os: Vec<String>,
        pub dir: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct RenderConfig {
        #[serde(default)]
        pub raw_yaml: Vec<String>,
        pub hooks: Option<RenderHooks>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct RenderHooks {
        #[serde(default)]
        pub before: Vec<RenderHookItem>,
        #[serde(default)]
        pub after: Vec<PostRenderHookItem>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct RenderHookItem {
        pub host: Option<HostHook>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct PostRenderHookItem {
        pub host: Option<PostRenderHostHook>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct PostRenderHostHook {
        pub command: Vec<String>,
        #[serde(default)]
        pub os: Vec<String>,
        pub dir: Option<String>,
        pub with_change: Option<bool>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct DeployConfig {
        pub kubectl: Option<KubectlDeploy>,
        pub status_check: Option<bool>,
        pub status_check_deadline_seconds: Option<u32>,
        pub kube_context: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct KubectlDeploy {
        pub default_namespace: Option<String>,
        pub hooks: Option<DeployHooks>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct DeployHooks {
        #[serde(default)]
        pub before: Vec<DeployHookItem>,
        #[serde(default)]
        pub after: Vec<DeployHookItem>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct DeployHookItem {
        pub host: Option<HostHook>,
    }
}

use v4beta14::*;

// --- walking the examples ---

struct Example {
    dir: PathBuf,
    config: SkaffoldConfig,
}

impl Example {
    fn name(&self) -> String {
        self.dir.file_name().unwrap().to_string_lossy().into_owned()
    }

    fn artifacts(&self) -> &[Artifact] {
        self.config.build.as_ref().map_or(&[], |b| b.artifacts.as_slice())
    }
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("skaffold-examples")
}

fn parse_config(text: &str) -> Result<SkaffoldConfig, serde_yaml::Error> {
    serde_yaml::from_str(text)
}

fn load_examples() -> Vec<Example> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(examples_dir())
        .expect("skaffold-examples/ exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.join("skaffold.yaml").is_file())
        .collect();
    dirs.sort();
    dirs.into_iter()
        .map(|dir| {
            let file = dir.join("skaffold.yaml");
            let text = fs::read_to_string(&file).unwrap();
            let config =
                parse_config(&text).unwrap_or_else(|e| panic!("{}: not a valid v4beta14 subset: {e}", file.display()));
            Example { dir, config }
        })
        .collect()
}

/// Every file under `dir`, as a `/`-separated path relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let relative = path.strip_prefix(root).unwrap();
                let parts: Vec<_> = relative.iter().map(|p| p.to_string_lossy()).collect();
                out.push(parts.join("/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Glob match on `/`-separated paths: `*` and `?` within a segment, `**` across segments.
fn glob_matches(pattern: &str, path: &str) -> bool {
    fn segments(pattern: &[&str], path: &[&str]) -> bool {
        match (pattern.first(), path.first()) {
            (None, None) => true,
            (Some(&"**"), _) => segments(&pattern[1..], path) || (!path.is_empty() && segments(pattern, &path[1..])),
            (Some(p), Some(s)) => segment(p.as_bytes(), s.as_bytes()) && segments(&pattern[1..], &path[1..]),
            _ => false,
        }
    }
    fn segment(pattern: &[u8], name: &[u8]) -> bool {
        match (pattern.first(), name.first()) {
            (None, None) => true,
            (Some(b'*'), _) => segment(&pattern[1..], name) || (!name.is_empty() && segment(pattern, &name[1..])),
            (Some(b'?'), Some(_)) => segment(&pattern[1..], &name[1..]),
            (Some(p), Some(n)) => p == n && segment(&pattern[1..], &name[1..]),
            _ => false,
        }
    }
    let pattern = pattern.trim_start_matches("./");
    let pattern: Vec<&str> = pattern.split('/').collect();
    let path: Vec<&str> = path.split('/').collect();
    segments(&pattern, &path)
}

fn matching_files(dir: &Path, pattern: &str) -> Vec<String> {
    files_under(dir).into_iter().filter(|file| glob_matches(pattern, file)).collect()
}

fn artifact_context(example: &Example, artifact: &Artifact) -> PathBuf {
    example.dir.join(artifact.context.as_deref().unwrap_or("."))
}

/// The build file each builder reads: docker's `dockerfile` (default `Dockerfile`); for a
/// custom build, the declared Dockerfile dependency, else what `kindload build` looks for.
fn build_files(artifact: &Artifact) -> Vec<String> {
    if let Some(docker) = &artifact.docker {
        return vec![docker.dockerfile.clone().unwrap_or_else(|| "Dockerfile".into())];
    }
    let declared = artifact
        .custom
        .as_ref()
        .and_then(|c| c.dependencies.as_ref())
        .and_then(|d| d.dockerfile.as_ref())
        .and_then(|d| d.path.clone());
    match declared {
        Some(path) => vec![path],
        None => vec!["Dockerfile".into(), "Containerfile".into()],
    }
}

/// Every command line in the example that runs kindload, as argv (custom build commands are
/// shell strings and are split on whitespace).
fn kindload_invocations(config: &SkaffoldConfig) -> Vec<Vec<String>> {
    let mut commands: Vec<Vec<String>> = Vec::new();
    for artifact in config.build.iter().flat_map(|b| &b.artifacts) {
        if let Some(command) = artifact.custom.as_ref().and_then(|c| c.build_command.as_ref()) {
            commands.push(command.split_whitespace().map(String::from).collect());
        }
        for hook in artifact.hooks.iter().flat_map(|h| h.before.iter().chain(&h.after)) {
            commands.push(hook.command.clone());
        }
    }
    if let Some(hooks) = config.manifests.as_ref().and_then(|m| m.hooks.as_ref()) {
        commands.extend(hooks.before.iter().filter_map(|h| h.host.as_ref()).map(|h| h.command.clone()));
        commands.extend(hooks.after.iter().filter_map(|h| h.host.as_ref()).map(|h| h.command.clone()));
    }
    if let Some(hooks) = config.deploy.as_ref().and_then(|d| d.kubectl.as_ref()).and_then(|k| k.hooks.as_ref()) {
        for item in hooks.before.iter().chain(&hooks.after) {
            commands.extend(item.host.as_ref().map(|h| h.command.clone()));
        }
    }
    commands.retain(|argv| argv.iter().any(|word| word == "kindload"));
    commands
}

// --- the checks ---

#[test]
fn every_expected_example_is_present() {
    let names: BTreeSet<String> = load_examples().iter().map(Example::name).collect();
    for expected in EXPECTED_EXAMPLES {
        assert!(names.contains(expected), "skaffold-examples/{expected}/skaffold.yaml is missing");
    }
}

#[test]
fn configs_are_latest_api_version() {
    for example in load_examples() {
        assert_eq!(example.config.api_version, API_VERSION, "{}", example.name());
        assert_eq!(example.config.kind, "Config", "{}", example.name());
        let name = example.config.metadata.as_ref().and_then(|m| m.name.as_deref());
        assert!(name.is_some_and(|n| !n.is_empty()), "{}: metadata.name", example.name());
    }
}

#[test]
fn the_mirror_rejects_fields_skaffold_does_not_have() {
    let valid = "apiVersion: skaffold/v4beta14\nkind: Config\nbuild:\n  artifacts:\n    - image: app\n      custom:\n        buildCommand: kindload build\n";
    parse_config(valid).expect("the minimal config parses");
    for (typo, field) in
        [("buildCommand", "buildComand"), ("custom:", "custon:"), ("image: app", "image: app\n      env: [A=b]")]
    {
        let bad = valid.replacen(typo, field, 1);
        assert!(parse_config(&bad).is_err(), "accepted {field:?}");
    }
    let bad_hook = "apiVersion: skaffold/v4beta14\nkind: Config\nmanifests:\n  hooks:\n    after:\n      - host: {command: [kindload], stdin: true}\n";
    assert!(parse_config(bad_hook).is_err(), "accepted an invented hook field");
}

#[test]
fn every_artifact_context_has_its_build_file() {
    for example in load_examples() {
        assert!(!example.artifacts().is_empty(), "{}: no artifacts", example.name());
        for artifact in example.artifacts() {
            let context = artifact_context(&example, artifact);
            assert!(context.is_dir(), "{}: context {} is missing", example.name(), context.display());
            let candidates = build_files(artifact);
            assert!(
                candidates.iter().any(|file| context.join(file).is_file()),
                "{}: {} has none of {candidates:?}",
                example.name(),
                context.display()
            );
        }
    }
}

#[test]
fn custom_dependency_paths_exist() {
    for example in load_examples() {
        for artifact in example.artifacts() {
            let Some(deps) = artifact.custom.as_ref().and_then(|c| c.dependencies.as_ref()) else {
                continue;
            };
            let context = artifact_context(&example, artifact);
            for pattern in &deps.paths {
                assert!(
                    !matching_files(&context, pattern).is_empty(),
                    "{}: dependencies.paths {pattern:?} matches nothing",
                    example.name()
                );
            }
        }
    }
}

#[test]
fn manifests_reference_every_artifact_image() {
    for example in load_examples() {
        let patterns = example.config.manifests.as_ref().map(|m| m.raw_yaml.clone()).unwrap_or_default();
        assert!(!patterns.is_empty(), "{}: no manifests.rawYaml", example.name());
        let mut images = BTreeSet::new();
        for pattern in &patterns {
            let files = matching_files(&example.dir, pattern);
            assert!(!files.is_empty(), "{}: rawYaml {pattern:?} matches nothing", example.name());
            for file in files {
                let yaml = fs::read_to_string(example.dir.join(&file)).unwrap();
                let found = kindload::request::manifests::images_in_manifests(&yaml)
                    .unwrap_or_else(|e| panic!("{}/{file}: {e}", example.name()));
                images.extend(found);
            }
        }
        for artifact in example.artifacts() {
            assert!(
                images.contains(&artifact.image),
                "{}: no manifest uses {} (found {images:?})",
                example.name(),
                artifact.image
            );
        }
    }
}

#[test]
fn every_example_runs_kindload_and_keeps_images_local() {
    for example in load_examples() {
        let invocations = kindload_invocations(&example.config);
        assert!(!invocations.is_empty(), "{}: never runs kindload", example.name());
        for argv in &invocations {
            let at = argv.iter().position(|w| w == "kindload").unwrap();
            let subcommand = argv.get(at + 1).map(String::as_str);
            assert!(
                matches!(subcommand, Some("build" | "load")),
                "{}: unexpected kindload command {argv:?}",
                example.name()
            );
        }
        let push = example.config.build.as_ref().and_then(|b| b.local.as_ref()).and_then(|l| l.push);
        // The registry example pushes, to kindload's registry; every other one keeps images local.
        let expected = example.name() == "registry";
        assert_eq!(push, Some(expected), "{}: build.local.push must be {expected}", example.name());
    }
}

#[test]
fn readmes_explain_how_to_avoid_double_loading() {
    for example in load_examples() {
        let readme = example.dir.join("README.md");
        let text = fs::read_to_string(&readme).unwrap_or_else(|e| panic!("{}: {e}", readme.display()));
        let needles: &[&str] = if example.name() == "registry" {
            &["kindload registry up", "--default-repo=localhost:5001", "push: true"]
        } else {
            &["kind-disable-load", "push: false", "skaffold config set --kube-context kind-"]
        };
        for needle in needles {
            assert!(text.contains(needle), "{}: README does not mention {needle:?}", example.name());
        }
    }
}

#[test]
fn glob_matching_follows_skaffold_patterns() {
    assert!(glob_matches("k8s/*.yaml", "k8s/deployment.yaml"));
    assert!(glob_matches("./k8s/*.yaml", "k8s/deployment.yaml"));
    assert!(!glob_matches("k8s/*.yaml", "k8s/sub/deployment.yaml"));
    assert!(glob_matches("k8s/**/*.yaml", "k8s/sub/deployment.yaml"));
    assert!(glob_matches("k8s/**/*.yaml", "k8s/deployment.yaml"));
    assert!(glob_matches("hello.tx?", "hello.txt"));
    assert!(!glob_matches("Dockerfile", "Containerfile"));
}
