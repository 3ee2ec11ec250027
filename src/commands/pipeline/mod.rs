//! The load for resolved images, over the cluster's selected nodes, one stage per file:
//! survey nodes and plan per node, retag (`plan`) → transfer what each lacks (`stream`)
//! → drop what was superseded and older versions beyond `--keep` (`tidy`, `retain`) →
//! verify (`verify`) → report (`report`).
//! `images` turns archives and engine images into what the stages load.

mod images;
mod plan;
mod registry;
mod report;
mod retain;
mod stream;
mod tidy;
mod verify;

use std::path::PathBuf;
use std::time::Duration;

use super::Context;
use crate::error::Result;
use crate::exec::Runner;
use crate::plan::push::{PushSetting, PushWith};
use crate::plan::retention::Keep;
use crate::plan::Action;
use crate::report::{LoadReport, PushReport, RetentionReport, Transport};
use crate::request::cli::SelectArgs;
use crate::resolve::cluster::ClusterName;
use crate::resolve::engine::EngineKind;
use crate::resolve::holdings::{Asked, Depth};
use crate::resolve::image::Image;
use crate::resolve::node::{self, Node};
use crate::resolve::provider::NodeContainer;
use crate::resolve::provider::Provider;
use crate::resolve::records::CtrImage;
use crate::resolve::reference::ImageRef;
use crate::transfer::export::Source;

use images::{images_from_archive, scan_file, select_nodes};

pub struct LoadRequest {
    /// Images found in an engine.
    pub images: Vec<Image>,
    /// With an archive: which of its images, by name (all when empty).
    pub wanted: Vec<String>,
    pub select: SelectArgs,
    pub archive: Option<PathBuf>,
    /// False for `verify`: nothing moves.
    pub transfer: bool,
    pub options: LoadOptions,
}

/// How the transfer behaves.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Send every blob, whatever the nodes hold.
    pub full: bool,
    /// Keep the image a name moved away from, instead of removing it.
    pub keep_superseded: bool,
    /// Largest layer spooled to a temporary file (docker-archive layers named by id).
    pub spool_max: u64,
    /// Never through the cluster's registry.
    pub sideload: bool,
    /// Versions of a repository each node keeps (`--keep`); None: kindload.yaml's, else 2.
    pub keep: Option<Keep>,
    /// The push to the registry the user asked for (`--push`, KINDLOAD_PUSH); None: kindload.yaml's, else picked per engine.
    pub push: Option<PushSetting>,
    /// `--via-registry`: only through the registry; a node that cannot pull fails.
    pub via_registry: bool,
    /// The registry named with --via-registry.
    pub registry: Option<String>,
}

impl LoadOptions {
    pub fn from_args(args: &crate::request::cli::TransferArgs) -> Self {
        LoadOptions {
            full: args.full,
            keep_superseded: args.keep_superseded,
            spool_max: args.spool_limit << 20,
            sideload: args.sideload,
            keep: args.keep,
            push: args.push.map(|with| PushSetting { with, from: push_flag(with) }),
            via_registry: false,
            registry: None,
        }
    }
}

/// Where `--push` came from, as the report names it: the environment or the flag.
fn push_flag(with: PushWith) -> String {
    match crate::commands::context::env("KINDLOAD_PUSH") {
        Some(value) if value.trim() == with.as_str() => format!("KINDLOAD_PUSH={}", with.as_str()),
        _ => format!("--push {}", with.as_str()),
    }
}

/// Per image and node: what happened.
#[derive(Debug, Clone)]
struct Outcome {
    action: Action,
    bytes: u64,
    present: u64,
    seconds: f64,
    error: Option<String>,
    verdict: Option<crate::verify::Verdict>,
    transport: Option<Transport>,
    note: Option<String>,
}

impl Outcome {
    fn new(action: Action) -> Self {
        Outcome { action, bytes: 0, present: 0, seconds: 0.0, error: None, verdict: None, transport: None, note: None }
    }

    fn failed(error: impl Into<String>) -> Self {
        Outcome { error: Some(error.into()), ..Outcome::new(Action::Failed) }
    }
}

/// Outcomes indexed [image][node].
type Outcomes = Vec<Vec<Outcome>>;

