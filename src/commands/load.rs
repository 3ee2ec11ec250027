//! `kindload load` and `kindload verify`: resolve → plan → transfer → name → verify → report.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::context::env;
use super::Context;
use crate::error::{Error, Result, EXIT_FAILED};
use crate::plan::{self, Action, Step};
use crate::report::progress::Progress;
use crate::report::{node_line, ImageReport, LoadReport, NodeReport};
use crate::request::build_artifacts::parse_build_artifacts;
use crate::request::cli::{LoadArgs, OutputFormat, SelectArgs, VerifyArgs};
use crate::request::config::OnFailure;
use crate::request::manifests::images_in_manifests;
use crate::request::record;
use crate::request::skaffold::{build_hook_env, deployed_ref};
use crate::resolve::engine::Engine;
use crate::resolve::image::{self, Identity, Image};
use crate::resolve::node::Node;
use crate::resolve::provider::Provider;
use crate::resolve::reference::ImageRef;
use crate::transfer::archive::{self, ArchiveImage};
use crate::transfer::export::Source;
use crate::transfer::{self, import};
use crate::verify::{self, cri::CtrImage};

/// An image the user wants, with any further names it must answer to (for Skaffold,
/// the `<repo>:<id hex>` ref it deploys).
#[derive(Debug, Clone)]
pub struct Wanted {
    pub input: String,
    pub extra_names: Vec<ImageRef>,
}

pub struct LoadRequest {
    /// Images found in an engine.
    pub images: Vec<Image>,
    /// With an archive: which of its images, by name (all when empty).
    pub wanted: Vec<Wanted>,
    pub select: SelectArgs,
    pub archive: Option<PathBuf>,
    pub transfer: bool,
}

pub fn load(ctx: &Context, args: LoadArgs) -> Result<i32> {
    let wanted = wanted_from(&args.images)?;
    if args.archive.is_some() {
        let request = LoadRequest {
            images: Vec::new(),
            wanted,
            select: args.select.clone(),
            archive: args.archive,
            transfer: true,
        };
        return finish(ctx, &args.select, run(ctx, request)?.0);
    }
    let images = match gather(ctx, &args, &wanted)? {
        Gathered::Images(images) => images,
        Gathered::Nothing(why) => {
            ctx.say(why);
            return Ok(0);
        }
    };
    let request =
        LoadRequest { images, wanted: Vec::new(), select: args.select.clone(), archive: None, transfer: true };
    let (report, images) = run(ctx, request)?;
    remember(ctx, &images_verified(&report, images));
    finish(ctx, &args.select, report)
}

pub fn verify(ctx: &Context, args: VerifyArgs) -> Result<i32> {
    let wanted = wanted_from(&args.images)?;
    let engines = ctx.engines(&args.engine)?;
    let images = find_all(ctx, &engines, &wanted)?;
    let request =
        LoadRequest { images, wanted: Vec::new(), select: args.select.clone(), archive: None, transfer: false };
    finish(ctx, &args.select, run(ctx, request)?.0)
}

enum Gathered {
    Images(Vec<Image>),
    /// Nothing to do, and why (said to the user; exit 0).
    Nothing(String),
}

