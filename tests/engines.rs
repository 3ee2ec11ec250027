//! Engines and providers that do not answer, on the real test bed: a dead DOCKER_HOST (what a
//! stopped daemon looks like to the CLI), a socket that exists but is not served, permission
//! denied on Docker's socket, and a Podman service socket that is not served. Each must be
//! named with the address tried and the fix, exit 2, whichever engine was asked first.

mod support;

use std::os::unix::net::UnixListener;
use std::process::Output;

use support::{build_image, engine_available, kindload, remove_image};

const DEAD_DOCKER: &str = "unix:///nonexistent.sock";
const DEAD_PODMAN: &str = "unix:///nonexistent-podman.sock";

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The `fix:` line of kindload's error report.
fn fix_line(stderr: &str) -> String {
    stderr.lines().find(|l| l.starts_with("fix: ")).unwrap_or_else(|| panic!("no fix line in:\n{stderr}")).to_string()
}

fn tag(what: &str) -> String {
    format!("kl-test/engines-{what}-{}:v1", std::process::id())
}

/// Today's report was `image "app:v1" not found in podman` with Docker never mentioned: the
/// image is in Docker, but Docker's address is dead.
#[test]
fn dead_docker_host_is_named_when_the_image_is_missing_from_podman() {
    if !engine_available("docker") || !engine_available("podman") {
        return;
    }
    let image = tag("dead-docker");
    build_image("docker", &image, "only in docker");
    let out = kindload()
        .args(["load", &image, "--cluster", "kl-no-cluster"])
        .env("DOCKER_HOST", DEAD_DOCKER)
        .output()
        .unwrap();
    remove_image("docker", &image);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("image \"{image}\" not found in podman: podman answered, the only engine that did")),
        "{err}"
    );
    assert!(
        err.contains(&format!("docker does not answer at {DEAD_DOCKER} (from DOCKER_HOST): no socket there")),
        "{err}"
    );
    let fix = fix_line(&err);
    assert!(fix.contains(&format!("if docker has it, start what should serve DOCKER_HOST={DEAD_DOCKER}")), "{fix}");
    assert!(fix.contains("`unset DOCKER_HOST`") && fix.contains("`podman images`"), "{fix}");
}

#[test]
fn dead_docker_host_chosen_with_engine_flag() {
    if !engine_available("docker") {
        return;
    }
    let out =
        kindload().args(["load", "app:v1", "--engine", "docker"]).env("DOCKER_HOST", DEAD_DOCKER).output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "the engine chosen by --engine cannot be used: docker does not answer at {DEAD_DOCKER} (from DOCKER_HOST)"
        )),
        "{err}"
    );
    assert!(fix_line(&err).contains(&format!("`podman system service --time=0 {DEAD_DOCKER}`")), "{err}");
}

/// A socket file with nothing behind it, as a crashed daemon leaves: connection refused.
#[test]
fn a_socket_nothing_serves_is_connection_refused() {
    if !engine_available("docker") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("docker.sock");
    drop(UnixListener::bind(&path).unwrap());
    let address = format!("unix://{}", path.display());
    let out = kindload().args(["load", "app:v1", "--engine", "docker"]).env("DOCKER_HOST", &address).output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "docker does not answer at {address} (from DOCKER_HOST): the socket is there but nothing serves it (connection refused)"
        )),
        "{err}"
    );
    assert!(fix_line(&err).contains(&format!("start what should serve DOCKER_HOST={address}")), "{err}");
}

/// Root bypasses socket permissions, so kindload runs as `nobody` (not in the docker group)
/// against the real daemon's socket, which is root:docker 0660.
#[test]
fn permission_denied_on_the_docker_socket() {
    if !engine_available("docker") {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    std::fs::set_permissions(home.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_kindload"))
        .args(["load", "app:v1", "--engine", "docker"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("docker does not answer at unix:///var/run/docker.sock: permission denied on the socket"),
        "{err}"
    );
    assert!(fix_line(&err).contains("`sudo usermod -aG docker $USER`"), "{err}");
}

#[test]
fn podman_socket_not_served_chosen_with_engine_flag() {
    if !engine_available("podman") {
        return;
    }
    let out =
        kindload().args(["load", "app:v1", "--engine", "podman"]).env("CONTAINER_HOST", DEAD_PODMAN).output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("the engine chosen by --engine cannot be used: podman does not answer at {DEAD_PODMAN} (from CONTAINER_HOST): no socket there")),
        "{err}"
    );
    let fix = fix_line(&err);
    assert!(fix.contains(&format!("`podman system service --time=0 {DEAD_PODMAN}`")), "{fix}");
    assert!(fix.contains("`unset CONTAINER_HOST`"), "{fix}");
}

/// Docker is asked first and answers; Podman, asked second, holds the image but its service
/// is not served.
#[test]
fn podman_socket_not_served_is_named_when_the_image_is_missing_from_docker() {
    if !engine_available("docker") || !engine_available("podman") {
        return;
    }
    let image = tag("dead-podman");
    build_image("podman", &image, "only in podman");
    let out = kindload().args(["load", &image]).env("CONTAINER_HOST", DEAD_PODMAN).output().unwrap();
    remove_image("podman", &image);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("image \"{image}\" not found in docker: docker answered, the only engine that did")),
        "{err}"
    );
    assert!(err.contains(&format!("podman does not answer at {DEAD_PODMAN} (from CONTAINER_HOST)")), "{err}");
    let fix = fix_line(&err);
    assert!(fix.contains("if podman has it, start the service: `podman system service --time=0"), "{fix}");
    assert!(fix.contains("`docker images`") && !fix.contains("`podman images`"), "{fix}");
}

