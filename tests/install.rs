//! `install.sh` builds and installs the binary and its manual pages, says where and how to
//! enable shell completions, and prints the next command.

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

    // The manual pages land where man-db looks for them beside a bin directory on PATH.
    let man = Command::new("man")
        .args(["-w", "kindload-load"])
        .env_remove("MANPATH")
        .env("PATH", format!("{}:/usr/bin:/bin", root.path().join("bin").display()))
        .output()
        .unwrap();
    let found = String::from_utf8_lossy(&man.stdout);
    assert_eq!(found.trim(), root.path().join("share/man/man1/kindload-load.1").to_str().unwrap(), "{stdout}");
    assert!(stdout.contains("source <(kindload completions bash)"), "{stdout}");
}
