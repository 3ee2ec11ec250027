//! The registry route. When `kindload registry up` has run for the cluster, an engine image
//! reaches the nodes that trust the registry by the engine's own push (it sends only the
//! layers the registry lacks and compresses only those) and one `exec` per node: the pull
//! (containerd fetches only what the node lacks, sideloaded layers included), the user's
//! names moved onto the image, the superseded version removed, and what the node then
//! holds read back for verification. Nodes that do not trust it, and images the route
//! cannot carry, are sideloaded, and the report says why.

use std::path::PathBuf;
use std::time::Instant;

use super::{Outcome, Outcomes, Pipeline};
use crate::commands::via_registry::registry_repo;
use crate::error::{Error, Result};
use crate::exec::{Runner, Session};
use crate::plan::Action;
use crate::registry::{container, hosts, DEFAULT_NAME, DEFAULT_PORT};
use crate::report::Transport;
use crate::resolve::engine::EngineKind;
use crate::resolve::holdings::{parse_survey, section, survey_functions, Asked, Holdings, Section, READY};
use crate::resolve::image::Image;
use crate::resolve::node::{self, Node};
use crate::resolve::provider::Provider;
use crate::resolve::records::{parse_ctr_images, CtrImage};
use crate::resolve::reference::ImageRef;
use crate::transfer::import;

/// The cluster's registry, running and made by kindload.
#[derive(Debug, Clone)]
pub(super) struct Route {
    pub name: String,
    pub port: u16,
    ca_pem: String,
    /// A directory holding only the CA as `ca.crt`, for `podman push --cert-dir`.
    cert_dir: PathBuf,
}

impl Route {
    /// The host nodes pull from: its loopback address, mapped by their `hosts.toml`.
    pub fn hosts(&self) -> Vec<String> {
        vec![format!("localhost:{}", self.port)]
    }
}

/// The cluster's registry, or why there is none to use (None: nothing to say).
pub(super) type RouteLookup = std::result::Result<Route, Option<String>>;

/// Per image and node, whether the registry route handled it (the rest are sideloaded).
type Routed = Vec<Vec<bool>>;

/// The registry to use, or why none: none made by `registry up` (nothing to say), or one
/// that is not running (said, and the load sideloads).
pub(super) fn find_route(runner: &dyn Runner, provider: Provider) -> RouteLookup {
    let found = find_registry(runner, provider).ok_or(None)?;
    let name = found.name.clone();
    if !found.running {
        return Err(Some(format!(
            "registry {name} is {}, so this load sideloads; `kindload registry up` starts it again",
            found.state
        )));
    }
    let state = crate::registry::state_dir().unwrap_or_default();
    let ca_pem = crate::registry::ca::Store::new(&state).ca_pem().ok_or_else(|| {
        Some(format!(
            "kindload's CA is gone, so registry {name} cannot be trusted; `kindload registry up` makes it again"
        ))
    })?;
    let cert_dir = state.join("registry").join("engine-certs");
    Ok(Route { name, port: found.port.unwrap_or(DEFAULT_PORT), ca_pem, cert_dir })
}

/// The registry named by KINDLOAD_REGISTRY, else the default one, else the one kindload
/// registry on the provider (a running one first, when there are several).
fn find_registry(runner: &dyn Runner, provider: Provider) -> Option<container::Found> {
    if let Some(name) = crate::commands::context::env("KINDLOAD_REGISTRY") {
        return container::find(runner, provider, &name).filter(|f| f.ours);
    }
    if let Some(found) = container::find(runner, provider, DEFAULT_NAME).filter(|f| f.ours) {
        return Some(found);
    }
    let mut all = container::find_ours(runner, provider);
    all.sort_by_key(|f| (!f.running, f.name.clone()));
    all.into_iter().next()
}

