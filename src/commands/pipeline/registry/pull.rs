//! Each node's session: surveyed in one `exec` that stays open, then told on its stdin to
//! pull, move the names, remove the superseded version and read back what it holds, and
//! after each pull to label what it pulled and remove older versions (`retain`).

use std::time::Instant;

use super::{Outcome, Route};
use crate::commands::pipeline::retain;
use crate::exec::{ExecError, Session};
use crate::plan::Action;
use crate::report::RetentionReport;
use crate::report::Transport;
use crate::resolve::holdings::{parse_survey, section, survey_functions, Asked, READY};
use crate::resolve::image::Image;
use crate::resolve::node::{self, Node};
use crate::resolve::provider::Provider;
use crate::resolve::records::CtrImage;
use crate::resolve::reference::ImageRef;
use crate::transfer::import;

/// Each node's open session, by node name, while the load may still pull through it.
pub(crate) type Sessions = std::sync::Mutex<std::collections::HashMap<String, Session>>;

/// Ends every session: each node's shell reads the end of its stdin and exits, unwaited.
pub(crate) fn close_sessions(sessions: &Sessions) {
    for (_, session) in sessions.lock().expect("sessions").drain() {
        session.end();
    }
}

/// Surveys the nodes through sessions kept open for the pulls: a pull then costs no `exec`.
pub(crate) fn survey_held(
    provider: Provider,
    containers: Vec<crate::resolve::provider::NodeContainer>,
    route: &Route,
    names: &[String],
    records: &[String],
) -> (Vec<Node>, Sessions) {
    let hosts = route.hosts();
    let asked = Asked { hosts: &hosts, names, records };
    by_name(node::probe_all_held(provider, containers, SESSION, &asked))
}

/// The nodes, and the sessions of those that have one, by node name.
pub(crate) fn by_name(probed: Vec<(Node, Option<Session>)>) -> (Vec<Node>, Sessions) {
    let mut sessions = std::collections::HashMap::new();
    let mut nodes = Vec::new();
    for (node, session) in probed {
        if let Some(session) = session {
            sessions.insert(node.name.clone(), session);
        }
        nodes.push(node);
    }
    (nodes, std::sync::Mutex::new(sessions))
}

/// What one node's exec does besides the pull.
pub(super) struct NodePull {
    names: Vec<String>,
    /// CRI's `sha256:<id>` record to make (CRI makes it only for names it has not seen).
    id_record: Option<String>,
    /// Records of the version the names moved away from.
    doomed: Vec<String>,
    /// The image's id (config digest), when known: its record is read back with the names.
    id: Option<String>,
}

impl NodePull {
    pub(super) fn new(before: &[CtrImage], image: &Image, reference: &str, keep: bool) -> NodePull {
        let mut moved = image.clone();
        // The registry name moves with the pull: what it named before is superseded too.
        if let Ok(name) = ImageRef::parse(reference) {
            if !moved.names.contains(&name) {
                moved.names.push(name);
            }
        }
        NodePull {
            names: image.names.iter().map(ImageRef::normalized).collect(),
            id_record: import::id_records_to_make(before, &[&moved]).into_iter().next().map(|(_, id)| id),
            doomed: if keep { Vec::new() } else { import::superseded(before, &[&moved]) },
            id: image.identity.config.clone(),
        }
    }
}

/// The pull, as a shell function: `pull HOSTS_DIR REF SNAPSHOTTER LOCAL DOOMED ID NAMES...`,
/// printing as the survey does (its `s` and `j`). Pulls (unpacked for the node's CRI
/// snapshotter; LOCAL is `--local` on containerd 2.x, whose transfer service unpacks only
/// for the default one, else empty), moves every name and CRI's id record
/// onto the image in one `tag`, removes the superseded records (DOOMED, space-separated) in
/// one `rm` while it prints what verification reads: CRI's answer for each name where crictl
/// exists, else the records of the names and of ID (all records when ID is unknown). The
/// names move only once the pull succeeded: a failed pull leaves the node as it was. A
/// failed pull is tried twice more, 1 and 2 s later: a registry answers 500 to a manifest
/// read while another run pushes the same tag (seen with eight runs at once). Each
/// `ctr` costs a process start in the node, so there are four at most.
macro_rules! pull_function {
    () => {
        r#"pull() {
set -e; hosts=$1; ref=$2; snapshotter=$3; local=$4; doomed=$5; id=$6; shift 6
tries=1
until ctr -n k8s.io images pull $local --snapshotter "$snapshotter" --hosts-dir "$hosts" "$ref" >/dev/null; do
  [ "$tries" -lt 3 ] || return 1
  sleep "$tries"; tries=$((tries + 1))
done
ctr -n k8s.io images tag --force "$ref" "$@" >/dev/null
set +e
if [ -n "$doomed" ]; then
  gone=$(mktemp); set -f; s superseded ctr -n k8s.io images rm --sync $doomed >"$gone" & set +f
fi
if command -v crictl >/dev/null 2>&1; then
  printf '@@kindload crictl 0\n'
  for a; do case $a in sha256:*) ;; *) j "inspecti:$a" crictl inspecti -o json "$a" ;; esac; done
