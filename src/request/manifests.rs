//! Images referenced by hydrated Kubernetes manifests, e.g. what a Skaffold post-render
//! hook receives on stdin or what `skaffold render` prints.

use std::collections::HashSet;

use serde::Deserialize;
use serde_yaml::{Mapping, Value};

use crate::error::{Error, Result};

/// Fields of a pod spec that hold container lists.
const CONTAINER_LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];

/// Every container image in multi-document YAML, de-duplicated in first-seen order.
///
/// Reads Pods, the workload kinds (Deployment, StatefulSet, DaemonSet, ReplicaSet,
/// ReplicationController, Job, CronJob), PodTemplates and `kind: List` items; kinds it does
/// not know (e.g. an Argo Rollout) are searched for anything shaped like a pod spec. Empty
/// and `null` documents are skipped. Malformed YAML is an input error naming the document.
pub fn images_in_manifests(yaml: &str) -> Result<Vec<String>> {
    let mut images = Images::default();
    for (index, document) in serde_yaml::Deserializer::from_str(yaml).enumerate() {
        let value = Value::deserialize(document).map_err(|e| malformed(index + 1, &e))?;
        collect_from_object(&value, &mut images);
    }
    Ok(images.into_list())
}

fn malformed(document: usize, err: &serde_yaml::Error) -> Error {
    Error::input(
        format!("cannot parse manifests: YAML document {document}: {err}"),
        "pass hydrated Kubernetes manifests (e.g. the output of `skaffold render`), \
         documents separated by `---`",
    )
}

/// Images in first-seen order, each once.
#[derive(Default)]
struct Images {
    seen: HashSet<String>,
    ordered: Vec<String>,
}

impl Images {
    fn add(&mut self, image: &str) {
        let image = image.trim();
        if !image.is_empty() && self.seen.insert(image.to_string()) {
            self.ordered.push(image.to_string());
        }
    }

    fn into_list(self) -> Vec<String> {
        self.ordered
    }
}

fn collect_from_object(object: &Value, images: &mut Images) {
    if object.is_null() {
        return;
    }
    if let Some(items) = list_items(object) {
        for item in items {
            collect_from_object(item, images);
        }
        return;
    }
    match object.get("kind").and_then(Value::as_str).and_then(pod_spec_path) {
        Some(path) => {
            if let Some(pod_spec) = at_path(object, path) {
                collect_from_pod_spec(pod_spec, images);
            }
        }
        None => collect_from_any_pod_spec(object, images),
    }
}

/// Items of `kind: List` and of typed lists such as `PodList` (what `kubectl get -o yaml`
/// prints).
fn list_items(object: &Value) -> Option<&Vec<Value>> {
    let kind = object.get("kind")?.as_str()?;
    if !kind.ends_with("List") {
        return None;
    }
    object.get("items")?.as_sequence()
}

/// Where the pod spec sits in each kind that is known to have one.
fn pod_spec_path(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "Pod" => &["spec"],
        "PodTemplate" => &["template", "spec"],
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "ReplicationController" | "Job" => {
            &["spec", "template", "spec"]
        }
        "CronJob" => &["spec", "jobTemplate", "spec", "template", "spec"],
        _ => return None,
    })
}

fn at_path<'v>(value: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(value, |current, key| current.get(*key))
}

fn collect_from_pod_spec(pod_spec: &Value, images: &mut Images) {
    for list in CONTAINER_LISTS {
        let containers = pod_spec.get(list).and_then(Value::as_sequence);
        for container in containers.into_iter().flatten() {
            if let Some(image) = container.get("image").and_then(Value::as_str) {
                images.add(image);
            }
        }
    }
}

/// Walks an object of unknown kind and reads every mapping that looks like a pod spec.
fn collect_from_any_pod_spec(value: &Value, images: &mut Images) {
    match value {
        Value::Mapping(mapping) if looks_like_pod_spec(mapping) => collect_from_pod_spec(value, images),
        Value::Mapping(mapping) => {
            for child in mapping.values() {
                collect_from_any_pod_spec(child, images);
            }
        }
        Value::Sequence(items) => {
            for child in items {
                collect_from_any_pod_spec(child, images);
            }
        }
        Value::Tagged(tagged) => collect_from_any_pod_spec(&tagged.value, images),
        _ => {}
    }
}

