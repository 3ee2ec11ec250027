//! `kindload build`, Skaffold's custom builder and Tilt's `custom_build` command: build
//! `$IMAGE` (Tilt: `$EXPECTED_REF`); push it when Skaffold pushes (Tilt: names a registry),
//! otherwise load it into the kind cluster of the current kube context, with the
//! `<repo>:<id hex>` ref Skaffold deploys (Tilt, with `skips_local_docker=True`, deploys
//! `$EXPECTED_REF` itself).

use std::path::{Path, PathBuf};

use super::context::env;
use super::load;
use super::pipeline::{self, LoadOptions, LoadRequest};
use super::Context;
use crate::error::{Error, Result};
use crate::exec;
use crate::request::build_env::{build_env, Caller};
use crate::request::cli::BuildArgs;
use crate::request::dockerfile::{self, Base};
use crate::request::skaffold::required_artifact_args;
use crate::resolve::cluster::NameSource;
use crate::resolve::engine::PullPolicy;
use crate::resolve::engine::{self, BuildSpec, Engine};
use crate::resolve::image;
use crate::resolve::reference::ImageRef;

pub fn build(ctx: &Context, args: BuildArgs) -> Result<i32> {
    let lookup = |k: &str| env(k);
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let spec = build_env(&lookup, &cwd)?;
    if let Some(note) = &spec.note {
        ctx.say(note);
    }
    let reference = ImageRef::parse(&spec.image)?;
    let engine = engine::detect(ctx.runner(), ctx.engine_choice(&args.engine)?)?;
    let file = build_file(&spec.build_context, args.file.as_deref())?;
    let platforms: Vec<String> = spec.platforms.iter().filter(|p| p.as_str() != "all").cloned().collect();
    let build_args = required_artifact_args(&lookup, &args.build_arg_from);
    let (pull, pull_source) = match (args.pull, ctx.config.pull) {
        (Some(p), _) => (p, "--pull"),
        (None, Some(p)) => (p, "`pull:` in kindload.yaml"),
        (None, None) => (PullPolicy::default(), "the default"),
    };
    let text = std::fs::read_to_string(&file).map_err(|e| {
        Error::input(format!("cannot read {}: {e}", file.display()), "make it readable, or name another with --file")
    })?;
    let bases = dockerfile::bases(&text, &build_args);
    if pull == PullPolicy::Never {
        check_bases_local(ctx, &engine, &bases, pull_source)?;
    }
    let named: Vec<ImageRef> =
        bases.iter().filter_map(|b| b.image.as_deref()).filter_map(|i| ImageRef::parse(i).ok()).collect();
    let insecure_bases = !named.is_empty() && named.iter().all(|r| is_insecure(r, &ctx.config.insecure_registries));
    ctx.say(format!(
        "building {} with {} from {} (pull {}, from {pull_source})",
        spec.image,
        engine.kind,
        file.display(),
        pull.as_str()
    ));
    let build = BuildSpec {
        tag: &spec.image,
        file: &file,
        context: &spec.build_context,
        platforms: &platforms,
        build_args: &build_args,
        pull,
        insecure_bases,
    };
    exec::run_inherited(&engine.build_cmd(&build))?;

    if spec.push_image {
        let built = engine::Engines::only(engine.clone());
        let options = LoadOptions::from_args(&args.transfer);
        if let Some(pushed) = super::built_push::push_built(ctx, &built, &reference, options.push.as_ref())? {
            ctx.say(format!("pushed {} to kindload's registry ({})", spec.image, pushed.manifest));
            return Ok(0);
        }
        let insecure = is_insecure(&reference, &ctx.config.insecure_registries);
        exec::run_inherited(&engine.push_cmd(&spec.image, insecure))?;
        ctx.say(format!("pushed {}", spec.image));
        return Ok(0);
    }

    let cluster = ctx.cluster_name(&args.select.cluster)?;
    if !cluster.is_kind_context() {
        ctx.say(format!("built {}; not loading: {}", spec.image, cluster.describe_source()));
        return Ok(0);
    }
    let found = image::find(ctx.runner(), &engine::Engines::only(engine.clone()), &spec.image)?;
    let built = match spec.caller {
        Caller::Skaffold => load::with_deployed_ref(found)?,
        Caller::Tilt => found,
    };
    let request = LoadRequest {
        images: vec![built],
        wanted: Vec::new(),
        select: args.select.clone(),
        archive: None,
        transfer: true,
        options: LoadOptions::from_args(&args.transfer),
    };
    match pipeline::run(ctx, request) {
        Err(Error::ClusterNotFound { name, .. }) if cluster.source == NameSource::Default => {
            ctx.say(format!("built {}; no kind cluster {name:?} to load it into", spec.image));
            Ok(0)
        }
        Err(e) => Err(e),
        Ok((report, images)) => {
            let ok = report.ok;
            if ok {
                load::remember(ctx, &images);
            }
            load::finish(ctx, &args.select, report)
        }
    }
}

