//! containerd's view of the registry: `hosts.toml` files under the node's `config_path`
//! (read on every pull, no restart), mapping `localhost:PORT` to the registry's container
//! name and trusting kindload's CA. Written through `<provider> exec -i`, content on stdin,
//! paths as arguments: nothing the user typed is ever inside a shell script.

use crate::exec::Runner;
use crate::resolve::node::Node;
use crate::resolve::provider::Provider;

/// First line of every file kindload writes, so `down` removes only its own.
pub const MARKER: &str = "# written by kindload registry";
pub const CA_FILE: &str = "kindload-ca.crt";

/// The hosts directory containerd reads: the first entry of `config_path`.
pub fn hosts_dir(config_path: &str) -> &str {
    config_path.split(':').next().unwrap_or(config_path).trim_end_matches('/')
}

/// One file to have on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub dir: String,
    pub path: String,
    pub content: String,
}

/// What the node must hold for `localhost:<port>` and `<name>:5000` to reach the registry:
/// per host, a `hosts.toml` and the CA it names.
pub fn wanted(config_path: &str, name: &str, port: u16, ca_pem: &str) -> Vec<File> {
    let root = hosts_dir(config_path);
    let server = format!("https://{name}:{}", super::CONTAINER_PORT);
    let mut files = Vec::new();
    for host in [format!("localhost:{port}"), format!("{name}:{}", super::CONTAINER_PORT)] {
        let dir = format!("{root}/{host}");
        let ca = format!("{dir}/{CA_FILE}");
        let toml = format!(
            "{MARKER} {name}\nserver = \"{server}\"\n\n[host.\"{server}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = \"{ca}\"\n"
        );
        files.push(File { dir: dir.clone(), path: format!("{dir}/hosts.toml"), content: toml });
        files.push(File { dir: dir.clone(), path: ca, content: ca_pem.to_string() });
    }
    files
}

/// The directories `wanted` writes (what `down` removes).
pub fn dirs(config_path: &str, name: &str, port: u16) -> Vec<String> {
    let root = hosts_dir(config_path);
    vec![format!("{root}/localhost:{port}"), format!("{root}/{name}:{}", super::CONTAINER_PORT)]
}

const READ: &str = r#"for f; do printf '@@kindload-file %s\n' "$f"; cat "$f" 2>/dev/null; done; exit 0"#;
/// Written aside and renamed over: a pull, or another `up`, never reads a half-written file.
const WRITE: &str = r#"mkdir -p "$1" && cat > "$2.tmp.$$" && mv -f "$2.tmp.$$" "$2""#;
const REMOVE: &str =
    r#"for d; do if grep -qs '^# written by kindload registry' "$d/hosts.toml"; then rm -rf -- "$d"; fi; done"#;

/// Which of `files` the node lacks or holds with other content.
pub fn stale(runner: &dyn Runner, provider: Provider, node: &str, files: &[File]) -> Result<Vec<File>, String> {
    let mut argv = vec!["sh", "-c", READ, "kindload-read"];
    argv.extend(files.iter().map(|f| f.path.as_str()));
    let out = runner.run(&provider.exec(node, &argv)).map_err(|e| e.to_string())?;
    let held = parse_read(&out.stdout);
    Ok(files
        .iter()
        .filter(|f| held.iter().find(|(p, _)| *p == f.path).map(|(_, c)| c.as_str()) != Some(f.content.as_str()))
        .cloned()
        .collect())
}

fn parse_read(stdout: &str) -> Vec<(String, String)> {
    let mut held: Vec<(String, String)> = Vec::new();
    let mut rest = stdout;
    while let Some(start) = rest.find("@@kindload-file ") {
        let after = &rest[start + "@@kindload-file ".len()..];
        let (path, body) = after.split_once('\n').unwrap_or((after, ""));
        let end = body.find("@@kindload-file ").unwrap_or(body.len());
        held.push((path.to_string(), body[..end].to_string()));
        rest = &body[end..];
    }
    held
}

pub fn write(runner: &dyn Runner, provider: Provider, node: &str, file: &File) -> Result<(), String> {
    let cmd = provider
        .exec_stdin(node, &["sh", "-c", WRITE, "kindload-write", &file.dir, &file.path])
        .stdin_bytes(file.content.clone().into_bytes());
    runner.run(&cmd).map(drop).map_err(|e| e.to_string())
}

