//! The one way kindload starts child processes: argv only, logged with `-v`, registered so
//! a signal can kill them, watched so that no wait on them is silent (`watch`), and failing
//! with the command and its stderr in the error.

pub mod docker_api;
pub mod watch;

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Mutex;
use std::thread::JoinHandle;

pub use watch::Watch;

static VERBOSITY: AtomicU8 = AtomicU8::new(0);
static CANCELLED: AtomicBool = AtomicBool::new(false);
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());
/// Whether the Docker calls a load makes most may run through this binary's own API client
/// (the binary turns it on; a test harness spawning `docker` keeps the CLI).
static DOCKER_API: AtomicBool = AtomicBool::new(false);

/// Lets the Docker calls [`docker_api::helper_args`] names run through this binary.
pub fn use_docker_api() {
    DOCKER_API.store(true, Ordering::Relaxed);
}

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
    /// Waited on, it made no progress for the stall limit and was stopped.
    #[error("`{cmd}` made no progress for {} s and was stopped{}", .limit.as_secs(), stderr_text(.stderr))]
    Stalled { cmd: String, limit: std::time::Duration, stderr: String },
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

/// Ok for status 0, else the error naming the command, its status and its stderr.
fn exited(cmd: &Cmd, code: Option<i32>, stderr: String) -> Result<(), ExecError> {
    match code {
        Some(0) => Ok(()),
        _ => Err(ExecError::Exited { cmd: cmd.to_string(), code, stderr }),
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
            ExecError::Stalled { .. } => Some(format!(
                "find what holds it up (a frozen engine or node, a full disk, a lock another program keeps); \
                 if it is only slow, allow more with --stall-timeout SECONDS or KINDLOAD_STALL_TIMEOUT (now {} s)",
                watch::limit().as_secs()
            )),
            _ => None,
        }
    }

    pub fn is_stall(&self) -> bool {
        matches!(self, ExecError::Stalled { .. })
    }

    /// What to add to a one-line message naming this error: for a stall, how to allow more.
    pub fn hint(&self) -> &'static str {
        match self {
            ExecError::Stalled { .. } => "; if it is only slow, allow more with --stall-timeout",
            _ => "",
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
    /// Whether `program` is there to run (on PATH, or at the path given), known without running it.
    fn installed(&self, program: &str) -> bool {
        which::which(program).is_ok()
    }

    /// Runs and captures, whatever the exit status; errors only when it could not start.
    fn output(&self, cmd: &Cmd) -> Result<Output, ExecError>;

    /// Runs and captures; a non-zero exit is an error carrying stderr.
    fn run(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        let out = self.output(cmd)?;
        exited(cmd, out.code, out.stderr.clone()).map(|()| out)
    }

    /// Runs and returns stdout of a successful command.
    fn stdout(&self, cmd: &Cmd) -> Result<String, ExecError> {
        self.run(cmd).map(|o| o.stdout)
    }
}

pub struct RealRunner;

impl Runner for RealRunner {
    /// stdin is fed and stdout and stderr drained on threads of their own; each byte the
    /// child gives counts as progress.
    fn output(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        let (mut child, watch) = spawn(cmd, cmd.stdin_data.is_some(), true)?;
        let feeder = child.stdin.take().zip(cmd.stdin_data.clone()).map(|(mut stdin, data)| {
            std::thread::spawn(move || {
                // A child that exits without reading it all says so through its status.
                let _ = stdin.write_all(&data);
            })
        });
        let stdout = read_all(child.stdout.take(), &watch);
        let stderr = drain(child.stderr.take(), &watch);
        let waiting = watch.waiting();
        let status = child.wait().map_err(|source| ExecError::CouldNotStart { cmd: cmd.to_string(), source });
        drop(waiting);
        if let Some(feeder) = feeder {
            let _ = feeder.join();
        }
        let stdout = stdout.finish();
        let stderr = stderr.finish();
        let status = status?;
        settle(cmd, &[child.id()], status.success())?;
        if watch.stalled() {
            return Err(ExecError::Stalled { cmd: cmd.to_string(), limit: watch.limit(), stderr });
        }
        Ok(Output { code: status.code(), stdout, stderr })
    }
}

/// Runs with stdout and stderr going where ours go (build logs the user should see).
/// Our stdout stays clean for reports: the child's stdout goes to our stderr.
pub fn run_inherited(cmd: &Cmd) -> Result<(), ExecError> {
    let status = one_shot(cmd, |expr| expr.stdin_null().stdout_to_stderr())?.status;
    exited(cmd, status.code(), "(output shown above)".into())
}

/// A command run to its end through duct, registered for cancellation while it runs.
fn one_shot(
    cmd: &Cmd,
    io: impl FnOnce(duct::Expression) -> duct::Expression,
) -> Result<std::process::Output, ExecError> {
    let (program, args) = launched(cmd);
    announce(cmd, program != cmd.program)?;
    let expr = cmd.envs.iter().fold(duct::cmd(program, args).unchecked(), |e, (k, v)| e.env(k, v));
    let could_not_start = |source| ExecError::CouldNotStart { cmd: cmd.to_string(), source };
    let handle = io(expr).start().map_err(could_not_start)?;
    let pids = handle.pids();
    register(&pids);
    let out = handle.into_output();
    settle(cmd, &pids, out.as_ref().is_ok_and(|o| o.status.success()))?;
    out.map_err(could_not_start)
}

