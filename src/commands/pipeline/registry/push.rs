//! The push to the cluster's registry: made ready (the registry asked, the image given its
//! push name) while the cluster is looked up, and sent before the survey ends, by the push
//! `plan::push` picks for the engine: kindload's own push of the engine's export, or the
//! engine's push.

use super::{engine_of, unroutable, Route, RouteLookup};
use crate::error::{Error, Result};
use crate::exec::{Cmd, Runner};
use crate::plan::push::{choose, PushChoice, PushWith};
use crate::registry::repo_of;
use crate::registry::CONTAINER_PORT;
use crate::report::PushReport;
use crate::resolve::engine::{Engine, EngineKind, Locality};
use crate::resolve::image::Image;
use crate::resolve::remote;
use crate::transfer::export::Source;

/// A push done: the name it left in the registry, and the report's account of it.
#[derive(Debug, Clone)]
pub(crate) struct Pushed {
    pub reference: String,
    pub report: PushReport,
}

/// Pushes started before the survey, for images the registry likely lacks, so the survey
/// and the push overlap; joined by the route when a node needs the image, or at the end.
pub(crate) type EarlyPushes = std::sync::Mutex<Vec<Option<std::thread::JoinHandle<Result<Pushed>>>>>;

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
    format!("{}/{}:{}", route.host(), repo_of(first), first.tag().unwrap_or("latest"))
}

/// The image's push to the registry's loopback address, by the push picked for it; either
/// skips the blobs the registry holds. The engine keeps the push name, as kind's registry
/// recipe leaves it: it records what the registry was last given, so an unchanged image is
/// not pushed again before the survey.
pub(super) fn push_image(runner: &dyn Runner, route: &Route, image: &Image) -> Result<Pushed> {
    let reference = ready_push(runner, route, image)?;
    send_push(runner, route, image, &reference)
}

fn push_failed(route: &Route, image: &Image, e: String) -> Error {
    Error::failed(
        format!("pushing {} to registry {} failed: {e}", image.requested, route.name),
        "check it with `kindload registry status`; `kindload registry up` starts it again, or load with --sideload",
    )
}

/// Asks the registry (one that does not answer is said at once, rather than after the
/// engine's retries) and gives the image its push name; returns that name.
fn ready_push(runner: &dyn Runner, route: &Route, image: &Image) -> Result<String> {
    let engine = engine_of(image);
    let reference = pushed_name(route, image);
    route.client().and_then(|client| client.ping()).map_err(|e| push_failed(route, image, e))?;
    if !image.engine_names.contains(&reference) && image.engine_ref != reference {
        runner.run(&engine.cmd().args(["tag", &image.engine_ref, &reference]))?;
    }
    Ok(reference)
}

/// Sends the image by the push `plan::push` picks for its engine.
fn send_push(runner: &dyn Runner, route: &Route, image: &Image, reference: &str) -> Result<Pushed> {
    let engine = engine_of(image);
    let repo = repo_of(&image.names[0]);
    let earlier = || route.client().and_then(|c| c.tags(&repo)).is_ok_and(|tags| !tags.is_empty());
    let PushChoice { with, why } = choose(route.push.as_ref(), engine, route.ci, earlier);
    let cluster_reference = reference.replacen(&route.host(), &format!("{}:{CONTAINER_PORT}", route.name), 1);
    let mut report = PushReport {
        with,
        why,
        reference: reference.to_string(),
        cluster_reference,
        blobs_sent: None,
        blobs_present: None,
    };
    match with {
        PushWith::Own => {
            let client = route.client().map_err(|e| push_failed(route, image, e))?;
            let first = &image.names[0];
            let source = Source::Engine { engine: engine.clone(), refs: vec![image.engine_ref.clone()] };
            let tag = first.tag().unwrap_or("latest");
            let pushed = crate::registry::push::push(&client, &source, &image.identity, &image.layers, &repo, tag)
                .map_err(|e| push_failed(route, image, e.to_string()))?;
            report.blobs_sent = Some(pushed.blobs_sent);
            report.blobs_present = Some(pushed.blobs_had);
        }
        PushWith::Engine => {
            if engine.kind == EngineKind::Podman && !engine.locality.is_remote() {
                std::fs::create_dir_all(&route.cert_dir)
                    .and_then(|_| std::fs::write(route.cert_dir.join("ca.crt"), &route.ca_pem))
                    .map_err(|e| Error::failed(format!("cannot write kindload's CA for podman push: {e}"), ""))?;
            }
            runner.run(&push_cmd(engine, route, reference)).map_err(|e| push_failed(route, image, e.to_string()))?;
        }
    }
    Ok(Pushed { reference: reference.to_string(), report })
}

