//! The one way kindload starts child processes: argv only, logged with `-v`, registered so
//! a signal can kill them, and failing with the command and its stderr in the error.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Mutex;
use std::thread::JoinHandle;

static VERBOSITY: AtomicU8 = AtomicU8::new(0);
static CANCELLED: AtomicBool = AtomicBool::new(false);
static CHILDREN: Mutex<Option<HashSet<u32>>> = Mutex::new(None);

pub fn set_verbosity(level: u8) {
    VERBOSITY.store(level, Ordering::Relaxed);
}

pub fn verbose() -> bool {
    VERBOSITY.load(Ordering::Relaxed) > 0
}

/// A command as data: program and arguments, never a shell string.
#[derive(Clone, PartialEq, Eq)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    stdin_data: Option<Vec<u8>>,
    /// Tidying that must run even after a cancel (removing a half-imported record).
    cleanup: bool,
}

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Cmd {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            envs: Vec::new(),
            stdin_data: None,
            cleanup: false,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs.push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Bytes written to the child's stdin by [`Runner::output`].
    pub fn stdin_bytes(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin_data = Some(data.into());
        self
    }

    pub fn cleanup(mut self) -> Self {
        self.cleanup = true;
        self
    }

    pub fn program(&self) -> &OsStr {
        &self.program
    }

    /// The argv as strings, for tests and matching.
    pub fn argv(&self) -> Vec<String> {
        std::iter::once(&self.program).chain(&self.args).map(|a| a.to_string_lossy().into_owned()).collect()
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args);
        for (k, v) in &self.envs {
            command.env(k, v);
        }
        command
    }
}

/// Shell-pasteable rendering, used in logs and errors.
impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (k, v) in &self.envs {
            write!(f, "{}={} ", k.to_string_lossy(), shell_quote(&v.to_string_lossy()))?;
        }
        for word in self.argv() {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            f.write_str(&shell_quote(&word))?;
        }
        Ok(())
    }
}

impl fmt::Debug for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cmd({self})")
    }
}