/// What to load when the user named no images: from manifests, from Skaffold's
/// build-artifacts file, from a build hook's environment, or from this project's record.
fn gather(ctx: &Context, args: &LoadArgs, wanted: &[Wanted]) -> Result<Gathered> {
    if !wanted.is_empty() {
        return Ok(Gathered::Images(find_all(ctx, &ctx.engines(&args.engine)?, wanted)?));
    }
    if let Some(path) = &args.from_manifests {
        let yaml = read_input(path, "manifests")?;
        let engines = ctx.engines(&args.engine)?;
        let mut images = Vec::new();
        for reference in images_in_manifests(&yaml)? {
            match image::find(ctx.runner(), &engines, &reference) {
                Ok(found) => images.push(found),
                Err(Error::ImageNotFound { .. }) | Err(Error::BadReference { .. }) => {
                    ctx.say(format!("{reference}: not a local image; left for the kubelet to pull"))
                }
                Err(e) => return Err(e),
            }
        }
        return Ok(if images.is_empty() {
            Gathered::Nothing("no image in the manifests exists locally: nothing to load".into())
        } else {
            Gathered::Images(images)
        });
    }
    if let Some(path) = &args.from_build_artifacts {
        let artifacts = parse_build_artifacts(&read_input(path, "build artifacts")?)?;
        let wanted = wanted_from(&artifacts.into_iter().map(|a| a.tag).collect::<Vec<_>>())?;
        return Ok(Gathered::Images(find_all(ctx, &ctx.engines(&args.engine)?, &wanted)?));
    }
    let lookup = |k: &str| env(k);
    if let Some(hook) = build_hook_env(&lookup)? {
        if hook.push_image {
            return Ok(Gathered::Nothing(format!(
                "SKAFFOLD_PUSH_IMAGE=true: {} goes to a registry, nothing to load",
                hook.image
            )));
        }
        let engines = ctx.engines(&args.engine)?;
        let mut built = image::find(ctx.runner(), &engines, &hook.image)?;
        built.add_name(ImageRef::parse(&deployed_ref(&hook.image, &built.identity.id()))?);
        return Ok(Gathered::Images(vec![built]));
    }
    let (project, entries) = recorded(ctx);
    let in_skaffold_hook =
        ["SKAFFOLD_KUBE_CONTEXT", "SKAFFOLD_RUN_ID", "SKAFFOLD_WORK_DIR"].iter().any(|k| env(k).is_some());
    if entries.is_empty() {
        if in_skaffold_hook {
            return Ok(Gathered::Nothing(format!("nothing recorded for {}: nothing to reload", project.display())));
        }
        return Err(Error::usage(
            "no images to load",
            "name images (`kindload load app:dev`), or use --archive, --from-manifests or --from-build-artifacts",
        ));
    }
    let engines = ctx.engines(&args.engine)?;
    let mut images = Vec::new();
    for entry in entries {
        match image::find(ctx.runner(), &engines, &entry.image) {
            Ok(mut found) => {
                for name in entry.names.iter().filter_map(|n| ImageRef::parse(n).ok()) {
                    found.add_name(name);
                }
                images.push(found);
            }
            Err(Error::ImageNotFound { .. }) => {
                ctx.say(format!("{}: recorded but no longer local; skipped", entry.image))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(if images.is_empty() {
        Gathered::Nothing("no recorded image exists locally any more: nothing to reload".into())
    } else {
        ctx.say(format!("reloading {} image(s) recorded for {}", images.len(), project.display()));
        Gathered::Images(images)
    })
}

fn read_input(path: &std::path::Path, what: &str) -> Result<String> {
    let text = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map(|_| text)
    } else {
        std::fs::read_to_string(path)
    };
    text.map_err(|e| {
        Error::input(format!("cannot read {what} from {}: {e}", path.display()), "pass a readable file, or - for stdin")
    })
}

fn find_all(ctx: &Context, engines: &[Engine], wanted: &[Wanted]) -> Result<Vec<Image>> {
    wanted.iter().map(|w| find_with_names(ctx.runner(), engines, w)).collect()
}

fn project(ctx: &Context) -> PathBuf {
    let _ = ctx;
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    record::project_dir(env("SKAFFOLD_WORK_DIR").map(PathBuf::from).as_deref(), &cwd)
}

fn recorded(ctx: &Context) -> (PathBuf, Vec<record::Entry>) {
    let project = project(ctx);
    let entries = record::state_file(&|k| env(k))
        .map(|path| record::read(&path).entries(&project.to_string_lossy()).to_vec())
        .unwrap_or_default();
    (project, entries)
}

/// The engine images that ended verified on every node.
fn images_verified(report: &LoadReport, images: Vec<Image>) -> Vec<Image> {
    images
        .into_iter()
        .zip(&report.images)
        .filter(|(image, r)| image.engine.is_some() && r.nodes.iter().all(|n| n.verified))
        .map(|(image, _)| image)
        .collect()
}

/// Records loaded images for this project; failing to record never fails a load.
pub fn remember(ctx: &Context, images: &[Image]) {
    let Some(path) = record::state_file(&|k| env(k)) else { return };
    if images.is_empty() {
        return;
    }
    let project = project(ctx).to_string_lossy().into_owned();
    let mut rec = record::read(&path);
    for image in images {
        let names = image.names.iter().skip(1).map(|n| n.normalized()).collect();
        rec.remember(&project, record::Entry { image: image.engine_ref.clone(), names });
    }
    if let Err(e) = record::write(&path, &rec) {
        ctx.say(format!("note: could not record this load in {}: {e}", path.display()));
    }
}

/// Parses every reference up front so a typo fails before any work starts.
pub fn wanted_from(inputs: &[String]) -> Result<Vec<Wanted>> {
    let mut wanted: Vec<Wanted> = Vec::new();
    for input in inputs {
        ImageRef::parse(input)?;
        if !wanted.iter().any(|w| &w.input == input) {
            wanted.push(Wanted { input: input.clone(), extra_names: Vec::new() });
        }
    }
    Ok(wanted)
}

/// Prints the report and turns it into the exit status.
pub fn finish(ctx: &Context, select: &SelectArgs, report: LoadReport) -> Result<i32> {
    match select.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report).expect("report serialises")),
        OutputFormat::Human => {
            for image in &report.images {
                for node in &image.nodes {
                    let line = node_line(image, node);
                    if node.error.is_some() {
                        eprintln!("{line}");
                    } else {
                        ctx.say(line);
                    }
                }
            }
        }
    }
    if crate::commands::context::interrupted() {
        eprintln!("error: interrupted; children were stopped and half-imported images removed");
        return Ok(130);
    }
    if report.ok {
        Ok(0)
    } else if ctx.config.verify.on_failure == OnFailure::Warn {
        eprintln!("warning: some node loads were not verified (kindload.yaml verify.on_failure: warn)");
        Ok(0)
    } else {
        let failed: usize = report.images.iter().flat_map(|i| &i.nodes).filter(|n| !n.verified).count();
        eprintln!("error: {failed} node load(s) not verified; see above for each node's diagnosis");
        Ok(EXIT_FAILED)
    }
}