impl Pipeline<'_> {
    /// Sends what it can through the cluster's registry: for each engine image, to the nodes
    /// in `targets[i]` that trust the registry. Returns, per image and node, whether it was
    /// handled here (loaded, or failed for good).
    pub(super) fn through_registry(
        &self,
        images: &mut [Image],
        targets: &[Vec<usize>],
        outcomes: &mut Outcomes,
    ) -> Result<Routed> {
        let mut handled = vec![vec![false; self.nodes.len()]; images.len()];
        let route = match &self.route {
            Ok(route) => route,
            Err(why) => {
                for (i, row) in targets.iter().enumerate() {
                    for &n in row {
                        outcomes[i][n].note = why.clone();
                    }
                }
                return Ok(handled);
            }
        };
        for (i, image) in images.iter_mut().enumerate() {
            let mut trusting = Vec::new();
            for &n in &targets[i] {
                match distrust(&self.nodes[n], route) {
                    None => trusting.push(n),
                    why => outcomes[i][n].note = why,
                }
            }
            if trusting.is_empty() {
                continue;
            }
            if let Some(why) = unroutable(image) {
                for &n in &trusting {
                    outcomes[i][n].note = Some(why.clone());
                }
                continue;
            }
            let early = self.early.lock().expect("early pushes").get_mut(i).and_then(Option::take);
            let reference = match early {
                Some(handle) => handle.join().expect("push panicked")?,
                None => push_image(self.runner(), route, image)?,
            };
            if image.identity.config.is_none() {
                // Docker's containerd store knows the image by its index or manifest: the
                // registry says which config the nodes will index it by.
                let platforms = trusting.iter().filter_map(|&n| self.nodes[n].platform.as_deref());
                image.identity.config =
                    config_in_registry(route, image, platforms.collect::<Vec<_>>().first().copied());
            }
            let image = &*image;
            for (n, outcome) in self.pull_all(route, image, &reference, &trusting) {
                outcomes[i][n] = outcome;
                handled[i][n] = true;
            }
        }
        Ok(handled)
    }

    /// Every trusting node pulls, concurrently, each through the session it was surveyed in.
    fn pull_all(&self, route: &Route, image: &Image, reference: &str, nodes: &[usize]) -> Vec<(usize, Outcome)> {
        let keep = self.options.keep_superseded;
        let mut sessions = self.sessions.lock().expect("sessions");
        let outcomes = std::thread::scope(|scope| {
            let handles: Vec<_> = nodes
                .iter()
                .map(|&n| {
                    let node = &self.nodes[n];
                    let before = self.before[n].as_deref().unwrap_or_default();
                    let plan = NodePull::new(before, image, reference, keep);
                    let session = sessions.remove(&node.name);
                    let handle = scope.spawn(move || {
                        let mut session = session?;
                        let outcome = pull(&mut session, node, route, image, reference, &plan);
                        Some((session, outcome))
                    });
                    (n, handle)
                })
                .collect();
            handles.into_iter().map(|(n, h)| (n, h.join().expect("pull panicked"))).collect::<Vec<_>>()
        });
        outcomes
            .into_iter()
            .map(|(n, done)| match done {
                Some((session, outcome)) => {
                    sessions.insert(self.nodes[n].name.clone(), session);
                    (n, outcome)
                }
                None => (n, Outcome::failed(format!("node {} has no session to pull in", self.nodes[n].name))),
            })
            .collect()
    }
}

/// Each node's open session, by node name, while the load may still pull through it.
pub(super) type Sessions = std::sync::Mutex<std::collections::HashMap<String, Session>>;

/// Ends every session: each node's shell reads the end of its stdin and exits, unwaited.
pub(super) fn close_sessions(sessions: &Sessions) {
    for (_, session) in sessions.lock().expect("sessions").drain() {
        session.end();
    }
}

/// Surveys the nodes through sessions kept open for the pulls: a pull then costs no `exec`.
pub(super) fn survey_held(
    provider: Provider,
    containers: Vec<crate::resolve::provider::NodeContainer>,
    route: &Route,
    names: &[String],
    records: &[String],
) -> (Vec<Node>, Sessions) {
    let hosts = route.hosts();
    let asked = Asked { hosts: &hosts, names, records };
    let mut sessions = std::collections::HashMap::new();
    let mut nodes = Vec::new();
    for (node, session) in node::probe_all_held(provider, containers, SESSION, &asked) {
        if let Some(session) = session {
            sessions.insert(node.name.clone(), session);
        }
        nodes.push(node);
    }
    (nodes, std::sync::Mutex::new(sessions))
}

