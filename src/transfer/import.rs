//! containerd on the node: import from stdin, name, and remove what a failed import left.

use std::process::{Child, ChildStdin};

use crate::exec::{self, Cmd, ExecError, Runner, StderrDrain, Watch};
use crate::resolve::holdings::list_images_argv;
use crate::resolve::image::Image;
use crate::resolve::node::Node;
use crate::resolve::provider::Provider;
use crate::resolve::records::{parse_ctr_images, CtrImage};
use crate::transfer::layout;

pub const NAMESPACE: &str = "--namespace=k8s.io";

/// `ctr images import` reading kindload's OCI layout from stdin. No `--all-platforms`: only
/// the platform the node runs is imported, so an index whose other platforms' blobs were
/// never pulled (Docker's containerd store) imports instead of failing. No `--digests`:
/// the layout's index names every image, and an `import-<date>@sha256:…` record would pin
/// the content after the name moves on. `local` (for containerd 2.x) bypasses the transfer
/// service, whose unpacker fails with any snapshotter but the default ("no unpack
/// platforms defined").
pub fn import_argv(snapshotter: &str, local: bool) -> Vec<String> {
    let mut argv: Vec<String> = ["ctr", NAMESPACE, "images", "import"].map(String::from).to_vec();
    if local {
        argv.push("--local".into());
    }
    argv.extend([format!("--snapshotter={snapshotter}"), "-".to_string()]);
    argv
}

pub fn tag_argv<'a>(from: &'a str, to: &'a str) -> [&'a str; 7] {
    ["ctr", NAMESPACE, "images", "tag", "--force", from, to]
}

/// `--sync` waits for containerd's garbage collection, so the content is gone when it returns.
pub fn remove_argv(names: &[String]) -> Vec<String> {
    let mut argv: Vec<String> = ["ctr", NAMESPACE, "images", "rm", "--sync"].map(String::from).to_vec();
    argv.extend(names.iter().cloned());
    argv
}

/// A running import on one node. Its progress is the bytes it takes and what it prints.
pub struct Import {
    pub node: String,
    child: Child,
    cmd: Cmd,
    stdout: StderrDrain,
    stderr: StderrDrain,
    pub watch: Watch,
}

impl Import {
    pub fn start(provider: Provider, node: &Node) -> Result<(Import, ChildStdin), ExecError> {
        let argv = import_argv(node.import_snapshotter(), node.containerd_major() >= Some(2));
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let cmd = provider.exec_stdin(&node.name, &argv);
        let (mut child, watch) = exec::spawn(&cmd, true, true)?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = exec::drain(child.stdout.take(), &watch);
        let stderr = exec::drain(child.stderr.take(), &watch);
        Ok((Import { node: node.name.clone(), child, cmd, stdout, stderr, watch }, stdin))
    }

    pub fn finish(self) -> Result<(), ExecError> {
        let finished = exec::finish(self.child, &self.cmd, self.stderr, &self.watch);
        self.stdout.finish();
        finished
    }
}

pub fn tag(runner: &dyn Runner, provider: Provider, node: &str, from: &str, to: &str) -> Result<(), ExecError> {
    runner.run(&provider.exec(node, &tag_argv(from, to))).map(drop)
}

/// The records to remove once `loaded` images hold their names on a node whose records
/// were `before`: every `import-*` record (`--digests` leftovers that pin content), and
/// the records of content a loaded name moved away from when no other name refers to it
/// (CRI's `sha256:<id>` record for it included).
pub fn superseded(before: &[CtrImage], loaded: &[&Image]) -> Vec<String> {
    let moved_names: Vec<String> = loaded.iter().flat_map(|i| i.names.iter().map(|n| n.normalized())).collect();
    let holds_loaded = |r: &CtrImage| loaded.iter().any(|i| crate::plan::holds(before, r, &i.identity));
    let left: Vec<&str> = before
        .iter()
        .filter(|r| moved_names.contains(&r.name) && !holds_loaded(r))
        .map(|r| r.target.as_str())
        .collect();
    let unnamed = |r: &CtrImage| r.name.starts_with("sha256:") || r.name.starts_with("import-");
    let still_named =
        |target: &str| before.iter().any(|r| r.target == target && !unnamed(r) && !moved_names.contains(&r.name));
    before
        .iter()
        .filter(|r| {
            r.name.starts_with("import-")
                || (left.contains(&r.target.as_str()) && unnamed(r) && !still_named(&r.target))
        })
        .map(|r| r.name.clone())
        .collect()
}

