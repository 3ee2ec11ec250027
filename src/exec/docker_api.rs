//! The Docker calls a load makes most, through Docker's Engine API on its local socket:
//! `docker exec` and `docker save`, with every byte of a node's stream in them, and the
//! image's inspect, the nodes' listing and inspect before them. The Docker CLI costs about
//! 10 ms of CPU to start and copies each byte of a stream once more on its way; on a 2-core
//! machine loading three images at once that was a tenth of the whole load. So where the CLI
//! would talk to a local socket, `spawn` runs them as `kindload __docker …` instead: a small
//! process that speaks to the daemon itself, with the CLI's output, exit status and errors,
//! so that everything around it (pipes, the stall watch, cancelling) stays one way.
//! `KINDLOAD_DOCKER_CLI=1` keeps the CLI.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::{json, Value};

/// The first argument that makes the binary the helper.
pub const HELPER: &str = "__docker";

/// The daemon's socket when the Docker CLI, given the environment `env` reads, would talk
/// to a local one: `DOCKER_HOST=unix://…`, or no host and no context but the default.
pub fn local_socket(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if env("KINDLOAD_DOCKER_CLI").is_some_and(|v| !v.is_empty() && v != "0") {
        return None;
    }
    if env("DOCKER_CONTEXT").is_some_and(|c| !c.is_empty() && c != "default") {
        return None;
    }
    if let Some(host) = env("DOCKER_HOST").filter(|h| !h.is_empty()) {
        return host.strip_prefix("unix://").map(PathBuf::from).filter(|p| p.exists());
    }
    let config = env("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".docker")))
        .map(|dir| dir.join("config.json"));
    if let Some(text) = config.and_then(|path| std::fs::read_to_string(path).ok()) {
        let context = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("currentContext").and_then(Value::as_str).map(str::to_string));
        if context.is_some_and(|c| !c.is_empty() && c != "default") {
            return None;
        }
    }
    Some(PathBuf::from("/var/run/docker.sock")).filter(|p| p.exists())
}

/// The helper's argv for a Docker CLI call it stands in for: `exec [-i] NODE ARGV...`,
/// `save REF...`, `image inspect REF`, `container inspect NAME...` and the listing of names
/// by label (`ps --all --filter label=L --format {{.Names}}`); nothing else (any other flag
/// goes to the CLI).
pub fn helper_args(args: &[String]) -> Option<Vec<String>> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let plain = |rest: &[&str]| !rest.is_empty() && rest.iter().all(|a| !a.starts_with('-'));
    let stands_in = match words[..] {
        ["exec", "-i", node, _, ..] | ["exec", node, _, ..] => !node.starts_with('-'),
        ["save", ref rest @ ..] | ["container", "inspect", ref rest @ ..] => plain(rest),
        ["image", "inspect", reference] => plain(&[reference]),
        ["ps", "--all", "--filter", label, "--format", "{{.Names}}"] => label.starts_with("label="),
        _ => false,
    };
    stands_in.then(|| std::iter::once(HELPER.to_string()).chain(args.iter().cloned()).collect())
}

/// The helper's main: `exec [-i] NODE ARGV...` or `save REF...` (after [`HELPER`]). Exits
/// as the CLI does: the command's status, or 1 with the daemon's message.
pub fn helper(args: &[String]) -> i32 {
    if helper_args(args).is_none() {
        eprintln!("kindload {HELPER}: not a call it stands in for: {args:?} (it is run by kindload itself)");
        return 2;
    }
    let Some(socket) = local_socket(&|k| std::env::var(k).ok()) else {
        eprintln!("kindload {HELPER}: no local Docker socket");
        return 1;
    };
    let daemon = Daemon { socket };
    let result = match args.first().map(String::as_str) {
        Some("exec") => {
            let stdin = args.get(1).is_some_and(|a| a == "-i");
            let rest = &args[if stdin { 2 } else { 1 }..];
            daemon.exec(&rest[0], &rest[1..], stdin)
        }
        Some("save") => daemon.save(&args[1..]).map(|()| 0),
        Some("image") => daemon.inspect("images", &args[2..]),
        Some("container") => daemon.inspect("containers", &args[2..]),
        Some("ps") => daemon.names_labelled(args[3].trim_start_matches("label=")).map(|()| 0),
        _ => unreachable!("helper_args admits no other call"),
    };
    match result {
        Ok(code) => code,
        Err(Failure::Daemon(message)) => {
            eprintln!("Error response from daemon: {message}");
            1
        }
        Err(Failure::Local(message)) => {
            eprintln!("{message}");
            1
        }
    }
}

