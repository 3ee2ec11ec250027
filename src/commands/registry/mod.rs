//! `kindload registry up|status|down|ca|manifests`: the registry's lifecycle. One registry
//! container per provider is shared by every cluster whose nodes trust it; `up` adds a
//! cluster (`up`), `down` takes one away and removes the container only when no cluster is
//! left (`down`); `users` tells which clusters trust it, `trust` reads and writes a node's
//! hosts.toml files, `kube` the ConfigMaps, `status` and `doctor` report.

mod doctor;
mod down;
mod kube;
mod start;
mod status;
mod trust;
mod up;
mod users;

use crate::error::{Error, Result};
use crate::registry::ca::Store;
use crate::registry::lock;
use crate::registry::CONTAINER_PORT;
use crate::request::cli::RegistryCommand;
use crate::resolve::engine::EngineKind;
use crate::resolve::provider::Provider;

use super::Context;

pub use doctor::doctor;

pub fn registry(ctx: &Context, command: RegistryCommand) -> Result<i32> {
    match command {
        RegistryCommand::Up(args) => up::up(ctx, args),
        RegistryCommand::Status(args) => status::status(ctx, args),
        RegistryCommand::Down(args) => down::down(ctx, args),
        RegistryCommand::Ca(_) => status::print_ca(),
        RegistryCommand::Manifests(args) => status::print_manifests(ctx, args),
    }
}

/// kindload's CA and the registries' certificates.
pub(super) fn store() -> Result<Store> {
    crate::registry::state_dir().map(|d| Store::new(&d)).ok_or_else(|| {
        Error::usage("no state directory for kindload's CA", "set HOME, XDG_STATE_HOME or KINDLOAD_STATE_DIR")
    })
}

/// kindload's registry lock, held while this run changes the registry (its container, the
/// CA, the nodes' files): a concurrent `up` or `down` waits for it, saying on what, for at
/// most `lock::WAIT`. `doing` tells a waiter what this run is.
pub(super) fn hold_lock(ctx: &Context, doing: &str) -> Result<lock::Held> {
    let dir = crate::registry::state_dir().ok_or_else(|| {
        Error::usage("no state directory for kindload's CA", "set HOME, XDG_STATE_HOME or KINDLOAD_STATE_DIR")
    })?;
    let path = lock::path(&dir);
    let mut waiting = |holder: &str| {
        ctx.say(format!(
            "waiting for {holder} to finish changing the registry: it holds {} (at most {} s)",
            path.display(),
            lock::WAIT.as_secs()
        ))
    };
    lock::acquire(&path, doing, lock::WAIT, &mut waiting).map_err(|e| match e {
        lock::LockError::TimedOut { path, holder, waited } => Error::input(
            format!(
                "{holder} held the registry lock {} for {} s, so this run changed nothing",
                path.display(),
                waited.as_secs()
            ),
            "let it finish and run this again; if it is stuck, end it (its pid is named above) and run this again",
        ),
        lock::LockError::Io(e) => Error::failed(
            format!("cannot take the registry lock: {e}"),
            "make kindload's state directory writable, or point KINDLOAD_STATE_DIR at one that is",
        ),
    })
}

/// Where nodes and pods reach the registry: its container name on the nodes' network.
pub(super) fn cluster_address(name: &str) -> String {
    format!("{name}:{CONTAINER_PORT}")
}

/// Where the host pushes: the published port.
pub(super) fn host_address(port: u16) -> String {
    format!("localhost:{port}")
}

/// Where kindload itself connects: the published address, not whatever `localhost`
/// resolves to first (the certificate covers both).
pub(super) fn loopback(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

fn check_name(name: &str) -> Result<()> {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.len() <= 63;
    if ok {
        Ok(())
    } else {
        Err(Error::usage(
            format!("{name:?} cannot name a registry: nodes reach it by this name, so it must be a host name"),
            "use lowercase letters, digits, '-' and '.', starting with a letter or digit (e.g. --name kindload-registry)",
        ))
    }
}

/// Podman asks which registry a short name means (or refuses, without a terminal): the
/// default image is named in full there.
fn registry_image(provider: Provider, image: &str) -> String {
    if provider.kind == EngineKind::Podman && image == crate::registry::DEFAULT_IMAGE {
        format!("docker.io/library/{image}")
    } else {
        image.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn podman_gets_the_default_image_by_its_full_name() {
        assert_eq!(registry_image(Provider::new(EngineKind::Podman), "registry:2"), "docker.io/library/registry:2");
        assert_eq!(registry_image(Provider::new(EngineKind::Docker), "registry:2"), "registry:2");
        assert_eq!(registry_image(Provider::new(EngineKind::Podman), "mirror.lan/registry:2"), "mirror.lan/registry:2");
    }

    #[test]
    fn registry_names_are_host_names() {
        assert!(check_name("kindload-registry").is_ok());
        assert!(check_name("Bad_Name").is_err());
        assert!(check_name("-x").is_err());
    }
}