/// A pod spec has a `containers` list whose entries are mappings with a string `image`;
/// requiring the image keeps unrelated `containers` fields (e.g. names only) out.
fn looks_like_pod_spec(mapping: &Mapping) -> bool {
    mapping
        .get("containers")
        .and_then(Value::as_sequence)
        .is_some_and(|containers| containers.iter().any(|c| c.get("image").and_then(Value::as_str).is_some()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images(yaml: &str) -> Vec<String> {
        images_in_manifests(yaml).unwrap()
    }

    #[test]
    fn reads_every_container_list_of_a_deployment() {
        let yaml = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  template:
    spec:
      initContainers:
        - {name: migrate, image: "migrate:v1"}
      containers:
        - {name: web, image: "localhost:5000/web:3f1c"}
        - {name: sidecar, image: "busybox:1.36"}
      ephemeralContainers:
        - {name: debug, image: "debug:latest"}
"#;
        assert_eq!(images(yaml), ["localhost:5000/web:3f1c", "busybox:1.36", "migrate:v1", "debug:latest"]);
    }

    #[test]
    fn reads_each_known_kind_at_its_own_path() {
        let yaml = r#"
kind: Pod
spec: {containers: [{name: a, image: pod-image}]}
---
kind: StatefulSet
spec: {template: {spec: {containers: [{name: a, image: sts-image}]}}}
---
kind: DaemonSet
spec: {template: {spec: {containers: [{name: a, image: ds-image}]}}}
---
kind: ReplicaSet
spec: {template: {spec: {containers: [{name: a, image: rs-image}]}}}
---
kind: ReplicationController
spec: {template: {spec: {containers: [{name: a, image: rc-image}]}}}
---
kind: Job
spec: {template: {spec: {containers: [{name: a, image: job-image}]}}}
---
kind: CronJob
spec: {jobTemplate: {spec: {template: {spec: {containers: [{name: a, image: cron-image}]}}}}}
---
kind: PodTemplate
template: {spec: {containers: [{name: a, image: template-image}]}}
"#;
        assert_eq!(
            images(yaml),
            ["pod-image", "sts-image", "ds-image", "rs-image", "rc-image", "job-image", "cron-image", "template-image"]
        );
    }

    #[test]
    fn known_kinds_are_read_only_at_their_pod_spec() {
        // A Pod's pod spec is `spec`; a look-alike elsewhere in the object is not one.
        let yaml = r#"
kind: Pod
metadata: {name: p}
spec:
  containers: [{name: a, image: real}]
  extra: {containers: [{name: b, image: decoy}]}
"#;
        assert_eq!(images(yaml), ["real"]);
    }

    #[test]
    fn unknown_kinds_are_searched_for_pod_specs() {
        let yaml = r#"
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: canary}
spec:
  template:
    spec:
      containers: [{name: app, image: "rollout-app:v2"}]
      initContainers: [{name: init, image: "rollout-init:v2"}]
"#;
        assert_eq!(images(yaml), ["rollout-app:v2", "rollout-init:v2"]);
    }

    #[test]
    fn kinds_without_pod_specs_contribute_nothing() {
        let yaml = r#"
kind: Service
spec: {ports: [{port: 80}]}
---
kind: ConfigMap
data: {containers: "image: not-an-image"}
"#;
        assert!(images(yaml).is_empty());
    }

    #[test]
    fn list_items_are_read_recursively() {
        let yaml = r#"
apiVersion: v1
kind: List
items:
  - kind: Deployment
    spec: {template: {spec: {containers: [{name: a, image: one}]}}}
  - kind: PodList
    items:
      - kind: Pod
        spec: {containers: [{name: b, image: two}]}
"#;
        assert_eq!(images(yaml), ["one", "two"]);
    }

    #[test]
    fn duplicates_are_dropped_keeping_first_seen_order() {
        let yaml = r#"
kind: Pod
spec: {containers: [{name: a, image: b-image}, {name: b, image: a-image}]}
---
kind: Job
spec: {template: {spec: {containers: [{name: c, image: a-image}, {name: d, image: c-image}]}}}
"#;
        assert_eq!(images(yaml), ["b-image", "a-image", "c-image"]);
    }

    #[test]
    fn empty_and_null_documents_are_skipped() {
        assert!(images("").is_empty());
        let yaml = "---\n---\nnull\n---\n~\n---\nkind: Pod\nspec: {containers: [{name: a, image: x}]}\n---\n";
        assert_eq!(images(yaml), ["x"]);
    }

    #[test]
    fn containers_without_an_image_are_ignored() {
        let yaml = "kind: Pod\nspec: {containers: [{name: a}, {name: b, image: ''}, {name: c, image: y}]}\n";
        assert_eq!(images(yaml), ["y"]);
    }

    #[test]
    fn malformed_yaml_names_the_document() {
        let yaml = "kind: Pod\nspec: {containers: []}\n---\nkind: Pod\nspec: [unclosed\n";
        let err = images_in_manifests(yaml).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let message = err.to_string();
        assert!(message.contains("document 2"), "{message}");
        assert!(err.fix().unwrap().contains("skaffold render"));
    }
}
