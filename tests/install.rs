//! `install.sh` builds and installs the binary, says where, and prints the next command.

use std::process::Command;

#[test]
fn install_script_installs_a_working_binary() {
    let root = tempfile::tempdir().unwrap();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(repo.join("install.sh"))
        .env("KINDLOAD_INSTALL_ROOT", root.path())
        // Reuse the workspace's build directory so the release build is cached between runs.
        .env("CARGO_TARGET_DIR", repo.join("target"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let bin = root.path().join("bin/kindload");
    let version = Command::new(&bin).arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    assert!(version.starts_with(&format!("kindload {}", env!("CARGO_PKG_VERSION"))), "{version}");
    assert!(stdout.contains(&format!("installed {version} at {}", bin.display())), "{stdout}");
    assert!(stdout.contains("next: kindload doctor"), "{stdout}");
    let help = Command::new(&bin).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("Load images into every node"));
}