/// The registry names the images would be pushed under: the survey lists their records,
/// which a pull moves and so may supersede.
pub(super) fn pushed_names(route: &RouteLookup, images: &[Image]) -> Vec<String> {
    let Ok(route) = route else { return Vec::new() };
    images.iter().filter(|i| unroutable(i).is_none()).map(|i| pushed_name(route, i)).collect()
}

/// Pushes started before the survey, for images the registry likely lacks, so the survey
/// and the push overlap; joined by the route when a node needs the image, or at the end.
pub(super) type EarlyPushes = std::sync::Mutex<Vec<Option<std::thread::JoinHandle<Result<String>>>>>;

/// Lets early pushes send once the cluster is found: a push is made ready (registry asked,
/// image named) while the cluster is looked up, and sent only for a cluster that exists.
#[derive(Clone, Default)]
pub(super) struct Gate(std::sync::Arc<(std::sync::Mutex<Option<bool>>, std::sync::Condvar)>);

impl Gate {
    pub fn opened() -> Gate {
        let gate = Gate::default();
        gate.open(true);
        gate
    }

    /// Decides, once: `true` lets the pushes go, `false` ends them unsent.
    pub fn open(&self, go: bool) {
        let (decided, changed) = &*self.0;
        decided.lock().expect("gate").get_or_insert(go);
        changed.notify_all();
    }

    fn wait(&self) -> bool {
        let (decided, changed) = &*self.0;
        let guard = changed.wait_while(decided.lock().expect("gate"), |d| d.is_none()).expect("gate");
        guard.unwrap_or(false)
    }
}

/// Starts the push of every routable image whose engine does not yet name it in the
/// registry (the name the last push left): a changed image, most likely needed. Each is
/// made ready at once and sent when `gate` opens.
pub(super) fn push_early(route: &RouteLookup, images: &[Image], gate: &Gate) -> EarlyPushes {
    let handles = images
        .iter()
        .map(|image| {
            let route = route.as_ref().ok()?;
            if unroutable(image).is_some() || image.engine_names.contains(&pushed_name(route, image)) {
                return None;
            }
            let (route, image, gate) = (route.clone(), image.clone(), gate.clone());
            Some(std::thread::spawn(move || {
                let runner = crate::exec::RealRunner;
                let reference = ready_push(&runner, &route, &image)?;
                if !gate.wait() {
                    return Err(Error::failed("not pushed: the load ended first", ""));
                }
                send_push(&runner, &route, &image, &reference)
            }))
        })
        .collect();
    std::sync::Mutex::new(handles)
}

/// Waits for the early pushes no node needed: the engine is not left pushing when we exit.
pub(super) fn finish_early(early: &EarlyPushes) {
    for handle in early.lock().expect("early pushes").iter_mut().filter_map(Option::take) {
        let _ = handle.join();
    }
}

/// The registry name an image is pushed under: its path and tag at the registry's loopback address.
fn pushed_name(route: &Route, image: &Image) -> String {
    let first = &image.names[0];
    format!("localhost:{}/{}:{}", route.port, registry_repo(first), first.tag().unwrap_or("latest"))
}

/// The engine's own push to the registry's loopback address: it skips the layers the
/// registry holds. The engine keeps the push name, as kind's registry recipe leaves it: it
/// records what the registry was last given, so an unchanged image is not pushed again
/// before the survey.
fn push_image(runner: &dyn Runner, route: &Route, image: &Image) -> Result<String> {
    let reference = ready_push(runner, route, image)?;
    send_push(runner, route, image, &reference)
}

