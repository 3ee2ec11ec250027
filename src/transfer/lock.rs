//! Runs that import into the same node take turns: a run holds a node's import lock from
//! its full survey until its import there ends, so the next run surveys what the first
//! one left and sends only what is still lacking (a shared base layer reaches each node
//! once, whatever the number of runs).
//!
//! The lock is a directory in the node's `/run/kindload`, made by `mkdir` (atomic, and in
//! every node image: no `flock` needed). The shell that made it holds it for as long as
//! kindload keeps the `exec`'s stdin open, and removes it when stdin closes, which is also
//! what happens when kindload is killed. A lock whose holder's process is gone (the shell
//! itself killed) is taken over. A run takes its nodes' locks one at a time in the order
//! of their names, so no two runs ever wait for each other.
//!
//! Under the lock no other run is importing there, so any ingest a kindload run left (one
//! killed mid-import, or cut loose when its node stalled) is removed before the survey.
//!
//! While a run waits, the node prints who holds the lock and what the holder last said of
//! its progress; the wait is judged by the holder's progress, so a run waiting behind a
//! healthy slow one waits, and one behind a stuck one fails after the stall limit, naming it.

use std::thread;

use crate::exec::{ExecError, Session};
use crate::resolve::holdings::{parse_survey, survey_functions, READY};
use crate::resolve::node::Node;
use crate::resolve::provider::Provider;

const WAITING: &str = "@@kindload waiting ";
const LOCKED: &str = "@@kindload locked 0";

/// Waits for `go`, takes the lock (saying who holds it meanwhile), surveys fully, prints
/// READY, then keeps the lock until stdin closes, each line read being the holder's progress.
const SCRIPT: &str = concat!(
    survey_functions!(),
    r#"d=/run/kindload; l=$d/import.lock
mkdir -p "$d" || exit 1
read -r go || exit 0
while ! mkdir "$l" 2>/dev/null; do
  p=$(cat "$l/pid" 2>/dev/null)
  if [ -n "$p" ] && ! kill -0 "$p" 2>/dev/null; then
    mv "$l" "$d/stale.$$" 2>/dev/null && rm -rf "$d/stale.$$"
    continue
  fi
  printf '@@kindload waiting %s\n' "$(cat "$l/who" "$l/progress" 2>/dev/null | tr '\n' ' ')"
  sleep 0.1
done
echo $$ > "$l/pid"
printf '%s\n' "$1" > "$l/who"
printf '@@kindload locked 0\n'
shift
root=$(sed -n "s/^root[[:space:]]*=[[:space:]]*[\"']\([^\"']*\)[\"'].*/\1/p" /etc/containerd/config.toml 2>/dev/null | head -n 1)
for i in "${root:-/var/lib/containerd}"/io.containerd.content.v1.content/ingest/*; do
  [ -f "$i/ref" ] || continue
  case $(cat "$i/ref") in */tar-blobs/kindload-*) rm -rf "$i" ;; esac
done
survey full "$@"
printf '%s\n' "@@kindload ready 0"
while IFS= read -r line; do printf '%s\n' "$line" > "$l/progress"; done
rm -rf "$l"
"#
);

/// The locks this run holds, one session per node.
#[derive(Default)]
pub struct NodeLocks {
    held: Vec<(String, Session)>,
}

impl NodeLocks {
    /// Tells the runs waiting on `node` how this one is getting on (a change is progress).
    pub fn tell(&mut self, node: &str, progress: &str) {
        if let Some((_, session)) = self.held.iter_mut().find(|(n, _)| n == node) {
            let _ = session.send(&[progress.replace('\n', " ")]);
        }
    }

    pub fn holds(&self, node: &str) -> bool {
        self.held.iter().any(|(n, _)| n == node)
    }
}

/// Letting go: each node's shell removes its lock as its stdin closes.
impl Drop for NodeLocks {
    fn drop(&mut self) {
        for (_, session) in self.held.drain(..) {
            session.end();
        }
    }
}

/// Who this run is, as a waiting run shows it: process, host, what it loads, since when.
pub fn describe_run(what: &str) -> String {
    let host = hostname().unwrap_or_else(|| "this host".into());
    let since = time::OffsetDateTime::now_utc();
    format!(
        "kindload (pid {} on {host}, loading {what}, since {:02}:{:02}:{:02} UTC)",
        std::process::id(),
        since.hour(),
        since.minute(),
        since.second()
    )
}

fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname(2) writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    (rc == 0 && end > 0).then(|| String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// Takes the import lock of each node in `nodes`, in the order of their names, and
/// surveys each fully under its lock. A node whose lock or survey fails is marked as not
/// surveyed, with the reason; the others go on.
pub fn lock_and_survey(provider: Provider, nodes: &mut [&mut Node], who: &str) -> NodeLocks {
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    // Every session starts at once; each takes its lock only when told, in order.
    let mut sessions: Vec<Option<Session>> = nodes
        .iter_mut()
        .map(|node| {
            let argv = ["sh", "-c", SCRIPT, "kindload-lock", who, "0", "0"];
            match Session::start(&provider.exec_stdin(&node.name, &argv)) {
                Ok(session) => Some(session),
                Err(e) => {
                    node.could_not_survey(&e);
                    None
                }
            }
        })
        .collect();
    for (node, slot) in nodes.iter_mut().zip(sessions.iter_mut()) {
        if let Some(session) = slot {
            if let Err(e) = take_turn(session) {
                node.could_not_survey(&locked_out(&node.name, e));
                *slot = None;
            }
        }
    }
    let surveyed: Vec<(usize, Result<String, ExecError>)> = thread::scope(|scope| {
        let handles: Vec<_> = sessions
            .iter_mut()
            .enumerate()
            .filter_map(|(i, s)| s.as_mut().map(|s| (i, s)))
            .map(|(i, session)| scope.spawn(move || (i, session.read_until(READY))))
            .collect();
        handles.into_iter().map(|h| h.join().expect("a node survey panicked")).collect()
    });
    let mut locks = NodeLocks::default();
    for (i, survey) in surveyed {
        match survey {
            Ok(text) => {
                nodes[i].learn(&parse_survey(&text), crate::resolve::holdings::Depth::Full);
                let session = sessions[i].take().expect("a surveyed node has its session");
                locks.held.push((nodes[i].name.clone(), session));
            }
            Err(e) => nodes[i].could_not_survey(&format!("{e}{}", e.hint())),
        }
    }
    locks
}

/// Asks for the lock and waits while its holder makes progress.
fn take_turn(session: &mut Session) -> Result<(), Waited> {
    session.send(&["go".to_string()]).map_err(|e| Waited { holder: String::new(), error: e })?;
    let mut holder = String::new();
    loop {
        let line = session.read_line(false).map_err(|e| Waited { holder: holder.clone(), error: e })?;
        if line == LOCKED {
            return Ok(());
        }
        if let Some(said) = line.strip_prefix(WAITING) {
            if said != holder {
                holder = said.to_string();
                session.watch().touch();
            }
        }
    }
}

/// A lock not had, and the run that held it as the node last showed it.
struct Waited {
    holder: String,
    error: ExecError,
}

fn locked_out(node: &str, waited: Waited) -> String {
    let holder = waited.holder.trim();
    match (&waited.error, holder.is_empty()) {
        (ExecError::Stalled { limit, .. }, false) => format!(
            "waited for node {node}'s import lock, held by {holder}, which made no progress for {} s: \
             stop that run (or let it end), then load again; if it is only slow, allow more with --stall-timeout",
            limit.as_secs()
        ),
        _ => format!("could not take node {node}'s import lock: {}{}", waited.error, waited.error.hint()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::Cmd;
    use std::time::{Duration, Instant};

    /// The lock's shell under a real `sh`, in a private directory instead of the node's /run.
    fn session(dir: &std::path::Path, who: &str) -> Session {
        let script = SCRIPT
            .replace("d=/run/kindload", &format!("d={}", dir.display()))
            .replace("survey full \"$@\"", "echo surveyed");
        Session::start(&Cmd::new("sh").args(["-c", &script, "kindload-lock", who, "0", "0"])).unwrap()
    }

    #[test]
    fn a_second_run_waits_seeing_the_holder_and_gets_the_lock_when_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = session(dir.path(), "run one");
        take_turn(&mut first).ok().expect("a free lock is taken");
        assert_eq!(first.read_until(READY).unwrap(), "surveyed\n");
        first.send(&["sent 5 MiB".to_string()]).unwrap();

        let mut second = session(dir.path(), "run two");
        second.send(&["go".to_string()]).unwrap();
        let line = second.read_line(false).unwrap();
        assert!(line.starts_with(WAITING) && line.contains("run one"), "{line}");
        let started = Instant::now();
        let waiter = thread::spawn(move || take_turn(&mut second).map(|()| second).ok());
        thread::sleep(Duration::from_millis(300));
        first.close().unwrap();
        let mut second = waiter.join().unwrap().expect("the lock passes on once the holder lets go");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(second.read_until(READY).unwrap(), "surveyed\n");
        assert_eq!(std::fs::read_to_string(dir.path().join("import.lock/who")).unwrap(), "run two\n");
        second.close().unwrap();
        assert!(!dir.path().join("import.lock").exists(), "closing stdin removes the lock");
    }

    #[test]
    fn a_lock_whose_holder_is_gone_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("import.lock");
        std::fs::create_dir(&lock).unwrap();
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        let pid = gone.id();
        gone.wait().unwrap();
        std::fs::write(lock.join("pid"), format!("{pid}\n")).unwrap();
        let mut run = session(dir.path(), "next run");
        take_turn(&mut run).ok().expect("a dead holder's lock is taken over");
        run.close().unwrap();
    }

    #[test]
    fn a_waiter_behind_a_holder_that_makes_no_progress_says_who_holds_it() {
        let message = locked_out(
            "kind-worker",
            Waited {
                holder: "kindload (pid 7 on ci, loading app:dev, since 10:00:00 UTC) sent 6 MiB ".into(),
                error: ExecError::Stalled {
                    cmd: "docker exec".into(),
                    limit: Duration::from_secs(60),
                    stderr: String::new(),
                },
            },
        );
        assert!(
            message.contains("kind-worker") && message.contains("pid 7 on ci") && message.contains("60 s"),
            "{message}"
        );
    }
}
