//! Kubernetes objects for in-cluster pullers: the `local-registry-hosting` ConfigMap in
//! `kube-public` (KEP-1755, read by Skaffold and Tilt) and a ConfigMap holding kindload's CA
//! for operators that take a CA bundle (Crossplane's `registryCaBundleConfig`).

use serde_json::json;

pub const CA_CONFIGMAP: &str = "kindload-registry-ca";
pub const CA_KEY: &str = "ca.crt";

/// The YAML stream to `kubectl apply -f -`.
pub fn render(host: &str, cluster_address: &str, ca_pem: &str, ca_namespace: &str) -> String {
    let hosting = format!(
        "host: \"{host}\"\nhostFromContainerRuntime: \"{cluster_address}\"\nhostFromClusterNetwork: \"{cluster_address}\"\nhelp: \"https://kind.sigs.k8s.io/docs/user/local-registry/\"\n"
    );
    let objects = [
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "local-registry-hosting", "namespace": "kube-public"},
            "data": {"localRegistryHosting.v1": hosting},
        }),
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": CA_CONFIGMAP,
                "namespace": ca_namespace,
                "labels": {"app.kubernetes.io/managed-by": "kindload"},
            },
            "data": {CA_KEY: ca_pem},
        }),
    ];
    objects.iter().map(|o| serde_yaml::to_string(o).expect("objects serialise")).collect::<Vec<_>>().join("---\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[test]
    fn two_configmaps_that_parse_back() {
        let yaml =
            render("localhost:5001", "kindload-registry:5000", "-----BEGIN CERTIFICATE-----\nX\n", "crossplane-system");
        let docs: Vec<serde_json::Value> =
            serde_yaml::Deserializer::from_str(&yaml).map(|d| serde_json::Value::deserialize(d).unwrap()).collect();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0]["metadata"]["namespace"], "kube-public");
        let hosting: serde_json::Value =
            serde_yaml::from_str(docs[0]["data"]["localRegistryHosting.v1"].as_str().unwrap()).unwrap();
        assert_eq!(hosting["host"], "localhost:5001");
        assert_eq!(hosting["hostFromContainerRuntime"], "kindload-registry:5000");
        assert_eq!(docs[1]["metadata"]["namespace"], "crossplane-system");
        assert_eq!(docs[1]["data"]["ca.crt"], "-----BEGIN CERTIFICATE-----\nX\n");
    }
}