pub fn shell_quote(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./:=@,+%^".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("could not start `{cmd}`: {source}")]
    CouldNotStart {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{cmd}` {}{}", exit_text(*.code), stderr_text(.stderr))]
    Exited { cmd: String, code: Option<i32>, stderr: String },
    #[error("cancelled while running `{cmd}`")]
    Cancelled { cmd: String },
}

fn exit_text(code: Option<i32>) -> String {
    match code {
        Some(c) => format!("exited with status {c}"),
        None => "was killed by a signal".into(),
    }
}

fn stderr_text(stderr: &str) -> String {
    let trimmed = stderr.trim();
    if trimmed.is_empty() {
        String::new()
    } else {
        format!(": {trimmed}")
    }
}

impl ExecError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, ExecError::CouldNotStart { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }

    pub fn fix(&self) -> Option<String> {
        match self {
            ExecError::CouldNotStart { cmd, .. } if self.is_not_found() => {
                let program = cmd.split_whitespace().next().unwrap_or(cmd);
                Some(format!("install `{program}` or put the directory holding it on PATH (`command -v {program}` finds nothing)"))
            }
            _ => None,
        }
    }
}

/// Captured result of a finished command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs commands to completion. The real one spawns; unit tests substitute a fake.
pub trait Runner: Send + Sync {
    /// Runs and captures, whatever the exit status; errors only when it could not start.
    fn output(&self, cmd: &Cmd) -> Result<Output, ExecError>;

    /// Runs and captures; a non-zero exit is an error carrying stderr.
    fn run(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        let out = self.output(cmd)?;
        if out.success() {
            Ok(out)
        } else {
            Err(ExecError::Exited { cmd: cmd.to_string(), code: out.code, stderr: out.stderr })
        }
    }

    /// Runs and returns stdout of a successful command.
    fn stdout(&self, cmd: &Cmd) -> Result<String, ExecError> {
        self.run(cmd).map(|o| o.stdout)
    }
}

pub struct RealRunner;

impl Runner for RealRunner {
    fn output(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        let mut child = spawn(cmd, cmd.stdin_data.is_some(), true)?;
        let feeder = match (child.stdin.take(), cmd.stdin_data.clone()) {
            (Some(mut stdin), Some(data)) => Some(std::thread::spawn(move || {
                // A child that exits early closes the pipe; its exit status tells the story.
                let _ = stdin.write_all(&data);
            })),
            _ => None,
        };
        let stderr = drain(child.stderr.take());
        let mut stdout = String::new();
        if let Some(mut out) = child.stdout.take() {
            let mut bytes = Vec::new();
            let _ = out.read_to_end(&mut bytes);
            stdout = String::from_utf8_lossy(&bytes).into_owned();
        }
        let status = wait(&mut child, cmd)?;
        if let Some(f) = feeder {
            let _ = f.join();
        }
        Ok(Output { code: status.code(), stdout, stderr: stderr.finish() })
    }
}

/// Spawns with stderr piped (and stdout piped when asked), logged and registered for cancellation.
pub fn spawn(cmd: &Cmd, stdin_piped: bool, stdout_piped: bool) -> Result<Child, ExecError> {
    let stdin = if stdin_piped { Stdio::piped() } else { Stdio::null() };
    let stdout = if stdout_piped { Stdio::piped() } else { Stdio::null() };
    spawn_with(cmd, stdin, stdout, Stdio::piped())
}

/// The one place a child starts: refused after a cancel (but for cleanup), logged, registered.
fn spawn_with(cmd: &Cmd, stdin: Stdio, stdout: Stdio, stderr: Stdio) -> Result<Child, ExecError> {
    if cancelled() && !cmd.cleanup {
        return Err(ExecError::Cancelled { cmd: cmd.to_string() });
    }
    if verbose() {
        eprintln!("+ {cmd}");
    }
    let child = cmd
        .command()
        .stdin(stdin)
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .map_err(|source| ExecError::CouldNotStart { cmd: cmd.to_string(), source })?;
    register(child.id());
    Ok(child)
}

/// Runs with stdout and stderr going where ours go (build logs the user should see).
/// Our stdout stays clean for reports: the child's stdout goes to our stderr.
pub fn run_inherited(cmd: &Cmd) -> Result<(), ExecError> {
    let stdout_to_stderr = std::io::stderr().as_fd().try_clone_to_owned().map(Stdio::from).unwrap_or(Stdio::inherit());
    let mut child = spawn_with(cmd, Stdio::null(), stdout_to_stderr, Stdio::inherit())?;
    let status = wait(&mut child, cmd)?;
    if status.success() {
        Ok(())
    } else {
        Err(ExecError::Exited { cmd: cmd.to_string(), code: status.code(), stderr: "(output shown above)".into() })
    }
}

/// Waits for a spawned child and unregisters it.
pub fn wait(child: &mut Child, cmd: &Cmd) -> Result<std::process::ExitStatus, ExecError> {
    let status = child.wait().map_err(|source| ExecError::CouldNotStart { cmd: cmd.to_string(), source })?;
    unregister(child.id());
    if cancelled() && !status.success() && !cmd.cleanup {
        return Err(ExecError::Cancelled { cmd: cmd.to_string() });
    }
    Ok(status)
}

/// Waits and turns a bad exit into an error carrying the drained stderr.
pub fn finish(mut child: Child, cmd: &Cmd, stderr: StderrDrain) -> Result<(), ExecError> {
    let status = wait(&mut child, cmd)?;
    let stderr = stderr.finish();
    if status.success() {
        Ok(())
    } else {
        Err(ExecError::Exited { cmd: cmd.to_string(), code: status.code(), stderr })
    }
}

/// Reads a child's stderr on its own thread so a chatty child never blocks on a full pipe.
pub struct StderrDrain(Option<JoinHandle<String>>);

pub fn drain(stderr: Option<impl Read + Send + 'static>) -> StderrDrain {
    StderrDrain(stderr.map(|mut s| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = s.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    }))
}

impl StderrDrain {
    pub fn finish(self) -> String {
        self.0.and_then(|h| h.join().ok()).unwrap_or_default()
    }
}

fn register(pid: u32) {
    CHILDREN.lock().unwrap().get_or_insert_with(HashSet::new).insert(pid);
}

fn unregister(pid: u32) {
    if let Some(set) = CHILDREN.lock().unwrap().as_mut() {
        set.remove(&pid);
    }
}

pub fn cancelled() -> bool {
    CANCELLED.load(Ordering::SeqCst)
}

/// Marks the run cancelled and kills every child still running.
pub fn cancel_all() {
    CANCELLED.store(true, Ordering::SeqCst);
    let pids: Vec<u32> = CHILDREN.lock().unwrap().iter().flatten().copied().collect();
    for pid in pids {
        // SAFETY: kill(2) with a pid we spawned; a pid that already exited is harmless.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
        }
    }
}

#[cfg(test)]
pub mod fake {
    //! A scripted runner for unit tests of argument building and parsing.
    use super::*;

    pub struct FakeRunner {
        answers: Vec<(Vec<String>, Output)>,
        pub seen: Mutex<Vec<Vec<String>>>,
    }

    impl Default for FakeRunner {
        fn default() -> Self {
            Self::new()
        }
    }

    impl FakeRunner {
        pub fn new() -> Self {
            FakeRunner { answers: Vec::new(), seen: Mutex::new(Vec::new()) }
        }

        /// Answers a command whose argv starts with `prefix`.
        pub fn on(mut self, prefix: &[&str], code: i32, stdout: &str, stderr: &str) -> Self {
            let output = Output { code: Some(code), stdout: stdout.into(), stderr: stderr.into() };
            self.answers.push((prefix.iter().map(|s| s.to_string()).collect(), output));
            self
        }
    }

    impl Runner for FakeRunner {
        fn output(&self, cmd: &Cmd) -> Result<Output, ExecError> {
            let argv = cmd.argv();
            self.seen.lock().unwrap().push(argv.clone());
            self.answers.iter().find(|(prefix, _)| argv.starts_with(prefix)).map(|(_, out)| out.clone()).ok_or_else(
                || ExecError::CouldNotStart {
                    cmd: cmd.to_string(),
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such program"),
                },
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_shell_pasteable() {
        let cmd = Cmd::new("docker").args(["exec", "-i", "my node", "it's"]);
        assert_eq!(cmd.to_string(), r"docker exec -i 'my node' 'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn could_not_start_is_distinct_from_exited() {
        let missing = RealRunner.output(&Cmd::new("kindload-no-such-program-xyz")).unwrap_err();
        assert!(missing.is_not_found(), "{missing}");
        assert!(missing.fix().unwrap().contains("`command -v kindload-no-such-program-xyz`"), "{:?}", missing.fix());
        let failed = RealRunner.run(&Cmd::new("sh").args(["-c", "echo oops >&2; exit 3"])).unwrap_err();
        match failed {
            ExecError::Exited { code, stderr, .. } => {
                assert_eq!(code, Some(3));
                assert_eq!(stderr.trim(), "oops");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn stdin_bytes_reach_the_child() {
        let out = RealRunner.run(&Cmd::new("cat").stdin_bytes("hello")).unwrap();
        assert_eq!(out.stdout, "hello");
    }
}
