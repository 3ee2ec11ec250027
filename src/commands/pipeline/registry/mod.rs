//! The registry route. When `kindload registry up` has run for the cluster, an engine image
//! reaches the nodes that trust the registry by the engine's own push (it sends only the
//! layers the registry lacks and compresses only those) and one `exec` per node: the pull
//! (containerd fetches only what the node lacks, sideloaded layers included), the user's
//! names moved onto the image, the superseded version removed, and what the node then
//! holds read back for verification. Nodes that do not trust it, and images the route
//! cannot carry, are sideloaded, and the report says why.

mod pull;
mod push;

use std::path::PathBuf;

use super::{retain, LoadOptions, Outcome, Outcomes, Pipeline};
use crate::commands::registry::{host_address, loopback};
use crate::commands::Context;
use crate::error::Result;
use crate::exec::Runner;
use crate::plan::push::{in_ci, PushSetting};
use crate::plan::Action;
use crate::registry::client::Client;
use crate::registry::repo_of;
use crate::registry::{container, hosts, DEFAULT_NAME, DEFAULT_PORT};
use crate::resolve::engine::Locality;
use crate::resolve::image::Image;
use crate::resolve::node::{Node, RegistryHost};
use crate::resolve::platform;
use crate::resolve::provider::Provider;
use crate::resolve::reference::ImageRef;
use pull::NodePull;
use push::{push_image, pushed_name, Pushed};

pub(super) use pull::{by_name, close_sessions, survey_held, Sessions};
pub(super) use push::{finish_early, locate_engines, push_early, EarlyPushes, Gate};

/// The cluster's registry, running and made by kindload.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub name: String,
    pub port: u16,
    ca_pem: String,
    /// A directory holding only the CA as `ca.crt`, for `podman push --cert-dir`.
    cert_dir: PathBuf,
    /// The push the user asked for, if any (`plan::push` picks otherwise).
    push: Option<PushSetting>,
    /// Whether this is a CI job, where no reload follows.
    ci: bool,
}

impl Route {
    /// The host engines push to and nodes pull from: `localhost:<port>`, which each node's
    /// `hosts.toml` maps to the registry's container.
    pub fn host(&self) -> String {
        host_address(self.port)
    }

    /// The hosts a survey reads the node's trust in.
    pub fn hosts(&self) -> Vec<String> {
        vec![self.host()]
    }

    /// What the survey read of the node's files for this registry's host.
    fn held<'a>(&self, node: &'a Node) -> Option<&'a RegistryHost> {
        let host = self.host();
        node.registry_hosts.iter().find(|h| h.host == host)
    }

    /// kindload's own client of the registry, at its published address.
    fn client(&self) -> std::result::Result<Client, String> {
        Client::new(&loopback(self.port), &self.ca_pem)
    }
}

/// The cluster's registry, or why there is none to use (None: nothing to say).
pub(crate) type RouteLookup = std::result::Result<Route, Option<String>>;

/// Per image and node, whether the registry route handled it (the rest are sideloaded).
type Routed = Vec<Vec<bool>>;

