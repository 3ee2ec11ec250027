//! `kindload build`, Skaffold's custom builder: build `$IMAGE`; push it when Skaffold
//! pushes, otherwise load it (and the `<repo>:<id hex>` ref Skaffold deploys) into the
//! kind cluster of the current kube context.

use std::path::{Path, PathBuf};

use super::context::env;
use super::load;
use super::pipeline::{self, LoadRequest};
use super::Context;
use crate::error::{Error, Result};
use crate::exec;
use crate::request::cli::BuildArgs;
use crate::request::skaffold::{custom_build_env, required_artifact_args};
use crate::resolve::cluster::NameSource;
use crate::resolve::engine;
use crate::resolve::image;
use crate::resolve::reference::ImageRef;

pub fn build(ctx: &Context, args: BuildArgs) -> Result<i32> {
    let lookup = |k: &str| env(k);
    let spec = custom_build_env(&lookup)?;
    let reference = ImageRef::parse(&spec.image)?;
    let engine = engine::detect(ctx.runner(), ctx.engine_choice(&args.engine)?)?;
    let file = build_file(&spec.build_context, args.file.as_deref())?;
    let platforms: Vec<String> = spec.platforms.iter().filter(|p| p.as_str() != "all").cloned().collect();
    let build_args = required_artifact_args(&lookup, &args.build_arg_from);
    ctx.say(format!("building {} with {} from {}", spec.image, engine.kind, file.display()));
    exec::run_inherited(&engine.build_cmd(&spec.image, &file, &spec.build_context, &platforms, &build_args))?;

    if spec.push_image {
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
    let built =
        load::with_deployed_ref(image::find(ctx.runner(), &engine::Engines::only(engine.clone()), &spec.image)?)?;
    let request = LoadRequest {
        images: vec![built],
        wanted: Vec::new(),
        select: args.select.clone(),
        archive: None,
        transfer: true,
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