/// Per image and node: what happened.
#[derive(Debug, Clone)]
struct Outcome {
    action: Action,
    bytes: u64,
    seconds: f64,
    error: Option<String>,
    verdict: Option<verify::Verdict>,
}

impl Outcome {
    fn new(action: Action) -> Self {
        Outcome { action, bytes: 0, seconds: 0.0, error: None, verdict: None }
    }

    fn failed(error: impl Into<String>) -> Self {
        Outcome { error: Some(error.into()), ..Outcome::new(Action::Failed) }
    }
}

/// Loads (or only verifies) and returns the report with the images as they ended up.
pub fn run(ctx: &Context, req: LoadRequest) -> Result<(LoadReport, Vec<Image>)> {
    let settle = Duration::from_secs(ctx.config.verify.settle_seconds);
    let (cluster, provider, nodes) = ctx.nodes(&req.select.cluster)?;
    let nodes = select_nodes(nodes, &req.select.nodes)?;
    let runner = ctx.runner();

    let source_for_archive =
        req.archive.as_ref().map(|p| if p.as_os_str() == "-" { Source::Stdin } else { Source::File(p.clone()) });
    let mut images: Vec<Image> = match &source_for_archive {
        None => req.images,
        Some(Source::File(path)) => {
            let file = std::fs::File::open(path).map_err(|e| {
                Error::input(
                    format!("cannot open archive {}: {e}", path.display()),
                    "pass an existing archive file, or - for stdin",
                )
            })?;
            let found = archive::scan(std::io::BufReader::new(file)).map_err(|e| {
                Error::input(
                    format!("{} is not an image archive: {e}", path.display()),
                    "pass a docker-archive or OCI archive, as written by `docker save` or `podman save`",
                )
            })?;
            images_from_archive(&found, &req.wanted, &path.display().to_string())?
        }
        Some(_) => Vec::new(),
    };

    // Nodes that cannot take part fail every image; the rest are planned from their listing.
    let mut listings: Vec<Option<Vec<CtrImage>>> = Vec::new();
    let mut node_errors: Vec<Option<String>> = Vec::new();
    for node in &nodes {
        if !node.running {
            listings.push(None);
            node_errors.push(Some(format!(
                "node {} is {}: start it with `{} start {}`, or leave it out with --nodes",
                node.name,
                node.state,
                provider.name(),
                node.name
            )));
            continue;
        }
        match import::list(runner, provider, &node.name) {
            Ok(l) => {
                listings.push(Some(l));
                node_errors.push(None);
            }
            Err(e) => {
                listings.push(None);
                node_errors.push(Some(format!("cannot list images on {}: {e}", node.name)));
            }
        }
    }

    let mut outcomes: Vec<Vec<Outcome>> = Vec::new();
    let stdin_source = matches!(source_for_archive, Some(Source::Stdin));
    if stdin_source && req.transfer {
        // Nothing is known before the stream: every usable node gets it.
        let targets: Vec<usize> = (0..nodes.len()).filter(|&n| node_errors[n].is_none()).collect();
        let (found, per_node) = stream_to(ctx, provider, &nodes, &targets, &listings, &Source::Stdin, &[])?;
        images = images_from_archive(&found, &req.wanted, "stdin")?;
        outcomes = images
            .iter()
            .map(|_| {
                (0..nodes.len())
                    .map(|n| match (&node_errors[n], per_node.get(&n)) {
                        (Some(e), _) => Outcome::failed(e.clone()),
                        (None, Some(o)) => o.clone(),
                        (None, None) => Outcome::failed("not loaded"),
                    })
                    .collect()
            })
            .collect();
        let arrived: Vec<(usize, usize)> =
            (0..images.len()).flat_map(|i| targets.iter().map(move |&n| (i, n))).collect();
        name_arrivals(ctx, provider, &nodes, &images, &mut outcomes, &arrived);
    } else {
        let mut steps: Vec<Vec<Option<Step>>> = Vec::new();
        for image in &images {
            let mut row = Vec::new();
            let mut out_row = Vec::new();
            for (n, _) in nodes.iter().enumerate() {
                match (&node_errors[n], &listings[n]) {
                    (None, Some(listing)) => {
                        let step = plan::plan(listing, image);
                        out_row.push(Outcome::new(match step {
                            Step::Skip => Action::Skipped,
                            Step::Retag { .. } => Action::Retagged,
                            Step::Transfer => Action::Loaded,
                        }));
                        row.push(Some(step));
                    }
                    (error, _) => {
                        row.push(None);
                        out_row.push(Outcome::failed(error.clone().unwrap_or_else(|| "no image listing".into())));
                    }
                }
            }
            steps.push(row);
            outcomes.push(out_row);
        }
        if req.transfer {
            retag(runner, provider, &nodes, &images, &steps, &mut outcomes);
            transfer_groups(
                ctx,
                provider,
                &nodes,
                &mut images,
                &steps,
                &listings,
                &mut outcomes,
                source_for_archive.as_ref(),
            )?;
        } else {
            // verify only: nothing moves; the verdict alone decides.
            for row in outcomes.iter_mut() {
                for o in row.iter_mut().filter(|o| o.action != Action::Failed) {
                    o.action = Action::Skipped;
                }
            }
        }
    }

    // Verify every image on every node that took part.
    std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for (i, image) in images.iter().enumerate() {
            for (n, node) in nodes.iter().enumerate() {
                if outcomes[i][n].action == Action::Failed {
                    continue;
                }
                handles.push((i, n, scope.spawn(move || verify::verify(runner, provider, node, image, settle))));
            }
        }
        for (i, n, h) in handles {
            let verdict = h.join().expect("verify panicked");
            if !verdict.verified {
                outcomes[i][n].error = Some(verdict.diagnosis.clone());
            }
            outcomes[i][n].verdict = Some(verdict);
        }
    });

    let report = build_report(&cluster.name, provider, &nodes, &images, &outcomes, source_for_archive.as_ref());
    Ok((report, images))
}

