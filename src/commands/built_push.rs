//! `kindload build` with PUSH_IMAGE=true into the cluster's registry: the push `plan::push`
//! picks for the engine, kindload's own (over TLS with kindload's CA, so no engine needs it)
//! or the engine's.

use super::registry::{loopback, store};
use super::Context;
use crate::error::{Error, Result};
use crate::exec::Cmd;
use crate::plan::push::{choose, in_ci, PushSetting, PushWith};
use crate::registry::client::Client;
use crate::registry::container;
use crate::registry::push::{self, Pushed};
use crate::registry::DEFAULT_PORT;
use crate::resolve::engine::{EngineKind, Engines};
use crate::resolve::image::{self, Image};
use crate::resolve::provider::Provider;
use crate::resolve::reference::ImageRef;
use crate::transfer::export::Source;

/// The registry `name` on `provider`, running and answering; its port and a client.
fn reach(ctx: &Context, provider: Provider, name: &str) -> Result<(u16, Client)> {
    let found = container::find(ctx.runner(), provider, name).ok_or_else(|| {
        Error::usage(
            format!("there is no registry {name} on {}", provider.name()),
            "start one with `kindload registry up` (or name yours with --registry)",
        )
    })?;
    if !found.ours {
        return Err(Error::input(
            format!("the container {name} was not made by kindload"),
            "name kindload's registry with --registry",
        ));
    }
    if !found.running {
        return Err(Error::failed(
            format!("registry {name} is not running (it is {}): nothing was pushed", found.state),
            "start it with `kindload registry up`",
        ));
    }
    let port = found.port.unwrap_or(DEFAULT_PORT);
    let store = store()?;
    let ca = store.ca_pem().ok_or_else(|| {
        Error::failed(
            format!("kindload's CA ({}) is gone", store.ca_path().display()),
            "run `kindload registry up` to make it again",
        )
    })?;
    let client = Client::new(&loopback(port), &ca).map_err(|e| Error::failed(e, ""))?;
    client.ping().map_err(|e| {
        Error::failed(
            format!("registry {name} does not answer: {e}"),
            format!("see `{} logs {name}`; `kindload registry up` restarts it", provider.name()),
        )
    })?;
    Ok((port, client))
}

/// For `kindload build` with PUSH_IMAGE=true: when `reference` names a running kindload
/// registry's host address and kindload's own push is the one for the engine, push with it
/// (None: the caller runs the engine's push, which for Podman takes kindload's CA).
pub fn push_built(
    ctx: &Context,
    engines: &Engines,
    reference: &ImageRef,
    setting: Option<&PushSetting>,
) -> Result<Option<Pushed>> {
    let Some(port) = reference.domain().strip_prefix("localhost:").and_then(|p| p.parse::<u16>().ok()) else {
        return Ok(None);
    };
    for kind in [EngineKind::Docker, EngineKind::Podman] {
        let provider = Provider::new(kind);
        let out = ctx.runner().output(&Cmd::new(provider.name()).args([
            "ps",
            "--filter",
            &format!("label={}={port}", container::PORT_LABEL),
            "--format",
            "{{.Names}}",
        ]));
        let Some(name) =
            out.ok().filter(|o| o.success()).and_then(|o| o.stdout.lines().next().map(str::trim).map(str::to_string))
        else {
            continue;
        };
        if name.is_empty() {
            continue;
        }
        let found = image::find(ctx.runner(), engines, &reference.normalized())?;
        let Some(engine) = &found.engine else { return Ok(None) };
        let (port, client) = reach(ctx, provider, &name)?;
        let repo = crate::registry::repo_of(reference);
        let earlier = || client.tags(&repo).is_ok_and(|tags| !tags.is_empty());
        let choice = choose(setting, engine, in_ci(super::context::env("CI").as_deref()), earlier);
        ctx.say(format!("{}'s push to kindload's registry: {}", choice.with.as_str(), choice.why));
        if choice.with == PushWith::Engine {
            return Ok(None);
        }
        return own_push(ctx, &client, &found, port).map(Some);
    }
    Ok(None)
}

fn own_push(ctx: &Context, client: &Client, found: &Image, port: u16) -> Result<Pushed> {
    let reference = &found.names[0];
    let repo = crate::registry::repo_of(reference);
    let tag = reference.tag().unwrap_or("latest").to_string();
    let engine = found.engine.clone().ok_or_else(|| Error::usage("a build pushes an engine's image", ""))?;
    ctx.say(format!("pushing {} to localhost:{port}/{repo}:{tag}", found.requested));
    let source = Source::Engine { engine, refs: vec![found.engine_ref.clone()] };
    push::push(client, &source, &found.identity, &found.layers, &repo, &tag)
}

#[cfg(test)]
mod tests {
    use crate::registry::repo_of;
    use crate::resolve::reference::ImageRef;

    #[test]
    fn repositories_drop_docker_hub_library_and_the_registry_host() {
        let r = |s: &str| ImageRef::parse(s).unwrap();
        assert_eq!(repo_of(&r("app:dev")), "app");
        assert_eq!(repo_of(&r("team/app:dev")), "team/app");
        assert_eq!(repo_of(&r("localhost:5001/team/app:dev")), "team/app");
        assert_eq!(repo_of(&r("ghcr.io/org/app:v1")), "org/app");
    }
}
