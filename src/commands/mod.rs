//! One function per subcommand, each chaining the pipeline stages.

mod build;
pub(crate) mod built_push;
mod context;
mod doctor;
mod generate;
mod load;
mod nodes;
mod pipeline;
pub(crate) mod registry;

use clap::Parser;

use crate::error::{Error, EXIT_FAILED};
use crate::request::cli::{Cli, Command};

pub use context::Context;

/// Parses the command line, runs the command, prints any error; returns the exit status.
pub fn run() -> i32 {
    let mut args = std::env::args_os().skip(1);
    if args.next().is_some_and(|first| first == crate::exec::docker_api::HELPER) {
        let rest: Vec<String> = args.map(|a| a.to_string_lossy().into_owned()).collect();
        return crate::exec::docker_api::helper(&rest);
    }
    crate::exec::use_docker_api();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    crate::exec::set_verbosity(u8::from(cli.verbose));
    context::install_signal_handlers();
    let result = dispatch(cli);
    if crate::exec::verbose() {
        if let Some(kib) = peak_memory_kib() {
            eprintln!("+ peak resident memory: {kib} KiB");
        }
    }
    match result {
        Ok(code) => code,
        Err(_) if context::interrupted() => {
            eprintln!("error: interrupted; children were stopped and half-imported images removed");
            130
        }
        Err(e) => report(&e),
    }
}

/// Runs the subcommand. Inside, errors are kindload's own `Error` (exit status and fix);
/// here at the edge they become an `anyhow` chain for [`report`].
fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    // Before the context: a broken kindload.yaml must not stop completions or the manual.
    match &cli.command {
        Command::Completions(args) => return Ok(generate::completions(args)?),
        Command::Man(args) => return Ok(generate::man(args)?),
        _ => {}
    }
    let ctx = Context::new(cli.quiet, cli.config.as_deref())?;
    let stall = cli.stall_timeout.or(ctx.config.stall_timeout_seconds).filter(|&s| s > 0);
    crate::exec::watch::set_limit(stall.map_or(crate::exec::watch::DEFAULT_STALL, std::time::Duration::from_secs));
    let code = match cli.command {
        Command::Load(args) => load::load(&ctx, args),
        Command::Verify(args) => load::verify(&ctx, args),
        Command::Nodes(args) => nodes::nodes(&ctx, args),
        Command::Doctor(args) => doctor::doctor(&ctx, args),
        Command::Build(args) => build::build(&ctx, args),
        Command::Registry(command) => registry::registry(&ctx, command),
        Command::Completions(_) | Command::Man(_) => unreachable!("handled before the context is made"),
    }?;
    Ok(code)
}

/// The one place an error is printed: `error:` with the outermost message, `caused by:` for
/// each error under it, then the fix of the kindload error in the chain; returns its exit status.
fn report(err: &anyhow::Error) -> i32 {
    eprintln!("error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("caused by: {cause}");
    }
    let ours = err.chain().find_map(|e| e.downcast_ref::<Error>());
    if let Some(fix) = ours.and_then(Error::fix) {
        eprintln!("fix: {fix}");
    }
    ours.map_or(EXIT_FAILED, Error::exit_code)
}

/// This process's own peak resident set (not its children's), from /proc.
fn peak_memory_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")?.trim().strip_suffix("kB")?.trim().parse().ok())
}