fn find_with_names(runner: &dyn crate::exec::Runner, engines: &[Engine], wanted: &Wanted) -> Result<Image> {
    let mut image = image::find(runner, engines, &wanted.input)?;
    for name in &wanted.extra_names {
        image.add_name(name.clone());
    }
    Ok(image)
}

/// Archive images become images to load; when the user named images, only those, and
/// each must be in the archive.
fn images_from_archive(found: &[ArchiveImage], wanted: &[Wanted], source: &str) -> Result<Vec<Image>> {
    let mut images = Vec::new();
    if wanted.is_empty() {
        for a in found {
            let names: Vec<ImageRef> = a.names.iter().filter_map(|n| ImageRef::parse(n).ok()).collect();
            let Some(first) = names.first() else {
                return Err(Error::input(
                    format!("{source} holds an image without a name ({})", a.identity.id()),
                    "tag the image before saving it, or name it: `kindload load --archive FILE app:dev`",
                ));
            };
            images.push(Image {
                requested: first.familiar(),
                names: names.clone(),
                identity: a.identity.clone(),
                engine: None,
                engine_ref: first.normalized(),
            });
        }
        return Ok(images);
    }
    for w in wanted {
        let reference = ImageRef::parse(&w.input)?;
        let matching = found.iter().find(|a| a.names.iter().any(|n| ImageRef::parse(n).is_ok_and(|r| r == reference)));
        let chosen = match (matching, found) {
            (Some(a), _) => a,
            // One unnamed (or differently named) image in the archive: the name given is its name.
            (None, [only]) => only,
            (None, _) => {
                return Err(Error::input(
                    format!("{} is not in {source}", w.input),
                    format!(
                        "the archive holds {}; name one of those",
                        found.iter().flat_map(|a| a.names.iter()).cloned().collect::<Vec<_>>().join(", ")
                    ),
                ))
            }
        };
        let mut image = Image {
            requested: w.input.clone(),
            names: vec![reference],
            identity: chosen.identity.clone(),
            engine: None,
            engine_ref: w.input.clone(),
        };
        for name in &w.extra_names {
            image.add_name(name.clone());
        }
        images.push(image);
    }
    Ok(images)
}

