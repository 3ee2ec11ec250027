//! Runs that import into the same node share it by layer: each run, under the node's
//! survey lock, reads what the node holds and claims the layers it lacks that no live run
//! has claimed. It sends only what it claimed; for a layer another run claimed, it holds
//! back its layout's index until that run's import there has ended, so its own import
//! unpacks with the layer on the node. A shared base layer reaches each node once, and
//! runs import at the same time instead of taking turns.
//!
//! No run waits on one that waits on it: a run waits on a node only for claims made there
//! before its own, and a claim goes when its run's import on that node ends, not when the
//! run ends. A claim whose run is gone (killed, or failed before the layer was there)
//! leaves the waiting run to send the layer itself in a second pass.
//!
//! Everything lives in the node's `/run/kindload`: the lock is a directory made by `mkdir`
//! (atomic, and in every node image), a claim a directory per layer naming its run, and
//! each run registers under `runs/` with the pid of its node shell. That shell holds the
//! run's claims for as long as kindload keeps the `exec`'s stdin open and removes them
//! when it closes, which is also what happens when kindload is killed. A lock, claim or
//! ingest whose run's shell is gone is taken over or removed.
//!
//! While a run waits (for the lock, or for a layer), the node prints who it waits on and
//! what that run last said of its progress; the wait is judged by that progress, so a run
//! waiting behind a healthy slow one waits, and one behind a stuck one fails after the
//! stall limit, naming it.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::thread;

use crate::exec::{ExecError, Session};
use crate::plan::layers::{LayerHints, NodeNeeds};
use crate::resolve::holdings::{parse_survey, survey_functions, READY};
use crate::resolve::node::Node;
use crate::resolve::provider::Provider;

const WAITING: &str = "@@kindload waiting ";
const LOCKED: &str = "@@kindload locked 0";
const CLAIMED: &str = "@@kindload claimed ";
const WAITED: &str = "@@kindload waited";

