//! Tilt's side of the contract: what `custom_build` gives its command (read from Tilt's
//! custom builder). Tilt runs a string command with `sh -c` (a list as argv), in the
//! Tiltfile's directory unless `dir=` says otherwise, with its own environment plus:
//!
//! - `EXPECTED_REF`: the ref to build, `<image>:tilt-build-<unix seconds>` in Tilt's short
//!   form (`app:tilt-build-1700000000`). With `skips_local_docker=True` Tilt deploys exactly
//!   this ref; without it Tilt inspects it in Docker and deploys its own `<image>:tilt-<hash>`
//!   retag, made after the command exits;
//! - `EXPECTED_IMAGE`, `EXPECTED_TAG`: its path and tag;
//! - `EXPECTED_REGISTRY` (and the older `REGISTRY_HOST`): when Tilt builds for a registry
//!   (`default_registry`, or one the cluster announces); the image must end up there.

use std::path::{Path, PathBuf};

use super::skaffold::Lookup;

/// What Tilt gives `custom_build`'s command, as `kindload build` uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TiltBuildEnv {
    /// `$EXPECTED_REF`, the one name to build, load and verify.
    pub expected_ref: String,
    /// `$EXPECTED_REGISTRY`, else `$REGISTRY_HOST`.
    pub registry: Option<String>,
    /// The build context: `$BUILD_CONTEXT` when set, else the directory Tilt runs the
    /// command in (Tilt has no context of its own).
    pub build_context: PathBuf,
}

/// `Some` when `EXPECTED_REF` is set, i.e. Tilt runs this command.
pub fn custom_build_env(lookup: Lookup, cwd: &Path) -> Option<TiltBuildEnv> {
    let expected_ref = set(lookup, "EXPECTED_REF")?;
    Some(TiltBuildEnv {
        expected_ref,
        registry: set(lookup, "EXPECTED_REGISTRY").or_else(|| set(lookup, "REGISTRY_HOST")),
        build_context: set(lookup, "BUILD_CONTEXT").map_or_else(|| cwd.to_path_buf(), |c| cwd.join(c)),
    })
}

fn set(lookup: Lookup, name: &str) -> Option<String> {
    lookup(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup_in(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| vars.get(name).cloned()
    }

    #[test]
    fn tilt_runs_the_command_in_the_context() {
        let lookup = lookup_in(&[
            ("EXPECTED_REF", "app:tilt-build-1700000000"),
            ("EXPECTED_IMAGE", "app"),
            ("EXPECTED_TAG", "tilt-build-1700000000"),
        ]);
        let got = custom_build_env(&lookup, Path::new("/src/app")).unwrap();
        assert_eq!(
            got,
            TiltBuildEnv {
                expected_ref: "app:tilt-build-1700000000".into(),
                registry: None,
                build_context: PathBuf::from("/src/app"),
            }
        );
    }

    #[test]
    fn build_context_overrides_the_directory_relative_to_it() {
        let lookup = lookup_in(&[("EXPECTED_REF", "app:t"), ("BUILD_CONTEXT", "web")]);
        assert_eq!(custom_build_env(&lookup, Path::new("/src")).unwrap().build_context, PathBuf::from("/src/web"));
        let lookup = lookup_in(&[("EXPECTED_REF", "app:t"), ("BUILD_CONTEXT", "/elsewhere")]);
        assert_eq!(custom_build_env(&lookup, Path::new("/src")).unwrap().build_context, PathBuf::from("/elsewhere"));
    }

    #[test]
    fn the_registry_comes_from_expected_registry_else_registry_host() {
        let lookup = lookup_in(&[
            ("EXPECTED_REF", "localhost:5001/app:tilt-build-1"),
            ("EXPECTED_REGISTRY", "localhost:5001"),
            ("REGISTRY_HOST", "localhost:5002"),
        ]);
        assert_eq!(custom_build_env(&lookup, Path::new("/")).unwrap().registry.as_deref(), Some("localhost:5001"));
        let lookup = lookup_in(&[("EXPECTED_REF", "localhost:5002/app:t"), ("REGISTRY_HOST", "localhost:5002")]);
        assert_eq!(custom_build_env(&lookup, Path::new("/")).unwrap().registry.as_deref(), Some("localhost:5002"));
    }

    #[test]
    fn without_expected_ref_it_is_not_tilt() {
        let lookup =
            lookup_in(&[("EXPECTED_REF", " "), ("EXPECTED_IMAGE", "app"), ("REGISTRY_HOST", "localhost:5001")]);
        assert_eq!(custom_build_env(&lookup, Path::new("/")), None);
    }
}