/// `--pull never`: every base must be in the engine already; one error names each missing.
/// Docker's builder has no "never", so this check is what keeps it from pulling.
fn check_bases_local(ctx: &Context, engine: &Engine, bases: &[Base], source: &str) -> Result<()> {
    let mut missing = Vec::new();
    for base in bases {
        let Some(image) = &base.image else {
            return Err(Error::input(
                format!(
                    "pull policy never (from {source}): cannot tell which image `{}` names, a build argument in it has no value",
                    base.written
                ),
                "give the ARG a default in the Dockerfile, pass it with --build-arg-from, or build with `--pull missing`",
            ));
        };
        let out = ctx.runner().output(&engine.cmd().args(["image", "inspect", image.as_str()]))?;
        if out.success() {
            continue;
        }
        if !image::says_no_such_image(&out.stderr) {
            return Err(Error::failed(
                format!("`{} image inspect {image}` failed: {}", engine.kind, out.stderr.trim()),
                format!("run `{} info` to see what is wrong, and fix that", engine.kind),
            ));
        }
        missing.push(image.clone());
    }
    if missing.is_empty() {
        return Ok(());
    }
    let pulls: Vec<String> = missing.iter().map(|m| format!("`{} pull {m}`", engine.kind)).collect();
    Err(Error::input(
        format!(
            "base image{} {} not present in {}, and pull policy never (from {source}) forbids pulling",
            if missing.len() == 1 { "" } else { "s" },
            missing.join(", "),
            engine.kind
        ),
        format!("{} first, or build with `--pull missing` (or `pull: missing` in kindload.yaml)", pulls.join(" and ")),
    ))
}

/// `--file` (relative to the context), else Dockerfile, else Containerfile.
fn build_file(context: &Path, explicit: Option<&Path>) -> Result<PathBuf> {
    let candidates: Vec<PathBuf> = match explicit {
        Some(f) => vec![context.join(f)],
        None => vec![context.join("Dockerfile"), context.join("Containerfile")],
    };
    candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        Error::input(
            format!(
                "no {} in {}",
                candidates
                    .iter()
                    .map(|p| p.file_name().unwrap_or_default().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(" or "),
                context.display()
            ),
            "add a Dockerfile or Containerfile to the artifact's context, or name one with --file",
        )
    })
}

/// Loopback registries are plain HTTP by convention (Docker treats them so by default);
/// others only when kindload.yaml lists them.
pub fn is_insecure(reference: &ImageRef, listed: &[String]) -> bool {
    let domain = reference.domain();
    let host =
        domain.rsplit_once(':').filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit())).map_or(domain, |(h, _)| h);
    host == "localhost"
        || host.starts_with("127.")
        || host == "[::1]"
        || listed.iter().any(|l| l == domain || l == host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_insecure_others_only_when_listed() {
        let r = |s: &str| ImageRef::parse(s).unwrap();
        assert!(is_insecure(&r("127.0.0.1:5000/app:dev"), &[]));
        assert!(is_insecure(&r("localhost:5000/app"), &[]));
        assert!(is_insecure(&r("[::1]:5000/app"), &[]));
        assert!(!is_insecure(&r("registry.lan:5000/app"), &[]));
        assert!(is_insecure(&r("registry.lan:5000/app"), &["registry.lan:5000".into()]));
        assert!(!is_insecure(&r("app:dev"), &[]));
    }

    #[test]
    fn dockerfile_then_containerfile() {
        let dir = tempfile::tempdir().unwrap();
        let err = build_file(dir.path(), None).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("no Dockerfile or Containerfile"), "{err}");
        std::fs::write(dir.path().join("Containerfile"), "FROM scratch\n").unwrap();
        assert_eq!(build_file(dir.path(), None).unwrap(), dir.path().join("Containerfile"));
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        assert_eq!(build_file(dir.path(), None).unwrap(), dir.path().join("Dockerfile"));
        assert!(build_file(dir.path(), Some(Path::new("other.Dockerfile"))).is_err());
    }
}