/// The engine's push to the registry's loopback address. A local Podman verifies the
/// registry with kindload's CA (`--cert-dir`). A remote Podman cannot read that directory,
/// so it pushes to the loopback registry without verifying TLS, as Docker does for every
/// 127.0.0.0/8 registry: what the nodes hold is still checked, since they pull over TLS
/// with kindload's CA and every node's image id is verified.
fn push_cmd(engine: &Engine, route: &Route, reference: &str) -> Cmd {
    let push = engine.cmd().arg("push");
    let push = match (engine.kind, engine.locality.is_remote()) {
        (EngineKind::Podman, true) => push.arg("--tls-verify=false"),
        (EngineKind::Podman, false) => push.arg("--cert-dir").arg(route.cert_dir.to_string_lossy().as_ref()),
        (EngineKind::Docker, _) => push,
    };
    push.arg(reference)
}

/// Asks each Podman the routable images come from, once, whether it runs here or behind a
/// connection: its push takes kindload's CA only from here. Docker's push is the same either
/// way, so Docker is asked only when its push fails (`locate`), which saves the common load a
/// call before the push.
pub(crate) fn locate_engines(runner: &dyn Runner, images: &mut [Image]) {
    let mut known: Option<Locality> = None;
    for image in images.iter_mut().filter(|i| unroutable(i).is_none()) {
        let Some(engine) = image.engine.as_mut().filter(|e| e.locality == Locality::Unasked) else { continue };
        if engine.kind != EngineKind::Podman {
            continue;
        }
        engine.locality = known.get_or_insert_with(|| remote::locate(runner, EngineKind::Podman)).clone();
    }
}

/// Where the image's engine runs, asked now if it was not before.
pub(super) fn locate(runner: &dyn Runner, engine: &Engine) -> Locality {
    match &engine.locality {
        Locality::Unasked => remote::locate(runner, engine.kind),
        known => known.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::fake::FakeRunner;
    use crate::resolve::image::Identity;
    use std::path::PathBuf;

    fn route() -> Route {
        Route {
            name: "reg".into(),
            port: 5001,
            ca_pem: "PEM\n".into(),
            cert_dir: PathBuf::from("/state/engine-certs"),
            push: None,
            ci: false,
        }
    }

    #[test]
    fn a_remote_podman_pushes_without_the_cert_dir_it_cannot_read() {
        let mut podman = Engine::unprobed(EngineKind::Podman, "test");
        podman.locality = Locality::Local;
        assert_eq!(
            push_cmd(&podman, &route(), "localhost:5001/app:dev").argv(),
            ["podman", "push", "--cert-dir", "/state/engine-certs", "localhost:5001/app:dev"]
        );
        podman.locality = Locality::Remote { via: "podman's service at unix:///run/p.sock".into() };
        assert_eq!(
            push_cmd(&podman, &route(), "localhost:5001/app:dev").argv(),
            ["podman", "push", "--tls-verify=false", "localhost:5001/app:dev"]
        );
        let mut docker = Engine::unprobed(EngineKind::Docker, "test");
        docker.locality = Locality::Remote { via: "docker context colima at unix:///c.sock".into() };
        assert_eq!(
            push_cmd(&docker, &route(), "localhost:5001/app:dev").argv(),
            ["docker", "push", "localhost:5001/app:dev"]
        );
    }

    #[test]
    fn each_podman_is_asked_once_and_docker_and_archives_not_before_the_push() {
        let runner = FakeRunner::new().on(
            &["podman", "version"],
            0,
            include_str!("../../../../tests/fixtures/engines/podman-4.3-remote-client-version.json"),
            "",
        );
        let id = Identity { config: Some("sha256:c".into()), manifest: None };
        let mut from_podman = Image::for_tests("app:dev", id.clone());
        from_podman.engine = Some(Engine::unprobed(EngineKind::Podman, "test"));
        let archived = Image::for_tests("other:dev", id.clone());
        let mut from_docker = Image::for_tests("docker:dev", id);
        from_docker.engine = Some(Engine::unprobed(EngineKind::Docker, "test"));
        let mut images = vec![from_podman.clone(), archived, from_podman, from_docker];
        locate_engines(&runner, &mut images);
        assert_eq!(runner.seen.lock().unwrap().len(), 1, "asked {:?}", runner.seen.lock().unwrap());
        assert!(images[0].engine.as_ref().unwrap().locality.is_remote());
        assert!(images[2].engine.as_ref().unwrap().locality.is_remote());
        assert!(images[1].engine.is_none());
        assert_eq!(images[3].engine.as_ref().unwrap().locality, Locality::Unasked);
    }
}
