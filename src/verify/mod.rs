//! Proof on every node that the kubelet can see the image: CRI (`crictl inspecti`) finds
//! each name with the expected id; where crictl is absent, containerd's CRI-managed
//! records (`ctr images ls`) stand in, and the report says so.

pub mod cri;

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::exec::Runner;
use crate::plan::any_holding;
use crate::resolve::holdings::{list_images, section, Holdings, Section};
use crate::resolve::image::Image;
use crate::resolve::node::Node;
use crate::resolve::provider::Provider;
use crate::resolve::records::{config_digest_for_target, parse_ctr_images, CtrImage};
use cri::{crictl_says_missing, parse_crictl_inspecti};

const POLL: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum VerifiedWith {
    Crictl,
    Ctr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub verified: bool,
    pub with: VerifiedWith,
    /// The id CRI reports (config digest), when seen.
    pub id: Option<String>,
    /// Why not, and what to do; empty when verified.
    pub diagnosis: String,
}

/// The verdict from what a node printed right after a load (CRI's answers, or its image
/// records), when it proves the load; else None, and verification asks the node again
/// (CRI may index the image a moment later).
pub fn read_back(node: &Node, image: &Image, sections: &[Section]) -> Option<Verdict> {
    let crictl = section(sections, "crictl").is_some();
    // Where crictl answers, its answers are the proof and no listing is printed.
    let images = match section(sections, "images") {
        Some(s) if s.ok() => parse_ctr_images(&s.body),
        None if crictl => Vec::new(),
        _ => return None,
    };
    let mut after = node.clone();
    after.holds = Some(Ok(Holdings { images, ..Default::default() }));
    after.crictl = crictl;
    after.cri_answers = sections.iter().filter(|s| s.name.starts_with("inspecti:")).cloned().collect();
    from_survey(&after, image)
}

/// Checks, and checks again for up to `settle`: CRI indexes imported images from
/// containerd events, a moment after the import.
pub fn verify(runner: &dyn Runner, provider: Provider, node: &Node, image: &Image, settle: Duration) -> Verdict {
    let deadline = Instant::now() + settle;
    loop {
        let verdict = if node.crictl {
            with_crictl(runner, provider, node, image)
        } else {
            with_ctr(runner, provider, node, image)
        };
        if verdict.verified || Instant::now() >= deadline || crate::exec::cancelled() {
            return verdict;
        }
        std::thread::sleep(POLL);
    }
}

/// The verdict from what the survey already read, when that read proves the image is
/// there (the no-op's one round of checks); None when a live check must look again.
pub fn from_survey(node: &Node, image: &Image) -> Option<Verdict> {
    let holds = node.holdings().ok()?;
    if node.crictl {
        let mut id = None;
        for name in image.names.iter().map(|n| n.normalized()) {
            let answer = node.cri_answers.iter().find(|s| s.name == format!("inspecti:{name}")).filter(|s| s.ok())?;
            let found = parse_crictl_inspecti(&answer.body).ok()?;
            if image.identity.config.as_deref().is_some_and(|e| e != found.id) {
                return None;
            }
            id = Some(found.id);
        }
        return Some(Verdict { verified: true, with: VerifiedWith::Crictl, id, diagnosis: String::new() });
    }
    let (problems, id) = check_listing(&holds.images, image);
    problems.is_empty().then(|| Verdict { verified: true, with: VerifiedWith::Ctr, id, diagnosis: String::new() })
}

