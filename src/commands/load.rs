//! `kindload load` and `kindload verify`: what to load (named images, an archive,
//! manifests, Skaffold's build artifacts or hook environment, or this project's record),
//! handed to the pipeline; then the report and exit status.

use std::path::PathBuf;

use super::context::env;
use super::pipeline::{self, LoadOptions, LoadRequest};
use super::Context;
use crate::error::{Error, Result};
use crate::report::{node_line, push_line, retention_line, LoadReport};
use crate::request::build_artifacts::parse_build_artifacts;
use crate::request::cli::{LoadArgs, OutputFormat, SelectArgs, VerifyArgs};
use crate::request::config::OnFailure;
use crate::request::manifests::images_in_manifests;
use crate::request::record;
use crate::request::skaffold::{build_hook_env, deploy_hook_env, deployed_ref, DeployHookEnv};
use crate::resolve::engine::Engines;
use crate::resolve::image::{self, Image};
use crate::resolve::reference::ImageRef;

pub fn load(ctx: &Context, args: LoadArgs) -> Result<i32> {
    match reported_if_stopped(ctx, &args.select, || run_load(ctx, &args))? {
        Some((report, images)) => {
            remember(ctx, &images_verified(&report, images));
            finish(ctx, &args.select, report)
        }
        None => Ok(0),
    }
}

/// The load up to its report; None when there was nothing to do (said on stderr).
fn run_load(ctx: &Context, args: &LoadArgs) -> Result<Option<(LoadReport, Vec<Image>)>> {
    let wanted = wanted_from(&args.images)?;
    let (images, wanted) = if args.archive.is_some() {
        (Vec::new(), wanted)
    } else {
        match gather(ctx, args, &wanted)? {
            Gathered::Images(images) => (images, Vec::new()),
            Gathered::Nothing(why) => {
                ctx.say(why);
                return Ok(None);
            }
        }
    };
    let request = LoadRequest {
        images,
        wanted,
        select: args.select.clone(),
        archive: args.archive.clone(),
        transfer: true,
        options: LoadOptions {
            via_registry: args.via_registry,
            registry: args.via_registry.then(|| args.registry_name.clone()),
            ..LoadOptions::from_args(&args.transfer)
        },
    };
    pipeline::run(ctx, request).map(Some)
}

pub fn verify(ctx: &Context, args: VerifyArgs) -> Result<i32> {
    let verified = reported_if_stopped(ctx, &args.select, || {
        let wanted = wanted_from(&args.images)?;
        let engines = ctx.engines(&args.engine)?;
        let images = find_all(ctx, &engines, &wanted)?;
        let request = LoadRequest {
            images,
            wanted: Vec::new(),
            select: args.select.clone(),
            archive: None,
            transfer: false,
            options: LoadOptions::default(),
        };
        pipeline::run(ctx, request)
    })?;
    finish(ctx, &args.select, verified.0)
}

/// Runs a load up to its report. With `--output json` a load that stops with an error (a
/// missing cluster, an image no engine has, an export that broke off) still prints its
/// report, `ok` false and `error` saying why, for the scripts that read stdout; the error
/// goes to stderr as usual.
fn reported_if_stopped<T>(ctx: &Context, select: &SelectArgs, run: impl FnOnce() -> Result<T>) -> Result<T> {
    run().inspect_err(|e| {
        if select.output == OutputFormat::Json && !crate::commands::context::interrupted() {
            let cluster = ctx.cluster_name(&select.cluster).map(|c| c.name).unwrap_or_default();
            let provider = ctx.provider_choice(&select.cluster).ok().flatten().map(|p| p.to_string());
            let report = LoadReport::stopped(&cluster, provider.as_deref().unwrap_or_default(), e);
            println!("{}", serde_json::to_string_pretty(&report).expect("report serialises"));
        }
    })
}

enum Gathered {
    Images(Vec<Image>),
    /// Nothing to do, and why (said to the user; exit 0).
    Nothing(String),
}

/// What to load when the user named no images: from manifests, from Skaffold's
/// build-artifacts file, from a build hook's environment, or from this project's record.
fn gather(ctx: &Context, args: &LoadArgs, wanted: &[String]) -> Result<Gathered> {
    if !wanted.is_empty() {
        return Ok(Gathered::Images(find_all(ctx, &ctx.engines(&args.engine)?, wanted)?));
    }
    if let Some(path) = &args.from_manifests {
        return from_manifests(ctx, &ctx.engines(&args.engine)?, &read_input(path, "manifests")?);
    }
    if let Some(path) = &args.from_build_artifacts {
        let artifacts = parse_build_artifacts(&read_input(path, "build artifacts")?)?;
        let wanted = wanted_from(&artifacts.into_iter().map(|a| a.tag).collect::<Vec<_>>())?;
        return Ok(Gathered::Images(find_all(ctx, &ctx.engines(&args.engine)?, &wanted)?));
    }
    if let Some(hook) = build_hook_env(&|k: &str| env(k))? {
        if hook.push_image {
            let why = format!("SKAFFOLD_PUSH_IMAGE=true: {} goes to a registry, nothing to load", hook.image);
            return Ok(Gathered::Nothing(why));
        }
        let built = image::find(ctx.runner(), &ctx.engines(&args.engine)?, &hook.image)?;
        return Ok(Gathered::Images(vec![with_deployed_ref(built)?]));
    }
    from_record(ctx, args)
}