/// A sideload's node session, `sh -c SCRIPT kindload-session SURVEY-ARGS...`, the
/// caller's functions first (see [`session_script`]):
/// - surveys lightly (the records, CRI's answers, the platform) and prints READY;
/// - on `go RUN WHO`, registers the run, takes the lock (saying who holds it meanwhile),
///   removes the ingests of runs that are gone, reads containerd's facts and holdings
///   (blobs, snapshots) and prints READY;
/// - on `claim LAYERS...`, claims those no live run holds, lets the lock go and prints what
///   it claimed and what others hold;
/// - then each line is `@@wait LAYERS...` (wait for their claims to go, then print the
///   ones still missing), `@@release` (this run's import there ended), `@@call ARGS...`
///   (runs the caller's function `called` with ARGS, split at spaces, never expanded) or
///   this run's progress.
///
/// A session whose stdin closes before `go` (its node needs nothing) leaves nothing.
const SCRIPT: &str = concat!(
    survey_functions!(),
    r#"survey light "$@"
printf '%s\n' "@@kindload ready 0"
read -r kgo || exit 0
krun=${kgo#go }; kwho=${krun#* }; krun=${krun%% *}
kd=/run/kindload; kl=$kd/import.lock; kr=$kd/runs/$krun
mkdir -p "$kd/claims" "$kr" || exit 1
printf '%s\n' "$kwho" > "$kr/who"; echo $$ > "$kr/pid.new" && mv "$kr/pid.new" "$kr/pid"
kmine=
bye() { for kx in $kmine; do rm -rf "$kd/claims/${kx#sha256:}"; done; kmine=; }
klocked=
trap 'bye; [ -z "$klocked" ] || rm -rf "$kl"; rm -rf "$kr"' EXIT
alive() { kp=; read -r kp 2>/dev/null < "$kd/runs/$1/pid"; [ -n "$1" ] && [ -n "$kp" ] && kill -0 "$kp" 2>/dev/null; }
said() { kw=; ks=; read -r kw 2>/dev/null < "$kd/runs/$1/who"; read -r ks 2>/dev/null < "$kd/runs/$1/progress"; know="$kw $ks"; }
klast=
while ! mkdir "$kl" 2>/dev/null; do
  kh=; read -r kh 2>/dev/null < "$kl/run"
  if [ -n "$kh" ] && ! alive "$kh"; then
    mv "$kl" "$kd/stale.$$" 2>/dev/null && rm -rf "$kd/stale.$$"
    continue
  fi
  said "$kh"
  [ "$know" = "$klast" ] || printf '@@kindload waiting %s\n' "$know"
  klast=$know
  sleep 0.1
done
klocked=1; printf '%s\n' "$krun" > "$kl/run"
printf '@@kindload locked 0\n'
kroot=$(sed -n "s/^root[[:space:]]*=[[:space:]]*[\"']\([^\"']*\)[\"'].*/\1/p" /etc/containerd/config.toml 2>/dev/null | head -n 1)
kroot=${kroot:-/var/lib/containerd}/io.containerd.content.v1.content
for ko in "$kd"/runs/*; do [ -f "$ko/pid" ] && ! alive "${ko##*/}" && rm -rf "$ko"; done
for ki in "$kroot"/ingest/*; do
  [ -f "$ki/ref" ] || continue
  kref=; read -r kref 2>/dev/null < "$ki/ref"
  case $kref in */tar-blobs/kindload-*) ko=${kref#*/tar-blobs/}; alive "${ko%%/*}" || rm -rf "$ki" ;; esac
done
survey holdings 0 0
printf '%s\n' "@@kindload ready 0"
read -r kwant || exit 0
ktheirs=
for kx in ${kwant#claim}; do
  kc=$kd/claims/${kx#sha256:}
  while ! mkdir "$kc" 2>/dev/null; do
    kh=; read -r kh 2>/dev/null < "$kc/run"
    alive "$kh" && break
    rm -rf "$kc"
  done
  if [ -f "$kc/run" ]; then ktheirs="$ktheirs $kx"; else printf '%s\n' "$krun" > "$kc/run"; kmine="$kmine $kx"; fi
done
rm -rf "$kl"; klocked=
printf '@@kindload claimed %s|%s\n' "$kmine" "$ktheirs"
while IFS= read -r kline; do
  case $kline in
  @@release) bye ;;
  "@@call "*) set -f; set -- ${kline#@@call }; set +f; called "$@" ;;
  @@wait*)
    kmissing=
    for kx in ${kline#@@wait}; do
      kc=$kd/claims/${kx#sha256:}; klast=
      while [ -d "$kc" ]; do
        kh=; read -r kh 2>/dev/null < "$kc/run"
        alive "$kh" || break
        said "$kh"
        [ "$know" = "$klast" ] || printf '@@kindload waiting %s\n' "$know"
        klast=$know
        sleep 0.1
      done
      [ -f "$kroot/blobs/sha256/${kx#sha256:}" ] || kmissing="$kmissing $kx"
    done
    printf '@@kindload waited%s\n' "$kmissing" ;;
  *) printf '%s\n' "$kline" > "$kr/progress" ;;
  esac
done
"#
);

/// One node's session: this run's claims there, and the layers other runs claimed first.
struct Held {
    node: String,
    session: Mutex<Session>,
    theirs: HashSet<String>,
}

/// The sessions this run holds, one per node it sends to.
#[derive(Default)]
pub struct NodeClaims {
    held: Vec<Held>,
}

impl NodeClaims {
    fn find(&self, node: &str) -> Option<&Held> {
        self.held.iter().find(|h| h.node == node)
    }

    /// Tells the runs waiting on this one at `node` how it is getting on (a change is
    /// progress). Skipped while the session is busy waiting itself.
    pub fn tell(&self, node: &str, progress: &str) {
        if let Some(Ok(mut session)) = self.find(node).map(|h| h.session.try_lock()) {
            let _ = session.send(&[progress.replace('\n', " ")]);
        }
    }

    pub fn holds(&self, node: &str) -> bool {
        self.find(node).is_some()
    }

    /// Calls the caller's function `called` with `args` in `node`'s session, which is then
    /// the caller's to read until the function's last line. None when this run has no
    /// session there, or an argument holds a space or line break (the line could not carry it).
    pub fn call(&self, node: &str, args: &[String]) -> Option<std::sync::MutexGuard<'_, Session>> {
        if args.iter().any(|a| a.is_empty() || a.contains(char::is_whitespace)) {
            return None;
        }
        let mut session = self.find(node)?.session.lock().unwrap_or_else(|e| e.into_inner());
        session.send(&[format!("@@call {}", args.join(" "))]).ok()?;
        Some(session)
    }

    /// The layers `node` lacked that other runs claimed first: this run does not send them.
    pub fn theirs(&self, node: &str) -> HashSet<String> {
        self.find(node).map(|h| h.theirs.clone()).unwrap_or_default()
    }
}

