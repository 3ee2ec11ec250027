//! The registry's container on the provider that hosts the nodes: found by name, told
//! apart from other containers by kindload's label, attached to the nodes' network.

use serde_json::Value;

use crate::exec::{Cmd, Runner};
use crate::resolve::provider::Provider;

pub const LABEL: &str = "io.kindload.registry";
pub const PORT_LABEL: &str = "io.kindload.registry.port";

/// A container as `inspect` tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub name: String,
    pub running: bool,
    pub state: String,
    /// kindload's label: the registry name, when kindload made it.
    pub ours: bool,
    pub port: Option<u16>,
    pub networks: Vec<String>,
    pub image: String,
    /// When it was last started, in milliseconds since the epoch (None when never started).
    pub started_ms: Option<i64>,
}

/// How long a registry may take from its start to answering: one started less than this
/// ago that does not answer yet is given time.
pub const START_GRACE_MS: i64 = 30_000;

impl Found {
    /// Whether the container is running and was started less than START_GRACE_MS ago (by a
    /// restart, a stop and start, or an `up` running beside us).
    pub fn just_started(&self) -> bool {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        self.running && self.started_ms.is_some_and(|at| (0..START_GRACE_MS).contains(&(now - at)))
    }
}

/// The container named `name`, or None when there is none.
pub fn find(runner: &dyn Runner, provider: Provider, name: &str) -> Option<Found> {
    let out = runner.output(&Cmd::new(provider.name()).args(["container", "inspect", name])).ok()?;
    if !out.success() {
        return None;
    }
    parse_inspect(&out.stdout).into_iter().next()
}

/// Every registry container kindload made on `provider`.
pub fn find_ours(runner: &dyn Runner, provider: Provider) -> Vec<Found> {
    let names = provider.labelled(runner, LABEL).unwrap_or_default();
    if names.is_empty() {
        return Vec::new();
    }
    let out = runner.output(&Cmd::new(provider.name()).args(["container", "inspect"]).args(&names));
    out.ok()
        .filter(|o| o.success())
        .map(|o| parse_inspect(&o.stdout))
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f.ours)
        .collect()
}

pub fn parse_inspect(json: &str) -> Vec<Found> {
    let items: Vec<Value> = serde_json::from_str(json.trim()).unwrap_or_default();
    items
        .iter()
        .map(|item| {
            let label = |key: &str| {
                item.pointer("/Config/Labels").and_then(|l| l.get(key)).and_then(Value::as_str).map(str::to_string)
            };
            Found {
                name: item.get("Name").and_then(Value::as_str).unwrap_or("").trim_start_matches('/').to_string(),
                running: item.pointer("/State/Running").and_then(Value::as_bool).unwrap_or(false),
                state: item.pointer("/State/Status").and_then(Value::as_str).unwrap_or("unknown").to_string(),
                ours: label(LABEL).is_some(),
                port: label(PORT_LABEL).and_then(|p| p.parse().ok()),
                networks: networks(item),
                image: item.pointer("/Config/Image").and_then(Value::as_str).unwrap_or("").to_string(),
                started_ms: item.pointer("/State/StartedAt").and_then(Value::as_str).and_then(rfc3339_ms),
            }
        })
        .collect()
}

/// `2026-12-07T09:27:17.641579378Z` (or with a `+01:00` offset), as both engines write
/// `State.StartedAt`, in milliseconds since the epoch. Go's zero time (never started) is None.
pub fn rfc3339_ms(text: &str) -> Option<i64> {
    let (date, rest) = text.split_once('T')?;
    let mut ymd = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (ymd.next()??, ymd.next()??, ymd.next()??);
    let zone_at = rest.find(['Z', '+', '-'])?;
    let (clock, zone) = rest.split_at(zone_at);
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut parts = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (parts.next()??, parts.next()??, parts.next()??);
    let millis = format!("{fraction:0<3}").get(..3)?.parse::<i64>().ok()?;
    let offset_minutes = match zone {
        "Z" => 0,
        _ => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let (h, m) = zone[1..].split_once(':')?;
            sign * (h.parse::<i64>().ok()? * 60 + m.parse::<i64>().ok()?)
        }
    };
    if year <= 1 || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm), March-based years.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

/// Whether an engine refused to create a container because the name is taken (Docker:
/// `Conflict. The container name "/x" is already in use`; Podman: `the container name "x"
/// is already in use`): another `run` got there first.
pub fn name_taken(stderr: &str) -> bool {
    stderr.contains("container name") && stderr.contains("already in use")
}