/// For streams, std pipes: spawns with stderr piped (and stdin, stdout when asked), logged and
/// registered for cancellation; the caller moves the bytes and ends with [`finish`].
pub fn spawn(cmd: &Cmd, stdin_piped: bool, stdout_piped: bool) -> Result<(Child, Watch), ExecError> {
    let piped = |yes| if yes { Stdio::piped() } else { Stdio::null() };
    let (program, args) = launched(cmd);
    announce(cmd, program != cmd.program)?;
    let child = Command::new(program)
        .args(args)
        .envs(cmd.envs.iter().map(|(k, v)| (k, v)))
        .stdin(piped(stdin_piped))
        .stdout(piped(stdout_piped))
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ExecError::CouldNotStart { cmd: cmd.to_string(), source })?;
    register(&[child.id()]);
    let watch = Watch::new(&[child.id()]);
    Ok((child, watch))
}

/// The program and arguments that run `cmd`: the Docker calls [`docker_api`] stands in for
/// through this binary, where the CLI would talk to a local socket; else as given.
fn launched(cmd: &Cmd) -> (OsString, Vec<OsString>) {
    let as_given = || (cmd.program.clone(), cmd.args.clone());
    if !DOCKER_API.load(Ordering::Relaxed) || cmd.program != "docker" {
        return as_given();
    }
    let env = |key: &str| {
        let set = cmd.envs.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.to_string_lossy().into_owned());
        set.or_else(|| std::env::var(key).ok())
    };
    let args: Vec<String> = cmd.args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    match (docker_api::helper_args(&args), docker_api::local_socket(&env), std::env::current_exe()) {
        (Some(helper), Some(_), Ok(exe)) => (exe.into(), helper.into_iter().map(OsString::from).collect()),
        _ => as_given(),
    }
}

/// What every start does first: refuse after a cancel (but for cleanup), then log the argv
/// (and whether this binary's Engine API client runs it).
fn announce(cmd: &Cmd, by_api: bool) -> Result<(), ExecError> {
    if cancelled() && !cmd.cleanup {
        return Err(ExecError::Cancelled { cmd: cmd.to_string() });
    }
    if verbose() {
        eprintln!("+ {}{cmd}", if by_api { "(Engine API) " } else { "" });
    }
    Ok(())
}

/// What every wait does last: unregister, and call a failure after a cancel what it is.
fn settle(cmd: &Cmd, pids: &[u32], success: bool) -> Result<(), ExecError> {
    CHILDREN.lock().unwrap().retain(|pid| !pids.contains(pid));
    if cancelled() && !success && !cmd.cleanup {
        return Err(ExecError::Cancelled { cmd: cmd.to_string() });
    }
    Ok(())
}

/// Waits for a spawned child (judged by its progress) and turns a bad exit into an error
/// carrying the drained stderr.
pub fn finish(mut child: Child, cmd: &Cmd, stderr: StderrDrain, watch: &Watch) -> Result<(), ExecError> {
    let waiting = watch.waiting();
    let status = child.wait().map_err(|source| ExecError::CouldNotStart { cmd: cmd.to_string(), source });
    drop(waiting);
    let status = status?;
    settle(cmd, &[child.id()], status.success())?;
    let stderr = stderr.finish();
    if watch.stalled() {
        return Err(ExecError::Stalled { cmd: cmd.to_string(), limit: watch.limit(), stderr });
    }
    exited(cmd, status.code(), stderr)
}

/// Reads a child's stderr on its own thread so a chatty child never blocks on a full pipe.
pub struct StderrDrain(Option<JoinHandle<String>>);

/// Drains stderr; every byte counts as the child's progress.
pub fn drain(stderr: Option<impl Read + Send + 'static>, watch: &Watch) -> StderrDrain {
    read_all(stderr, watch)
}

fn read_all(pipe: Option<impl Read + Send + 'static>, watch: &Watch) -> StderrDrain {
    let watch = watch.clone();
    StderrDrain(pipe.map(|mut pipe| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let mut buf = [0u8; 8192];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        watch.touch();
                        bytes.extend_from_slice(&buf[..n]);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    }))
}

impl StderrDrain {
    pub fn finish(self) -> String {
        self.0.and_then(|h| h.join().ok()).unwrap_or_default()
    }
}

/// A child kept open for a conversation: it prints until a marker line, is told more on
/// its stdin, and ends when its stdin closes. A node session uses it to survey and then
/// pull without a second `exec`.
pub struct Session {
    cmd: Cmd,
    child: Child,
    stdin: Option<std::process::ChildStdin>,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    stderr: StderrDrain,
    watch: Watch,
}