fn push_failed(route: &Route, image: &Image, e: String) -> Error {
    Error::failed(
        format!("pushing {} to registry {} failed, so no node was changed: {e}", image.requested, route.name),
        "check it with `kindload registry status`; `kindload registry up` starts it again, or load with --sideload",
    )
}

/// Asks the registry (one that does not answer is said at once, rather than after the
/// engine's retries) and gives the image its push name; returns that name.
fn ready_push(runner: &dyn Runner, route: &Route, image: &Image) -> Result<String> {
    let engine = image.engine.as_ref().expect("unroutable() keeps engine images only");
    let reference = pushed_name(route, image);
    crate::registry::client::Client::new(&format!("127.0.0.1:{}", route.port), &route.ca_pem)
        .and_then(|client| client.ping())
        .map_err(|e| push_failed(route, image, e))?;
    if !image.engine_names.contains(&reference) && image.engine_ref != reference {
        runner.run(&engine.cmd().args(["tag", &image.engine_ref, &reference]))?;
    }
    Ok(reference)
}

fn send_push(runner: &dyn Runner, route: &Route, image: &Image, reference: &str) -> Result<String> {
    let engine = image.engine.as_ref().expect("unroutable() keeps engine images only");
    let mut push = engine.cmd().arg("push");
    if engine.kind == EngineKind::Podman {
        std::fs::create_dir_all(&route.cert_dir)
            .and_then(|_| std::fs::write(route.cert_dir.join("ca.crt"), &route.ca_pem))
            .map_err(|e| Error::failed(format!("cannot write kindload's CA for podman push: {e}"), ""))?;
        push = push.arg("--cert-dir").arg(route.cert_dir.to_string_lossy().as_ref());
    }
    runner.run(&push.arg(reference)).map_err(|e| push_failed(route, image, e.to_string()))?;
    Ok(reference.to_string())
}

/// Why an image cannot take the registry route, or None when it can.
fn unroutable(image: &Image) -> Option<String> {
    if image.engine.is_none() {
        return Some("an archive is sideloaded: the registry route pushes from an engine".into());
    }
    None
}

/// The config digest of the pushed image for `platform` (`os/arch[/variant]`), read from
/// the registry: the manifest, or the index and then its manifest for the platform.
fn config_in_registry(route: &Route, image: &Image, platform: Option<&str>) -> Option<String> {
    let client = crate::registry::client::Client::new(&format!("127.0.0.1:{}", route.port), &route.ca_pem).ok()?;
    let first = &image.names[0];
    let repo = registry_repo(first);
    let (_, bytes) = client.get_manifest(&repo, first.tag().unwrap_or("latest")).ok()?;
    if let Some(config) = crate::registry::push::config_of(&bytes) {
        return Some(config);
    }
    let index: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let wanted = platform.unwrap_or("linux/amd64");
    let digest = index["manifests"].as_array()?.iter().find_map(|m| {
        let p = &m["platform"];
        let name = match p["variant"].as_str() {
            Some(v) => format!("{}/{}/{v}", p["os"].as_str()?, p["architecture"].as_str()?),
            None => format!("{}/{}", p["os"].as_str()?, p["architecture"].as_str()?),
        };
        (name == wanted || wanted.starts_with(&format!("{name}/"))).then(|| m["digest"].as_str().map(str::to_string))?
    })?;
    let (_, bytes) = client.get_manifest(&repo, &digest).ok()?;
    crate::registry::push::config_of(&bytes)
}

/// Why `node` cannot pull from the registry, or None: judged from the survey, which read
/// the node's `hosts.toml` and CA for the registry's address.
fn distrust(node: &Node, route: &Route) -> Option<String> {
    let host = format!("localhost:{}", route.port);
    let held = node.registry_hosts.iter().find(|h| h.host == host);
    let Some(dir) = held.map(|h| h.dir.as_str()).filter(|d| !d.is_empty()) else {
        return Some(format!(
            "sideloaded: containerd on {} sets no registry config_path, so it cannot pull from registry {} (see `kindload registry up`)",
            node.name, route.name
        ));
    };
    let wanted = hosts::wanted(dir, &route.name, route.port, &route.ca_pem);
    let same =
        |have: Option<&String>, want: &hosts::File| have.is_some_and(|h| h.trim_end() == want.content.trim_end());
    match held {
        Some(h) if same(h.hosts_toml.as_ref(), &wanted[0]) && same(h.ca.as_ref(), &wanted[1]) => None,
        _ => Some(format!(
            "sideloaded: {} does not trust registry {} yet; `kindload registry up` configures it",
            node.name, route.name
        )),
    }
}