/// For images loaded under names the node already had: CRI's `sha256:<config>` record to
/// create, as (name, id). CRI creates it itself only for names new to it.
pub fn id_records_to_make(before: &[CtrImage], loaded: &[&Image]) -> Vec<(String, String)> {
    loaded
        .iter()
        .filter_map(|image| {
            let id = image.identity.config.clone()?;
            let name = image.names.iter().map(|n| n.normalized()).find(|n| before.iter().any(|r| &r.name == n))?;
            (!before.iter().any(|r| r.name == id)).then_some((name, id))
        })
        .collect()
}

pub fn remove(runner: &dyn Runner, provider: Provider, node: &str, names: &[String]) -> Result<(), ExecError> {
    let argv = remove_argv(names);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    runner.run(&provider.exec(node, &argv)).map(drop)
}

/// `ctr content active`: the ingests in progress on a node, one `REF SIZE AGE` row each.
pub fn active_ingests_argv() -> [&'static str; 4] {
    ["ctr", NAMESPACE, "content", "active"]
}

/// The rows of `ctr content active` (its header left out).
pub fn parse_active_ingests(text: &str) -> Vec<String> {
    text.lines().skip(1).map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).filter(|l| !l.is_empty()).collect()
}

/// Removes the ingests containerd keeps for a failed import of this run: its content
/// store's `ingest/<hash>` folders whose `ref` (`<namespace>/<n>/<ref>`) starts with `$2`.
/// ctr has no command that aborts an ingest; removing the folder is what aborting does.
const REMOVE_INGESTS: &str = r#"dir=$1/io.containerd.content.v1.content/ingest
for d in "$dir"/*; do
  [ -f "$d/ref" ] || continue
  case $(cat "$d/ref") in */"$2"*) rm -rf "$d" && printf '%s
' "$d" ;; esac
done
"#;

pub fn remove_ingests_argv(root: &str, prefix: &str) -> Vec<String> {
    ["sh", "-c", REMOVE_INGESTS, "kindload-ingests", root, prefix].map(String::from).to_vec()
}

/// Free KiB under containerd's root on the node (`df -Pk`), asked after an import ran out of space.
pub fn free_space(runner: &dyn Runner, provider: Provider, node: &str) -> Result<u64, String> {
    let out = runner
        .stdout(&provider.exec(node, &["df", "-Pk", "/var/lib/containerd"]).cleanup())
        .map_err(|e| e.to_string())?;
    parse_df_available(&out).ok_or_else(|| format!("unexpected `df` output: {}", out.trim()))
}