impl crate::transfer::Sharing for NodeClaims {
    fn await_layers(&self, node: &str, layers: &[String]) -> Result<Vec<String>, String> {
        let Some(held) = self.find(node) else { return Ok(layers.to_vec()) };
        let mut session = held.session.lock().unwrap_or_else(|e| e.into_inner());
        let mut holder = String::new();
        await_claims(&mut session, layers, &mut holder).map_err(|e| waited_for_layers(node, &holder, &e))
    }

    fn done(&self, node: &str) {
        if let Some(held) = self.find(node) {
            let mut session = held.session.lock().unwrap_or_else(|e| e.into_inner());
            let _ = session.send(&["@@release".to_string()]);
        }
    }
}

/// Letting go: each node's shell removes this run's claims as its stdin closes.
impl Drop for NodeClaims {
    fn drop(&mut self) {
        for held in self.held.drain(..) {
            held.session.into_inner().unwrap_or_else(|e| e.into_inner()).end();
        }
    }
}

/// Waits in `node`'s session until the claims on `layers` go; the layers still missing.
/// The wait is judged by what the claiming run says of its progress (kept in `holder`).
fn await_claims(session: &mut Session, layers: &[String], holder: &mut String) -> Result<Vec<String>, ExecError> {
    session.send(&[format!("@@wait {}", layers.join(" "))])?;
    loop {
        let line = session.read_line(false)?;
        if let Some(missing) = line.strip_prefix(WAITED) {
            return Ok(missing.split_whitespace().map(String::from).collect());
        }
        if let Some(said) = line.strip_prefix(WAITING) {
            *holder = said.trim().to_string();
            session.watch().touch();
        }
    }
}

fn waited_for_layers(node: &str, holder: &str, error: &ExecError) -> String {
    match error {
        ExecError::Stalled { limit, .. } => format!(
            "waited on node {node} for layers another kindload run is sending{}, which made no progress for {} s: \
             stop that run (or let it end), then load again; if it is only slow, allow more with --stall-timeout",
            if holder.is_empty() { String::new() } else { format!(" ({holder})") },
            limit.as_secs()
        ),
        _ => format!("waiting on node {node} for layers another run is sending failed: {error}{}", error.hint()),
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

/// This run's name on the nodes: its layouts' folder, which its ingests are named after.
fn run_id() -> &'static str {
    let folder = crate::transfer::layout::run_folder();
    folder.rsplit('/').next().unwrap_or(folder)
}

/// What a run may claim on each node: per node name, the layers of the images it sends
/// there (none: it claims nothing, and sends all it lacks), judged with `hints`.
pub struct Claimable<'a> {
    pub layers: HashMap<String, Vec<String>>,
    pub hints: &'a LayerHints,
}

/// The script of a sideload's node session (see [`SCRIPT`]), offering `functions`, which
/// define `called` (see [`NodeClaims::call`]).
pub fn session_script(functions: &str) -> String {
    format!("{functions}{SCRIPT}")
}

