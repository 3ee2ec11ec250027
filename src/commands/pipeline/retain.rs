//! The retention policy on a node, in an `exec` the load already holds open: kindload's
//! label written on every name it loaded, then the repository's versions and the node's
//! containers listed, older versions chosen here (`plan::retention`) and removed, and the
//! bytes containerd freed measured around the removal.

use crate::exec::{ExecError, Session};
use crate::plan::retention::{self, Keep};
use crate::report::RetentionReport;
use crate::resolve::holdings::{parse_survey, section, Section, READY};
use crate::resolve::image::Identity;
use crate::resolve::reference::ImageRef;

/// The retention, as a shell function: `retain KEEP STAMP NREAD READ... NAMES...`, printing
/// as the survey does (its `s`). Labels each name as loaded at STAMP under that name, all at
/// once (each `ctr` is a process start in the node); unless KEEP is `all`, then lists the
/// labelled records and those READ's filters match (CRI's id records, for the read-back)
/// as `loaded`,
/// prints [`READY`] and reads lines up to `@@end`. `@@more` first asks for what a removal is
/// chosen from: every record naming the content of a labelled one (`versions`) and the
/// node's containers, then [`READY`] and the records to remove, one per line up to `@@end`,
/// removed in one `rm --sync` between two `du -sb` of containerd's root. A node whose
/// repositories hold no more than KEEP versions is spared those two listings.
macro_rules! retain_function {
    () => {
        r#"retain() {
keep=$1; stamp=$2; nread=$3; shift 3; rd=
while [ "$nread" -gt 0 ]; do nread=$((nread - 1)); rd="$rd $1"; shift; done
out=$(mktemp -d); labels=; i=0
for a; do i=$((i + 1)); s "label:$a" ctr -n k8s.io images label "$a" "io.kindload.loaded=$stamp:$a" >"$out/$i" & labels="$labels $!"; done
wait $labels; i=0; for a; do i=$((i + 1)); cat "$out/$i"; done
rm -rf "$out"
[ "$keep" = all ] && return 0
set -f; loaded=$(ctr -n k8s.io images ls 'labels."io.kindload.loaded"' $rd 2>&1); r=$?; set +f
printf '@@kindload loaded %s\n%s\n' "$r" "$loaded"
printf '@@kindload ready 0\n'
set --; a=
while IFS= read -r a; do [ "$a" = @@end ] && break; set -- "$@" "$a"; done
if [ "${1-}" = @@more ]; then
  held=$(mktemp); ctr -n k8s.io containers ls >"$held" 2>&1 & listing=$!
  set --
  for t in $(printf '%s\n' "$loaded" | while read -r _ _ d _; do case $d in sha256:*) echo "$d" ;; esac; done | sort -u); do
    set -- "$@" "target.digest==$t"
  done
  if [ $# -gt 0 ]; then s versions ctr -n k8s.io images ls "$@"; else printf '@@kindload versions 0\n'; fi
  wait $listing; printf '@@kindload containers %s\n' "$?"; cat "$held"; rm -f "$held"
  printf '@@kindload ready 0\n'
  set --; a=
  while IFS= read -r a; do [ "$a" = @@end ] && break; set -- "$@" "$a"; done
fi
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
/// KEEP STAMP NREAD READ... NAMES...`. Gives reloaded names CRI's id record, removes the
/// superseded records, runs the retention and prints [`READY`]; then reads the names back,
/// for verification, and prints [`TIDIED`]: from CRI where crictl exists, else their records
/// and CRI's `sha256:<id>` records (READ's filters), which the retention's `loaded` listing
/// already holds unless every version is kept (see [`read_back`]).
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
kept=$1; shift 2; shift "$(($1 + 1))"
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
/// is absent and the retention listed what it labelled (`listed`), that listing, as the
/// records it is: every name kindload labelled, and the CRI id records it was asked for.
pub(super) fn read_back(listed: &[Section], mut after: Vec<Section>) -> Vec<Section> {
    let answered = after.iter().any(|s| s.name == "crictl" || s.name == "images");
    if let Some(loaded) = section(listed, "loaded").filter(|s| s.ok() && !answered) {
        after.push(Section { name: "images".into(), ..loaded.clone() });
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

/// The tidying's arguments: the id records to make, the records to remove, the retention's
/// (see [`retain_args`]). Every name is an argument; the script is constant.
pub(super) fn tidy_args(ids: &[(String, String)], doomed: &[String], retention: Vec<String>) -> Vec<String> {
    let mut args = vec![ids.len().to_string()];
    args.extend(ids.iter().flat_map(|(name, id)| [name.clone(), id.clone()]));
    args.push(doomed.len().to_string());
    args.extend(doomed.iter().cloned());
    args.extend(retention);
    args
}

/// The retention's arguments: `KEEP STAMP NREAD READ... NAMES...`, READ being `ctr images
/// ls` filters for CRI's id records of the `read` images, listed beside the labelled names
/// for the read-back: by name where the id is known, else by the content named.
pub(super) fn retain_args(keep: Keep, stamp: u64, read: &[&Identity], names: &[String]) -> Vec<String> {
    let filters: Vec<String> = read
        .iter()
        .filter_map(|i| match (&i.config, &i.manifest) {
            (Some(id), _) => Some(format!("name==\"{id}\"")),
            (None, Some(manifest)) => Some(format!("target.digest=={manifest}")),
            (None, None) => None,
        })
        .collect();
    let mut args = vec![keep.word(), stamp.to_string(), filters.len().to_string()];
    args.extend(filters);
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

/// After the script printed up to its first [`READY`] (`listed`): with a count to keep and a
/// repository holding more versions, the listings a removal is chosen from asked for, the
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
    let repositories = scope.repositories();
    let choice = match read(listed, "loaded") {
        Ok(loaded) if retention::beyond(&retention::parse_records(loaded), &repositories, keep) => {
            session.send(&["@@more".into(), "@@end".into()])?;
            let more = parse_survey(&session.read_until(READY)?);
            // What this node was given now stays, even when the run knew its names only on
            // reading them (an archive on stdin).
            let protected: Vec<String> = scope.run_names.iter().chain(scope.labelled).cloned().collect();
            match (read(&more, "versions"), read(&more, "containers")) {
                (Ok(versions), Ok(containers)) => retention::choose(
                    &retention::parse_records(versions),
                    &retention::parse_container_images(containers),
                    &repositories,
                    &protected,
                    keep,
                ),
                (Err(e), _) | (_, Err(e)) => {
                    report.error = Some(join(report.error.take(), &format!("older versions were left: {e}")));
                    Default::default()
                }
            }
        }
        Ok(_) => Default::default(),
        Err(e) => {
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

/// A listing the script printed, or why it is missing.
fn read<'a>(sections: &'a [Section], name: &str) -> Result<&'a str, String> {
    match section(sections, name) {
        Some(s) if s.ok() => Ok(s.body.as_str()),
        Some(s) => Err(format!("listing the {name} failed: {}", s.body.trim())),
        None => Err(format!("the node printed no {name} listing")),
    }
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
        let id = Identity { config: Some("sha256:c".into()), manifest: None };
        let stored = Identity { config: None, manifest: Some("sha256:m".into()) };
        let retention = retain_args(Keep::Newest(2), 17, &[&id, &stored], &["docker.io/library/app:$(x)".into()]);
        let argv = tidy_argv(&tidy_args(&ids, &["sha256:old".into()], retention));
        assert_eq!(argv[2], TIDY);
        assert_eq!(
            argv[4..],
            [
                "1",
                "docker.io/library/app:dev",
                "sha256:c",
                "1",
                "sha256:old",
                "2",
                "17",
                "2",
                "name==\"sha256:c\"",
                "target.digest==sha256:m",
                "docker.io/library/app:$(x)"
            ]
        );
        assert!(!TIDY.contains("app"), "the script is constant");
    }

    /// The node's side of a tidying: TIDY under a real `sh`, with stand-ins for `ctr` (each
    /// call's arguments appended to a file; `images ls` answered with `listing`, `containers
    /// ls` with no container) and `du`. The host's side is driven as the pipeline drives it.
    struct Tidying {
        session: Session,
        dir: tempfile::TempDir,
    }

    impl Tidying {
        fn start(args: &[&str], listing: &str) -> Tidying {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("listing"), listing).unwrap();
            let stand_in = concat!(
                "ctr() { echo \"$*\" >>\"$DIR/calls\"; case \"$3 $4\" in\n",
                "'images ls') cat \"$DIR/listing\" ;;\n",
                "'containers ls') echo 'CONTAINER IMAGE RUNTIME' ;; esac; }\n",
                "du() { echo \"$((1000 + $(cat \"$DIR/du\" 2>/dev/null || echo 500))) /var/lib/containerd\"; echo 0 >\"$DIR/du\"; }\n",
            );
            let script = format!("{stand_in}{TIDY}");
            let cmd =
                crate::exec::Cmd::new("sh").env("DIR", dir.path()).args(["-c", &script, "kindload-tidy"]).args(args);
            Tidying { session: Session::start(&cmd).expect("sh runs"), dir }
        }

        /// The listings up to the first ready, the retention's report, the read-back.
        fn settle(&mut self, scope: &Scope) -> (Vec<Section>, Option<RetentionReport>, Vec<Section>) {
            let listed = parse_survey(&self.session.read_until(READY).unwrap());
            let report = settle(&mut self.session, "kind-worker", &listed, scope).unwrap();
            let after = parse_survey(&self.session.read_until(TIDIED).unwrap());
            (listed, report, after)
        }

        fn calls(&self) -> Vec<String> {
            std::fs::read_to_string(self.dir.path().join("calls")).unwrap().lines().map(String::from).collect()
        }
    }

    const HEADER: &str = "REF TYPE DIGEST SIZE PLATFORMS LABELS\n";

    fn row(name: &str, target: &str, loaded: Option<u64>) -> String {
        let label = loaded.map(|at| format!("io.kindload.loaded={at}:{name}")).unwrap_or("-".into());
        format!("{name} application/vnd.oci.image.index.v1+json {target} 1.0 kB linux/amd64 {label}\n")
    }

    #[test]
    fn a_repository_beyond_keep_is_listed_in_full_then_its_oldest_removed() {
        let listing = [HEADER.to_string(), row("docker.io/library/app:1", "sha256:m1", Some(5))]
            .into_iter()
            .chain([row("sha256:c1", "sha256:m1", None), row("docker.io/library/app:2", "sha256:m2", Some(77))])
            .collect::<String>();
        let args = [
            "1",
            "app:2",
            "sha256:c2",
            "1",
            "sha256:c0",
            "1",
            "77",
            "1",
            "name==\"sha256:c2\"",
            "docker.io/library/app:2",
        ];
        let mut tidying = Tidying::start(&args, &listing);
        let labelled = ["docker.io/library/app:2".to_string()];
        let scope = Scope { keep: Keep::Newest(1), labelled: &labelled, run_names: &labelled };
        let (listed, report, _) = tidying.settle(&scope);
        let calls = tidying.calls();
        assert_eq!(calls[0], "-n k8s.io images tag --force app:2 sha256:c2");
        assert_eq!(calls[1], "-n k8s.io images rm --sync sha256:c0");
        assert_eq!(
            calls[2],
            "-n k8s.io images label docker.io/library/app:2 io.kindload.loaded=77:docker.io/library/app:2"
        );
        assert_eq!(calls[3], "-n k8s.io images ls labels.\"io.kindload.loaded\" name==\"sha256:c2\"");
        assert!(calls.contains(&"-n k8s.io containers ls".to_string()), "{calls:?}");
        assert!(
            calls.contains(&"-n k8s.io images ls target.digest==sha256:m1 target.digest==sha256:m2".to_string()),
            "{calls:?}"
        );
        assert_eq!(calls.last().unwrap(), "-n k8s.io images rm --sync docker.io/library/app:1 sha256:c1");
        assert!(section(&listed, "loaded").is_some_and(|s| s.ok() && s.body.contains("app:1")));
        let report = report.expect("a report where versions are kept");
        assert_eq!(
            (report.removed, report.bytes_freed, report.error),
            (vec!["docker.io/library/app:1".to_string()], 500, None)
        );
    }

    #[test]
    fn a_repository_within_keep_is_labelled_and_listed_once() {
        let listing = [HEADER.to_string(), row("docker.io/library/app:1", "sha256:m1", Some(5))]
            .into_iter()
            .chain([row("docker.io/library/app:2", "sha256:m2", Some(77)), row("sha256:c2", "sha256:m2", None)])
            .collect::<String>();
        let args = ["0", "0", "2", "77", "1", "name==\"sha256:c2\"", "docker.io/library/app:2"];
        let mut tidying = Tidying::start(&args, &listing);
        let labelled = ["docker.io/library/app:2".to_string()];
        let scope = Scope { keep: Keep::Newest(2), labelled: &labelled, run_names: &labelled };
        let (listed, report, after) = tidying.settle(&scope);
        assert_eq!(tidying.calls().len(), 2, "a label and one listing: {:?}", tidying.calls());
        let report = report.expect("a report where versions are kept");
        assert!(report.removed.is_empty() && report.error.is_none(), "{report:?}");
        // Without crictl, that listing is the read-back: the name and CRI's id record.
        assert!(section(&after, "images").is_none(), "no second listing: {after:?}");
        let back = read_back(&listed, after);
        let images = section(&back, "images").expect("the labelled listing stands in");
        assert!(images.ok() && images.body.contains("sha256:c2 "), "{images:?}");
        let crictl = vec![Section { name: "crictl".into(), status: 0, body: String::new() }];
        assert!(section(&read_back(&listed, crictl), "images").is_none(), "CRI's answers are the proof there");
    }

    #[test]
    fn tidy_with_every_version_kept_only_labels() {
        let args = ["0", "0", "all", "77", "0", "docker.io/library/app:2", "r:5000/app:2"];
        let mut tidying = Tidying::start(&args, HEADER);
        let labelled = ["docker.io/library/app:2".to_string(), "r:5000/app:2".to_string()];
        let scope = Scope { keep: Keep::All, labelled: &labelled, run_names: &labelled };
        let (listed, report, after) = tidying.settle(&scope);
        let calls = tidying.calls();
        let (labels, read_back) = calls.split_at(2);
        assert!(labels.iter().all(|c| c.contains("images label")), "{calls:?}");
        assert!(read_back.iter().all(|c| c.contains("images ls")), "only the read-back lists: {calls:?}");
        assert_eq!(listed.len(), 2, "labels only: {listed:?}");
        assert!(report.is_none());
        assert!(after.iter().all(|s| s.name == "images"), "after the labels, only the read-back: {after:?}");
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
