//! What the user sees: human lines on stderr, or one JSON object on stdout.

pub mod progress;
pub mod style;

use schemars::JsonSchema;
use serde::Serialize;

use crate::plan::Action;
use crate::verify::VerifiedWith;

/// `kindload load|verify|build --output json`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct LoadReport {
    pub cluster: String,
    pub provider: String,
    /// True only when every image is verified on every selected node.
    pub ok: bool,
    pub images: Vec<ImageReport>,
    /// Why the load stopped before every node's outcome was known (then `ok` is false and
    /// `images` empty); null when each node's outcome is in `images`.
    pub error: Option<String>,
    /// Per node that took a load, the older versions of the loaded repositories removed by
    /// the retention policy (`--keep`, `keep:` in kindload.yaml); empty with `--keep all`.
    pub retention: Vec<RetentionReport>,
}

impl LoadReport {
    /// The report of a load that stopped with `error` before any node's outcome was known.
    pub fn stopped(cluster: &str, provider: &str, error: &crate::error::Error) -> LoadReport {
        let fix = error.fix().filter(|f| !f.is_empty()).map(|f| format!("; {f}")).unwrap_or_default();
        LoadReport {
            cluster: cluster.into(),
            provider: provider.into(),
            ok: false,
            images: Vec::new(),
            error: Some(format!("{error}{fix}")),
            retention: Vec::new(),
        }
    }
}

/// What the retention policy removed from one node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct RetentionReport {
    pub node: String,
    /// The names of the versions removed (each with CRI's id record of its content): those
    /// kindload loaded earlier into the same repository, beyond the newest `--keep`, that no
    /// container uses, this run does not name and no other name refers to.
    pub removed: Vec<String>,
    /// Bytes freed on the node: how much `du -sb /var/lib/containerd` inside it shrank across
    /// the removal (content blobs and unpacked snapshots that only the removed versions
    /// held; anything else changing on the node at that moment counts too). 0 when nothing
    /// was removed.
    pub bytes_freed: u64,
    /// Why labelling, listing or removing failed on the node; absent on success. The load
    /// itself is verified apart from this.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ImageReport {
    /// As given on the command line (or named in the archive).
    pub reference: String,
    /// The name the kubelet resolves it to.
    pub normalized: String,
    /// Every name the nodes were made to answer to.
    pub names: Vec<String>,
    /// The image id CRI reports (config digest), or the manifest digest when that is all that is known.
    pub id: String,
    /// Where the image came from: `docker`, `podman`, an archive path, or `stdin`.
    pub source: String,
    /// How it travelled to the nodes it moved to: `registry`, `sideload`, or
    /// `registry+sideload`; absent when no node needed it.
    pub transport: Option<String>,
    /// How it reached the cluster's registry, when it was pushed there; absent otherwise.
    pub push: Option<PushReport>,
    pub nodes: Vec<NodeReport>,
}

/// Which push carried an image to the cluster's registry, and why that one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct PushReport {
    /// `own`: kindload streamed the engine's export into the registry; `engine`: `docker push`
    /// or `podman push`.
    pub with: crate::plan::push::PushWith,
    /// Why this push: the engine's store, CI, or the setting that asked for it.
    pub why: String,
    /// The name it has in the registry, from the host (`localhost:5001/app:dev`); every node
    /// that pulled it also answers to this name.
    pub reference: String,
    /// The name pods and in-cluster tools pull it by (`kindload-registry:5000/app:dev`).
    pub cluster_reference: String,
    /// Blobs (layers and config) kindload's push sent; absent for the engine's push.
    pub blobs_sent: Option<usize>,
    /// Blobs kindload's push found in the registry and did not send; absent for the engine's push.
    pub blobs_present: Option<usize>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct NodeReport {
    pub name: String,
    /// What was done; `failed` when the node could not be loaded.
    pub action: Action,
    pub verified: bool,
    /// Absent when verification could not run (for example, the node is stopped).
    pub verified_with: Option<VerifiedWith>,
    /// Bytes streamed to this node (0 when skipped or retagged).
    pub bytes: u64,
    /// Bytes of layers left out of the stream because the node already had them.
    pub bytes_present: u64,
    pub seconds: f64,
    /// How the image travelled when it did: `registry` (pushed to the cluster's registry, then
    /// pulled by the node) or `sideload` (streamed into containerd's import).
    pub transport: Option<Transport>,
    /// Why the node took the sideload although the cluster has a registry.
    pub note: Option<String>,
    /// Why it failed and what to do; absent on success.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Registry,
    Sideload,
}

pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// One line per node and image, e.g. `kind-worker  app:dev  loaded 2.1 MiB in 0.4s, verified with ctr (no crictl on node)`.
/// One line for an image pushed to the cluster's registry: which push, what it sent, why, e.g.
/// `docker.io/library/app:dev  pushed to localhost:5001/app:dev (in the cluster:
/// kindload-registry:5000/app:dev) by kindload's push (2 blob(s) sent, 4 there): CI is set, ...`.
pub fn push_line(image: &ImageReport) -> Option<String> {
    let push = image.push.as_ref()?;
    let by = match push.with {
        crate::plan::push::PushWith::Own => "kindload's push".to_string(),
        crate::plan::push::PushWith::Engine => format!("{}'s push", image.source),
    };
    let sent = match (push.blobs_sent, push.blobs_present) {
        (Some(sent), Some(present)) => format!(" ({sent} blob(s) sent, {present} there)"),
        _ => String::new(),
    };
    Some(format!(
        "{}  pushed to {} (in the cluster: {}) by {by}{sent}: {}",
        image.normalized, push.reference, push.cluster_reference, push.why
    ))
}

pub fn node_line(image: &ImageReport, node: &NodeReport, style: &style::Style) -> String {
    let what = match node.action {
        Action::Loaded if node.bytes_present > 0 => format!(
            "loaded {} in {:.1}s ({} already there)",
            human_bytes(node.bytes),
            node.seconds,
            human_bytes(node.bytes_present)
        ),
        Action::Loaded if node.transport == Some(Transport::Registry) => {
            format!("pulled from the cluster's registry in {:.1}s", node.seconds)
        }
        Action::Loaded => format!("loaded {} in {:.1}s", human_bytes(node.bytes), node.seconds),
        Action::Skipped => "skipped (already present)".to_string(),
        Action::Retagged => "retagged (content already present)".to_string(),
        Action::Failed => "FAILED".to_string(),
    };
    let proof = match (node.verified, node.verified_with) {
        (true, Some(VerifiedWith::Crictl)) => ", verified with crictl".to_string(),
        (true, Some(VerifiedWith::Ctr)) => ", verified with ctr (no crictl on node)".to_string(),
        _ => String::new(),
    };
    let also = match image.names.len() {
        0 | 1 => String::new(),
        _ => format!(" (also as {})", image.names[1..].join(", ")),
    };
    let what = style.paint(&what, node.action != Action::Failed);
    let mut line = format!("{}  {}{also}  {what}{proof}", node.name, image.normalized);
    if let Some(note) = &node.note {
        line.push_str(&format!("\n    {note}"));
    }
    if let Some(error) = &node.error {
        line.push_str(&format!("\n    {error}"));
    }
    line
}

