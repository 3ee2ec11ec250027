//! One function per subcommand, each chaining the pipeline stages.

mod context;
mod doctor;
mod load;
mod nodes;

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
    let ctx = Context::new(cli.quiet);
    let result = match cli.command {
        Command::Load(args) => load::load(&ctx, args),
        Command::Verify(args) => load::verify(&ctx, args),
        Command::Nodes(args) => nodes::nodes(&ctx, args),
        Command::Doctor(args) => doctor::doctor(&ctx, args),
    };
    match result {
        Ok(code) => code,
        Err(e) => error::report(&e),
    }
}
