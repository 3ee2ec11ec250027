//! Sets `KINDLOAD_VERSION` for `kindload --version`: the package version, followed by the
//! commit it was built from when the sources are a git checkout (`0.1.0 (3f1c2ab)`, with
//! `-dirty` when the files the binary is built from differ from that commit). A packaged
//! crate (crates.io, `cargo package`) has no `.git` and reports the package version alone.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What the binary is built from: a change to any of these makes the build "-dirty".
const SOURCES: [&str; 4] = ["src", "build.rs", "Cargo.toml", "Cargo.lock"];

fn main() {
    let version = std::env::var("CARGO_PKG_VERSION").expect("cargo sets CARGO_PKG_VERSION");
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    println!("cargo:rerun-if-changed=build.rs");
    // Only this directory's own checkout counts: an unpacked crate inside another
    // repository (target/package/...) must not take that repository's commit.
    let commit = if dir.join(".git").exists() { commit(&dir) } else { None };
    let full = match commit {
        Some(commit) => format!("{version} ({commit})"),
        None => version,
    };
    println!("cargo:rustc-env=KINDLOAD_VERSION={full}");
}

/// The short commit of HEAD, `-dirty` when SOURCES differ from it; None when git cannot
/// tell (not installed, or a repository it refuses to read).
fn commit(dir: &Path) -> Option<String> {
    let hash = git(dir, &["rev-parse", "--short", "HEAD"])?;
    watch_head(dir);
    for source in SOURCES {
        println!("cargo:rerun-if-changed={source}");
    }
    let mut status = vec!["status", "--porcelain", "--"];
    status.extend(SOURCES);
    let dirty = git(dir, &status).is_some_and(|changes| !changes.is_empty());
    Some(if dirty { format!("{hash}-dirty") } else { hash })
}

/// Reruns this script when HEAD moves: a checkout rewrites HEAD, a commit the branch's ref
/// (a loose file, or packed-refs) and the index. In a worktree HEAD and the index live in
/// the worktree's git dir, refs in the common one.
fn watch_head(dir: &Path) {
    let at = |p: String| if Path::new(&p).is_absolute() { PathBuf::from(p) } else { dir.join(p) };
    let Some(git_dir) = git(dir, &["rev-parse", "--git-dir"]).map(at) else { return };
    let common = git(dir, &["rev-parse", "--git-common-dir"]).map(at).unwrap_or_else(|| git_dir.clone());
    let mut watched = vec![git_dir.join("HEAD"), git_dir.join("index"), common.join("packed-refs")];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(common.join(branch));
    }
    // A path that does not exist would make cargo rerun this script on every build.
    for path in watched.into_iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").arg("-C").arg(dir).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