/// Loads (or only verifies) and returns the report with the images as they ended up.
pub fn run(ctx: &Context, req: LoadRequest) -> Result<(LoadReport, Vec<Image>)> {
    let archive = req.archive.map(|p| if p.as_os_str() == "-" { Source::Stdin } else { Source::File(p) });
    // A file is read whole first: its names and digests are checked before any node is touched.
    let mut images = match &archive {
        Some(Source::File(path)) => images_from_archive(&scan_file(path)?, &req.wanted, &path.display().to_string())?,
        _ => req.images,
    };
    let mut names: Vec<String> = Vec::new();
    for name in images.iter().flat_map(|i| i.names.iter().map(ImageRef::normalized)) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let wants_route = req.transfer && !req.options.sideload && archive.is_none();
    let ((cluster, provider, containers), route, early) =
        discover(ctx, &req.select, &req.options, wants_route, &mut images)?;
    if req.options.via_registry {
        if let Err(why) = &route {
            registry::finish_early(&early);
            return Err(registry::required(why, &req.options));
        }
    }
    // The survey lists the records the load reads: the images' digests, their registry names.
    let mut records: Vec<String> =
        images.iter().flat_map(|i| [i.identity.config.clone(), i.identity.manifest.clone()]).flatten().collect();
    records.extend(registry::pushed_names(&route, &images));
    // Each node is surveyed in a session that stays open: with a registry for its pull,
    // without one for its sideload (`transfer::lock`).
    let asked = Asked { names: &names, records: &records, ..Default::default() };
    let (nodes, sessions) = match &route {
        Ok(route) => {
            let (nodes, pulls) = registry::survey_held(provider, containers, route, &names, &records);
            (nodes, HeldSessions { pulls, ..Default::default() })
        }
        Err(_) if req.transfer => {
            let script = crate::transfer::lock::session_script(retain::SESSION_FUNCTIONS);
            let (nodes, sideload) = registry::by_name(node::probe_all_held(provider, containers, &script, &asked));
            (nodes, HeldSessions { sideload, ..Default::default() })
        }
        Err(_) => {
            let nodes = node::probe_all_asking(ctx.runner(), provider, containers, Depth::Light, &asked);
            (nodes, HeldSessions::default())
        }
    };
    let nodes = match select_nodes(nodes, &req.select.nodes) {
        Ok(nodes) => nodes,
        Err(e) => {
            sessions.close();
            registry::finish_early(&early);
            return Err(e);
        }
    };
    let mut pipeline = Pipeline::new(ctx, provider, nodes, req.options, route, early, sessions);
    let result = pipeline.carry_out(images, archive, req.transfer, &req.wanted, &cluster.name);
    pipeline.sessions.close();
    registry::finish_early(&pipeline.early);
    result
}

/// A cluster, its provider and its node containers.
type Discovered = (ClusterName, Provider, Vec<NodeContainer>);

/// The cluster and, for a load that may go through it, the registry route and the early
/// pushes: looked up side by side, the registry on the provider the cluster is most likely
/// on (looked up again when the cluster turns out to be elsewhere). A push is made ready
/// meanwhile and sent once the cluster is found, by engines asked where they run.
fn discover(
    ctx: &Context,
    select: &SelectArgs,
    options: &LoadOptions,
    wants_route: bool,
    images: &mut [Image],
) -> Result<(Discovered, registry::RouteLookup, registry::EarlyPushes)> {
    if !wants_route {
        return Ok((ctx.cluster(&select.cluster)?, Err(None), Default::default()));
    }
    let guess = ctx.provider_choice(&select.cluster)?.unwrap_or(EngineKind::Docker);
    let gate = registry::Gate::default();
    let (found, (route, early)) = std::thread::scope(|scope| {
        let lookup = scope.spawn(|| {
            let route = registry::find_route(ctx, Provider::new(guess), options);
            if route.is_ok() {
                registry::locate_engines(ctx.runner(), images);
            }
            let early = registry::push_early(&route, images, &gate);
            (route, early)
        });
        let found = ctx.cluster(&select.cluster);
        gate.open(found.as_ref().is_ok_and(|(_, provider, _)| provider.kind == guess));
        (found, lookup.join().expect("registry lookup panicked"))
    });
    let found = match found {
        Ok(found) if found.1.kind != guess => found,
        Ok(found) => return Ok((found, route, early)),
        Err(e) => {
            registry::finish_early(&early);
            return Err(e);
        }
    };
    registry::finish_early(&early);
    let route = registry::find_route(ctx, found.1, options);
    if route.is_ok() {
        registry::locate_engines(ctx.runner(), images);
    }
    let early = registry::push_early(&route, images, &registry::Gate::opened());
    Ok((found, route, early))
}