/// On each node of `nodes` at once, in its session from the light survey (`held`, one per
/// node; a new one where there is none): takes the survey lock, reads containerd's facts
/// and holdings under it, claims the layers the node lacks of those `claimable` lists, and
/// lets the lock go. The sessions stay open. A node whose lock or survey fails is marked
/// as not surveyed, with the reason; the others go on.
pub fn survey_and_claim(
    provider: Provider,
    nodes: &mut [&mut Node],
    held: Vec<Option<Session>>,
    who: &str,
    claimable: &Claimable,
    functions: &str,
) -> NodeClaims {
    let script = session_script(functions);
    let go = format!("go {} {}", run_id(), who.replace('\n', " "));
    let claimed: Vec<Option<Held>> = thread::scope(|scope| {
        let (script, go) = (script.as_str(), go.as_str());
        let handles: Vec<_> = nodes
            .iter_mut()
            .zip(held)
            .map(|(node, session)| scope.spawn(move || claim_on(provider, node, session, script, go, claimable)))
            .collect();
        handles.into_iter().map(|h| h.join().expect("a node survey panicked")).collect()
    });
    NodeClaims { held: claimed.into_iter().flatten().collect() }
}

/// A session on `node` past its light survey: `held`, or a new one.
fn session_on(provider: Provider, node: &Node, held: Option<Session>, script: &str) -> Result<Session, ExecError> {
    if let Some(session) = held {
        return Ok(session);
    }
    let mut session =
        Session::start(&provider.exec_stdin(&node.name, &["sh", "-c", script, "kindload-session", "0", "0"]))?;
    session.read_until(READY)?;
    Ok(session)
}

fn claim_on(
    provider: Provider,
    node: &mut Node,
    held: Option<Session>,
    script: &str,
    go: &str,
    claimable: &Claimable,
) -> Option<Held> {
    let mut session = match session_on(provider, node, held, script) {
        Ok(session) => session,
        Err(e) => {
            node.could_not_survey(&format!("{e}{}", e.hint()));
            return None;
        }
    };
    if let Err(e) = take_lock(&mut session, go) {
        node.could_not_survey(&locked_out(&node.name, e));
        return None;
    }
    let survey = match session.read_until(READY) {
        Ok(text) => text,
        Err(e) => {
            node.could_not_survey(&format!("{e}{}", e.hint()));
            return None;
        }
    };
    node.learn(&parse_survey(&survey), crate::resolve::holdings::Depth::Holdings);
    let lacking: Vec<String> = match (node.holdings(), claimable.layers.get(&node.name)) {
        (Ok(holds), Some(layers)) => {
            let needs = NodeNeeds::new(holds, false);
            let mut lacking: Vec<String> = layers.iter().filter(|d| !needs.has(d, claimable.hints)).cloned().collect();
            lacking.sort();
            lacking.dedup();
            lacking
        }
        _ => Vec::new(),
    };
    match claim(&mut session, &lacking) {
        Ok((_, theirs)) => {
            Some(Held { node: node.name.clone(), session: Mutex::new(session), theirs: theirs.into_iter().collect() })
        }
        Err(e) => {
            node.could_not_survey(&format!("claiming layers on {} failed: {e}{}", node.name, e.hint()));
            None
        }
    }
}

/// Claims `layers` in a surveyed session (which then lets the lock go): the layers this
/// run claimed, and those another live run had claimed.
fn claim(session: &mut Session, layers: &[String]) -> Result<(Vec<String>, Vec<String>), ExecError> {
    session.send(&[format!("claim {}", layers.join(" "))])?;
    let line = session.read_line(true)?;
    let answer = line.strip_prefix(CLAIMED).unwrap_or_default();
    let (mine, theirs) = answer.split_once('|').unwrap_or((answer, ""));
    let list = |text: &str| text.split_whitespace().map(String::from).collect();
    Ok((list(mine), list(theirs)))
}