fn select_nodes(nodes: Vec<Node>, only: &[String]) -> Result<Vec<Node>> {
    if only.is_empty() {
        return Ok(nodes);
    }
    let unknown: Vec<&String> = only.iter().filter(|o| !nodes.iter().any(|n| &n.name == *o)).collect();
    if !unknown.is_empty() {
        return Err(Error::usage(
            format!(
                "no node named {} in this cluster",
                unknown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ),
            format!("the cluster's nodes are {}", nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", ")),
        ));
    }
    Ok(nodes.into_iter().filter(|n| only.contains(&n.name)).collect())
}

fn retag(
    runner: &dyn crate::exec::Runner,
    provider: Provider,
    nodes: &[Node],
    images: &[Image],
    steps: &[Vec<Option<Step>>],
    outcomes: &mut [Vec<Outcome>],
) {
    for (i, _) in images.iter().enumerate() {
        for (n, node) in nodes.iter().enumerate() {
            if let Some(Step::Retag { from, names }) = &steps[i][n] {
                let started = Instant::now();
                for name in names {
                    if let Err(e) = import::tag(runner, provider, &node.name, from, name) {
                        outcomes[i][n] = Outcome::failed(format!("retagging {from} as {name} failed: {e}"));
                        break;
                    }
                }
                outcomes[i][n].seconds = started.elapsed().as_secs_f64();
            }
        }
    }
}

/// One stream per source (each engine's `save`, or the archive file), to the nodes that need it.
#[allow(clippy::too_many_arguments)]
fn transfer_groups(
    ctx: &Context,
    provider: Provider,
    nodes: &[Node],
    images: &mut [Image],
    steps: &[Vec<Option<Step>>],
    listings: &[Option<Vec<CtrImage>>],
    outcomes: &mut [Vec<Outcome>],
    archive: Option<&Source>,
) -> Result<()> {
    let needs = |i: usize, n: usize| matches!(steps[i][n], Some(Step::Transfer));
    let mut groups: Vec<(Source, Vec<usize>)> = Vec::new();
    for (i, image) in images.iter().enumerate() {
        if !(0..nodes.len()).any(|n| needs(i, n)) {
            continue;
        }
        let source = match (archive, &image.engine) {
            (Some(source), _) => source.clone(),
            (None, Some(engine)) => Source::Engine { engine: engine.clone(), refs: Vec::new() },
            (None, None) => unreachable!("engine images always know their engine"),
        };
        match groups.iter_mut().find(|(s, _)| same_source(s, &source)) {
            Some((_, members)) => members.push(i),
            None => groups.push((source, vec![i])),
        }
    }
    for (mut source, members) in groups {
        if let Source::Engine { refs, .. } = &mut source {
            *refs = members.iter().map(|&i| images[i].engine_ref.clone()).collect();
        }
        let targets: Vec<usize> = (0..nodes.len()).filter(|&n| members.iter().any(|&i| needs(i, n))).collect();
        let wanted_names: Vec<String> =
            members.iter().flat_map(|&i| images[i].names.iter().map(|r| r.normalized())).collect();
        let (found, per_node) = stream_to(ctx, provider, nodes, &targets, listings, &source, &wanted_names)?;
        for &i in &members {
            learn_identity(&mut images[i], &found);
        }
        for &n in &targets {
            for &i in members.iter().filter(|&&i| needs(i, n)) {
                outcomes[i][n] = per_node.get(&n).cloned().unwrap_or_else(|| Outcome::failed("not loaded"));
            }
        }
        let arrived: Vec<(usize, usize)> =
            targets.iter().flat_map(|&n| members.iter().filter(move |&&i| needs(i, n)).map(move |&i| (i, n))).collect();
        name_arrivals(ctx, provider, nodes, images, outcomes, &arrived);
    }
    Ok(())
}

