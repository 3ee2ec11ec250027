//! `kindload completions` and `kindload man`: the bash script is loaded into a real bash and
//! asked to complete, as bash does on Tab (through `complete -p` and the function it names,
//! which answers with `compgen`); the manual pages are rendered by `man -l`.

mod support;

use std::path::Path;
use std::process::Command;

use support::kindload;

fn generated(args: &[&str]) -> String {
    let out = kindload().args(args).output().unwrap();
    assert!(out.status.success(), "kindload {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Sources `script`, finds the function `complete -p kindload` registered, and calls it the
/// way bash does for the command line `words` (the cursor at the end of the last word);
/// returns COMPREPLY.
fn bash_completes(script: &Path, words: &[&str]) -> Vec<String> {
    const DRIVER: &str = r#"
source "$1" || exit 3
shift
read -ra spec <<<"$(complete -p kindload)" || exit 4
func=
for ((i = 0; i < ${#spec[@]}; i++)); do
  [ "${spec[i]}" = -F ] && func=${spec[i + 1]}
done
[ -n "$func" ] || { echo "no completion function in: ${spec[*]}" >&2; exit 5; }
COMP_WORDS=("$@")
COMP_CWORD=$(($# - 1))
COMP_LINE="$*"
COMP_POINT=${#COMP_LINE}
"$func" kindload "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
printf '%s\n' "${COMPREPLY[@]}"
"#;
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", DRIVER, "driver"])
        .arg(script)
        .args(words)
        .output()
        .expect("bash runs");
    assert!(out.status.success(), "bash: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()).map(String::from).collect()
}

#[test]
fn bash_completes_subcommands_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("kindload.bash");
    std::fs::write(&script, generated(&["completions", "bash"])).unwrap();
    assert_eq!(bash_completes(&script, &["kindload", "reg"]), ["registry"]);
    assert_eq!(bash_completes(&script, &["kindload", "load", "--cl"]), ["--cluster"]);
    assert_eq!(bash_completes(&script, &["kindload", "registry", "u"]), ["up"]);
}

#[test]
fn every_shell_gets_a_script_and_an_unknown_one_is_a_usage_error() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        assert!(generated(&["completions", shell]).len() > 1000, "{shell}");
    }
    let out = kindload().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `man -l FILE` as a user would read it, formatted to a fixed width without a pager.
fn man_renders(page: &Path) -> String {
    let out = Command::new("man")
        .args(["-P", "cat", "-l"])
        .arg(page)
        .env("MANWIDTH", "100")
        .env("LC_ALL", "C.UTF-8")
        .output()
        .expect("man runs (package man-db)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "man -l {}: {stderr}", page.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn man_renders_the_page_and_one_per_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("kindload.1");
    std::fs::write(&page, generated(&["man"])).unwrap();
    let text = man_renders(&page);
    assert!(text.contains("kindload - Load locally built images into kind nodes"), "{text}");
    assert!(text.contains("kindload-completions(1)") && text.contains("kindload-registry(1)"), "{text}");

    let pages = dir.path().join("man1");
    generated(&["man", "--dir", pages.to_str().unwrap()]);
    let build = man_renders(&pages.join("kindload-build.1"));
    assert!(build.contains("EXPECTED_REF") && build.contains("--pull"), "{build}");
    let up = man_renders(&pages.join("kindload-registry-up.1"));
    assert!(up.contains("--port"), "{up}");
}

/// Completions and the manual never read kindload.yaml, so a broken one cannot stop them.
#[test]
fn completions_and_man_ignore_a_broken_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kindload.yaml");
    std::fs::write(&config, "no_such_field: [\n").unwrap();
    for args in [&["completions", "bash"][..], &["man"][..]] {
        let out = kindload().args(args).env("KINDLOAD_CONFIG", &config).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let out = kindload().arg("nodes").env("KINDLOAD_CONFIG", &config).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "other commands still read it");
}