/// One line for a node the retention removed something from (or failed on), e.g.
/// `kind-worker  removed 2 older versions (docker.io/library/app:b1, docker.io/library/app:b2), freed 20.1 MiB`.
pub fn retention_line(retention: &RetentionReport) -> Option<String> {
    let mut line = match retention.removed.len() {
        0 => String::new(),
        n => format!(
            "{}  removed {n} older version{} ({}), freed {}",
            retention.node,
            if n == 1 { "" } else { "s" },
            retention.removed.join(", "),
            human_bytes(retention.bytes_freed)
        ),
    };
    if let Some(error) = &retention.error {
        if line.is_empty() {
            line = retention.node.clone();
        }
        line.push_str(&format!("\n    {error}"));
    }
    (!line.is_empty()).then_some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_line_names_every_name_and_the_proof() {
        let image = ImageReport {
            reference: "app:dev".into(),
            normalized: "docker.io/library/app:dev".into(),
            names: vec!["docker.io/library/app:dev".into(), "docker.io/library/app:abc".into()],
            id: "sha256:abc".into(),
            source: "docker".into(),
            transport: Some("sideload".into()),
            push: None,
            nodes: vec![],
        };
        let node = NodeReport {
            name: "kind-worker".into(),
            action: Action::Loaded,
            verified: true,
            verified_with: Some(VerifiedWith::Ctr),
            bytes: 2048,
            bytes_present: 0,
            seconds: 0.25,
            transport: Some(Transport::Sideload),
            note: None,
            error: None,
        };
        let plain = style::Style::from_facts(false, false, false, false);
        assert_eq!(
            node_line(&image, &node, &plain),
            "kind-worker  docker.io/library/app:dev (also as docker.io/library/app:abc)  loaded 2.0 KiB in 0.2s, verified with ctr (no crictl on node)"
        );
        let delta = NodeReport { bytes_present: 400 << 20, ..node.clone() };
        assert!(node_line(&image, &delta, &plain).contains("loaded 2.0 KiB in 0.2s (400.0 MiB already there)"));
        let failed = NodeReport { action: Action::Failed, verified: false, error: Some("why".into()), ..node };
        assert_eq!(node_line(&image, &failed, &plain).lines().last(), Some("    why"));
        let terminal = style::Style::from_facts(false, true, false, false);
        assert!(node_line(&image, &failed, &terminal).contains("\x1b[31mFAILED\x1b[0m"));
    }

    #[test]
    fn a_stopped_load_reports_why_and_not_ok() {
        let error = crate::error::Error::failed("exporting app:dev from podman failed: EOF", "run it again");
        let json = serde_json::to_value(LoadReport::stopped("dev", "docker", &error)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"cluster": "dev", "provider": "docker", "ok": false, "images": [],
                "error": "exporting app:dev from podman failed: EOF; run it again", "retention": []})
        );
    }

    #[test]
    fn retention_lines_name_what_went_and_what_it_freed() {
        let mut r = RetentionReport { node: "kind-worker".into(), ..Default::default() };
        assert_eq!(retention_line(&r), None, "nothing removed, nothing to say");
        r.removed = vec!["docker.io/library/app:b1".into()];
        r.bytes_freed = 20 << 20;
        assert_eq!(
            retention_line(&r).unwrap(),
            "kind-worker  removed 1 older version (docker.io/library/app:b1), freed 20.0 MiB"
        );
        r.removed.clear();
        r.error = Some("labelling x failed".into());
        assert_eq!(retention_line(&r).unwrap(), "kind-worker\n    labelling x failed");
    }

    #[test]
    fn bytes_are_human() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 * 1024 * 1024 + 1024 * 512), "3.5 MiB");
    }

    #[test]
    fn push_line_says_which_push_what_it_sent_and_why() {
        let mut image = ImageReport {
            reference: "app:dev".into(),
            normalized: "docker.io/library/app:dev".into(),
            names: vec!["docker.io/library/app:dev".into()],
            id: "sha256:abc".into(),
            source: "podman".into(),
            transport: Some("registry".into()),
            push: None,
            nodes: vec![],
        };
        assert_eq!(push_line(&image), None, "not pushed: no line");
        image.push = Some(PushReport {
            with: crate::plan::push::PushWith::Own,
            why: "KINDLOAD_PUSH=own asks for it".into(),
            reference: "localhost:5001/app:dev".into(),
            cluster_reference: "kindload-registry:5000/app:dev".into(),
            blobs_sent: Some(2),
            blobs_present: Some(4),
        });
        assert_eq!(
            push_line(&image).unwrap(),
            "docker.io/library/app:dev  pushed to localhost:5001/app:dev (in the cluster: kindload-registry:5000/app:dev) by kindload's push (2 blob(s) sent, 4 there): KINDLOAD_PUSH=own asks for it"
        );
        image.push = Some(PushReport {
            with: crate::plan::push::PushWith::Engine,
            why: "because".into(),
            reference: "localhost:5001/app:dev".into(),
            cluster_reference: "kindload-registry:5000/app:dev".into(),
            blobs_sent: None,
            blobs_present: None,
        });
        assert!(push_line(&image).unwrap().ends_with(") by podman's push: because"), "{:?}", push_line(&image));
    }
}