fn same_source(a: &Source, b: &Source) -> bool {
    match (a, b) {
        (Source::Engine { engine: x, .. }, Source::Engine { engine: y, .. }) => x.kind == y.kind,
        (Source::File(x), Source::File(y)) => x == y,
        (Source::Stdin, Source::Stdin) => true,
        _ => false,
    }
}

/// The archive says what the engine may not have (the config digest, under Docker's containerd store).
fn learn_identity(image: &mut Image, found: &[ArchiveImage]) {
    let by_identity = found.iter().find(|a| {
        (image.identity.config.is_some() && a.identity.config == image.identity.config)
            || (image.identity.manifest.is_some() && a.identity.manifest == image.identity.manifest)
    });
    if let Some(a) = by_identity {
        let learned = a.identity.clone();
        image.identity.merge(&learned);
    }
}

/// Streams one source to `targets`, with progress; cleans up nodes whose import failed.
#[allow(clippy::too_many_arguments)]
fn stream_to(
    ctx: &Context,
    provider: Provider,
    nodes: &[Node],
    targets: &[usize],
    listings: &[Option<Vec<CtrImage>>],
    source: &Source,
    wanted_names: &[String],
) -> Result<(Vec<ArchiveImage>, std::collections::HashMap<usize, Outcome>)> {
    let mut per_node = std::collections::HashMap::new();
    if targets.is_empty() {
        return Ok((Vec::new(), per_node));
    }
    let target_nodes: Vec<&Node> = targets.iter().map(|&n| &nodes[n]).collect();
    let label = format!("{} → {} node(s)", source.describe(), targets.len());
    let progress = Progress::start(ctx.style, label, source.size());
    let result = transfer::stream(provider, &target_nodes, source, progress.bytes.clone());
    let bytes = progress.bytes.load(std::sync::atomic::Ordering::Relaxed);
    progress.finish();
    let clean = |n: usize, names: &[String]| {
        let before = listings[n].clone().unwrap_or_default();
        match import::clean_up(ctx.runner(), provider, &nodes[n].name, &before, names) {
            Ok(removed) if !removed.is_empty() => format!(" (removed what it left: {})", removed.join(", ")),
            Ok(_) => String::new(),
            Err(e) => format!(" (and removing what it left failed: {e})"),
        }
    };
    let transferred = match result {
        Ok(t) => t,
        Err(e) => {
            for &n in targets {
                clean(n, wanted_names);
            }
            return Err(e);
        }
    };
    let archive_names: Vec<String> = transferred
        .images
        .iter()
        .flat_map(|a| a.names.iter().filter_map(|n| ImageRef::parse(n).ok()).map(|r| r.normalized()))
        .chain(wanted_names.iter().cloned())
        .collect();
    for (name, result) in transferred.nodes {
        let Some(&n) = targets.iter().find(|&&n| nodes[n].name == name) else { continue };
        let outcome = match result {
            Ok(()) => Outcome { bytes, seconds: transferred.elapsed.as_secs_f64(), ..Outcome::new(Action::Loaded) },
            Err(e) => {
                let tidy = clean(n, &archive_names);
                Outcome::failed(format!("import into {name} failed: {e}{tidy}"))
            }
        };
        per_node.insert(n, outcome);
    }
    Ok((transferred.images, per_node))
}

