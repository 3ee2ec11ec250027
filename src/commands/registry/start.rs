//! The registry's container brought to running and answering: made anew, or kindload's
//! existing one attached, started and waited for. Another process may be doing the same at
//! the same moment (an `up` not sharing this state directory's lock): a container it made is
//! used, never removed.

use std::time::{Duration, Instant};

use super::loopback;
use crate::commands::Context;
use crate::error::{Error, Result};
use crate::exec::{Cmd, ExecError};
use crate::registry::client::Client;
use crate::registry::container::{self, Found, RunSpec};
use crate::resolve::provider::Provider;

/// How long a registry may take from its start to answering.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Brings kindload's existing registry container to running on `network`, and waits for it
/// to answer; returns what it changed. Another `up` may have attached it first: the
/// container is asked again before a refused `network connect` counts.
pub(super) fn adopt(
    ctx: &Context,
    provider: Provider,
    found: &Found,
    network: &str,
    port: u16,
    cert_made: bool,
    ca_pem: &str,
) -> Result<Vec<String>> {
    let runner = ctx.runner();
    let mut changes = Vec::new();
    let name = found.name.as_str();
    if !found.networks.iter().any(|n| n == network) {
        let connect = runner.run(&Cmd::new(provider.name()).args(["network", "connect", network, name]));
        let attached_meanwhile =
            || container::find(runner, provider, name).is_some_and(|f| f.networks.iter().any(|n| n == network));
        match connect {
            Ok(_) => changes.push(format!("connected {name} to network {network}")),
            Err(_) if attached_meanwhile() => {}
            Err(e) => return Err(e.into()),
        }
    }
    if !found.running {
        runner.run(&Cmd::new(provider.name()).args(["start", name]))?;
        changes.push(format!("started {name} again (it was {})", found.state));
    } else if cert_made {
        runner.run(&Cmd::new(provider.name()).args(["restart", name]))?;
        changes.push(format!("restarted {name} with a new certificate"));
    }
    wait_ready(ctx, provider, name, port, ca_pem)?;
    Ok(changes)
}

/// Who started the registry container `start_new` was asked for.
pub(super) enum Started {
    Here,
    /// Another process's `run` created it first (the engine said the name is taken).
    ByAnother(Found),
}

/// Runs a new registry container and waits for it to answer; on any failure removes the
/// container and the volume this run made, so the next `up` starts clean. A container that
/// another process made meanwhile is never removed: it is returned to be used.
pub(super) fn start_new(ctx: &Context, provider: Provider, spec: &RunSpec, ca_pem: &str) -> Result<Started> {
    let runner = ctx.runner();
    let port = spec.port;
    let made_meanwhile = || container::find(runner, provider, spec.name).filter(|f| f.ours);
    if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", port)) {
        if let Some(found) = made_meanwhile() {
            return Ok(Started::ByAnother(found));
        }
        return Err(Error::input(
            format!("port {port} on 127.0.0.1 is in use ({e}): the registry cannot be published there"),
            format!("pick a free port with --port (e.g. --port {}), or stop what listens on {port}", port + 1),
        ));
    }
    let volume_existed =
        runner.output(&Cmd::new(provider.name()).args(["volume", "inspect", &spec.volume])).is_ok_and(|o| o.success());
    let image_present =
        runner.output(&Cmd::new(provider.name()).args(["image", "inspect", spec.image])).is_ok_and(|o| o.success());
    if !image_present {
        // `run` pulls it first, which can take a while: say what the wait is.
        ctx.say(format!(
            "pulling {} with {} for registry {} (`run` waits for the pull)",
            spec.image,
            provider.name(),
            spec.name
        ));
    }
    let run = runner.run(&container::run_cmd(provider, spec));
    if let Err(ExecError::Exited { stderr, .. }) = &run {
        if container::name_taken(stderr) {
            return match shows_up(ctx, provider, spec.name) {
                Some(found) => Ok(Started::ByAnother(found)),
                // Taken by a container that is not kindload's: not ours to remove.
                None => Err(Error::input(
                    format!(
                        "a container named {:?} was created on {} while this `up` ran, and it is not kindload's registry (or did not show within {} s)",
                        spec.name,
                        provider.name(),
                        SHOW_UP_TIMEOUT.as_secs()
                    ),
                    "run `kindload registry up` again; pick another name with --name if that container is not kindload's",
                )),
            };
        }
    }
    let started = run.map_err(|e| {
        Error::failed(
            format!("starting the registry container failed: {e}"),
            format!(
                "make sure {} can run {} (`{} pull {}`, or pass a local image with --image)",
                provider.name(),
                spec.image,
                provider.name(),
                spec.image
            ),
        )
    });
    let result = started.and_then(|_| wait_ready(ctx, provider, spec.name, port, ca_pem));
    if let Err(e) = result {
        let mut removed = Vec::new();
        if runner.run(&Cmd::new(provider.name()).args(["rm", "--force", spec.name])).is_ok() {
            removed.push(format!("container {}", spec.name));
        }
        if !volume_existed
            && runner.run(&Cmd::new(provider.name()).args(["volume", "rm", "--force", &spec.volume])).is_ok()
        {
            removed.push(format!("volume {}", spec.volume));
        }
        if !removed.is_empty() {
            ctx.say(format!("removed what the failed start left: {}", removed.join(" and ")));
        }
        return Err(e);
    }
    Ok(Started::Here)
}

/// How long a container whose name an engine has reserved for another `run` may take to be
/// inspectable (Docker reserves the name before the container can be inspected).
const SHOW_UP_TIMEOUT: Duration = Duration::from_secs(10);

/// kindload's container `name`, once another process's `run` has made it inspectable; None
/// when none of kindload's shows up within SHOW_UP_TIMEOUT.
fn shows_up(ctx: &Context, provider: Provider, name: &str) -> Option<Found> {
    let deadline = Instant::now() + SHOW_UP_TIMEOUT;
    let mut said = false;
    loop {
        if let Some(found) = container::find(ctx.runner(), provider, name) {
            return found.ours.then_some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        if !said {
            ctx.say(format!(
                "waiting for container {name}, which another process is creating, to show (at most {} s)",
                SHOW_UP_TIMEOUT.as_secs()
            ));
            said = true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits, at most READY_TIMEOUT, for the registry to answer over TLS at its published
/// port, saying so when it does not answer at once.
fn wait_ready(ctx: &Context, provider: Provider, name: &str, port: u16, ca_pem: &str) -> Result<()> {
    let address = loopback(port);
    let client = Client::new(&address, ca_pem).map_err(|e| Error::failed(e, ""))?;
    let mut waiting = |_: &str| {
        ctx.say(format!(
            "waiting for registry {name} to answer at https://{address}/v2/ (at most {} s)",
            READY_TIMEOUT.as_secs()
        ))
    };
    let last = match client.ping_until(Instant::now() + READY_TIMEOUT, &mut waiting) {
        Ok(()) => return Ok(()),
        Err(last) => last,
    };
    let logs = ctx
        .runner()
        .output(&Cmd::new(provider.name()).args(["logs", "--tail", "20", name]))
        .map(|o| format!("{}{}", o.stdout, o.stderr))
        .unwrap_or_default();
    Err(Error::failed(
        format!("registry {name} did not answer within {}s: {last}\n{}", READY_TIMEOUT.as_secs(), logs.trim()),
        format!("see `{} logs {name}`", provider.name()),
    ))
}
