//! One function per subcommand, each chaining the pipeline stages.

mod build;
mod context;
mod doctor;
mod load;
mod nodes;
mod pipeline;
pub(crate) mod registry;

use clap::Parser;

use crate::error;
use crate::request::cli::{Cli, Command};

pub use context::Context;

pub fn run() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    crate::exec::set_verbosity(u8::from(cli.verbose));
    context::install_signal_handlers();
    let result = Context::new(cli.quiet, cli.config.as_deref()).and_then(|ctx| match cli.command {
        Command::Load(args) => load::load(&ctx, args),
        Command::Verify(args) => load::verify(&ctx, args),
        Command::Nodes(args) => nodes::nodes(&ctx, args),
        Command::Doctor(args) => doctor::doctor(&ctx, args),
        Command::Build(args) => build::build(&ctx, args),
        Command::Registry(command) => registry::registry(&ctx, command),
    });
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
        Err(e) => error::report(&e),
    }
}

/// This process's own peak resident set (not its children's), from /proc.
fn peak_memory_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")?.trim().strip_suffix("kB")?.trim().parse().ok())
}