impl Session {
    pub fn start(cmd: &Cmd) -> Result<Session, ExecError> {
        let (mut child, watch) = spawn(cmd, true, true)?;
        let stdin = child.stdin.take();
        let stdout = std::io::BufReader::new(child.stdout.take().expect("stdout is piped"));
        let stderr = drain(child.stderr.take(), &watch);
        Ok(Session { cmd: cmd.clone(), child, stdin, stdout, stderr, watch })
    }

    /// What the child prints up to a line equal to `marker` (left out). A child that ends
    /// first is an error carrying its exit status and stderr; each line is progress.
    pub fn read_until(&mut self, marker: &str) -> Result<String, ExecError> {
        let mut text = String::new();
        loop {
            let line = self.read_line(true)?;
            if line == marker {
                return Ok(text);
            }
            text.push_str(&line);
            text.push('\n');
        }
    }

    /// The next line the child prints (without its line break). `progress`: whether a line
    /// counts as progress; a caller judging progress by what the lines say touches
    /// [`Session::watch`] itself.
    pub fn read_line(&mut self, progress: bool) -> Result<String, ExecError> {
        use std::io::BufRead;
        let _waiting = self.watch.waiting();
        let mut line = String::new();
        let read = self.stdout.read_line(&mut line).unwrap_or(0);
        if read == 0 {
            return Err(self.ended());
        }
        if progress {
            self.watch.touch();
        }
        Ok(line.trim_end_matches('\n').to_string())
    }

    pub fn watch(&self) -> &Watch {
        &self.watch
    }

    /// Writes `lines` to the child's stdin, each ended by a line break.
    pub fn send(&mut self, lines: &[String]) -> Result<(), ExecError> {
        let _waiting = self.watch.waiting();
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let written = match self.stdin.as_mut() {
            Some(stdin) => stdin.write_all(text.as_bytes()).and_then(|()| stdin.flush()),
            None => Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe)),
        };
        written.map_err(|_| self.ended())
    }

    /// Closes stdin and waits for the child to end; a bad exit is an error with its stderr.
    pub fn close(mut self) -> Result<(), ExecError> {
        self.stdin.take();
        let waiting = self.watch.waiting();
        std::io::copy(&mut self.stdout, &mut std::io::sink()).ok();
        drop(waiting);
        finish(self.child, &self.cmd, self.stderr, &self.watch)
    }

    /// Closes stdin and lets the child end on its own, reaped on a thread of its own: a
    /// session whose work is done costs no wait.
    pub fn end(self) {
        std::thread::spawn(move || self.close());
    }

    /// The child ended (or its pipes broke) early: why, from its exit and stderr.
    fn ended(&mut self) -> ExecError {
        self.stdin.take();
        let code = self.child.wait().ok().and_then(|status| status.code());
        let _ = settle(&self.cmd, &[self.child.id()], false);
        let mut stderr = std::mem::replace(&mut self.stderr, StderrDrain(None)).finish();
        if self.watch.stalled() {
            return ExecError::Stalled { cmd: self.cmd.to_string(), limit: self.watch.limit(), stderr };
        }
        if code == Some(0) {
            stderr = format!("it ended before it was done. {stderr}");
        }
        ExecError::Exited { cmd: self.cmd.to_string(), code, stderr }
    }
}

fn register(pids: &[u32]) {
    CHILDREN.lock().unwrap().extend(pids);
}

pub fn cancelled() -> bool {
    CANCELLED.load(Ordering::SeqCst)
}

/// Marks the run cancelled and kills every child still running.
pub fn cancel_all() {
    CANCELLED.store(true, Ordering::SeqCst);
    let pids = CHILDREN.lock().unwrap().clone();
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

    #[derive(Default)]
    pub struct FakeRunner {
        answers: Vec<(Vec<String>, Output)>,
        missing: Vec<String>,
        pub seen: Mutex<Vec<Vec<String>>>,
    }

    impl FakeRunner {
        pub fn new() -> Self {
            Self::default()
        }

        /// Answers a command whose argv starts with `prefix`.
        pub fn on(mut self, prefix: &[&str], code: i32, stdout: &str, stderr: &str) -> Self {
            let output = Output { code: Some(code), stdout: stdout.into(), stderr: stderr.into() };
            self.answers.push((prefix.iter().map(|s| s.to_string()).collect(), output));
            self
        }

        /// A program not on PATH: [`Runner::installed`] says so.
        pub fn missing(mut self, program: &str) -> Self {
            self.missing.push(program.into());
            self
        }
    }

    impl Runner for FakeRunner {
        fn installed(&self, program: &str) -> bool {
            !self.missing.iter().any(|m| m == program)
        }

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
        assert!(RealRunner.installed("sh") && !RealRunner.installed("kindload-no-such-program-xyz"));
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
    fn stdin_bytes_and_env_reach_the_child() {
        let cmd = Cmd::new("sh").args(["-c", "cat; echo \" $K\"; echo err >&2"]).env("K", "v").stdin_bytes("hello");
        let out = RealRunner.run(&cmd).unwrap();
        assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("hello v\n", "err\n"));
    }
}