else
  if [ -n "$id" ]; then
    n=$#; for a in "$@" "$id"; do set -- "$@" "name==\"$a\""; done; shift "$n"
  else
    set --
  fi
  s images ctr -n k8s.io images ls "$@"
fi
if [ -n "$doomed" ]; then wait; cat "$gone"; rm -f "$gone"; fi
}
"#
    };
}

/// A node's session: the light survey (with the registry hosts), then, for each pull it is
/// told (its arguments one per line, then `@@end`), the pull's output under `@@kindload
/// pulled <status>`, the status and any error first; told `@@retain` and the retention's
/// arguments, the retention, which converses on its own. It waits with [`READY`] before each.
const SESSION: &str = concat!(
    survey_functions!(),
    pull_function!(),
    crate::commands::pipeline::retain::retain_function!(),
    r#"survey light "$@"
while :; do
  printf '@@kindload ready 0\n'
  set --; a=
  while IFS= read -r a; do [ "$a" = @@end ] && break; set -- "$@" "$a"; done
  [ "$a" = @@end ] || exit 0
  if [ "$1" = @@retain ]; then shift; retain "$@"; continue; fi
  o=$( (pull "$@") 2>&1 ); printf '@@kindload pulled %s\n%s\n' "$?" "$o"
done
"#
);

/// What a node is told for one pull: the lines its session reads as `pull`'s arguments.
fn pull_lines(node: &Node, hosts_dir: &str, reference: &str, plan: &NodePull) -> Vec<String> {
    let local = if node.containerd_major() >= Some(2) { "--local" } else { "" };
    let mut lines: Vec<String> = [hosts_dir, reference, node.import_snapshotter(), local].map(String::from).to_vec();
    // Record names hold no spaces: one line, split on them by the script.
    lines.push(plan.doomed.join(" "));
    lines.push(plan.id.clone().unwrap_or_default());
    lines.extend(plan.names.iter().cloned());
    lines.extend(plan.id_record.iter().cloned());
    lines.push("@@end".into());
    lines
}

pub(super) fn pull(
    session: &mut Session,
    node: &Node,
    route: &Route,
    image: &Image,
    pushed: &str,
    plan: &NodePull,
) -> Outcome {
    let started = Instant::now();
    let dir = route.held(node).map(|h| h.dir.as_str()).unwrap_or_default();
    let failed = |e: &dyn std::fmt::Display| Outcome {
        transport: Some(Transport::Registry),
        ..Outcome::failed(format!(
            "pulling {pushed} from registry {} failed: {e}; the node keeps what it had",
            route.name
        ))
    };
    let said = session.send(&pull_lines(node, dir, pushed, plan)).and_then(|()| session.read_until(READY));
    let sections = match said {
        Ok(text) => parse_survey(&text),
        Err(e) => return failed(&e),
    };
    let tidied = match section(&sections, "superseded") {
        Some(s) if !s.ok() => Some(format!("{}: removing the superseded image failed: {}", node.name, s.body.trim())),
        _ => None,
    };
    match section(&sections, "pulled") {
        Some(s) if s.ok() => Outcome {
            seconds: started.elapsed().as_secs_f64(),
            transport: Some(Transport::Registry),
            verdict: crate::verify::read_back(node, image, &sections),
            error: tidied,
            ..Outcome::new(Action::Loaded)
        },
        Some(s) => failed(&s.body.trim()),
        None => failed(&"the node printed no result"),
    }
}

