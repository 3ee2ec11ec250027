//! One function per subcommand, each chaining the pipeline stages.

pub fn run() -> i32 {
    0
}
