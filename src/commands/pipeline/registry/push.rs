//! The engine's own push to the cluster's registry: made ready (the registry asked, the image
//! given its push name) while the cluster is looked up, and sent before the survey ends.

use super::{unroutable, Route, RouteLookup};
use crate::commands::via_registry::registry_repo;
use crate::error::{Error, Result};
use crate::exec::Runner;
use crate::resolve::engine::EngineKind;
use crate::resolve::image::Image;

/// Pushes started before the survey, for images the registry likely lacks, so the survey
/// and the push overlap; joined by the route when a node needs the image, or at the end.
pub(crate) type EarlyPushes = std::sync::Mutex<Vec<Option<std::thread::JoinHandle<Result<String>>>>>;

/// Lets early pushes send once the cluster is found: a push is made ready (registry asked,
/// image named) while the cluster is looked up, and sent only for a cluster that exists.
#[derive(Clone, Default)]
pub(crate) struct Gate(std::sync::Arc<(std::sync::Mutex<Option<bool>>, std::sync::Condvar)>);

impl Gate {
    pub fn opened() -> Gate {
        let gate = Gate::default();
        gate.open(true);
        gate
    }

    /// Decides, once: `true` lets the pushes go, `false` ends them unsent.
    pub fn open(&self, go: bool) {
        let (decided, changed) = &*self.0;
        decided.lock().expect("gate").get_or_insert(go);
        changed.notify_all();
    }

    fn wait(&self) -> bool {
        let (decided, changed) = &*self.0;
        let guard = changed.wait_while(decided.lock().expect("gate"), |d| d.is_none()).expect("gate");
        guard.unwrap_or(false)
    }
}

/// Starts the push of every routable image whose engine does not yet name it in the
/// registry (the name the last push left): a changed image, most likely needed. Each is
/// made ready at once and sent when `gate` opens.
pub(crate) fn push_early(route: &RouteLookup, images: &[Image], gate: &Gate) -> EarlyPushes {
    let handles = images
        .iter()
        .map(|image| {
            let route = route.as_ref().ok()?;
            if unroutable(image).is_some() || image.engine_names.contains(&pushed_name(route, image)) {
                return None;
            }
            let (route, image, gate) = (route.clone(), image.clone(), gate.clone());
            Some(std::thread::spawn(move || {
                let runner = crate::exec::RealRunner;
                let reference = ready_push(&runner, &route, &image)?;
                if !gate.wait() {
                    return Err(Error::failed("not pushed: the load ended first", ""));
                }
                send_push(&runner, &route, &image, &reference)
            }))
        })
        .collect();
    std::sync::Mutex::new(handles)
}

/// Waits for the early pushes no node needed: the engine is not left pushing when we exit.
pub(crate) fn finish_early(early: &EarlyPushes) {
    for handle in early.lock().expect("early pushes").iter_mut().filter_map(Option::take) {
        let _ = handle.join();
    }
}

/// The registry name an image is pushed under: its path and tag at the registry's loopback address.
pub(super) fn pushed_name(route: &Route, image: &Image) -> String {
    let first = &image.names[0];
    format!("{}/{}:{}", route.host(), registry_repo(first), first.tag().unwrap_or("latest"))
}

/// The engine's own push to the registry's loopback address: it skips the layers the
/// registry holds. The engine keeps the push name, as kind's registry recipe leaves it: it
/// records what the registry was last given, so an unchanged image is not pushed again
/// before the survey.
pub(super) fn push_image(runner: &dyn Runner, route: &Route, image: &Image) -> Result<String> {
    let reference = ready_push(runner, route, image)?;
    send_push(runner, route, image, &reference)
}

fn push_failed(route: &Route, image: &Image, e: String) -> Error {
    Error::failed(
        format!("pushing {} to registry {} failed, so no node was changed: {e}", image.requested, route.name),
        "check it with `kindload registry status`; `kindload registry up` starts it again, or load with --sideload",
    )
}

/// Asks the registry (one that does not answer is said at once, rather than after the
/// engine's retries) and gives the image its push name; returns that name.
fn ready_push(runner: &dyn Runner, route: &Route, image: &Image) -> Result<String> {
    let engine = image.engine.as_ref().expect("unroutable() keeps engine images only");
    let reference = pushed_name(route, image);
    route.client().and_then(|client| client.ping()).map_err(|e| push_failed(route, image, e))?;
    if !image.engine_names.contains(&reference) && image.engine_ref != reference {
        runner.run(&engine.cmd().args(["tag", &image.engine_ref, &reference]))?;
    }
    Ok(reference)
}

fn send_push(runner: &dyn Runner, route: &Route, image: &Image, reference: &str) -> Result<String> {
    let engine = image.engine.as_ref().expect("unroutable() keeps engine images only");
    let mut push = engine.cmd().arg("push");
    if engine.kind == EngineKind::Podman {
        std::fs::create_dir_all(&route.cert_dir)
            .and_then(|_| std::fs::write(route.cert_dir.join("ca.crt"), &route.ca_pem))
            .map_err(|e| Error::failed(format!("cannot write kindload's CA for podman push: {e}"), ""))?;
        push = push.arg("--cert-dir").arg(route.cert_dir.to_string_lossy().as_ref());
    }
    runner.run(&push.arg(reference)).map_err(|e| push_failed(route, image, e.to_string()))?;
    Ok(reference.to_string())
}
