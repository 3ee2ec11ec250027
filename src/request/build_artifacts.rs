//! The build-artifacts file Skaffold writes with `skaffold build --file-output f.json`
//! and reads back with `skaffold deploy --build-artifacts f.json`.

use serde::{Deserialize, Deserializer};

use crate::error::{Error, Result};

/// One built image: the artifact's name in `skaffold.yaml` and the final ref.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct BuildArtifact {
    #[serde(rename = "imageName")]
    pub image_name: String,
    /// The final ref: `name:<image id hex>` after a local build, `name:tag@sha256:...` after
    /// a push.
    pub tag: String,
}

/// The file's top level. `builds` must be present so that some other JSON file is not read
/// as "nothing to load"; Skaffold writes `null` when nothing was built.
#[derive(Deserialize)]
struct BuildOutput {
    #[serde(deserialize_with = "null_as_empty")]
    builds: Vec<BuildArtifact>,
}

fn null_as_empty<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<BuildArtifact>, D::Error> {
    Ok(Option::deserialize(deserializer)?.unwrap_or_default())
}

const FIX: &str = "pass the file written by `skaffold build --file-output <file>`, \
                   e.g. {\"builds\":[{\"imageName\":\"app\",\"tag\":\"app:3f1c...\"}]}";

/// Parses `{"builds":[{"imageName":"app","tag":"app:3f1c..."}]}`. Unknown fields are
/// ignored; bad JSON, a missing `builds`, or an artifact without a tag is an input error.
pub fn parse_build_artifacts(json: &str) -> Result<Vec<BuildArtifact>> {
    let output: BuildOutput = serde_json::from_str(json)
        .map_err(|e| Error::input(format!("cannot read the build-artifacts file: {e}"), FIX))?;
    if let Some(untagged) = output.builds.iter().find(|a| a.tag.trim().is_empty()) {
        return Err(Error::input(
            format!("the build-artifacts file has no tag for image {:?}", untagged.image_name),
            FIX,
        ));
    }
    Ok(output.builds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact(image_name: &str, tag: &str) -> BuildArtifact {
        BuildArtifact { image_name: image_name.into(), tag: tag.into() }
    }

    #[test]
    fn reads_local_and_pushed_builds() {
        let pushed = "localhost:5000/api:v1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let json = format!(
            r#"{{"builds":[
            {{"imageName":"app","tag":"app:3f1c9a0e5b7d"}},
            {{"imageName":"localhost:5000/api","tag":"{pushed}"}}
        ]}}"#
        );
        assert_eq!(
            parse_build_artifacts(&json).unwrap(),
            vec![artifact("app", "app:3f1c9a0e5b7d"), artifact("localhost:5000/api", pushed),]
        );
    }

    #[test]
    fn ignores_fields_it_does_not_use() {
        let json = r#"{"builds":[{"imageName":"app","tag":"app:1","runtimeType":"go"}],"extra":1}"#;
        assert_eq!(parse_build_artifacts(json).unwrap(), vec![artifact("app", "app:1")]);
    }

    #[test]
    fn null_or_empty_builds_mean_nothing_was_built() {
        assert!(parse_build_artifacts(r#"{"builds":null}"#).unwrap().is_empty());
        assert!(parse_build_artifacts(r#"{"builds":[]}"#).unwrap().is_empty());
    }

    #[test]
    fn bad_json_is_an_input_error_pointing_at_file_output() {
        for bad in ["", "{", r#"{"other":[]}"#, r#"{"builds":[{"imageName":"app"}]}"#, "[]"] {
            let err = parse_build_artifacts(bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad}");
            assert!(err.to_string().starts_with("cannot read the build-artifacts file"), "{err}");
            assert!(err.fix().unwrap().contains("skaffold build --file-output"), "{bad}");
        }
    }

    #[test]
    fn an_empty_tag_is_rejected_with_the_image_name() {
        let err = parse_build_artifacts(r#"{"builds":[{"imageName":"app","tag":""}]}"#).unwrap_err();
        assert!(err.to_string().contains("\"app\""), "{err}");
    }
}