impl Pipeline<'_> {
    /// Loads (or not, for `verify`), verifies and reports.
    fn carry_out(
        &mut self,
        mut images: Vec<Image>,
        archive: Option<Source>,
        transfer: bool,
        wanted: &[String],
        cluster: &str,
    ) -> Result<(LoadReport, Vec<Image>)> {
        self.run_names = images.iter().flat_map(|i| i.names.iter().map(ImageRef::normalized)).collect();
        self.run_names.extend(registry::pushed_names(&self.route, &images));
        *self.pushes.lock().expect("push reports") = vec![None; images.len()];
        let mut outcomes = match &archive {
            _ if !transfer => self.untouched(&images),
            Some(Source::Stdin) => {
                let (found, outcomes) = self.load_stdin(wanted)?;
                images = found;
                outcomes
            }
            _ => self.load(&mut images, archive.as_ref())?,
        };
        self.verify_all(&images, &mut outcomes);
        let report = self.report(cluster, &images, &outcomes, archive.as_ref());
        Ok((report, images))
    }
}

/// The sessions the nodes' surveys left open: with a registry, for the route's pulls;
/// without one, for a sideload's claims (`transfer::lock`). Each node has at most one.
#[derive(Default)]
struct HeldSessions {
    pulls: registry::Sessions,
    sideload: registry::Sessions,
}

impl HeldSessions {
    fn close(&self) {
        registry::close_sessions(&self.pulls);
        registry::close_sessions(&self.sideload);
    }
}

struct Pipeline<'a> {
    ctx: &'a Context,
    provider: Provider,
    nodes: Vec<Node>,
    /// Per node: its image records before anything changed, or why it cannot take part.
    before: Vec<std::result::Result<Vec<CtrImage>, String>>,
    settle: Duration,
    options: LoadOptions,
    /// The cluster's registry, or why there is none to use (None: nothing to say).
    route: registry::RouteLookup,
    early: registry::EarlyPushes,
    sessions: HeldSessions,
    /// This run's claims on the nodes it sends to (see `transfer::lock`).
    claims: crate::transfer::lock::NodeClaims,
    /// Versions of a repository each node keeps.
    keep: Keep,
    /// When this run loaded (Unix ms): the label's value on every name it loads.
    stamp: u64,
    /// Every name this run loads, the registry's included: never removed as an older version.
    run_names: Vec<String>,
    /// What the retention removed, per node.
    retained: std::sync::Mutex<Vec<RetentionReport>>,
    /// Per image, the push that carried it to the registry.
    pushes: std::sync::Mutex<Vec<Option<PushReport>>>,
}

impl<'a> Pipeline<'a> {
    fn new(
        ctx: &'a Context,
        provider: Provider,
        nodes: Vec<Node>,
        options: LoadOptions,
        route: registry::RouteLookup,
        early: registry::EarlyPushes,
        sessions: HeldSessions,
    ) -> Self {
        let before = nodes
            .iter()
            .map(|node| {
                if !node.running {
                    return Err(format!(
                        "node {} is {}: start it with `{} start {}`, or leave it out with --nodes",
                        node.name,
                        node.state,
                        provider.name(),
                        node.name
                    ));
                }
                node.holdings().map(|h| h.images.clone())
            })
            .collect();
        let settle = Duration::from_secs(ctx.config.verify.settle_seconds);
        let keep = options.keep.or(ctx.config.keep.map(Keep::from)).unwrap_or_default();
        Pipeline {
            ctx,
            provider,
            nodes,
            before,
            settle,
            options,
            route,
            early,
            sessions,
            keep,
            stamp: retain::stamp(),
            run_names: Vec::new(),
            retained: Default::default(),
            pushes: Default::default(),
            claims: Default::default(),
        }
    }

    fn runner(&self) -> &dyn Runner {
        self.ctx.runner()
    }

    fn usable(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&n| self.before[n].is_ok()).collect()
    }

    /// `verify` alone: nothing moves; unusable nodes fail.
    fn untouched(&self, images: &[Image]) -> Outcomes {
        images
            .iter()
            .map(|_| {
                self.before
                    .iter()
                    .map(|b| match b {
                        Ok(_) => Outcome::new(Action::Skipped),
                        Err(e) => Outcome::failed(e.clone()),
                    })
                    .collect()
            })
            .collect()
    }
}
