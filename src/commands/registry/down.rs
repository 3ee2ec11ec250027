//! `registry down`: undo the registry for one cluster (or, with `--all`, every cluster), and
//! remove its container only when no other cluster uses it; its images only on request.

use super::hold_lock;
use super::kube::delete_manifests;
use super::status::{find_anywhere, locate};
use super::trust::remove_trust;
use super::users::clusters_using;
use crate::commands::Context;
use crate::error::{Error, Result};
use crate::exec::Cmd;
use crate::registry::container;
use crate::request::cli::RegistryDownArgs;
use crate::resolve::node::Node;

pub(super) fn down(ctx: &Context, args: RegistryDownArgs) -> Result<i32> {
    let name = &args.target.name;
    let runner = ctx.runner();
    // One `up` or `down` at a time: a concurrent `up` must not see the container half gone.
    let _lock = hold_lock(ctx, "registry down")?;
    let located = if args.all { find_anywhere(ctx, &args.target) } else { locate(ctx, &args.target)? };
    if let Some(found) = located.found.as_ref().filter(|f| !f.ours) {
        return Err(Error::input(
            format!("the container named {name:?} was not made by kindload (it runs {}): left alone", found.image),
            "name kindload's registry with --name",
        ));
    }
    let (provider, port) = (located.provider, located.port());
    let this = located.cluster.as_ref().map(|(cluster, _)| cluster.clone());
    let others = clusters_using(runner, provider, name, port, this.as_deref())?;
    let staying: Vec<String> = if args.all { Vec::new() } else { others.iter().map(|u| u.describe()).collect() };
    if args.delete_data && !staying.is_empty() {
        return Err(Error::input(
            format!(
                "registry {name} also serves cluster(s) {}: deleting its images would take them from those clusters too; nothing was changed",
                staying.join(", ")
            ),
            format!(
                "leave out --delete-data to undo only this cluster and keep the images, or `kindload registry down --all --delete-data --name {name}` to remove the registry for every cluster"
            ),
        ));
    }

    let mut undo: Vec<(String, Vec<Node>)> = located.cluster.into_iter().collect();
    if args.all {
        undo.extend(others.into_iter().map(|u| (u.cluster, u.nodes)));
    }
    for (cluster, nodes) in &undo {
        let said = remove_trust(runner, provider, nodes, name, port).map_err(|e| {
            Error::failed(e, format!("fix what is named, then run `kindload registry down --cluster {cluster}` again"))
        })?;
        for line in said {
            ctx.say(line);
        }
        ctx.say(delete_manifests(runner, cluster));
    }

    if !staying.is_empty() {
        ctx.say(format!(
            "kept registry {name} and its images: cluster(s) {} still use it (`--all` removes it for every cluster)",
            staying.join(", ")
        ));
        return Ok(0);
    }
    match located.found {
        Some(_) => {
            runner.run(&Cmd::new(provider.name()).args(["rm", "--force", name]))?;
            ctx.say(format!("removed container {name}: no cluster uses it any more"));
        }
        None => ctx.say(format!("no registry container {name} on {}", provider.name())),
    }
    let volume = container::volume_name(name);
    if args.delete_data {
        let out = runner.output(&Cmd::new(provider.name()).args(["volume", "rm", &volume]))?;
        if out.success() {
            ctx.say(format!("removed volume {volume} (its images)"));
        }
    } else if runner.output(&Cmd::new(provider.name()).args(["volume", "inspect", &volume])).is_ok_and(|o| o.success())
    {
        ctx.say(format!(
            "kept volume {volume} with its images: the next `kindload registry up` serves them again; `kindload registry down --delete-data` deletes them"
        ));
    }
    Ok(0)
}
