//! The retention policy on a node, in an `exec` the load already holds open: kindload's
//! label written on every name it loaded, then the repository's versions and the node's
//! containers listed, older versions chosen here (`plan::retention`) and removed, and the
//! bytes containerd freed measured around the removal.

use crate::exec::{ExecError, Session};
use crate::plan::retention::{self, Keep};
use crate::report::RetentionReport;
use crate::resolve::holdings::{parse_survey, section, Section, READY};
use crate::resolve::reference::ImageRef;

/// The retention, as a shell function: `retain KEEP STAMP NAMES...`, printing as the survey
/// does (its `s`). Labels each name as loaded at STAMP under that name, all at once and
/// beside the listing of the containers (each `ctr` is a process start in the node); unless
/// KEEP is `all`, then lists every record naming the content of a labelled one (`versions`),
/// prints [`READY`] and reads the records to remove, one per line up to `@@end`,
/// then removes them in one `rm --sync` between two `du -sb` of containerd's root.
macro_rules! retain_function {
    () => {
        r#"retain() {
keep=$1; stamp=$2; shift 2
out=$(mktemp -d); labels=; i=0
for a; do i=$((i + 1)); s "label:$a" ctr -n k8s.io images label "$a" "io.kindload.loaded=$stamp:$a" >"$out/$i" & labels="$labels $!"; done
[ "$keep" = all ] || { ctr -n k8s.io containers ls >"$out/held" 2>&1 & listing=$!; }
wait $labels; i=0; for a; do i=$((i + 1)); cat "$out/$i"; done
[ "$keep" = all ] && { rm -rf "$out"; return 0; }
first=$(ctr -n k8s.io images ls 'labels."io.kindload.loaded"' 2>&1); r=$?
set --
if [ $r -eq 0 ]; then
  for t in $(printf '%s\n' "$first" | while read -r _ _ d _; do case $d in sha256:*) echo "$d" ;; esac; done | sort -u); do
    set -- "$@" "target.digest==$t"
  done
fi
if [ $r -ne 0 ]; then printf '@@kindload versions %s\n%s\n' "$r" "$first"
elif [ $# -gt 0 ]; then s versions ctr -n k8s.io images ls "$@"
else printf '@@kindload versions 0\n'; fi
wait $listing; printf '@@kindload containers %s\n' "$?"; cat "$out/held"; rm -rf "$out"
printf '@@kindload ready 0\n'
set --; a=
while IFS= read -r a; do [ "$a" = @@end ] && break; set -- "$@" "$a"; done
[ $# -gt 0 ] || return 0
b=$(du -sb /var/lib/containerd 2>/dev/null)
s removed ctr -n k8s.io images rm --sync "$@"
f=$(du -sb /var/lib/containerd 2>/dev/null)
printf '@@kindload freed 0\n%s %s\n' "${b%%[!0-9]*}" "${f%%[!0-9]*}"
}
"#
    };
}
pub(super) use retain_function;

/// The sideload's tidying, as a shell function: `tidy NIDS (NAME ID)... NDOOMED DOOMED...
/// KEEP STAMP NAMES...`. Gives reloaded names CRI's id record, removes the superseded
/// records, runs the retention and prints [`READY`]; then reads the names back, for
/// verification, and prints [`TIDIED`]: from CRI where crictl exists, else their records and
/// those of the same content, CRI's `sha256:<id>` among them, which the retention's
/// `versions` listing already holds unless every version is kept (see [`read_back`]).
macro_rules! tidy_function {
    () => {
        r#"tidy() {
count=$1; shift
while [ "$count" -gt 0 ]; do count=$((count - 1)); s "tag:$2" ctr -n k8s.io images tag --force "$1" "$2"; shift 2; done
count=$1; shift; doomed=
while [ "$count" -gt 0 ]; do count=$((count - 1)); doomed="$doomed $1"; shift; done
if [ -n "$doomed" ]; then set -f; s superseded ctr -n k8s.io images rm --sync $doomed; set +f; fi
retain "$@"
printf '@@kindload ready 0\n'
kept=$1; shift 2
if command -v crictl >/dev/null 2>&1; then
  printf '@@kindload crictl 0\n'
  for name; do j "inspecti:$name" crictl inspecti -o json "$name"; done
elif [ "$kept" = all ]; then
  set -f; records "$@"; set +f
fi
printf '@@kindload tidied 0\n'
}
"#
    };
}