enum Failure {
    /// What the daemon answered, as the CLI prints it.
    Daemon(String),
    Local(String),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Local(format!("talking to the Docker daemon failed: {e}"))
    }
}

struct Daemon {
    socket: PathBuf,
}

/// How long an exec's status may stay "running" after its streams ended.
const EXIT_WAIT: Duration = Duration::from_secs(5);

impl Daemon {
    fn exec(&self, container: &str, argv: &[String], stdin: bool) -> Result<i32, Failure> {
        let create = json!({
            "AttachStdin": stdin, "AttachStdout": true, "AttachStderr": true, "Tty": false, "Cmd": argv,
        });
        let path = format!("/containers/{}/exec", encode(container));
        let created = self.request("POST", &path, Some(&create), false)?.json()?;
        let id = created.get("Id").and_then(Value::as_str).ok_or_else(|| Failure::Local("no exec id".into()))?;
        let start = json!({"Detach": false, "Tty": false});
        let started = self.request("POST", &format!("/exec/{id}/start"), Some(&start), true)?;
        if !(started.status == 101 || started.status == 200) {
            return Err(Failure::Daemon(started.message()));
        }
        let (reader, stream) = started.into_parts();
        let feeder = match stdin {
            true => {
                let mut to_daemon = stream.try_clone()?;
                Some(std::thread::spawn(move || {
                    // The command reads until end of input; a command that stops reading
                    // early tells through its status.
                    let _ = io::copy(&mut io::stdin().lock(), &mut to_daemon);
                    let _ = to_daemon.shutdown(Shutdown::Write);
                }))
            }
            false => None,
        };
        demux(reader, &mut io::stdout().lock(), &mut io::stderr().lock())?;
        // The feeder may still wait on our stdin; the status does not depend on it.
        drop(feeder);
        let deadline = Instant::now() + EXIT_WAIT;
        loop {
            let state = self.request("GET", &format!("/exec/{id}/json"), None, false)?.json()?;
            let running = state.get("Running").and_then(Value::as_bool).unwrap_or(false);
            match state.get("ExitCode").and_then(Value::as_i64) {
                Some(code) if !running => return Ok(code as i32),
                _ if Instant::now() >= deadline => {
                    return Err(Failure::Local(format!("exec {id} ended its streams but reports no exit status")))
                }
                _ => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    fn save(&self, refs: &[String]) -> Result<(), Failure> {
        let query: Vec<String> = refs.iter().map(|r| format!("names={}", encode(r))).collect();
        let response = self.request("GET", &format!("/images/get?{}", query.join("&")), None, false)?;
        if response.status != 200 {
            return Err(Failure::Daemon(response.message()));
        }
        io::copy(&mut response.body(), &mut io::stdout().lock())?;
        Ok(())
    }

    /// `image inspect` or `container inspect` (`kind`: `images` or `containers`): the found
    /// objects as one JSON array, each missing one named on stderr, exit 1 if any is missing.
    fn inspect(&self, kind: &str, names: &[String]) -> Result<i32, Failure> {
        let mut found = Vec::new();
        let mut code = 0;
        for name in names {
            match self.request("GET", &format!("/{kind}/{}/json", encode(name)), None, false)?.json() {
                Ok(object) => found.push(object),
                Err(Failure::Daemon(message)) => {
                    eprintln!("Error response from daemon: {message}");
                    code = 1;
                }
                Err(other) => return Err(other),
            }
        }
        println!("{}", Value::Array(found));
        Ok(code)
    }

    /// The names of the containers, running or not, that carry `label`, one per line.
    fn names_labelled(&self, label: &str) -> Result<(), Failure> {
        let filters = json!({ "label": [label] }).to_string();
        let listed =
            self.request("GET", &format!("/containers/json?all=1&filters={}", encode(&filters)), None, false)?;
        let mut out = io::stdout().lock();
        for container in listed.json()?.as_array().into_iter().flatten() {
            let names = container.get("Names").and_then(Value::as_array).into_iter().flatten();
            // Linked containers' names hold a second slash; `{{.Names}}` leaves them out.
            let own: Vec<&str> = names.filter_map(Value::as_str).filter_map(|n| n.strip_prefix('/')).collect();
            let own: Vec<&str> = own.into_iter().filter(|n| !n.contains('/')).collect();
            writeln!(out, "{}", own.join(","))?;
        }
        Ok(())
    }

    /// One request on a connection of its own; `upgrade` asks to take the connection over
    /// (an exec's streams). A daemon that does not answer is told as the CLI tells it.
    fn request(&self, method: &str, path: &str, body: Option<&Value>, upgrade: bool) -> Result<Response, Failure> {
        let mut stream =
            UnixStream::connect(&self.socket).map_err(|e| Failure::Local(unreachable(&self.socket, &e)))?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: kindload\r\n");
        if method != "GET" {
            head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
        }
        if upgrade {
            head.push_str("Connection: Upgrade\r\nUpgrade: tcp\r\n");
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        stream.write_all(body.as_bytes())?;
        Ok(Response::read(stream)?)
    }
}

/// A response's status line and headers, read; its body still on the connection.
struct Response {
    status: u16,
    length: Option<u64>,
    chunked: bool,
    reader: BufReader<UnixStream>,
}

impl Response {
    fn read(stream: UnixStream) -> io::Result<Response> {
        let mut reader = BufReader::new(stream);
        let mut head = Vec::new();
        loop {
            let before = head.len();
            reader.read_until(b'\n', &mut head)?;
            if head.len() == before {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the daemon closed the connection"));
            }
            if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") {
                break;
            }
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Response::new(&mut headers);
        parsed.parse(&head).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let header = |name: &str| {
            parsed
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
        };
        let length = header("Content-Length").and_then(|l| l.parse().ok());
        let chunked = header("Transfer-Encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked"));
        Ok(Response { status: parsed.code.unwrap_or(0), length, chunked, reader })
    }

    fn body(self) -> Body {
        let framing = match (self.chunked, self.length) {
            (true, _) => Framing::Chunked { left: 0, done: false },
            (false, Some(n)) => Framing::Length(n),
            (false, None) => Framing::UntilClose,
        };
        Body { reader: self.reader, framing }
    }

    fn json(self) -> Result<Value, Failure> {
        let status = self.status;
        let mut text = String::new();
        self.body().read_to_string(&mut text)?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        match status {
            200..=299 => Ok(value),
            _ => Err(Failure::Daemon(message_of(&value, &text))),
        }
    }

    /// The daemon's message in an error response.
    fn message(self) -> String {
        let mut text = String::new();
        let _ = self.body().take(64 << 10).read_to_string(&mut text);
        message_of(&serde_json::from_str(&text).unwrap_or(Value::Null), &text)
    }

    /// A taken-over connection: what was read of it already, and the connection to write to.
    fn into_parts(self) -> (BufReader<UnixStream>, UnixStream) {
        let stream = self.reader.get_ref().try_clone().expect("a connected socket can be cloned");
        (self.reader, stream)
    }
}

/// A daemon that cannot be reached, in the CLI's words (which engine detection reads).
fn unreachable(socket: &std::path::Path, error: &io::Error) -> String {
    let path = socket.display();
    match error.kind() {
        io::ErrorKind::PermissionDenied => format!(
            "permission denied while trying to connect to the Docker daemon socket at unix://{path}: \
             dial unix {path}: connect: permission denied"
        ),
        _ => format!("Cannot connect to the Docker daemon at unix://{path}. Is the docker daemon running?"),
    }
}

fn message_of(value: &Value, text: &str) -> String {
    value.get("message").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| text.trim().to_string())
}

enum Framing {
    Length(u64),
    Chunked { left: u64, done: bool },
    UntilClose,
}

/// A response body, as its headers frame it.
struct Body {
    reader: BufReader<UnixStream>,
    framing: Framing,
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.framing {
            Framing::Length(0) => Ok(0),
            Framing::Length(left) => {
                let max = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                let n = self.reader.read(&mut buf[..max])?;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the response ended early"));
                }
                *left -= n as u64;
                Ok(n)
            }
            Framing::UntilClose => self.reader.read(buf),
            Framing::Chunked { left, done } => {
                if *done {
                    return Ok(0);
                }
                if *left == 0 {
                    *left = next_chunk_size(&mut self.reader)?;
                    if *left == 0 {
                        *done = true;
                        return Ok(0);
                    }
                }
                let max = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                let n = self.reader.read(&mut buf[..max])?;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "a chunk ended early"));
                }
                *left -= n as u64;
                if *left == 0 {
                    let mut end = [0u8; 2];
                    self.reader.read_exact(&mut end)?;
                }
                Ok(n)
            }
        }
    }
}