/// Whether the node holds a `hosts.toml` kindload wrote for registry `name` in any of `dirs`.
pub fn written_for(
    runner: &dyn Runner,
    provider: Provider,
    node: &str,
    dirs: &[String],
    name: &str,
) -> Result<bool, String> {
    let mut argv = vec!["sh", "-c", READ, "kindload-read"];
    let paths: Vec<String> = dirs.iter().map(|d| format!("{d}/hosts.toml")).collect();
    argv.extend(paths.iter().map(String::as_str));
    let out = runner.run(&provider.exec(node, &argv)).map_err(|e| e.to_string())?;
    Ok(ours(&parse_read(&out.stdout), name))
}

fn ours(held: &[(String, String)], name: &str) -> bool {
    let first_line = format!("{MARKER} {name}");
    held.iter().any(|(_, content)| content.lines().next() == Some(first_line.as_str()))
}

/// Removes the directories kindload wrote (those whose hosts.toml carries the marker).
pub fn remove(runner: &dyn Runner, provider: Provider, node: &str, dirs: &[String]) -> Result<(), String> {
    let mut argv = vec!["sh", "-c", REMOVE, "kindload-remove"];
    argv.extend(dirs.iter().map(String::as_str));
    runner.run(&provider.exec(node, &argv)).map(drop).map_err(|e| e.to_string())
}

/// The lines to add to a kind cluster config so that its nodes read `hosts.toml` files.
pub fn config_patch(node: &Node) -> String {
    let table = if node.config_version.unwrap_or(2) >= 3 {
        "plugins.\"io.containerd.cri.v1.images\".registry"
    } else {
        "plugins.\"io.containerd.grpc.v1.cri\".registry"
    };
    format!("containerdConfigPatches:\n- |-\n  [{table}]\n    config_path = \"/etc/containerd/certs.d\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localhost_port_resolves_to_the_container_and_trusts_the_ca() {
        let files = wanted("/etc/containerd/certs.d", "kindload-registry", 5001, "PEM");
        assert_eq!(files.len(), 4);
        assert_eq!(files[0].path, "/etc/containerd/certs.d/localhost:5001/hosts.toml");
        assert_eq!(
            files[0].content,
            "# written by kindload registry kindload-registry\nserver = \"https://kindload-registry:5000\"\n\n\
             [host.\"https://kindload-registry:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n  \
             ca = \"/etc/containerd/certs.d/localhost:5001/kindload-ca.crt\"\n"
        );
        let parsed: toml::Table = files[0].content.parse().unwrap();
        assert_eq!(parsed["server"].as_str(), Some("https://kindload-registry:5000"));
        assert_eq!(files[1].content, "PEM");
        assert_eq!(files[2].path, "/etc/containerd/certs.d/kindload-registry:5000/hosts.toml");
        assert_eq!(hosts_dir("/etc/containerd/certs.d:/etc/docker/certs.d"), "/etc/containerd/certs.d");
    }

    #[test]
    fn reads_back_files_with_their_content() {
        let out = "@@kindload-file /a/hosts.toml\nserver = 1\n@@kindload-file /a/ca.crt\n@@kindload-file /b\nx\ny\n";
        let held = parse_read(out);
        assert_eq!(held[0], ("/a/hosts.toml".to_string(), "server = 1\n".to_string()));
        assert_eq!(held[1], ("/a/ca.crt".to_string(), String::new()));
        assert_eq!(held[2], ("/b".to_string(), "x\ny\n".to_string()));
    }

    #[test]
    fn a_hosts_file_is_ours_only_for_the_same_registry() {
        let content = wanted("/c", "reg-a", 5001, "PEM").remove(0).content;
        let held = vec![("/c/localhost:5001/hosts.toml".to_string(), content)];
        assert!(ours(&held, "reg-a"));
        assert!(!ours(&held, "reg"), "another registry's name is a prefix of nothing");
        assert!(!ours(&[("/x".into(), "server = \"https://other\"\n".into())], "reg-a"));
    }
}