/// What the tidying read back for verification (`after`, up to [`TIDIED`]); where crictl
/// is absent and the retention listed the versions (`listed`), that listing, as the records
/// it is: every record naming the content of a name kindload labelled.
pub(super) fn read_back(listed: &[Section], mut after: Vec<Section>) -> Vec<Section> {
    let answered = after.iter().any(|s| s.name == "crictl" || s.name == "images");
    if let Some(versions) = section(listed, "versions").filter(|s| s.ok() && !answered) {
        after.push(Section { name: "images".into(), ..versions.clone() });
    }
    after
}

/// The line the tidying prints when it is done, after the read-back.
pub(super) const TIDIED: &str = "@@kindload tidied 0";

/// The functions a sideload's node session offers besides the survey and the claims (see
/// `transfer::lock`): the tidying, called in the session instead of an `exec` of its own.
pub(super) const SESSION_FUNCTIONS: &str = concat!(retain_function!(), tidy_function!(), "called() { tidy \"$@\"; }\n");

/// The tidying in an `exec` of its own, for a node that has no session (only retagged).
const TIDY: &str =
    concat!(crate::resolve::holdings::survey_functions!(), retain_function!(), tidy_function!(), "tidy \"$@\"\n");

/// The tidying's arguments. Every name is an argument; the script is constant.
pub(super) fn tidy_args(
    ids: &[(String, String)],
    doomed: &[String],
    keep: Keep,
    stamp: u64,
    names: &[String],
) -> Vec<String> {
    let mut args = vec![ids.len().to_string()];
    args.extend(ids.iter().flat_map(|(name, id)| [name.clone(), id.clone()]));
    args.push(doomed.len().to_string());
    args.extend(doomed.iter().cloned());
    args.extend([keep.word(), stamp.to_string()]);
    args.extend(names.iter().cloned());
    args
}

/// The argv of the tidying exec, with `args` from [`tidy_args`].
pub(super) fn tidy_argv(args: &[String]) -> Vec<String> {
    let mut argv: Vec<String> = vec!["sh".into(), "-c".into(), TIDY.into(), "kindload-tidy".into()];
    argv.extend(args.iter().cloned());
    argv
}

/// What the retention on one node is about.
pub(super) struct Scope<'a> {
    pub keep: Keep,
    /// The names labelled on this node now; their repositories are the ones retained.
    pub labelled: &'a [String],
    /// Every name this run loaded, on any node: never removed.
    pub run_names: &'a [String],
}

impl Scope<'_> {
    fn repositories(&self) -> Vec<String> {
        let mut repos: Vec<String> = Vec::new();
        for repo in self.labelled.iter().filter_map(|n| ImageRef::parse(n).ok()).map(|r| r.repository()) {
            if !repos.contains(&repo) {
                repos.push(repo);
            }
        }
        repos
    }
}

/// The label sections that failed, as one message.
pub(super) fn label_errors(sections: &[Section]) -> Option<String> {
    let failed: Vec<String> = sections
        .iter()
        .filter(|s| s.name.starts_with("label:") && !s.ok())
        .map(|s| format!("labelling {} failed: {}", &s.name["label:".len()..], s.body.trim()))
        .collect();
    (!failed.is_empty()).then(|| failed.join("; "))
}

/// After the script printed up to its first [`READY`] (`listed`): with a count to keep, the
/// choice sent and the removal read back, up to the next [`READY`]. The report, or None
/// when the policy is off and the labels were written.
pub(super) fn settle(
    session: &mut Session,
    node: &str,
    listed: &[Section],
    scope: &Scope,
) -> Result<Option<RetentionReport>, ExecError> {
    let mut report = RetentionReport { node: node.to_string(), removed: Vec::new(), bytes_freed: 0, error: None };
    report.error = label_errors(listed);
    let Keep::Newest(keep) = scope.keep else {
        return Ok(report.error.is_some().then_some(report));
    };
    let read = |name: &str| match section(listed, name) {
        Some(s) if s.ok() => Ok(s.body.as_str()),
        Some(s) => Err(format!("listing the {name} failed: {}", s.body.trim())),
        None => Err(format!("the node printed no {name} listing")),
    };
    // What this node was given now stays, even when the run knew its names only on reading
    // them (an archive on stdin).
    let protected: Vec<String> = scope.run_names.iter().chain(scope.labelled).cloned().collect();
    let choice = match (read("versions"), read("containers")) {
        (Ok(versions), Ok(containers)) => retention::choose(
            &retention::parse_records(versions),
            &retention::parse_container_images(containers),
            &scope.repositories(),
            &protected,
            keep,
        ),
        (Err(e), _) | (_, Err(e)) => {
            report.error = Some(join(report.error.take(), &format!("older versions were left: {e}")));
            Default::default()
        }
    };
    let mut lines = choice.records.clone();
    lines.push("@@end".into());
    session.send(&lines)?;
    let done = parse_survey(&session.read_until(READY)?);
    match section(&done, "removed") {
        Some(s) if !s.ok() => {
            report.error =
                Some(join(report.error.take(), &format!("removing older versions failed: {}", s.body.trim())))
        }
        Some(_) => report.removed = choice.versions,
        None => {}
    }
    report.bytes_freed = section(&done, "freed").map(|s| bytes_freed(&s.body)).unwrap_or(0);
    Ok(Some(report))
}