fn with_crictl(runner: &dyn Runner, provider: Provider, node: &Node, image: &Image) -> Verdict {
    let mut id = None;
    let mut problems = Vec::new();
    for name in image.names.iter().map(|n| n.normalized()) {
        let out = runner.output(&provider.exec(&node.name, &["crictl", "inspecti", "-o", "json", &name]));
        match out {
            Ok(out) if out.success() => match parse_crictl_inspecti(&out.stdout) {
                Ok(found) => {
                    let expected = image.identity.config.as_deref();
                    if expected.is_some_and(|e| e != found.id) {
                        problems.push(format!("{name} is {} there, expected {}", found.id, expected.unwrap_or("")));
                    }
                    id = Some(found.id);
                }
                Err(e) => problems.push(format!("crictl inspecti {name}: unreadable output: {e}")),
            },
            Ok(out) if crictl_says_missing(&out.stderr) => problems.push(format!("CRI has no image {name}")),
            Ok(out) => problems.push(format!("crictl inspecti {name} failed: {}", out.stderr.trim())),
            Err(e) => problems.push(e.to_string()),
        }
    }
    let diagnosis =
        if problems.is_empty() { String::new() } else { diagnose(runner, provider, node, image, &problems) };
    Verdict { verified: problems.is_empty(), with: VerifiedWith::Crictl, id, diagnosis }
}

fn with_ctr(runner: &dyn Runner, provider: Provider, node: &Node, image: &Image) -> Verdict {
    let listing = match list_images(runner, provider, &node.name) {
        Ok(l) => l,
        Err(e) => {
            return Verdict {
                verified: false,
                with: VerifiedWith::Ctr,
                id: None,
                diagnosis: format!("could not list images on {}: {e}", node.name),
            }
        }
    };
    let (problems, id) = check_listing(&listing, image);
    let diagnosis = if problems.is_empty() { String::new() } else { describe(&node.name, &listing, image, &problems) };
    Verdict { verified: problems.is_empty(), with: VerifiedWith::Ctr, id, diagnosis }
}

/// Every name present, holding the image, and indexed by CRI (its `sha256:<config>` record
/// exists: that is the record the kubelet's image lookups resolve through).
pub fn check_listing(listing: &[CtrImage], image: &Image) -> (Vec<String>, Option<String>) {
    let mut problems = Vec::new();
    let mut id = None;
    for name in image.names.iter().map(|n| n.normalized()) {
        let Some(record) = listing.iter().find(|r| r.name == name) else {
            problems.push(format!("{name} is absent"));
            continue;
        };
        let config = config_digest_for_target(listing, &record.target);
        match (image.identity.matches(&record.target, config.as_deref()), config) {
            (true, Some(config)) => id = Some(config),
            (false, Some(config)) => problems.push(format!("{name} holds other content (id {config})")),
            (true, None) => problems.push(format!("{name} is in containerd but CRI has not indexed it")),
            (false, None) if image.identity.manifest.is_none() => {
                problems.push(format!("{name} is in containerd but CRI has not indexed it"))
            }
            (false, None) => problems.push(format!("{name} holds other content ({})", record.target)),
        }
    }
    (problems, id)
}

fn diagnose(runner: &dyn Runner, provider: Provider, node: &Node, image: &Image, problems: &[String]) -> String {
    match list_images(runner, provider, &node.name) {
        Ok(listing) => describe(&node.name, &listing, image, problems),
        Err(_) => format!("{}: {}", node.name, problems.join("; ")),
    }
}

