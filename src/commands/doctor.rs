//! `kindload doctor`: each fact loading depends on, and for each problem, its fix.

use super::Context;
use crate::error::{Error, Result, EXIT_FAILED};
use crate::request::cli::DoctorArgs;
use std::path::PathBuf;

use super::context::env;
use crate::request::skaffold_settings::{advice, kind_disable_load, local_push};
use crate::resolve::cluster::{find_cluster, ClusterName, NameSource};
use crate::resolve::engine::EngineKind;
use crate::resolve::holdings::Depth;
use crate::resolve::node::probe_all;
use crate::resolve::reference::ImageRef;

/// Problems found so far and the exit status they call for.
#[derive(Default)]
struct Findings {
    problems: usize,
    worst: i32,
}

impl Findings {
    fn error(&mut self, e: &Error) {
        self.problem(e.exit_code(), &e.to_string(), e.fix());
    }

    fn problem(&mut self, code: i32, what: &str, fix: Option<String>) {
        self.problems += 1;
        self.worst = self.worst.max(code);
        println!("FAIL  {what}");
        if let Some(fix) = fix {
            println!("      fix: {fix}");
        }
    }
}

/// Exit status: 0 no problems, 1 a node problem, 2 a missing engine, cluster or image, or a bad name.
pub fn doctor(ctx: &Context, args: DoctorArgs) -> Result<i32> {
    let references: Vec<ImageRef> = args.images.iter().map(|i| ImageRef::parse(i)).collect::<Result<_>>()?;
    let mut findings = Findings::default();
    match ctx.probed_engines(&args.engine) {
        Ok(engines) => {
            for e in &engines {
                println!("ok    engine {} ({})", e.describe(), e.detected_by);
                if e.podman_backend && e.kind == EngineKind::Docker {
                    println!("note  `docker` is served by Podman: local builds are named localhost/...; kindload loads them under the name you asked for too");
                }
            }
            for (input, reference) in args.images.iter().zip(&references) {
                match crate::resolve::image::find(ctx.runner(), &engines, input) {
                    Ok(image) => println!(
                        "ok    image {input} is in {} with id {}; nodes must answer to {}",
                        image.engine.map(|e| e.kind.to_string()).unwrap_or_default(),
                        image.identity.id(),
                        reference.normalized()
                    ),
                    Err(e) => findings.error(&e),
                }
            }
        }
        Err(e) => findings.error(&e),
    }
    let name = ctx.cluster_name(&args.cluster)?;
    match find_cluster(ctx.runner(), &name, ctx.provider_choice(&args.cluster)?) {
        Ok((provider, containers)) => {
            println!("ok    cluster {:?} ({}) on {}", name.name, name.describe_source(), provider.name());
            let nodes = probe_all(ctx.runner(), provider, containers, Depth::Full, &[]);
            for node in &nodes {
                if !node.running {
                    findings.problem(
                        EXIT_FAILED,
                        &format!("node {} is {}", node.name, node.state),
                        Some(format!("`{} start {}`, or leave it out with --nodes", provider.name(), node.name)),
                    );
                    continue;
                }
                println!(
                    "ok    node {} ({}): containerd {}, config version {}, snapshotter {}",
                    node.name,
                    node.role,
                    node.containerd_version.as_deref().unwrap_or("unknown"),
                    node.config_version.map(|v| v.to_string()).unwrap_or_else(|| "unknown".into()),
                    node.snapshotter.as_deref().unwrap_or("unknown (overlayfs assumed)"),
                );
                if node.crictl {
                    println!("ok    node {}: crictl present; loads are verified through CRI", node.name);
                } else {
                    println!("note  node {}: no crictl; loads are verified with ctr's CRI-managed records", node.name);
                }
                for warning in &node.warnings {
                    println!("warn  node {}: {warning}", node.name);
                }
            }
            for (code, line, fix) in super::registry::doctor(ctx, provider, &nodes) {
                match code {
                    Some(code) => findings.problem(code, &line, fix),
                    None => println!("{line}"),
                }
            }
        }
        Err(e) => findings.error(&e),
    }
    if !name.is_kind_context() {
        println!("note  cluster name {}", name.describe_source());
    }
    skaffold_settings(&name);
    match findings.problems {
        0 => println!("no problems found"),
        n => println!("{n} problem(s) found"),
    }
    Ok(findings.worst)
}

/// Where Skaffold would load a second time or push: only for a project with a skaffold.yaml
/// (searched upwards from here). Advice, not failures: kindload still works.
fn skaffold_settings(cluster: &ClusterName) {
    let cwd = std::env::current_dir().unwrap_or_default();
    let Some(project) = cwd.ancestors().map(|d| d.join("skaffold.yaml")).find(|p| p.is_file()) else { return };
    let context = match &cluster.source {
        NameSource::KubeContext(c) => c.clone(),
        _ => format!("kind-{}", cluster.name),
    };
    let global = env("SKAFFOLD_CONFIG")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".skaffold/config")));
    let global_text = global.and_then(|p| std::fs::read_to_string(p).ok()).unwrap_or_default();
    let disable_load = kind_disable_load(&global_text, &context).unwrap_or(None);
    let push = std::fs::read_to_string(&project).ok().and_then(|t| local_push(&t).ok()).flatten();
    let advice = advice(&context, disable_load, push);
    if advice.is_empty() {
        println!(
            "ok    skaffold ({}): kind-disable-load and build.local.push: false leave loading to kindload",
            project.display()
        );
    }
    for line in advice {
        println!("warn  skaffold ({}): {line}", project.display());
    }
}