/// `BEFORE AFTER` (bytes under containerd's root): what the removal freed, never negative.
fn bytes_freed(body: &str) -> u64 {
    let sizes: Vec<u64> = body.split_whitespace().filter_map(|n| n.parse().ok()).collect();
    match sizes[..] {
        [before, after] => before.saturating_sub(after),
        _ => 0,
    }
}

fn join(first: Option<String>, then: &str) -> String {
    match first {
        Some(first) => format!("{first}; {then}"),
        None => then.to_string(),
    }
}

/// Adds one node's retention to what the run reports, one entry per node.
pub(super) fn record(all: &std::sync::Mutex<Vec<RetentionReport>>, report: RetentionReport) {
    let mut all = all.lock().expect("retention reports");
    match all.iter_mut().find(|r| r.node == report.node) {
        Some(had) => {
            had.removed.extend(report.removed);
            had.bytes_freed += report.bytes_freed;
            if let Some(e) = report.error {
                had.error = Some(join(had.error.take(), &e));
            }
        }
        None => all.push(report),
    }
}

/// Unix milliseconds: the label's value, which orders a repository's versions.
pub(super) fn stamp() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_writes_the_label_the_choice_reads() {
        let script = retain_function!();
        assert!(script.contains(&format!("\"{}=$stamp:$a\"", retention::LOADED_LABEL)));
        assert!(script.contains(&format!("'labels.\"{}\"'", retention::LOADED_LABEL)));
    }

    #[test]
    fn tidy_takes_every_name_as_an_argument() {
        let ids = vec![("docker.io/library/app:dev".to_string(), "sha256:c".to_string())];
        let argv = tidy_argv(&tidy_args(
            &ids,
            &["sha256:old".into()],
            Keep::Newest(2),
            17,
            &["docker.io/library/app:$(x)".into()],
        ));
        assert_eq!(argv[2], TIDY);
        assert_eq!(
            argv[4..],
            ["1", "docker.io/library/app:dev", "sha256:c", "1", "sha256:old", "2", "17", "docker.io/library/app:$(x)"]
        );
        assert!(!TIDY.contains("app"), "the script is constant");
    }

    /// Runs TIDY with a stand-in ctr (each call's arguments to fd 3) and `du`, answering the
    /// retention's listing with `doomed` as the records to remove.
    fn run_tidy(args: &[&str], doomed: &[&str]) -> (Vec<String>, Vec<Section>, Vec<Section>) {
        let stand_in = concat!(
            "exec 3>&2\n",
            "ctr() { echo \"$*\" >&3; case \"$3 $4\" in\n",
            "'images ls') echo 'REF TYPE DIGEST SIZE PLATFORMS LABELS'; echo 'docker.io/library/app:1 t sha256:m1 1 kB linux/amd64 io.kindload.loaded=5:docker.io/library/app:1' ;;\n",
            "'containers ls') echo 'CONTAINER IMAGE RUNTIME' ;; esac; }\n",
            "du() { echo \"$((1000 + $(cat \"$DU_STATE\" 2>/dev/null || echo 500))) /var/lib/containerd\"; echo 0 >\"$DU_STATE\"; }\n",
        );
        let script = format!("{stand_in}{TIDY}");
        let state = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sh")
            .env("DU_STATE", state.path().join("du"))
            .args(["-c", &script, "kindload-tidy"])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("sh runs");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            for line in doomed.iter().chain(&["@@end"]) {
                writeln!(stdin, "{line}").unwrap();
            }
        }
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (text, _) = text.split_once(TIDIED).expect("the tidying's end");
        let (listed, done) = text.split_once(&format!("{READY}\n")).expect("a first ready");
        let calls = String::from_utf8_lossy(&out.stderr).lines().map(str::to_string).collect();
        (calls, parse_survey(listed), parse_survey(done))
    }

    #[test]
    fn tidy_tags_removes_superseded_labels_lists_then_removes_what_it_is_told() {
        let (calls, listed, done) = run_tidy(
            &["1", "app:2", "sha256:c2", "1", "sha256:c0", "2", "77", "docker.io/library/app:2"],
            &["docker.io/library/app:1", "sha256:c1"],
        );
        assert_eq!(calls[0], "-n k8s.io images tag --force app:2 sha256:c2");
        assert_eq!(calls[1], "-n k8s.io images rm --sync sha256:c0");
        // the labels and the container listing run at once
        let label = "-n k8s.io images label docker.io/library/app:2 io.kindload.loaded=77:docker.io/library/app:2";
        assert!(calls[2..4].contains(&label.to_string()), "{calls:?}");
        assert!(calls.contains(&"-n k8s.io images ls labels.\"io.kindload.loaded\"".to_string()), "{calls:?}");
        assert!(calls.contains(&"-n k8s.io images ls target.digest==sha256:m1".to_string()), "{calls:?}");
        assert!(calls.contains(&"-n k8s.io containers ls".to_string()), "{calls:?}");
        assert!(
            calls.contains(&"-n k8s.io images rm --sync docker.io/library/app:1 sha256:c1".to_string()),
            "{calls:?}"
        );
        assert!(section(&listed, "versions").is_some_and(|s| s.ok() && s.body.contains("app:1")));
        assert!(section(&listed, "containers").is_some_and(|s| s.ok() && s.body.starts_with("CONTAINER")));
        assert!(section(&done, "removed").is_some_and(Section::ok));
        assert_eq!(bytes_freed(&section(&done, "freed").unwrap().body), 500);
        assert!(label_errors(&listed).is_none());
    }

    #[test]
    fn tidy_with_every_version_kept_only_labels() {
        let (calls, listed, done) = run_tidy(&["0", "0", "all", "77", "docker.io/library/app:2", "r:5000/app:2"], &[]);
        let (labels, read_back) = calls.split_at(2);
        assert!(labels.iter().all(|c| c.contains("images label")), "{calls:?}");
        assert!(read_back.iter().all(|c| c.contains("images ls")), "only the read-back lists: {calls:?}");
        assert_eq!(listed.len(), 2, "labels only: {listed:?}");
        assert!(done.iter().all(|s| s.name == "images"), "after the labels, only the read-back: {done:?}");
    }

    #[test]
    fn without_crictl_the_versions_listing_is_the_read_back() {
        let (_, listed, done) = run_tidy(&["0", "0", "2", "77", "docker.io/library/app:2"], &[]);
        assert!(section(&done, "images").is_none(), "no second listing: {done:?}");
        let back = read_back(&listed, done);
        let images = section(&back, "images").expect("the versions listing stands in");
        assert!(images.ok() && images.body.contains("docker.io/library/app:1"), "{images:?}");
        let crictl = vec![Section { name: "crictl".into(), status: 0, body: String::new() }];
        assert!(section(&read_back(&listed, crictl), "images").is_none(), "CRI's answers are the proof there");
    }

    #[test]
    fn a_node_reported_twice_is_one_entry() {
        let all = std::sync::Mutex::new(Vec::new());
        let entry = |removed: &str, freed: u64, error: Option<&str>| RetentionReport {
            node: "kind-worker".into(),
            removed: vec![removed.into()],
            bytes_freed: freed,
            error: error.map(String::from),
        };
        record(&all, entry("app:1", 10, None));
        record(&all, entry("lib:1", 5, Some("labelling lib:2 failed")));
        record(&all, RetentionReport { node: "kind-control-plane".into(), ..Default::default() });
        let all = all.into_inner().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].removed, ["app:1", "lib:1"]);
        assert_eq!((all[0].bytes_freed, all[0].error.as_deref()), (15, Some("labelling lib:2 failed")));
    }

    #[test]
    fn freed_bytes_come_from_the_two_sizes() {
        assert_eq!(bytes_freed("2000 1500\n"), 500);
        assert_eq!(bytes_freed("1500 2000\n"), 0, "something else grew meanwhile");
        assert_eq!(bytes_freed(" \n"), 0);
    }
}
