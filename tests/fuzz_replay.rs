//! Replays the fuzz corpora under plain `cargo test`: every seed in `fuzz/corpus/<target>/`
//! and every input a fuzzer once crashed or hung on (`fuzz/regressions/<target>/`) goes
//! through the same parser entry points the libFuzzer targets call. No nightly, no libFuzzer.

use std::panic;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod targets;

/// Far above what any of these inputs takes even in a debug build; a regression that hangs
/// again exceeds it.
const TIME_LIMIT: Duration = Duration::from_secs(5);

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

#[test]
fn every_corpus_and_regression_input_parses_without_panic_or_hang() {
    let mut failures = Vec::new();
    let mut replayed = 0;
    for (name, target) in targets::TARGETS {
        let seeds = inputs(&fuzz_dir().join("corpus").join(name));
        assert!(!seeds.is_empty(), "fuzz/corpus/{name} has no seed inputs");
        let regressions = inputs(&fuzz_dir().join("regressions").join(name));
        for path in seeds.iter().chain(&regressions) {
            let data = std::fs::read(path).unwrap();
            let started = Instant::now();
            let outcome = panic::catch_unwind(|| target(&data));
            let took = started.elapsed();
            replayed += 1;
            if let Err(cause) = outcome {
                let message = cause
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| cause.downcast_ref::<&str>().copied())
                    .unwrap_or("(non-string panic)");
                failures.push(format!("{}: panicked: {message}", path.display()));
            } else if took > TIME_LIMIT {
                failures.push(format!("{}: took {took:?}", path.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {replayed} inputs failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_corpus_directory_belongs_to_a_target() {
    for kind in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz_dir().join(kind)) else { continue };
        for entry in entries {
            let name = entry.unwrap().file_name().into_string().unwrap();
            assert!(
                targets::TARGETS.iter().any(|(target, _)| *target == name),
                "fuzz/{kind}/{name} has no target of that name in fuzz/src/lib.rs"
            );
        }
    }
}

#[test]
fn every_target_has_a_libfuzzer_binary() {
    for (name, _) in targets::TARGETS {
        let source = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        assert!(source.is_file(), "{} is missing", source.display());
    }
}
