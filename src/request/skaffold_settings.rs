//! Skaffold settings that make it load a second time or push: its global config's
//! `kind-disable-load` and the project's `build.local.push`.

use serde_yaml::Value;

/// `kind-disable-load` for `kube_context` in Skaffold's global config (`~/.skaffold/config`):
/// the context's own entry wins over `global`.
pub fn kind_disable_load(global_config: &str, kube_context: &str) -> Result<Option<bool>, String> {
    let config: Value = serde_yaml::from_str(global_config).map_err(|e| e.to_string())?;
    let flag = |v: &Value| v.get("kind-disable-load").and_then(Value::as_bool);
    let per_context = config
        .get("kubeContexts")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .find(|c| c.get("kube-context").and_then(Value::as_str) == Some(kube_context))
        .and_then(flag);
    Ok(per_context.or_else(|| config.get("global").and_then(flag)))
}

/// `build.local.push` in any document of a skaffold.yaml (profiles aside), if set.
pub fn local_push(skaffold_yaml: &str) -> Result<Option<bool>, String> {
    let mut push = None;
    for document in serde_yaml::Deserializer::from_str(skaffold_yaml) {
        let doc = <Value as serde::Deserialize>::deserialize(document).map_err(|e| e.to_string())?;
        if let Some(p) =
            doc.get("build").and_then(|b| b.get("local")).and_then(|l| l.get("push")).and_then(Value::as_bool)
        {
            push = Some(p);
        }
    }
    Ok(push)
}

/// What to change, given the settings, for a project that loads through kindload.
pub fn advice(kube_context: &str, disable_load: Option<bool>, push: Option<bool>) -> Vec<String> {
    let mut advice = Vec::new();
    if disable_load != Some(true) {
        advice.push(format!(
            "Skaffold also runs `kind load` for every image (double loading): `skaffold config set --kube-context {kube_context} kind-disable-load true`"
        ));
    }
    if disable_load == Some(true) && push != Some(false) {
        advice.push(
            "with kind-disable-load Skaffold pushes images unless told not to: set `build: {local: {push: false}}` in skaffold.yaml".into(),
        );
    }
    advice
}

#[cfg(test)]
mod tests {
    use super::*;

    const GLOBAL: &str = "global:\n  kind-disable-load: false\n  survey:\n    last-prompted: x\nkubeContexts:\n- kube-context: kind-dev\n  kind-disable-load: true\n";

    #[test]
    fn context_entry_beats_global() {
        assert_eq!(kind_disable_load(GLOBAL, "kind-dev").unwrap(), Some(true));
        assert_eq!(kind_disable_load(GLOBAL, "kind-other").unwrap(), Some(false));
        assert_eq!(kind_disable_load("", "kind-dev").unwrap(), None);
        assert!(kind_disable_load("global: [", "kind-dev").is_err());
    }

    #[test]
    fn push_is_read_from_any_document() {
        let yaml = "apiVersion: skaffold/v4beta14\nkind: Config\n---\napiVersion: skaffold/v4beta14\nkind: Config\nbuild:\n  local:\n    push: false\n";
        assert_eq!(local_push(yaml).unwrap(), Some(false));
        assert_eq!(local_push("apiVersion: skaffold/v4beta14\nkind: Config\n").unwrap(), None);
    }

    #[test]
    fn advice_names_the_setting_to_change() {
        assert!(advice("kind-dev", Some(true), Some(false)).is_empty());
        let double = advice("kind-dev", None, Some(false));
        assert_eq!(double.len(), 1);
        assert!(double[0].contains("skaffold config set --kube-context kind-dev kind-disable-load true"));
        let pushes = advice("kind-dev", Some(true), None);
        assert_eq!(pushes.len(), 1);
        assert!(pushes[0].contains("push: false"));
    }
}
