//! `kindload --version` names the commit it was built from when built from a git checkout,
//! and is the plain package version otherwise (a packaged crate has no `.git`).

mod support;

use std::path::Path;
use std::process::Command;

/// What git says in the checkout, or None when git cannot tell (as build.rs then does).
fn git(args: &[&str]) -> Option<String> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("git").arg("-C").arg(repo).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn version_names_the_commit_of_a_checkout() {
    let out = support::kindload().arg("--version").output().unwrap();
    assert!(out.status.success());
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let plain = format!("kindload {}", env!("CARGO_PKG_VERSION"));
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join(".git").exists();
    let expected = match git(&["rev-parse", "--short", "HEAD"]).filter(|_| checkout) {
        None => plain,
        Some(hash) => {
            let changes = git(&["status", "--porcelain", "--", "src", "build.rs", "Cargo.toml", "Cargo.lock"]);
            let dirty = if changes.is_some_and(|c| !c.is_empty()) { "-dirty" } else { "" };
            format!("{plain} ({hash}{dirty})")
        }
    };
    assert_eq!(version, expected);
}