/// What one node's exec does besides the pull.
struct NodePull {
    names: Vec<String>,
    /// CRI's `sha256:<id>` record to make (CRI makes it only for names it has not seen).
    id_record: Option<String>,
    /// Records of the version the names moved away from.
    doomed: Vec<String>,
    /// The image's id (config digest), when known: its record is read back with the names.
    id: Option<String>,
}

impl NodePull {
    fn new(before: &[CtrImage], image: &Image, reference: &str, keep: bool) -> NodePull {
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

/// The pull, as a shell function: `pull HOSTS_DIR REF SNAPSHOTTER LOCAL DOOMED ID NAMES...`.
/// Pulls (unpacked for the node's CRI snapshotter; `--local` on containerd 2.x, whose
/// transfer service unpacks only for the default one), moves every name and CRI's id record
/// onto the image in one `tag`, removes the superseded records (DOOMED, space-separated) in
/// one `rm` while it prints what verification reads: CRI's answer for each name where crictl
/// exists, else the records of the names and of ID (all records when ID is unknown). The
/// names move only once the pull succeeded: a failed pull leaves the node as it was. Each
/// `ctr` costs a process start in the node, so there are four at most.
macro_rules! pull_function {
    () => {
        r#"pull() {
set -e; hosts=$1; ref=$2; snapshotter=$3; local=$4; doomed=$5; id=$6; shift 6
if [ "$local" = yes ]; then
  ctr -n k8s.io images pull --local --snapshotter "$snapshotter" --hosts-dir "$hosts" "$ref" >/dev/null
else
  ctr -n k8s.io images pull --snapshotter "$snapshotter" --hosts-dir "$hosts" "$ref" >/dev/null
fi
ctr -n k8s.io images tag --force "$ref" "$@" >/dev/null
set +e
if [ -n "$doomed" ]; then
  gone=$(mktemp); set -f
  { ctr -n k8s.io images rm --sync $doomed >"$gone" 2>&1; echo "$?" >>"$gone"; } &
  set +f
fi
if command -v crictl >/dev/null 2>&1; then
  printf '@@kindload crictl 0\n'
  for a; do case $a in sha256:*) continue ;; esac
    o=$(crictl inspecti -o json "$a" 2>/dev/null); printf '@@kindload inspecti:%s %s\n%s\n' "$a" "$?" "$o"
  done
else
  if [ -n "$id" ]; then
    n=$#; for a in "$@" "$id"; do set -- "$@" "name==\"$a\""; done; shift "$n"
  else
    set --
  fi
  o=$(ctr -n k8s.io images ls "$@" 2>&1); printf '@@kindload images %s\n%s\n' "$?" "$o"
fi
if [ -n "$doomed" ]; then
  wait; printf '@@kindload superseded %s\n%s\n' "$(tail -n 1 "$gone")" "$(sed '$d' "$gone")"; rm -f "$gone"
fi
}
"#
    };
}

/// A node's session: the light survey (with the registry hosts), then, for each pull it is
/// told (its arguments one per line, then `@@end`), the pull's output under `@@kindload
/// pulled <status>`, the status and any error first. It waits with [`READY`] before each.
const SESSION: &str = concat!(
    survey_functions!(),
    pull_function!(),
    r#"survey light "$@"
while :; do
  printf '@@kindload ready 0\n'
  set --; a=
  while IFS= read -r a; do [ "$a" = @@end ] && break; set -- "$@" "$a"; done
  [ "$a" = @@end ] || exit 0
  o=$( (pull "$@") 2>&1 ); printf '@@kindload pulled %s\n%s\n' "$?" "$o"
done
"#
);

