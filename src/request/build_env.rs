//! Which dev-loop tool runs `kindload build`, and what it asks for: Skaffold's custom
//! builder (`IMAGE`, `PUSH_IMAGE`, `BUILD_CONTEXT`) or Tilt's `custom_build` (`EXPECTED_REF`).
//!
//! A set `IMAGE` means Skaffold, whatever else is set: Skaffold always sets it and appends
//! the OS environment, where an `EXPECTED_REF` can linger. Otherwise `EXPECTED_REF` means Tilt.

use std::path::{Path, PathBuf};

use super::skaffold::{self, Lookup};
use super::tilt;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Skaffold,
    Tilt,
}

/// What to build, and whether it goes to a registry or into the kind cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildEnv {
    pub caller: Caller,
    /// Skaffold's `$IMAGE` or Tilt's `$EXPECTED_REF`.
    pub image: String,
    /// Skaffold's `$PUSH_IMAGE`; for Tilt, whether it named a registry (`$EXPECTED_REGISTRY`).
    pub push_image: bool,
    pub build_context: PathBuf,
    /// Skaffold's `$PLATFORMS` (Tilt passes none).
    pub platforms: Vec<String>,
    /// Something to tell the user about the choice (a variable that was ignored).
    pub note: Option<String>,
}

/// `cwd` is where the command runs: Tilt's build context.
pub fn build_env(lookup: Lookup, cwd: &Path) -> Result<BuildEnv> {
    let tilt = tilt::custom_build_env(lookup, cwd);
    let image_set = lookup("IMAGE").is_some_and(|v| !v.trim().is_empty());
    if image_set {
        let spec =
            skaffold::custom_build_env(lookup).map_err(|e| if tilt.is_some() { with_tilt_hint(e) } else { e })?;
        return Ok(BuildEnv {
            caller: Caller::Skaffold,
            image: spec.image,
            push_image: spec.push_image,
            build_context: spec.build_context,
            platforms: spec.platforms,
            note: tilt
                .map(|_| "EXPECTED_REF is ignored: IMAGE is set, and Skaffold's variables take precedence".into()),
        });
    }
    let Some(tilt) = tilt else {
        return Err(neither_set());
    };
    Ok(BuildEnv {
        caller: Caller::Tilt,
        image: tilt.expected_ref,
        push_image: tilt.registry.is_some(),
        build_context: tilt.build_context,
        platforms: Vec::new(),
        note: None,
    })
}

fn with_tilt_hint(err: Error) -> Error {
    let fix = err.fix().unwrap_or_default();
    Error::usage(
        err.to_string(),
        format!(
            "{fix}; or, if Tilt runs this build (EXPECTED_REF is set), unset IMAGE: it takes precedence over EXPECTED_REF"
        ),
    )
}

fn neither_set() -> Error {
    Error::usage(
        "missing environment variables IMAGE, PUSH_IMAGE, BUILD_CONTEXT (Skaffold's custom builder) or EXPECTED_REF \
         (Tilt's custom_build): `kindload build` is meant to run as one of them, and they set these",
        "run it from Skaffold with `custom: {buildCommand: kindload build}`, or from Tilt with \
         `custom_build('app', 'kindload build', ['.'], skips_local_docker=True, disable_push=True)`; by hand, \
         `IMAGE=app:dev PUSH_IMAGE=false BUILD_CONTEXT=. kindload build` or `EXPECTED_REF=app:dev kindload build`",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup_in(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| vars.get(name).cloned()
    }

    const SKAFFOLD: [(&str, &str); 3] = [("IMAGE", "app:v1"), ("PUSH_IMAGE", "false"), ("BUILD_CONTEXT", "/src/app")];

    #[test]
    fn skaffold_variables_make_a_skaffold_build() {
        let got = build_env(&lookup_in(&SKAFFOLD), Path::new("/elsewhere")).unwrap();
        assert_eq!(got.caller, Caller::Skaffold);
        assert_eq!((got.image.as_str(), got.push_image), ("app:v1", false));
        assert_eq!(got.build_context, PathBuf::from("/src/app"));
        assert_eq!(got.note, None);
    }

    #[test]
    fn expected_ref_alone_makes_a_tilt_build_of_exactly_that_ref_in_the_current_directory() {
        let lookup =
            lookup_in(&[("EXPECTED_REF", "app:tilt-build-1700000000"), ("EXPECTED_TAG", "tilt-build-1700000000")]);
        let got = build_env(&lookup, Path::new("/src/app")).unwrap();
        assert_eq!(
            got,
            BuildEnv {
                caller: Caller::Tilt,
                image: "app:tilt-build-1700000000".into(),
                push_image: false,
                build_context: PathBuf::from("/src/app"),
                platforms: Vec::new(),
                note: None,
            }
        );
    }

    #[test]
    fn tilt_pushes_when_it_names_a_registry() {
        let lookup =
            lookup_in(&[("EXPECTED_REF", "localhost:5001/app:tilt-build-1"), ("EXPECTED_REGISTRY", "localhost:5001")]);
        assert!(build_env(&lookup, Path::new("/")).unwrap().push_image);
    }

    #[test]
    fn image_takes_precedence_over_expected_ref_and_says_so() {
        let mut pairs = SKAFFOLD.to_vec();
        pairs.push(("EXPECTED_REF", "other:tilt-build-1"));
        let got = build_env(&lookup_in(&pairs), Path::new("/")).unwrap();
        assert_eq!(got.caller, Caller::Skaffold);
        assert_eq!(got.image, "app:v1");
        assert!(got.note.unwrap().contains("EXPECTED_REF is ignored"));
    }

    #[test]
    fn half_a_skaffold_contract_with_expected_ref_says_image_wins() {
        let lookup = lookup_in(&[("IMAGE", "app:v1"), ("EXPECTED_REF", "app:tilt-build-1")]);
        let err = build_env(&lookup, Path::new("/")).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("PUSH_IMAGE, BUILD_CONTEXT"), "{err}");
        assert!(err.fix().unwrap().contains("unset IMAGE"), "{:?}", err.fix());
    }

    #[test]
    fn neither_names_both_contracts_and_a_manual_run_of_each() {
        let err = build_env(&lookup_in(&[("EXPECTED_IMAGE", "app")]), Path::new("/")).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let message = err.to_string();
        assert!(message.contains("IMAGE, PUSH_IMAGE, BUILD_CONTEXT") && message.contains("EXPECTED_REF"), "{message}");
        let fix = err.fix().unwrap();
        assert!(fix.contains("IMAGE=app:dev PUSH_IMAGE=false BUILD_CONTEXT=. kindload build"), "{fix}");
        assert!(fix.contains("EXPECTED_REF=app:dev kindload build"), "{fix}");
    }
}
