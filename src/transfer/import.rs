//! containerd on the node: import from stdin, name, and remove what a failed import left.

use std::process::{Child, ChildStdin};

use crate::exec::{self, Cmd, ExecError, Runner, StderrDrain};
use crate::resolve::node::Node;
use crate::resolve::provider::Provider;
use crate::verify::cri::{parse_ctr_images, CtrImage};

pub const NAMESPACE: &str = "--namespace=k8s.io";

/// `ctr images import` reading the archive from stdin. No `--all-platforms`: only the
/// platform the node runs is imported, so an index whose other platforms' blobs were
/// never pulled (Docker's containerd store) imports instead of failing. `local` (for
/// containerd 2.x) bypasses the transfer service, whose unpacker fails with any
/// snapshotter but the default ("no unpack platforms defined").
pub fn import_argv(snapshotter: &str, local: bool) -> Vec<String> {
    let mut argv: Vec<String> = ["ctr", NAMESPACE, "images", "import"].map(String::from).to_vec();
    if local {
        argv.push("--local".into());
    }
    argv.extend(["--digests".to_string(), format!("--snapshotter={snapshotter}"), "-".to_string()]);
    argv
}

pub fn list_argv() -> [&'static str; 4] {
    ["ctr", NAMESPACE, "images", "ls"]
}

pub fn tag_argv<'a>(from: &'a str, to: &'a str) -> [&'a str; 7] {
    ["ctr", NAMESPACE, "images", "tag", "--force", from, to]
}

pub fn remove_argv(names: &[String]) -> Vec<String> {
    let mut argv: Vec<String> = ["ctr", NAMESPACE, "images", "rm"].map(String::from).to_vec();
    argv.extend(names.iter().cloned());
    argv
}

/// A running import on one node.
pub struct Import {
    pub node: String,
    child: Child,
    cmd: Cmd,
    stderr: StderrDrain,
}

impl Import {
    pub fn start(provider: Provider, node: &Node) -> Result<(Import, ChildStdin), ExecError> {
        let argv = import_argv(node.import_snapshotter(), node.containerd_major() >= Some(2));
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let cmd = provider.exec_stdin(&node.name, &argv);
        let mut child = exec::spawn(&cmd, true, false)?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let stderr = exec::drain(child.stderr.take());
        Ok((Import { node: node.name.clone(), child, cmd, stderr }, stdin))
    }

    pub fn finish(self) -> Result<(), ExecError> {
        exec::finish(self.child, &self.cmd, self.stderr)
    }
}

pub fn list(runner: &dyn Runner, provider: Provider, node: &str) -> Result<Vec<CtrImage>, ExecError> {
    Ok(parse_ctr_images(&runner.stdout(&provider.exec(node, &list_argv()))?))
}

pub fn tag(runner: &dyn Runner, provider: Provider, node: &str, from: &str, to: &str) -> Result<(), ExecError> {
    runner.run(&provider.exec(node, &tag_argv(from, to))).map(drop)
}

/// Records a failed import may have created: new or changed since `before`, named as the
/// archive or the user named the image, or by `--digests` (`import-<date>@sha256:...`).
pub fn leftovers(before: &[CtrImage], after: &[CtrImage], names: &[String]) -> Vec<String> {
    after
        .iter()
        .filter(|r| names.contains(&r.name) || r.name.starts_with("import-"))
        .filter(|r| !before.iter().any(|b| b.name == r.name && b.target == r.target))
        .map(|r| r.name.clone())
        .collect()
}

/// Removes what a failed import left so nothing half-imported is visible. Runs even after
/// a cancel: this is the tidying the cancel asks for.
pub fn clean_up(
    runner: &dyn Runner,
    provider: Provider,
    node: &str,
    before: &[CtrImage],
    names: &[String],
) -> Result<Vec<String>, ExecError> {
    let after = parse_ctr_images(&runner.stdout(&provider.exec(node, &list_argv()).cleanup())?);
    let removed = leftovers(before, &after, names);
    if !removed.is_empty() {
        let argv = remove_argv(&removed);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        runner.run(&provider.exec(node, &argv).cleanup())?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, target: &str) -> CtrImage {
        CtrImage { name: name.into(), media_type: String::new(), target: target.into(), managed: true }
    }

    #[test]
    fn import_reads_stdin_with_the_node_snapshotter_and_no_all_platforms() {
        assert_eq!(
            import_argv("native", false),
            ["ctr", "--namespace=k8s.io", "images", "import", "--digests", "--snapshotter=native", "-"]
        );
        assert_eq!(
            import_argv("overlayfs", true),
            ["ctr", "--namespace=k8s.io", "images", "import", "--local", "--digests", "--snapshotter=overlayfs", "-"]
        );
    }

    #[test]
    fn leftovers_are_new_or_changed_records_we_caused() {
        let before = vec![record("docker.io/library/app:dev", "sha256:old"), record("other:1", "sha256:x")];
        let after = vec![
            record("docker.io/library/app:dev", "sha256:new"),
            record("other:1", "sha256:y"),
            record("import-2026-11-24@sha256:new", "sha256:new"),
            record("docker.io/library/untouched:1", "sha256:z"),
        ];
        let names = vec!["docker.io/library/app:dev".to_string(), "docker.io/library/untouched:1".to_string()];
        assert_eq!(
            leftovers(&before, &after, &names),
            ["docker.io/library/app:dev", "import-2026-11-24@sha256:new", "docker.io/library/untouched:1"]
        );
        assert!(leftovers(&after, &after, &names).is_empty());
    }
}