/// What is wrong, what the node holds instead, and what to do.
fn describe(node: &str, listing: &[CtrImage], image: &Image, problems: &[String]) -> String {
    let elsewhere: Vec<&str> = listing
        .iter()
        .filter(|r| crate::plan::holds(listing, r, &image.identity) && !r.name.starts_with("sha256:"))
        .map(|r| r.name.as_str())
        .collect();
    let mut text = format!("{node}: {}", problems.join("; "));
    if !elsewhere.is_empty() {
        text.push_str(&format!("; the image is there as {}", elsewhere.join(", ")));
    } else if any_holding(listing, &image.identity).is_none() {
        text.push_str("; the image's content is not on the node");
    }
    text.push_str(&format!("; run `kindload load {} --nodes {node} -v` to reload it", image.requested));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::fake::FakeRunner;
    use crate::resolve::engine::EngineKind;
    use crate::resolve::image::Identity;

    const CONFIG: &str = "sha256:441c29fcf848420af9478385aa2c50f1aed261136929dd5df71cc8bd05f30e83";

    fn image(name: &str, config: &str) -> Image {
        Image::for_tests(name, Identity { config: Some(config.into()), manifest: None })
    }

    fn node(crictl: bool) -> Node {
        Node {
            containerd_version: None,
            config_version: Some(2),
            config_path: None,
            crictl,
            ..Node::for_tests("kind-worker")
        }
    }

    #[test]
    fn crictl_id_matching_is_verified() {
        let runner = FakeRunner::new().on(
            &["docker", "exec", "kind-worker", "crictl", "inspecti", "-o", "json", "example.com/app/bb:dev"],
            0,
            include_str!("../../tests/fixtures/containerd-1.7/crictl-inspecti-present.json"),
            "",
        );
        let v = verify(
            &runner,
            Provider::new(EngineKind::Docker),
            &node(true),
            &image("example.com/app/bb:dev", CONFIG),
            Duration::ZERO,
        );
        assert!(v.verified, "{}", v.diagnosis);
        assert_eq!((v.with, v.id.as_deref()), (VerifiedWith::Crictl, Some(CONFIG)));
    }

    #[test]
    fn crictl_wrong_id_fails_with_a_diagnosis() {
        let other = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
        let runner = FakeRunner::new()
            .on(
                &["docker", "exec", "kind-worker", "crictl", "inspecti"],
                0,
                include_str!("../../tests/fixtures/containerd-2.1/crictl-inspecti-present.json"),
                "",
            )
            .on(
                &["docker", "exec", "kind-worker", "ctr"],
                0,
                include_str!("../../tests/fixtures/containerd-2.1/ctr-images-ls.txt"),
                "",
            );
        let v = with_crictl(
            &runner,
            Provider::new(EngineKind::Docker),
            &node(true),
            &image("example.com/app/bb:dev", other),
        );
        assert!(!v.verified);
        assert!(v.diagnosis.contains("expected sha256:1111"), "{}", v.diagnosis);
        assert!(v.diagnosis.contains("kindload load example.com/app/bb:dev --nodes kind-worker"), "{}", v.diagnosis);
    }

    #[test]
    fn ctr_fallback_needs_the_cri_record() {
        let listing = crate::resolve::records::parse_ctr_images(include_str!(
            "../../tests/fixtures/containerd-1.6/ctr-images-ls.txt"
        ));
        let (problems, id) = check_listing(&listing, &image("example.com/app/bb:dev", CONFIG));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(id.as_deref(), Some(CONFIG));
        let without_cri: Vec<CtrImage> = listing.iter().filter(|r| !r.name.starts_with("sha256:")).cloned().collect();
        let (problems, _) = check_listing(&without_cri, &image("example.com/app/bb:dev", CONFIG));
        assert_eq!(problems, ["example.com/app/bb:dev is in containerd but CRI has not indexed it"]);
        let changed =
            image("example.com/app/bb:dev", "sha256:2222222222222222222222222222222222222222222222222222222222222222");
        let (problems, _) = check_listing(&listing, &changed);
        assert_eq!(problems, [format!("example.com/app/bb:dev holds other content (id {CONFIG})")]);
    }

    #[test]
    fn absent_name_says_where_the_image_is() {
        let listing = crate::resolve::records::parse_ctr_images(include_str!(
            "../../tests/fixtures/containerd-1.6/ctr-images-ls.txt"
        ));
        let wanted = image("bb:dev", CONFIG);
        let (problems, _) = check_listing(&listing, &wanted);
        let text = describe("kind-worker", &listing, &wanted, &problems);
        assert!(
            text.starts_with(
                "kind-worker: docker.io/library/bb:dev is absent; the image is there as example.com/app/bb:dev"
            ),
            "{text}"
        );
    }
}