#[test]
fn an_image_in_neither_answering_engine_says_both_answered() {
    if !engine_available("docker") || !engine_available("podman") {
        return;
    }
    let image = tag("nowhere");
    let out = kindload().args(["load", &image]).output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("image \"{image}\" not found in docker or podman: docker and podman both answered")),
        "{err}"
    );
    let fix = fix_line(&err);
    assert!(fix.contains("check its name with `docker images` and `podman images`"), "{fix}");
    assert!(!fix.contains("docker or podman images"), "{fix}");
}

#[test]
fn a_provider_that_does_not_answer_is_named() {
    if !engine_available("docker") || !engine_available("podman") {
        return;
    }
    let chosen = kindload()
        .args(["nodes", "--cluster", "kl-no-cluster", "--provider", "podman"])
        .env("CONTAINER_HOST", DEAD_PODMAN)
        .output()
        .unwrap();
    let err = stderr(&chosen);
    assert_eq!(chosen.status.code(), Some(2), "{err}");
    assert!(err.contains("the provider chosen by --provider"), "{err}");
    assert!(err.contains(&format!("podman does not answer at {DEAD_PODMAN} (from CONTAINER_HOST)")), "{err}");

    let searched =
        kindload().args(["nodes", "--cluster", "kl-no-cluster"]).env("DOCKER_HOST", DEAD_DOCKER).output().unwrap();
    let err = stderr(&searched);
    assert_eq!(searched.status.code(), Some(2), "{err}");
    assert!(err.contains("kind cluster \"kl-no-cluster\" not found"), "{err}");
    assert!(
        err.contains(&format!("not searched, because it did not answer: docker does not answer at {DEAD_DOCKER}")),
        "{err}"
    );
    assert!(fix_line(&err).contains("`unset DOCKER_HOST`"), "{err}");
}

/// Hints are commands to run: the variable to set or unset, spelled out.
#[test]
fn a_bad_engine_variable_says_how_to_set_or_unset_it() {
    let out = kindload().args(["load", "app:v1"]).env("KINDLOAD_ENGINE", "nerdctl").output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("KINDLOAD_ENGINE=nerdctl is not an engine"), "{err}");
    assert_eq!(fix_line(&err), "fix: `export KINDLOAD_ENGINE=docker` (or podman), or `unset KINDLOAD_ENGINE`");
    let out = kindload().args(["nodes"]).env("KIND_EXPERIMENTAL_PROVIDER", "lxd").output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(fix_line(&err).contains("`unset KIND_EXPERIMENTAL_PROVIDER`"), "{err}");
}

/// The image is in the engine that answered: the load goes on, and says which engine was
/// silent, since the user may have meant the image there.
#[test]
fn an_image_found_after_a_silent_engine_says_where_it_came_from() {
    if !engine_available("docker") || !engine_available("podman") {
        return;
    }
    let image = tag("from-podman");
    build_image("podman", &image, "only in podman");
    let out = kindload()
        .args(["load", &image, "--cluster", "kl-no-cluster"])
        .env("DOCKER_HOST", DEAD_DOCKER)
        .output()
        .unwrap();
    remove_image("podman", &image);
    let err = stderr(&out);
    let note = err.lines().find(|l| l.starts_with("note: ")).unwrap_or_else(|| panic!("no note: {err}"));
    assert!(
        note.contains(&format!("docker does not answer at {DEAD_DOCKER} (from DOCKER_HOST): no socket there")),
        "{note}"
    );
    assert!(note.ends_with(&format!("; {image} was taken from podman")), "{note}");
    assert!(err.contains("kind cluster \"kl-no-cluster\" not found"), "the load went on to the cluster: {err}");
    assert_eq!(out.status.code(), Some(2), "{err}");
}