/// The networks a container is attached to (not `none`/`host`), sorted.
fn networks(item: &Value) -> Vec<String> {
    let mut names: Vec<String> = item
        .pointer("/NetworkSettings/Networks")
        .and_then(Value::as_object)
        .map(|m| m.keys().filter(|k| !matches!(k.as_str(), "none" | "host" | "")).cloned().collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// The network a node container is on: `kind` when it is one of them, else the first.
pub fn node_network(runner: &dyn Runner, provider: Provider, node: &str) -> Result<Option<String>, String> {
    let out = runner.run(&Cmd::new(provider.name()).args(["container", "inspect", node])).map_err(|e| e.to_string())?;
    let found = parse_inspect(&out.stdout);
    let nets = found.first().map(|f| f.networks.clone()).unwrap_or_default();
    Ok(nets.iter().find(|n| *n == "kind").or_else(|| nets.first()).cloned())
}

/// What `registry up` runs.
#[derive(Debug, Clone)]
pub struct RunSpec<'a> {
    pub name: &'a str,
    pub port: u16,
    pub image: &'a str,
    pub network: &'a str,
    pub certs_dir: &'a str,
    pub volume: String,
}

pub fn run_cmd(provider: Provider, spec: &RunSpec) -> Cmd {
    let port = super::CONTAINER_PORT;
    Cmd::new(provider.name())
        .args(["run", "--detach", "--name", spec.name, "--hostname", spec.name])
        .args(["--restart", "always"])
        .args(["--label", &format!("{LABEL}={}", spec.name)])
        .args(["--label", &format!("{PORT_LABEL}={}", spec.port)])
        .args(["--network", spec.network])
        .args(["--publish", &format!("127.0.0.1:{}:{port}", spec.port)])
        .args(["--volume", &format!("{}:/certs:ro", spec.certs_dir)])
        .args(["--volume", &format!("{}:/var/lib/registry", spec.volume)])
        .args(["--env", &format!("REGISTRY_HTTP_ADDR=0.0.0.0:{port}")])
        .args(["--env", "REGISTRY_HTTP_TLS_CERTIFICATE=/certs/tls.crt"])
        .args(["--env", "REGISTRY_HTTP_TLS_KEY=/certs/tls.key"])
        .args(["--env", "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=/var/lib/registry"])
        .args(["--env", "REGISTRY_STORAGE_DELETE_ENABLED=true"])
        .arg(spec.image)
}

/// The named volume holding the registry's images.
pub fn volume_name(name: &str) -> String {
    format!("{name}-data")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::engine::EngineKind;

    #[test]
    fn inspect_tells_ours_port_and_networks() {
        let json = r#"[{"Name":"/kindload-registry","Config":{"Image":"registry:2","Labels":{"io.kindload.registry":"kindload-registry","io.kindload.registry.port":"5001"}},
            "State":{"Running":true,"Status":"running"},"NetworkSettings":{"Networks":{"kind":{},"none":{}}}}]"#;
        let found = &parse_inspect(json)[0];
        assert!(found.ours && found.running);
        assert_eq!(found.port, Some(5001));
        assert_eq!(found.networks, ["kind"]);
        let other = r#"[{"Name":"/web","Config":{"Labels":null},"State":{"Running":false,"Status":"exited"},"NetworkSettings":{"Networks":{"none":{}}}}]"#;
        let found = &parse_inspect(other)[0];
        assert!(!found.ours && !found.running && found.networks.is_empty());
        assert_eq!(found.started_ms, None);
    }

    #[test]
    fn start_times_read_as_both_engines_write_them() {
        // `date -u -d 2026-12-07T09:27:17Z +%s` = 1796635637
        assert_eq!(rfc3339_ms("2026-12-07T09:27:17.641579378Z"), Some(1_796_635_637_641));
        assert_eq!(rfc3339_ms("2026-12-07T10:27:17.6+01:00"), Some(1_796_635_637_600));
        assert_eq!(rfc3339_ms("2026-12-07T04:27:17-05:00"), Some(1_796_635_637_000));
        assert_eq!(rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339_ms("2000-02-29T00:00:00Z"), Some(951_782_400_000));
        assert_eq!(rfc3339_ms("0001-01-01T00:00:00Z"), None, "Go's zero time: never started");
        assert_eq!(rfc3339_ms("yesterday"), None);
        let json = r#"[{"Name":"/r","Config":{},"State":{"Running":true,"Status":"running","StartedAt":"1970-01-01T00:00:01.5Z"}}]"#;
        assert_eq!(parse_inspect(json)[0].started_ms, Some(1500));
    }

    #[test]
    fn only_a_running_registry_started_moments_ago_is_just_started() {
        let json = r#"[{"Name":"/r","Config":{},"State":{"Running":true,"Status":"running","StartedAt":"2020-01-01T00:00:00Z"}}]"#;
        let mut found = parse_inspect(json).remove(0);
        assert!(!found.just_started(), "started long ago");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        found.started_ms = Some(now - 2_000);
        assert!(found.just_started());
        found.running = false;
        assert!(!found.just_started(), "a stopped registry is not waited for");
    }

    #[test]
    fn a_taken_name_is_told_apart_from_a_taken_port() {
        assert!(name_taken(
            "docker: Error response from daemon: Conflict. The container name \"/kindload-registry\" is already in use by container \"0f3\". You have to remove (or rename) that container to be able to reuse that name."
        ));
        assert!(name_taken(
            "Error: creating container storage: the container name \"kindload-registry\" is already in use by 8c1. You have to remove that container to be able to reuse that name: that name is already in use"
        ));
        assert!(!name_taken(
            "Error: cannot listen on the TCP port: listen tcp4 127.0.0.1:5001: bind: address already in use"
        ));
        assert!(!name_taken("Bind for 127.0.0.1:5001 failed: port is already allocated"));
    }

    #[test]
    fn runs_with_tls_on_the_nodes_network_published_on_loopback() {
        let spec = RunSpec {
            name: "kindload-registry",
            port: 5001,
            image: "registry:2",
            network: "kind",
            certs_dir: "/s/registry/kindload-registry",
            volume: volume_name("kindload-registry"),
        };
        let argv = run_cmd(Provider::new(EngineKind::Docker), &spec).argv().join(" ");
        assert!(argv.contains("--network kind --publish 127.0.0.1:5001:5000"), "{argv}");
        assert!(argv.contains("--volume /s/registry/kindload-registry:/certs:ro"), "{argv}");
        assert!(argv.contains("--env REGISTRY_HTTP_TLS_KEY=/certs/tls.key"), "{argv}");
        assert!(argv.ends_with("registry:2"), "{argv}");
        assert!(!argv.contains("--privileged"));
    }
}