/// The registry to use, or why none: none made by `registry up` (nothing to say), or one
/// that is not running (said, and the load sideloads). One started moments ago (restarted,
/// or by an `up` running beside this load) is given a bounded wait to answer.
pub(super) fn find_route(ctx: &Context, provider: Provider, options: &LoadOptions) -> RouteLookup {
    let found = find_registry(ctx.runner(), provider, options.registry.as_deref()).ok_or(None)?;
    let name = found.name.clone();
    if !found.running {
        return Err(Some(format!(
            "sideloaded: registry {name} is not running (it is {}); `kindload registry up` starts it again",
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
    let push = options.push.clone().or_else(|| {
        let with = ctx.config.push?;
        Some(PushSetting { with, from: format!("`push: {}` in kindload.yaml", with.as_str()) })
    });
    let ci = in_ci(crate::commands::context::env("CI").as_deref());
    let route = Route { name, port: found.port.unwrap_or(DEFAULT_PORT), ca_pem, cert_dir, push, ci };
    if found.just_started() {
        await_start(ctx, &route);
    }
    Ok(route)
}

/// The error of `--via-registry` when the cluster has no registry to use: none (bad input,
/// exit 2), or one that is not running (exit 1).
pub(super) fn required(why: &Option<String>, options: &LoadOptions) -> crate::error::Error {
    let name = options.registry.as_deref().unwrap_or(DEFAULT_NAME);
    match why {
        None => crate::error::Error::usage(
            format!("--via-registry: there is no kindload registry {name} for this cluster"),
            "start one with `kindload registry up` (or name yours with --registry), or load without --via-registry to sideload",
        ),
        Some(why) => crate::error::Error::failed(
            format!("--via-registry: {}", why.trim_start_matches("sideloaded: ")),
            "start it with `kindload registry up`, or load without --via-registry to sideload",
        ),
    }
}

/// The longest a load waits for a just-started registry before going on (a push to one that
/// still does not answer then fails with its own error).
const START_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Waits, at most START_WAIT, for a registry that has just started to answer.
fn await_start(ctx: &Context, route: &Route) {
    let Ok(client) = route.client() else { return };
    let mut waiting = |failure: &str| {
        ctx.say(format!(
            "waiting for registry {}, started moments ago, to answer at {} (at most {} s): {failure}",
            route.name,
            loopback(route.port),
            START_WAIT.as_secs()
        ))
    };
    let _ = client.ping_until(std::time::Instant::now() + START_WAIT, &mut waiting);
}

/// The registry named by `--registry` (with --via-registry) or KINDLOAD_REGISTRY, else the
/// default one, else the one kindload registry on the provider (a running one first, when
/// there are several).
fn find_registry(runner: &dyn Runner, provider: Provider, named: Option<&str>) -> Option<container::Found> {
    if let Some(name) = named.map(str::to_string).or_else(|| crate::commands::context::env("KINDLOAD_REGISTRY")) {
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
        let required = self.options.via_registry;
        let route = match &self.route {
            Ok(route) => route,
            Err(why) => {
                for (i, row) in targets.iter().enumerate() {
                    for &n in row {
                        pass_by(required, &mut outcomes[i][n], &mut handled[i][n], why.clone());
                    }
                }
                return Ok(handled);
            }
        };
        for (i, image) in images.iter_mut().enumerate() {
            if targets[i].is_empty() && required && unroutable(image).is_none() {
                // --via-registry: the registry holds the image even when every node already does.
                match self.push_for(i, route, image) {
                    Ok(Pushed { report, .. }) => self.pushes.lock().expect("push reports")[i] = Some(report),
                    Err(e) => {
                        for outcome in outcomes[i].iter_mut() {
                            *outcome = Outcome::failed(format!("--via-registry: {e}"));
                        }
                    }
                }
                continue;
            }
            let mut trusting = Vec::new();
            for &n in &targets[i] {
                match distrust(&self.nodes[n], route) {
                    None => trusting.push(n),
                    why => pass_by(required, &mut outcomes[i][n], &mut handled[i][n], why),
                }
            }
            if trusting.is_empty() {
                continue;
            }
            if let Some(why) = unroutable(image) {
                for &n in &trusting {
                    pass_by(required, &mut outcomes[i][n], &mut handled[i][n], Some(why.clone()));
                }
                continue;
            }
            let pushed = self.push_for(i, route, image);
            let reference = match pushed {
                Ok(Pushed { reference, report }) => {
                    self.pushes.lock().expect("push reports")[i] = Some(report);
                    reference
                }
                Err(e) => {
                    match not_pushed(route, image, &push::locate(self.runner(), engine_of(image)), &e) {
                        NotPushed::Sideload(note) => {
                            for &n in &trusting {
                                pass_by(required, &mut outcomes[i][n], &mut handled[i][n], Some(note.clone()));
                            }
                        }
                        // Not sideloaded elsewhere either: no node changes for an image the load failed.
                        NotPushed::Failed(why) => {
                            for &n in &targets[i] {
                                outcomes[i][n] = Outcome::failed(why.clone());
                                handled[i][n] = true;
                            }
                        }
                    }
                    continue;
                }
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

    /// The image's push: the early one when it was started, else one now.
    fn push_for(&self, i: usize, route: &Route, image: &Image) -> Result<Pushed> {
        let early = self.early.lock().expect("early pushes").get_mut(i).and_then(Option::take);
        match early {
            Some(handle) => handle.join().expect("push panicked"),
            None => push_image(self.runner(), route, image),
        }
    }

    /// Every trusting node pulls, concurrently, each through the session it was surveyed in.
    fn pull_all(&self, route: &Route, image: &Image, reference: &str, nodes: &[usize]) -> Vec<(usize, Outcome)> {
        let keep = self.options.keep_superseded;
        let mut sessions = self.sessions.pulls.lock().expect("sessions");
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
                        let mut outcome = pull::pull(&mut session, node, route, image, reference, &plan);
                        if outcome.action == Action::Loaded {
                            // The registry's name too: it is kindload's, and names the version.
                            let mut labelled: Vec<String> = image.names.iter().map(ImageRef::normalized).collect();
                            labelled.push(reference.to_string());
                            let scope =
                                retain::Scope { keep: self.keep, labelled: &labelled, run_names: &self.run_names };
                            match pull::retain(&mut session, node, &scope, self.stamp) {
                                Ok(Some(report)) => retain::record(&self.retained, report),
                                Ok(None) => {}
                                Err(e) => {
                                    let why = format!("{}: removing older versions failed: {e}", node.name);
                                    outcome.error.get_or_insert(why);
                                }
                            }
                        }
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

/// Why a node does not pull from the registry: a note before its sideload, or with
/// --via-registry, which allows no sideload, its failure.
fn pass_by(required: bool, outcome: &mut Outcome, handled: &mut bool, why: Option<String>) {
    if required {
        let why = why.unwrap_or_else(|| "the cluster has no registry".into());
        *outcome =
            Outcome::failed(format!("--via-registry allows no sideload: {}", why.trim_start_matches("sideloaded: ")));
        *handled = true;
    } else {
        outcome.note = why;
    }
}

/// The registry names the images would be pushed under: the survey lists their records,
/// which a pull moves and so may supersede.
pub(super) fn pushed_names(route: &RouteLookup, images: &[Image]) -> Vec<String> {
    let Ok(route) = route else { return Vec::new() };
    images.iter().filter(|i| unroutable(i).is_none()).map(|i| pushed_name(route, i)).collect()
}

/// What a push that did not happen means for the nodes that would have pulled it.
enum NotPushed {
    /// The engine runs elsewhere and cannot reach the registry: the nodes are sideloaded.
    Sideload(String),
    /// The registry or the engine failed: every node that needed the image fails, left as it was.
    Failed(String),
}

/// A remote engine pushes from its own host, where the registry's loopback address may
/// lead nowhere (another VM, another machine): its nodes take the sideload instead. A
/// local engine's push failing is the registry's or the engine's fault, and the load's.
fn not_pushed(route: &Route, image: &Image, locality: &Locality, error: &crate::error::Error) -> NotPushed {
    let engine = engine_of(image);
    let fix = error.fix().filter(|f| !f.is_empty()).map(|f| format!("; {f}")).unwrap_or_default();
    match locality.via() {
        Some(via) => NotPushed::Sideload(format!(
            "sideloaded: {} runs elsewhere ({via}) and its push to registry {} did not go through: {error}",
            engine.kind, route.name
        )),
        None => NotPushed::Failed(format!("no node was changed: {error}{fix}")),
    }
}

fn engine_of(image: &Image) -> &crate::resolve::engine::Engine {
    image.engine.as_ref().expect("unroutable() keeps engine images only")
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
    let client = route.client().ok()?;
    let first = &image.names[0];
    let repo = repo_of(first);
    let (_, bytes) = client.get_manifest(&repo, first.tag().unwrap_or("latest")).ok()?;
    if let Some(config) = crate::registry::push::config_of(&bytes) {
        return Some(config);
    }
    let index: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let wanted = platform.unwrap_or("linux/amd64");
    let digest = index["manifests"].as_array()?.iter().find_map(|m| {
        let p = &m["platform"];
        let name = platform::join(p["os"].as_str(), p["architecture"].as_str(), p["variant"].as_str())?;
        (name == wanted || wanted.starts_with(&format!("{name}/"))).then(|| m["digest"].as_str().map(str::to_string))?
    })?;
    let (_, bytes) = client.get_manifest(&repo, &digest).ok()?;
    crate::registry::push::config_of(&bytes)
}

/// Why `node` cannot pull from the registry, or None: judged from the survey, which read
/// the node's `hosts.toml` and CA for the registry's address.
fn distrust(node: &Node, route: &Route) -> Option<String> {
    let held = route.held(node);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::engine::EngineKind;
    use crate::resolve::image::Identity;

    fn test_route() -> Route {
        Route {
            name: "reg".into(),
            port: 5001,
            ca_pem: "PEM\n".into(),
            cert_dir: PathBuf::new(),
            push: None,
            ci: false,
        }
    }

    #[test]
    fn trust_is_the_hosts_files_registry_up_writes() {
        let route = test_route();
        let mut n = Node::for_tests("kind-worker");
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
    fn a_push_that_fails_sideloads_from_a_remote_engine_and_fails_a_local_ones_nodes() {
        let route = test_route();
        let id = Identity { config: Some("sha256:c".into()), manifest: None };
        let mut image = Image::for_tests("app:dev", id);
        image.engine = Some(crate::resolve::engine::Engine::unprobed(EngineKind::Podman, "test"));
        let error =
            crate::error::Error::failed("pushing app:dev to registry reg failed: refused", "load with --sideload");
        match not_pushed(&route, &image, &Locality::Local, &error) {
            NotPushed::Failed(why) => {
                assert_eq!(
                    why,
                    "no node was changed: pushing app:dev to registry reg failed: refused; load with --sideload"
                )
            }
            NotPushed::Sideload(note) => panic!("a local engine's failed push is the load's failure, not {note:?}"),
        }
        let remote = Locality::Remote { via: "podman's service at unix:///p.sock".into() };
        match not_pushed(&route, &image, &remote, &error) {
            NotPushed::Sideload(note) => assert!(
                note.starts_with("sideloaded: podman runs elsewhere (podman's service at unix:///p.sock) and its push to registry reg did not go through: pushing"),
                "{note}"
            ),
            NotPushed::Failed(why) => panic!("a remote engine's push failing must not fail the load: {why}"),
        }
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