/// Post-render hook: every image the manifests name that exists locally.
fn from_manifests(ctx: &Context, engines: &Engines, yaml: &str) -> Result<Gathered> {
    let mut images = Vec::new();
    for reference in images_in_manifests(yaml)? {
        match image::find(ctx.runner(), engines, &reference) {
            Ok(found) => images.push(found),
            Err(Error::ImageNotFound { .. }) | Err(Error::BadReference { .. }) => {
                ctx.say(format!("{reference}: not a local image; left for the kubelet to pull"))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(if images.is_empty() {
        Gathered::Nothing("no image in the manifests exists locally: nothing to load".into())
    } else {
        Gathered::Images(images)
    })
}

/// Pre-deploy hook: what kindload loaded for this project before, still present locally.
fn from_record(ctx: &Context, args: &LoadArgs) -> Result<Gathered> {
    let (project, entries) = recorded();
    if entries.is_empty() {
        // In a render or deploy hook an empty record is simply nothing to do.
        if deploy_hook_env(&|k: &str| env(k)) != DeployHookEnv::default() {
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
    if images.is_empty() {
        return Ok(Gathered::Nothing("no recorded image exists locally any more: nothing to reload".into()));
    }
    ctx.say(format!("reloading {} image(s) recorded for {}", images.len(), project.display()));
    Ok(Gathered::Images(images))
}

/// After a local build Skaffold retags the image as `<repo>:<engine image id>` and deploys
/// that ref, so the nodes must answer to it too.
pub fn with_deployed_ref(mut built: Image) -> Result<Image> {
    built.add_name(ImageRef::parse(&deployed_ref(&built.engine_ref, &built.identity.id()))?);
    Ok(built)
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

fn find_all(ctx: &Context, engines: &Engines, wanted: &[String]) -> Result<Vec<Image>> {
    wanted.iter().map(|w| image::find_noting(ctx.runner(), engines, w, &|line| ctx.say(line))).collect()
}

fn project() -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    record::project_dir(deploy_hook_env(&|k: &str| env(k)).work_dir.as_deref(), &cwd)
}

fn recorded() -> (PathBuf, Vec<record::Entry>) {
    let project = project();
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
    let project = project().to_string_lossy().into_owned();
    let mut rec = record::read(&path);
    for image in images {
        let names = image.names.iter().skip(1).map(|n| n.normalized()).collect();
        rec.remember(&project, record::Entry { image: image.engine_ref.clone(), names });
    }
    if let Err(e) = record::write(&path, &rec) {
        ctx.say(format!("note: could not record this load in {}: {e}", path.display()));
    }
}

/// Parses every reference up front so a typo fails before any work starts; drops repeats.
pub fn wanted_from(inputs: &[String]) -> Result<Vec<String>> {
    let mut wanted: Vec<String> = Vec::new();
    for input in inputs {
        ImageRef::parse(input)?;
        if !wanted.contains(input) {
            wanted.push(input.clone());
        }
    }
    Ok(wanted)
}

/// Prints the report; nodes not verified (unless configured to warn) are the error.
pub fn finish(ctx: &Context, select: &SelectArgs, report: LoadReport) -> Result<i32> {
    match select.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report).expect("report serialises")),
        OutputFormat::Human => {
            for image in &report.images {
                if let Some(line) = push_line(image) {
                    ctx.say(line);
                }
                for node in &image.nodes {
                    let line = node_line(image, node, &ctx.style);
                    if node.error.is_some() {
                        eprintln!("{line}");
                    } else {
                        ctx.say(line);
                    }
                }
            }
            for retention in &report.retention {
                match retention_line(retention) {
                    Some(line) if retention.error.is_some() => eprintln!("{line}"),
                    Some(line) => ctx.say(line),
                    None => {}
                }
            }
        }
    }
    if crate::commands::context::interrupted() {
        // Reported at the edge, which says what an interrupt stopped and exits 130.
        return Err(Error::failed("interrupted", ""));
    }
    if report.ok {
        Ok(0)
    } else if ctx.config.verify.on_failure == OnFailure::Warn {
        eprintln!("warning: some node loads were not verified (kindload.yaml verify.on_failure: warn)");
        Ok(0)
    } else {
        let failed: usize = report.images.iter().flat_map(|i| &i.nodes).filter(|n| !n.verified).count();
        Err(Error::failed(format!("{failed} node load(s) not verified; see above for each node's diagnosis"), ""))
    }
}