/// After a pull, in the same session: the names pulled labelled as kindload's and, unless
/// every version is kept, the older versions of their repositories removed.
pub(super) fn retain(
    session: &mut Session,
    node: &Node,
    scope: &retain::Scope,
    stamp: u64,
) -> Result<Option<RetentionReport>, ExecError> {
    let mut lines = vec!["@@retain".to_string()];
    lines.extend(retain::retain_args(scope.keep, stamp, &[], scope.labelled));
    lines.push("@@end".into());
    session.send(&lines)?;
    let listed = parse_survey(&session.read_until(READY)?);
    retain::settle(session, &node.name, &listed, scope)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::image::Identity;

    fn node(version: &str, snapshotter: &str) -> Node {
        Node {
            containerd_version: Some(version.into()),
            snapshotter: Some(snapshotter.into()),
            ..Node::for_tests("kind-worker")
        }
    }

    #[test]
    fn the_pull_takes_user_input_as_lines_of_arguments_only() {
        let names = vec!["docker.io/library/app:dev".to_string(), "docker.io/library/app:$(reboot)".to_string()];
        let doomed = vec!["sha256:old".to_string(), "sha256:older".to_string()];
        let plan =
            NodePull { names: names.clone(), id_record: Some("sha256:c".into()), doomed, id: Some("sha256:c".into()) };
        let lines = pull_lines(&node("2.1.9", "native"), "/etc/containerd/certs.d", "localhost:5001/app:dev", &plan);
        assert_eq!(
            lines[..6],
            [
                "/etc/containerd/certs.d",
                "localhost:5001/app:dev",
                "native",
                "--local",
                "sha256:old sha256:older",
                "sha256:c"
            ]
        );
        assert_eq!(lines[6..8], names[..]);
        assert_eq!(lines[8], "sha256:c", "CRI's id record is tagged with the names");
        assert_eq!(lines[9], "@@end");
        assert!(!SESSION.contains("app"), "the script is constant");
        let plan = NodePull { names: names.clone(), id_record: None, doomed: vec![], id: None };
        let old = pull_lines(&node("1.6.20", "overlayfs"), "/c", "localhost:5001/app:dev", &plan);
        assert_eq!(old[2..6], ["overlayfs", "", "", ""], "no --local before containerd 2, nothing superseded, no id");
        assert_eq!(old[6..8], names[..], "and no id record");
        assert_eq!(old.len(), 9);
    }

    #[test]
    fn the_pull_runs_each_ctr_once_and_prints_what_verification_reads() {
        // A stand-in ctr, as a shell function: each call's arguments to fd 3.
        let script = concat!(
            "exec 3>&2\nctr() { echo \"$*\" >&3; case $4 in ls) echo 'REF TYPE DIGEST';; rm) echo removed;; esac; }\n",
            survey_functions!(),
            pull_function!(),
            "pull \"$@\"\n"
        );
        let run = |args: &[&str]| {
            let out = std::process::Command::new("sh").args(["-c", script, "test"]).args(args).output().unwrap();
            assert!(out.status.success());
            (String::from_utf8_lossy(&out.stderr).into_owned(), parse_survey(&String::from_utf8_lossy(&out.stdout)))
        };
        let (calls, sections) = run(&[
            "/certs",
            "localhost:5001/app:v2",
            "overlayfs",
            "--local",
            "sha256:a sha256:b",
            "sha256:c",
            "app:v2",
        ]);
        let calls: Vec<&str> = calls.lines().collect();
        assert_eq!(calls.len(), 4, "{calls:?}");
        assert_eq!(
            calls[0],
            "-n k8s.io images pull --local --snapshotter overlayfs --hosts-dir /certs localhost:5001/app:v2"
        );
        assert_eq!(calls[1], "-n k8s.io images tag --force localhost:5001/app:v2 app:v2");
        assert!(calls[2..].contains(&"-n k8s.io images rm --sync sha256:a sha256:b"), "{calls:?}");
        assert!(calls[2..].contains(&"-n k8s.io images ls name==\"app:v2\" name==\"sha256:c\""), "{calls:?}");
        assert!(section(&sections, "images").is_some_and(|s| s.ok() && s.body.starts_with("REF")));
        assert!(section(&sections, "superseded").is_some_and(|s| s.ok() && s.body.trim() == "removed"));
        let (calls, sections) = run(&["/certs", "localhost:5001/app:v2", "overlayfs", "", "", "", "app:v2"]);
        assert!(calls.starts_with("-n k8s.io images pull --snapshotter"), "no --local: {calls}");
        assert!(calls.lines().any(|c| c == "-n k8s.io images ls"), "no id known: every record is listed: {calls}");
        assert!(section(&sections, "superseded").is_none(), "nothing to remove");
    }

    #[test]
    fn a_failed_pull_is_tried_twice_more_then_given_up() {
        // A stand-in ctr whose pull fails the first `$1` times; a file counts the tries.
        let script = concat!(
            "n=$(cat \"$T\" 2>/dev/null || echo 0)\n",
            "ctr() { case $4 in pull) n=$((n + 1)); echo $n > \"$T\"; [ $n -gt \"$FAILS\" ] || { echo 'HTTP 500' >&2; return 1; };; esac; }\n",
            survey_functions!(),
            pull_function!(),
            "pull \"$@\"\n"
        );
        for (fails, ok, tries) in [("2", true, "3"), ("3", false, "3")] {
            let dir = tempfile::tempdir().unwrap();
            let count = dir.path().join("tries");
            let out = std::process::Command::new("sh")
                .args(["-c", script, "test", "/c", "localhost:5001/app:v2", "overlayfs", "", "", "", "app:v2"])
                .env("T", &count)
                .env("FAILS", fails)
                .output()
                .unwrap();
            assert_eq!(out.status.success(), ok, "{}", String::from_utf8_lossy(&out.stderr));
            assert_eq!(std::fs::read_to_string(&count).unwrap().trim(), tries);
        }
    }

    #[test]
    fn the_session_reads_its_arguments_one_per_line() {
        // The loop's own reading, run by a real sh with `pull` replaced by a printer.
        let script = SESSION.replace("survey light \"$@\"", "pull() { printf '[%s]' \"$@\"; }");
        let out = std::process::Command::new("sh")
            .args(["-c", &script, "kindload-session"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(b"a b\n\n$(x) *\n@@end\none\n@@end\n")?;
                child.wait_with_output()
            })
            .expect("sh runs");
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            text,
            "@@kindload ready 0\n@@kindload pulled 0\n[a b][][$(x) *]\n@@kindload ready 0\n\
             @@kindload pulled 0\n[one]\n@@kindload ready 0\n"
        );
        assert!(out.status.success(), "the end of stdin ends the session");
    }

    #[test]
    fn where_crictl_answers_its_answer_is_the_read_back() {
        // What the pull prints on a kind node: no listing, CRI's answer for each name.
        let present = include_str!("../../../../tests/fixtures/containerd-2.1/crictl-inspecti-present.json");
        let id = "sha256:441c29fcf848420af9478385aa2c50f1aed261136929dd5df71cc8bd05f30e83";
        let printed = format!(
            "@@kindload pulled 0\n@@kindload crictl 0\n@@kindload inspecti:example.com/app/bb:dev 0\n{present}\n"
        );
        let sections = parse_survey(&printed);
        let image = |config: &str| {
            Image::for_tests(
                "example.com/app/bb:dev",
                Identity { config: Some(config.into()), manifest: Some("sha256:m".into()) },
            )
        };
        let verdict = crate::verify::read_back(&Node::for_tests("kind-worker"), &image(id), &sections).expect("proved");
        assert!(verdict.verified);
        assert_eq!(verdict.with, crate::verify::VerifiedWith::Crictl);
        assert_eq!(verdict.id.as_deref(), Some(id));
        assert!(
            crate::verify::read_back(&Node::for_tests("kind-worker"), &image("sha256:other"), &sections).is_none(),
            "another id: ask again"
        );
        let missing = printed.replace("inspecti:example.com/app/bb:dev 0", "inspecti:example.com/app/bb:dev 1");
        assert!(
            crate::verify::read_back(&Node::for_tests("kind-worker"), &image(id), &parse_survey(&missing)).is_none()
        );
        let no_crictl = "@@kindload pulled 0\n";
        assert!(
            crate::verify::read_back(&Node::for_tests("kind-worker"), &image(id), &parse_survey(no_crictl)).is_none(),
            "nothing read"
        );
    }

    #[test]
    fn a_reload_supersedes_what_the_names_and_the_registry_name_held() {
        let before = crate::resolve::records::parse_ctr_images(
            "REF TYPE DIGEST SIZE PLATFORMS LABELS\n\
             docker.io/library/app:dev application/vnd.oci.image.manifest.v1+json sha256:old1 1.0 MiB linux/amd64 io.cri-containerd.image=managed\n\
             localhost:5001/app:dev application/vnd.oci.image.manifest.v1+json sha256:old1 1.0 MiB linux/amd64 io.cri-containerd.image=managed\n\
             sha256:oldconfig application/vnd.oci.image.manifest.v1+json sha256:old1 1.0 MiB linux/amd64 io.cri-containerd.image=managed\n",
        );
        let image = Image::for_tests(
            "app:dev",
            Identity { config: Some("sha256:newconfig".into()), manifest: Some("sha256:new1".into()) },
        );
        let plan = NodePull::new(&before, &image, "localhost:5001/app:dev", false);
        assert_eq!(plan.names, ["docker.io/library/app:dev"]);
        assert_eq!(plan.id_record.as_deref(), Some("sha256:newconfig"));
        assert_eq!(plan.doomed, ["sha256:oldconfig"], "the old version goes once no name holds it");
        assert!(NodePull::new(&before, &image, "localhost:5001/app:dev", true).doomed.is_empty());
    }
}