/// Names what each node received: the archive may carry other names (Podman's
/// localhost/...) or none the user asked for. `arrived` holds (image, node) pairs.
fn name_arrivals(
    ctx: &Context,
    provider: Provider,
    nodes: &[Node],
    images: &[Image],
    outcomes: &mut [Vec<Outcome>],
    arrived: &[(usize, usize)],
) {
    let settle = Duration::from_secs(ctx.config.verify.settle_seconds);
    for (n, node) in nodes.iter().enumerate() {
        let here: Vec<usize> = arrived
            .iter()
            .filter(|&&(i, m)| m == n && outcomes[i][n].action == Action::Loaded)
            .map(|&(i, _)| i)
            .collect();
        if here.is_empty() {
            continue;
        }
        let node_images: Vec<&Image> = here.iter().map(|&i| &images[i]).collect();
        if let Err(e) = name_on_node(ctx.runner(), provider, &node.name, &node_images, settle) {
            for &i in &here {
                outcomes[i][n].action = Action::Failed;
                outcomes[i][n].error = Some(e.clone());
            }
        }
    }
}

/// Gives every image all its names on the node, tagging from whatever record holds the
/// content; waits briefly for CRI to index a fresh import first.
pub fn name_on_node(
    runner: &dyn crate::exec::Runner,
    provider: Provider,
    node: &str,
    images: &[&Image],
    settle: Duration,
) -> std::result::Result<(), String> {
    let deadline = Instant::now() + settle;
    loop {
        let listing = import::list(runner, provider, node).map_err(|e| e.to_string())?;
        let unheld: Vec<&&Image> =
            images.iter().filter(|i| plan::any_holding(&listing, &i.identity).is_none()).collect();
        if unheld.is_empty() {
            for image in images {
                let missing = plan::missing_names(&listing, image);
                if missing.is_empty() {
                    continue;
                }
                let from = plan::any_holding(&listing, &image.identity).expect("checked above").name.clone();
                for name in missing {
                    import::tag(runner, provider, node, &from, &name)
                        .map_err(|e| format!("naming {name} on {node} failed: {e}"))?;
                }
            }
            return Ok(());
        }
        if Instant::now() >= deadline || crate::exec::cancelled() {
            let what: Vec<String> = unheld.iter().map(|i| format!("{} ({})", i.requested, i.identity.id())).collect();
            return Err(format!("after the import, {node} does not hold {}", what.join(", ")));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn build_report(
    cluster: &str,
    provider: Provider,
    nodes: &[Node],
    images: &[Image],
    outcomes: &[Vec<Outcome>],
    archive: Option<&Source>,
) -> LoadReport {
    let images: Vec<ImageReport> = images
        .iter()
        .zip(outcomes)
        .map(|(image, row)| ImageReport {
            reference: image.requested.clone(),
            normalized: image.normalized(),
            names: image.names.iter().map(|n| n.normalized()).collect(),
            id: row
                .iter()
                .find_map(|o| o.verdict.as_ref().and_then(|v| v.id.clone()))
                .unwrap_or_else(|| image.identity.id()),
            source: match (archive, &image.engine) {
                (Some(s), _) => s.describe(),
                (None, Some(e)) => e.kind.to_string(),
                (None, None) => String::new(),
            },
            nodes: nodes
                .iter()
                .zip(row)
                .map(|(node, o)| NodeReport {
                    name: node.name.clone(),
                    action: o.action,
                    verified: o.verdict.as_ref().is_some_and(|v| v.verified),
                    verified_with: o.verdict.as_ref().map(|v| v.with),
                    bytes: o.bytes,
                    seconds: (o.seconds * 1000.0).round() / 1000.0,
                    error: o.error.clone(),
                })
                .collect(),
        })
        .collect();
    let ok = !images.is_empty() && images.iter().all(|i| i.nodes.iter().all(|n| n.verified)) && !nodes.is_empty();
    LoadReport { cluster: cluster.to_string(), provider: provider.name().to_string(), ok, images }
}

impl Identity {
    /// Used in messages when nothing better is known.
    pub fn short(&self) -> String {
        let id = self.id();
        id.strip_prefix("sha256:").map(|h| h[..h.len().min(12)].to_string()).unwrap_or(id)
    }
}
