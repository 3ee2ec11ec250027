//! The cluster's ConfigMaps about the registry (KEP-1755's `local-registry-hosting` and
//! kindload's CA), applied and deleted with kubectl when the API server answers.

use crate::exec::{Cmd, Runner};
use crate::registry::manifests;

/// Each kubectl request is bounded: an API server that accepts and never answers is one
/// that does not answer.
const KUBECTL_TIMEOUT: &str = "10s";

/// `kubectl apply` of the manifests when the cluster's API server answers; says what happened.
pub(crate) fn apply_manifests(
    runner: &dyn Runner,
    cluster: &str,
    host: &str,
    in_cluster: &str,
    ca_pem: &str,
) -> String {
    let context = format!("kind-{cluster}");
    let ready = runner.output(&Cmd::new("kubectl").args([
        "--context",
        &context,
        "get",
        "--raw",
        "/readyz",
        "--request-timeout",
        KUBECTL_TIMEOUT,
    ]));
    match ready {
        Err(_) => return "kubectl is not installed: not applied the local-registry-hosting and CA ConfigMaps (`kindload registry manifests | kubectl apply -f -` does it later)".into(),
        Ok(out) if !out.success() => {
            return format!("the API server of context {context} does not answer: not applied the local-registry-hosting and CA ConfigMaps (`kindload registry manifests | kubectl apply -f -` does it later)")
        }
        Ok(_) => {}
    }
    let yaml = manifests::render(host, in_cluster, ca_pem, "kube-public");
    let apply = Cmd::new("kubectl")
        .args(["--context", &context, "apply", "-f", "-", "--request-timeout", KUBECTL_TIMEOUT])
        .stdin_bytes(yaml.into_bytes());
    match runner.run(&apply) {
        Ok(out) => format!("applied with kubectl ({context}): {}", out.stdout.trim().replace('\n', "; ")),
        Err(e) => format!("kubectl apply failed: {e}"),
    }
}

/// Deletes the ConfigMaps `apply_manifests` made, when the API server answers; says what happened.
pub(super) fn delete_manifests(runner: &dyn Runner, cluster: &str) -> String {
    let context = format!("kind-{cluster}");
    if let Some(why) = unreachable(runner, &context) {
        return format!("{why}: its ConfigMaps were left (`kubectl delete configmap -n kube-public local-registry-hosting` removes them later)");
    }
    let hosting = ["delete", "configmap", "--namespace", "kube-public", "local-registry-hosting", "--ignore-not-found"];
    let ca_maps = [
        "delete",
        "configmap",
        "--all-namespaces",
        "--selector",
        "app.kubernetes.io/managed-by=kindload",
        "--ignore-not-found",
    ];
    let mut said = Vec::new();
    for argv in [&hosting[..], &ca_maps[..]] {
        match runner.run(
            &Cmd::new("kubectl").args(["--context", &context]).args(argv).args(["--request-timeout", KUBECTL_TIMEOUT]),
        ) {
            Ok(out) if !out.stdout.trim().is_empty() => said.push(out.stdout.trim().replace('\n', "; ")),
            Ok(_) => {}
            Err(e) => return format!("kubectl delete failed: {e}"),
        }
    }
    match said.is_empty() {
        true => format!("no registry ConfigMaps in {context}"),
        false => format!("deleted with kubectl ({context}): {}", said.join("; ")),
    }
}

/// Why kubectl cannot reach the cluster's API server, or None when it answers.
fn unreachable(runner: &dyn Runner, context: &str) -> Option<String> {
    match runner.output(&Cmd::new("kubectl").args([
        "--context",
        context,
        "get",
        "--raw",
        "/readyz",
        "--request-timeout",
        KUBECTL_TIMEOUT,
    ])) {
        Err(_) => Some("kubectl is not installed".into()),
        Ok(out) if !out.success() => Some(format!("the API server of context {context} does not answer")),
        Ok(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::fake::FakeRunner;

    #[test]
    fn manifests_are_applied_only_when_the_api_server_answers() {
        let absent = FakeRunner::new();
        assert!(apply_manifests(&absent, "dev", "localhost:5001", "r:5000", "PEM").contains("kubectl is not installed"));
        let down = FakeRunner::new().on(&["kubectl", "--context", "kind-dev", "get"], 1, "", "connection refused");
        assert!(
            apply_manifests(&down, "dev", "localhost:5001", "r:5000", "PEM").contains("does not answer: not applied")
        );
        let up = FakeRunner::new().on(&["kubectl", "--context", "kind-dev", "get"], 0, "ok", "").on(
            &["kubectl", "--context", "kind-dev", "apply", "-f", "-"],
            0,
            "configmap/local-registry-hosting created\n",
            "",
        );
        let said = apply_manifests(&up, "dev", "localhost:5001", "r:5000", "PEM");
        assert!(said.contains("applied with kubectl (kind-dev): configmap/local-registry-hosting created"), "{said}");
    }

    #[test]
    fn down_deletes_the_configmaps_only_when_the_api_server_answers() {
        let down = FakeRunner::new().on(&["kubectl", "--context", "kind-b", "get"], 1, "", "connection refused");
        assert!(delete_manifests(&down, "b").contains("does not answer: its ConfigMaps were left"));
        let up = FakeRunner::new()
            .on(&["kubectl", "--context", "kind-b", "get"], 0, "ok", "")
            .on(
                &["kubectl", "--context", "kind-b", "delete", "configmap", "--namespace"],
                0,
                "configmap \"local-registry-hosting\" deleted\n",
                "",
            )
            .on(&["kubectl", "--context", "kind-b", "delete", "configmap", "--all-namespaces"], 0, "", "");
        let said = delete_manifests(&up, "b");
        assert_eq!(said, "deleted with kubectl (kind-b): configmap \"local-registry-hosting\" deleted");
        let seen = up.seen.lock().unwrap();
        assert!(seen.iter().any(|argv| argv.contains(&"app.kubernetes.io/managed-by=kindload".to_string())));
    }
}