/// What a node is told for one pull: the lines its session reads as `pull`'s arguments.
fn pull_lines(node: &Node, hosts_dir: &str, reference: &str, plan: &NodePull) -> Vec<String> {
    let local = if node.containerd_major() >= Some(2) { "yes" } else { "no" };
    let mut lines: Vec<String> = [hosts_dir, reference, node.import_snapshotter(), local].map(String::from).to_vec();
    // Record names hold no spaces: one line, split on them by the script.
    lines.push(plan.doomed.join(" "));
    lines.push(plan.id.clone().unwrap_or_default());
    lines.extend(plan.names.iter().cloned());
    lines.extend(plan.id_record.iter().cloned());
    lines.push("@@end".into());
    lines
}

fn pull(session: &mut Session, node: &Node, route: &Route, image: &Image, pushed: &str, plan: &NodePull) -> Outcome {
    let started = Instant::now();
    let host = format!("localhost:{}", route.port);
    let dir = node.registry_hosts.iter().find(|h| h.host == host).map(|h| h.dir.as_str()).unwrap_or_default();
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
            verdict: read_back(node, image, &sections),
            error: tidied,
            ..Outcome::new(Action::Loaded)
        },
        Some(s) => failed(&s.body.trim()),
        None => failed(&"the node printed no result"),
    }
}

/// The verdict from what the node printed after the pull, when it proves the load; else
/// None, and verification asks the node again (CRI may index the image a moment later).
fn read_back(node: &Node, image: &Image, sections: &[Section]) -> Option<crate::verify::Verdict> {
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
    crate::verify::from_survey(&after, image)
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
                "yes",
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
        assert_eq!(old[2..6], ["overlayfs", "no", "", ""], "no --local before containerd 2, nothing superseded, no id");
        assert_eq!(old[6..8], names[..], "and no id record");
        assert_eq!(old.len(), 9);
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

    #[test]
    fn trust_is_the_hosts_files_registry_up_writes() {
        let route = Route { name: "reg".into(), port: 5001, ca_pem: "PEM\n".into(), cert_dir: PathBuf::new() };
        let mut n = node("2.1.9", "overlayfs");
        let wanted = hosts::wanted("/etc/containerd/certs.d", "reg", 5001, "PEM\n");
        assert!(distrust(&n, &route).unwrap().contains("config_path"), "nothing read: no hosts directory");
        n.registry_hosts = vec![crate::resolve::node::RegistryHost {
            host: "localhost:5001".into(),
            dir: "/etc/containerd/certs.d".into(),
            hosts_toml: None,
            ca: None,
        }];
        assert!(distrust(&n, &route).unwrap().contains("does not trust"), "no files there yet");
        n.registry_hosts[0].hosts_toml = Some(wanted[0].content.clone());
        n.registry_hosts[0].ca = Some(wanted[1].content.clone());
        assert_eq!(distrust(&n, &route), None);
        n.registry_hosts[0].ca = Some("OTHER CA".into());
        assert!(distrust(&n, &route).is_some(), "another CA is no trust");
        n.registry_hosts[0].dir = String::new();
        assert!(distrust(&n, &route).unwrap().contains("config_path"));
    }

    #[test]
    fn archives_are_sideloaded_engine_images_routed() {
        let id =
            |config: Option<&str>| Identity { config: config.map(String::from), manifest: Some("sha256:m".into()) };
        let archived = Image::for_tests("app:dev", id(Some("sha256:c")));
        assert!(unroutable(&archived).unwrap().contains("archive"));
        let mut engine = archived.clone();
        engine.engine = Some(crate::resolve::engine::Engine::unprobed(EngineKind::Docker, "test"));
        assert_eq!(unroutable(&engine), None);
        engine.identity = id(None);
        assert_eq!(unroutable(&engine), None, "Docker's containerd store: the registry tells the config");
    }
}