/// The size line of the next chunk, parsed by httparse.
fn next_chunk_size(reader: &mut impl BufRead) -> io::Result<u64> {
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line)?;
    match httparse::parse_chunk_size(&line) {
        Ok(httparse::Status::Complete((_, size))) => Ok(size),
        _ => Err(io::Error::new(io::ErrorKind::InvalidData, "a chunk's size line is not valid")),
    }
}

/// Splits an exec's stream (no TTY) into stdout and stderr: frames of an 8-byte header
/// (stream, three zero bytes, a big-endian length) and the payload.
fn demux(mut stream: impl Read, stdout: &mut impl Write, stderr: &mut impl Write) -> io::Result<()> {
    let mut header = [0u8; 8];
    let mut payload = vec![0u8; 64 << 10];
    loop {
        match stream.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let mut left = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let out: &mut dyn Write = if header[0] == 2 { stderr } else { stdout };
        while left > 0 {
            let n = left.min(payload.len());
            stream.read_exact(&mut payload[..n])?;
            // A reader that went away (our parent stopped reading) ends the copy, not the exec.
            out.write_all(&payload[..n])?;
            left -= n;
        }
        out.flush()?;
    }
}

fn encode(text: &str) -> String {
    utf8_percent_encode(text, NON_ALPHANUMERIC).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn only_plain_exec_and_save_go_to_the_helper() {
        let exec = strings(&["exec", "-i", "kind-worker", "ctr", "images", "import", "-"]);
        assert_eq!(helper_args(&exec).unwrap()[..3], strings(&[HELPER, "exec", "-i"]));
        assert!(helper_args(&strings(&["exec", "kind-worker", "true"])).is_some());
        assert!(helper_args(&strings(&["exec", "--privileged", "kind-worker", "true"])).is_none());
        assert!(helper_args(&strings(&["exec", "-i", "kind-worker"])).is_none(), "no command");
        assert_eq!(helper_args(&strings(&["save", "a:1", "b:2"])).unwrap(), strings(&[HELPER, "save", "a:1", "b:2"]));
        assert!(helper_args(&strings(&["save", "-o", "x.tar", "a:1"])).is_none());
        assert!(helper_args(&strings(&["inspect", "a:1"])).is_none());
        assert_eq!(helper(&strings(&["exec", "-i"])), 2, "a call it does not stand in for is refused");
        assert!(helper_args(&strings(&["image", "inspect", "a:1"])).is_some());
        assert!(helper_args(&strings(&["image", "inspect", "a:1", "b:1"])).is_none(), "one image at a time");
        assert!(helper_args(&strings(&["container", "inspect", "n1", "n2"])).is_some());
        assert!(helper_args(&strings(&["container", "inspect", "--format", "x", "n1"])).is_none());
        let ps = ["ps", "--all", "--filter", "label=io.x-k8s.kind.cluster=dev", "--format", "{{.Names}}"];
        assert!(helper_args(&strings(&ps)).is_some());
        assert!(helper_args(&strings(&ps[..5])).is_none(), "another format");
        assert!(
            helper_args(&strings(&["ps", "--filter", "label=x", "--format", "{{.Names}}"])).is_none(),
            "running only"
        );
    }

    #[test]
    fn the_socket_is_used_only_where_the_cli_would_use_a_local_one() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        std::fs::write(&socket, "").unwrap();
        let host = format!("unix://{}", socket.display());
        let with = |pairs: Vec<(&'static str, String)>| {
            move |k: &str| pairs.iter().find(|(key, _)| *key == k).map(|(_, v)| v.clone())
        };
        let home = dir.path().display().to_string();
        assert_eq!(local_socket(&with(vec![("DOCKER_HOST", host.clone()), ("HOME", home.clone())])), Some(socket));
        assert_eq!(local_socket(&with(vec![("DOCKER_HOST", "tcp://10.0.0.1:2376".into())])), None);
        assert_eq!(local_socket(&with(vec![("DOCKER_HOST", host.clone()), ("DOCKER_CONTEXT", "remote".into())])), None);
        assert_eq!(local_socket(&with(vec![("DOCKER_HOST", host.clone()), ("KINDLOAD_DOCKER_CLI", "1".into())])), None);
        assert_eq!(local_socket(&with(vec![("DOCKER_HOST", "unix:///nowhere/docker.sock".into())])), None);
        std::fs::create_dir_all(dir.path().join(".docker")).unwrap();
        std::fs::write(dir.path().join(".docker/config.json"), r#"{"currentContext":"colima"}"#).unwrap();
        assert_eq!(local_socket(&with(vec![("HOME", home)])), None, "a context of the user's choosing");
    }

    #[test]
    fn an_unreachable_daemon_is_told_in_the_clis_words() {
        let socket = std::path::Path::new("/var/run/docker.sock");
        let denied = unreachable(socket, &io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(denied.starts_with(
            "permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock:"
        ));
        let refused = unreachable(socket, &io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(
            refused,
            "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"
        );
    }

    #[test]
    fn frames_go_to_their_stream_whole_and_in_order() {
        let mut wire = Vec::new();
        for (kind, text) in [(1u8, "@@kindload ready 0\n"), (2, "warning\n"), (1, "more\n")] {
            wire.extend_from_slice(&[kind, 0, 0, 0]);
            wire.extend_from_slice(&(text.len() as u32).to_be_bytes());
            wire.extend_from_slice(text.as_bytes());
        }
        let big = vec![7u8; 200 << 10];
        wire.extend_from_slice(&[1, 0, 0, 0]);
        wire.extend_from_slice(&(big.len() as u32).to_be_bytes());
        wire.extend_from_slice(&big);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        demux(&wire[..], &mut out, &mut err).unwrap();
        assert_eq!(&out[..23], b"@@kindload ready 0\nmore");
        assert_eq!(out.len(), 24 + big.len());
        assert_eq!(err, b"warning\n");
        let cut = &wire[..wire.len() - 10];
        assert!(demux(cut, &mut Vec::new(), &mut Vec::new()).is_err(), "a frame cut short is an error");
    }

    /// A response written to one end of a socket pair, read from the other.
    fn respond(raw: &'static [u8]) -> Response {
        let (mut ours, theirs) = UnixStream::pair().unwrap();
        std::thread::spawn(move || {
            ours.write_all(raw).unwrap();
        });
        Response::read(theirs).unwrap()
    }

    #[test]
    fn bodies_are_read_as_their_headers_frame_them() {
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n";
        let mut text = String::new();
        respond(chunked).body().read_to_string(&mut text).unwrap();
        assert_eq!(text, "hello world");
        let sized = b"HTTP/1.1 201 Created\r\nContent-Length: 9\r\n\r\n{\"Id\":7}\n";
        assert_eq!(respond(sized).json().ok().unwrap()["Id"], 7);
        let refused =
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 41\r\n\r\n{\"message\":\"No such container: kind-x\"}\n\n";
        match respond(refused).json() {
            Err(Failure::Daemon(message)) => assert_eq!(message, "No such container: kind-x"),
            _ => panic!("a 404 is the daemon's error"),
        }
        let upgraded = respond(
            b"HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n\x01\x00\x00\x00\x00\x00\x00\x02ok",
        );
        assert_eq!(upgraded.status, 101);
        let (reader, _) = upgraded.into_parts();
        let mut out = Vec::new();
        demux(reader, &mut out, &mut Vec::new()).unwrap();
        assert_eq!(out, b"ok", "bytes read with the head are not lost");
    }
}