/// Asks for the lock (`go`, naming the run) and waits while its holder makes progress.
fn take_lock(session: &mut Session, go: &str) -> Result<(), Waited> {
    session.send(&[go.to_string()]).map_err(|e| Waited { holder: String::new(), error: e })?;
    let mut holder = String::new();
    loop {
        let line = session.read_line(false).map_err(|e| Waited { holder: holder.clone(), error: e })?;
        if line == LOCKED {
            return Ok(());
        }
        if let Some(said) = line.strip_prefix(WAITING) {
            holder = said.to_string();
            session.watch().touch();
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
            "waited for node {node}'s survey lock, held by {holder}, which made no progress for {} s: \
             stop that run (or let it end), then load again; if it is only slow, allow more with --stall-timeout",
            limit.as_secs()
        ),
        _ => format!("could not take node {node}'s survey lock: {}{}", waited.error, waited.error.hint()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::Cmd;
    use std::path::Path;
    use std::time::{Duration, Instant};

    /// The claim session under a real `sh`, in a private directory instead of the node's
    /// /run and content store, with a one-line survey.
    fn session(dir: &Path) -> Session {
        let called = "called() { printf '%s|' \"$@\"; echo; echo '@@kindload called 0'; }\n";
        let script = session_script(called)
            .replace("kd=/run/kindload", &format!("kd={}/run", dir.display()))
            .replace("${kroot:-/var/lib/containerd}", &format!("{}/containerd", dir.display()))
            .replace("survey light \"$@\"", "echo light")
            .replace("survey holdings 0 0", "echo surveyed");
        let mut session = Session::start(&Cmd::new("sh").args(["-c", &script, "kindload-session"])).unwrap();
        assert_eq!(session.read_until(READY).unwrap(), "light\n");
        session
    }

    /// The session's stderr counts as its progress: an error printed at every poll (a file
    /// read before its run wrote it) would keep a wait on a stopped run from ever stalling.
    #[test]
    fn a_read_that_may_fail_says_nothing() {
        let script = session_script("");
        for line in script.lines().filter(|l| l.contains("read -r") && l.contains("< \"")) {
            assert!(line.contains("2>/dev/null < \""), "silence the error before the redirection fails: {line}");
        }
    }

    #[test]
    fn a_session_that_ends_while_it_holds_the_lock_lets_it_go() {
        let dir = tempfile::tempdir().unwrap();
        let mut session = session(dir.path());
        take_lock(&mut session, "go kindload-1-1 run one").ok().expect("a free lock is taken");
        assert_eq!(session.read_until(READY).unwrap(), "surveyed\n");
        assert!(dir.path().join("run/import.lock").exists());
        session.close().unwrap();
        assert!(!dir.path().join("run/import.lock").exists(), "its run ended before claiming: the lock goes");
        assert!(!dir.path().join("run/runs/kindload-1-1").exists(), "and the registration");
    }

    #[test]
    fn a_session_that_ends_after_its_light_survey_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        session(dir.path()).close().unwrap();
        assert!(!dir.path().join("run").exists(), "no registration, lock or claim");
    }

    #[test]
    fn a_call_runs_the_callers_function_with_each_argument_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let (session, _, _) = surveyed(dir.path(), "kindload-1-1", &[]);
        let claims =
            NodeClaims { held: vec![Held { node: "n".into(), session: Mutex::new(session), theirs: HashSet::new() }] };
        let args = ["2".to_string(), "docker.io/library/app:$(id)".to_string(), "*".to_string()];
        let mut session = claims.call("n", &args).expect("the node has a session");
        assert_eq!(session.read_until("@@kindload called 0").unwrap(), "2|docker.io/library/app:$(id)|*|\n");
        drop(session);
        assert!(claims.call("n", &["two words".to_string()]).is_none(), "a space cannot cross the line");
        assert!(claims.call("other", &args).is_none(), "no session there");
    }

    fn surveyed(dir: &Path, run: &str, layers: &[&str]) -> (Session, Vec<String>, Vec<String>) {
        let mut session = session(dir);
        take_lock(&mut session, &format!("go {run} run {run}")).ok().expect("the lock is free or freed");
        assert_eq!(session.read_until(READY).unwrap(), "surveyed\n");
        let layers: Vec<String> = layers.iter().map(|l| l.to_string()).collect();
        let (mine, theirs) = claim(&mut session, &layers).unwrap();
        (session, mine, theirs)
    }

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn put_blob(dir: &Path, layer: &str) {
        let blobs = dir.join("containerd/io.containerd.content.v1.content/blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        std::fs::write(blobs.join(layer.trim_start_matches("sha256:")), "layer").unwrap();
    }

    #[test]
    fn a_second_run_claims_only_what_no_run_claimed_and_waits_for_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (digest('a'), digest('b'), digest('c'));
        let (mut first, mine, theirs) = surveyed(dir.path(), "kindload-1-1", &[&a, &b]);
        assert_eq!((mine, theirs), (vec![a.clone(), b.clone()], vec![]));
        first.send(&["has sent it 5 MiB".to_string()]).unwrap();

        let (mut second, mine, theirs) = surveyed(dir.path(), "kindload-2-2", &[&a, &c]);
        assert_eq!((mine, theirs), (vec![c.clone()], vec![a.clone()]), "a is the first run's");
        let started = Instant::now();
        let waiter = thread::spawn(move || {
            let mut holder = String::new();
            let missing = await_claims(&mut second, &[a], &mut holder).unwrap();
            (second, missing, holder)
        });
        thread::sleep(Duration::from_millis(400));
        assert!(!waiter.is_finished(), "waits while the first run holds the claim");
        put_blob(dir.path(), &digest('a'));
        first.send(&["@@release".to_string()]).unwrap();
        let (second, missing, holder) = waiter.join().unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(missing.is_empty(), "the layer is there: {missing:?}");
        assert!(holder.contains("run kindload-1-1") && holder.contains("has sent it 5 MiB"), "{holder}");
        assert!(!dir.path().join("run/claims").join("b".repeat(64)).exists(), "a release gives up every claim");
        first.close().unwrap();
        second.close().unwrap();
        let left: Vec<_> = std::fs::read_dir(dir.path().join("run/claims")).unwrap().collect();
        assert!(left.is_empty(), "closing stdin gives up the claims: {left:?}");
        assert!(!dir.path().join("run/runs/kindload-2-2").exists(), "and the registration");
        assert!(!dir.path().join("run/import.lock").exists(), "the lock went with the claims");
    }

    #[test]
    fn a_layer_whose_claimant_ended_without_it_is_reported_missing() {
        let dir = tempfile::tempdir().unwrap();
        let a = digest('a');
        let (first, _, _) = surveyed(dir.path(), "kindload-1-1", &[&a]);
        let (mut second, _, theirs) = surveyed(dir.path(), "kindload-2-2", &[&a]);
        assert_eq!(theirs, std::slice::from_ref(&a));
        first.close().unwrap();
        let missing = await_claims(&mut second, std::slice::from_ref(&a), &mut String::new()).unwrap();
        assert_eq!(missing, [a], "sent by the waiting run in a second pass");
        second.close().unwrap();
    }

    #[test]
    fn a_gone_runs_lock_and_claims_are_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        let pid = gone.id();
        gone.wait().unwrap();
        std::fs::create_dir_all(run.join("runs/kindload-9-9")).unwrap();
        std::fs::write(run.join("runs/kindload-9-9/pid"), format!("{pid}\n")).unwrap();
        std::fs::create_dir_all(run.join("import.lock")).unwrap();
        std::fs::write(run.join("import.lock/run"), "kindload-9-9\n").unwrap();
        let claim = run.join("claims").join("a".repeat(64));
        std::fs::create_dir_all(&claim).unwrap();
        std::fs::write(claim.join("run"), "kindload-9-9\n").unwrap();

        let (session, mine, theirs) = surveyed(dir.path(), "kindload-1-1", &[&digest('a')]);
        assert_eq!((mine, theirs), (vec![digest('a')], vec![]));
        assert!(!run.join("runs/kindload-9-9").exists(), "the gone run's registration is removed");
        session.close().unwrap();
    }
}
