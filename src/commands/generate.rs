//! `kindload completions` and `kindload man`: generated from the clap definitions the
//! command line is parsed with, so they cannot drift from it.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;

use crate::error::{Error, Result};
use crate::request::cli::{Cli, CompletionsArgs, ManArgs};

const BIN: &str = "kindload";

pub fn completions(args: &CompletionsArgs) -> Result<i32> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), BIN, &mut script);
    write_stdout(&script)
}

pub fn man(args: &ManArgs) -> Result<i32> {
    match &args.dir {
        Some(dir) => man_pages_into(dir),
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut page).map_err(|e| unwritable("the manual page", e))?;
            write_stdout(&page)
        }
    }
}

/// kindload.1 and one page per subcommand, named as `man` looks them up (kindload-load.1).
fn man_pages_into(dir: &Path) -> Result<i32> {
    std::fs::create_dir_all(dir).and_then(|()| clap_mangen::generate_to(Cli::command(), dir)).map_err(|e| {
        Error::input(
            format!("cannot write manual pages into {}: {e}", dir.display()),
            "name a directory you may write to, e.g. --dir ~/.local/share/man/man1",
        )
    })?;
    Ok(0)
}

/// A closed stdout (`kindload man | head`) is not worth a panic.
fn write_stdout(bytes: &[u8]) -> Result<i32> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(0),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        Err(e) => Err(unwritable("stdout", e)),
    }
}

fn unwritable(what: &str, e: std::io::Error) -> Error {
    Error::failed(format!("cannot write {what}: {e}"), "redirect the output to a file you may write")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed schemas (`schemas/`), generated from the report and config types.
    fn schemas() -> Vec<(&'static str, schemars::Schema)> {
        vec![
            ("load-report.schema.json", schemars::schema_for!(crate::report::LoadReport)),
            ("nodes-report.schema.json", schemars::schema_for!(Vec<crate::resolve::node::Node>)),
            ("kindload-config.schema.json", schemars::schema_for!(crate::request::config::Config)),
            ("registry-status.schema.json", schemars::schema_for!(crate::registry::Status)),
        ]
    }

    #[test]
    fn man_pages_cover_every_subcommand() {
        let dir = tempfile::tempdir().unwrap();
        man_pages_into(dir.path()).unwrap();
        for page in ["kindload.1", "kindload-load.1", "kindload-build.1", "kindload-registry-up.1", "kindload-man.1"] {
            let text = std::fs::read_to_string(dir.path().join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
            assert!(text.starts_with(".ie \\n(.g .ds Aq"), "{page} is not roff: {}", &text[..40.min(text.len())]);
        }
    }

    #[test]
    fn an_unwritable_man_dir_is_an_input_error() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let err = man_pages_into(&file.path().join("sub")).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.fix().unwrap().contains("--dir"), "{err}");
    }

    #[test]
    fn committed_schemas_match_the_types() {
        for (file, schema) in schemas() {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas").join(file);
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            let generated = serde_json::to_string_pretty(&schema).unwrap() + "\n";
            assert!(
                committed == generated,
                "schemas/{file} is out of date: regenerate with `KINDLOAD_WRITE_SCHEMAS=1 cargo test committed_schemas`"
            );
        }
    }

    #[test]
    fn write_schemas_when_asked() {
        if std::env::var_os("KINDLOAD_WRITE_SCHEMAS").is_none() {
            return;
        }
        for (file, schema) in schemas() {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas").join(file);
            std::fs::write(path, serde_json::to_string_pretty(&schema).unwrap() + "\n").unwrap();
        }
    }
}