/// The Available column of `df -Pk`'s one data row.
pub fn parse_df_available(text: &str) -> Option<u64> {
    text.lines().nth(1)?.split_whitespace().nth(3)?.parse().ok()
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

/// Removes what a failed import left so nothing half-imported is visible: the records it
/// made, and the ingests of this run's files. Runs even after a cancel: this is the tidying
/// the cancel asks for.
pub fn clean_up(
    runner: &dyn Runner,
    provider: Provider,
    node: &Node,
    before: &[CtrImage],
    names: &[String],
) -> Result<Vec<String>, ExecError> {
    let argv = remove_ingests_argv(node.root.as_deref().unwrap_or(DEFAULT_ROOT), &layout::ingest_prefix());
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let ingests = runner.stdout(&provider.exec(&node.name, &argv).cleanup())?.lines().count();
    let after = parse_ctr_images(&runner.stdout(&provider.exec(&node.name, &list_images_argv()).cleanup())?);
    let mut removed = leftovers(before, &after, names);
    if !removed.is_empty() {
        let argv = remove_argv(&removed);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        runner.run(&provider.exec(&node.name, &argv).cleanup())?;
    }
    if ingests > 0 {
        removed.push(format!("{ingests} partial blob(s) in containerd's ingest area"));
    }
    Ok(removed)
}

/// Where containerd keeps its state unless its config says otherwise (kind's nodes don't).
const DEFAULT_ROOT: &str = "/var/lib/containerd";

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
            ["ctr", "--namespace=k8s.io", "images", "import", "--snapshotter=native", "-"]
        );
        assert_eq!(
            import_argv("overlayfs", true),
            ["ctr", "--namespace=k8s.io", "images", "import", "--local", "--snapshotter=overlayfs", "-"]
        );
    }

    #[test]
    fn superseded_are_the_old_content_nothing_else_names_and_every_import_record() {
        use crate::resolve::image::Identity;

        let old = format!("sha256:{}", "0".repeat(64));
        let kept = format!("sha256:{}", "1".repeat(64));
        let before = vec![
            record("docker.io/library/app:dev", "sha256:oldmanifest"),
            record(&old, "sha256:oldmanifest"),
            record("import-2026-11-24@sha256:oldmanifest", "sha256:oldmanifest"),
            record("docker.io/library/lib:dev", "sha256:libmanifest"),
            record(&kept, "sha256:libmanifest"),
            record("docker.io/library/other:1", "sha256:libmanifest"),
        ];
        let image = |name: &str| {
            Image::for_tests(name, Identity { config: Some(format!("sha256:{}", "9".repeat(64))), manifest: None })
        };
        let (app, lib) = (image("app:dev"), image("lib:dev"));
        let doomed = superseded(&before, &[&app, &lib]);
        assert_eq!(doomed, [old.clone(), "import-2026-11-24@sha256:oldmanifest".to_string()]);
        assert!(superseded(&before[3..], &[&lib]).is_empty(), "other:1 still names lib's old content");
        let id = format!("sha256:{}", "9".repeat(64));
        assert_eq!(id_records_to_make(&before, &[&app]), [("docker.io/library/app:dev".to_string(), id)]);
        assert!(id_records_to_make(&[], &[&app]).is_empty(), "CRI names what is new to it");
    }

    #[test]
    fn active_ingests_are_the_rows_under_the_header() {
        let text = "REF\t\t\t\tSIZE\tAGE\t\t\t\ntar-blobs/kindload-1-2/abc\t56.03MB\tLess than a second\t\n";
        assert_eq!(parse_active_ingests(text), ["tar-blobs/kindload-1-2/abc 56.03MB Less than a second"]);
        assert!(parse_active_ingests("REF\tSIZE\tAGE\t\n").is_empty());
    }

    #[test]
    fn ingest_removal_takes_only_this_runs_folders() {
        let root = tempfile::tempdir().unwrap();
        let ingest = root.path().join("io.containerd.content.v1.content/ingest");
        for (dir, reference) in [("a", "k8s.io/1/tar-blobs/kindload-1-2/abc"), ("b", "k8s.io/1/layer-sha256:abc")] {
            std::fs::create_dir_all(ingest.join(dir)).unwrap();
            std::fs::write(ingest.join(dir).join("ref"), reference).unwrap();
        }
        let argv = remove_ingests_argv(&root.path().display().to_string(), "tar-blobs/kindload-1-2/");
        let out = std::process::Command::new(&argv[0]).args(&argv[1..]).output().unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
        assert!(!ingest.join("a").exists() && ingest.join("b").exists(), "another's ingest stays");
    }

    #[test]
    fn df_available_column() {
        let df = "Filesystem     1024-blocks  Used Available Capacity Mounted on\ntmpfs              24576 24576         0 100% /var/lib/containerd\n";
        assert_eq!(parse_df_available(df), Some(0));
        assert_eq!(parse_df_available("nonsense"), None);
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
