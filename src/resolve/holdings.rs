//! What a node holds, read once per run in one `exec`: its containerd facts, image
//! records, content blobs, unpacked snapshots, and (where crictl exists) what CRI says
//! about the names being loaded. Plan, transfer and verify all read this.

use std::collections::{HashMap, HashSet};

use crate::exec::{ExecError, Runner};
use crate::resolve::provider::Provider;
use crate::resolve::records::{parse_ctr_images, CtrImage};

/// The survey run on each node. Fixed text: the names to ask crictl about arrive as
/// positional arguments, never inside the script. Each section is printed as
/// `@@kindload <name> <exit status>` followed by the command's output (stdout and stderr;
/// stdout alone for crictl's JSON). A light survey reads what deciding and verifying a
/// load needs (image records, CRI's answers, the platform); a full one adds containerd's
/// version and config, and the content and snapshots a transfer is planned with. Registry
/// hosts asked about (`localhost:5001`, ...) add, from the hosts directory the registry
/// `config_path` in containerd's config.toml names (where kind sets it; read directly, as
/// `containerd config dump` costs a tenth of a second), each host's `hosts.toml` and
/// kindload's CA file.
pub const SURVEY: &str = r#"s() { n=$1; shift; o=$("$@" 2>&1); r=$?; printf '@@kindload %s %s\n%s\n' "$n" "$r" "$o"; }
j() { n=$1; shift; o=$("$@" 2>/dev/null); r=$?; printf '@@kindload %s %s\n%s\n' "$n" "$r" "$o"; }
depth=$1; nhosts=$2; shift 2
if [ "$nhosts" -gt 0 ]; then
  dir=$(sed -n "s/^[[:space:]]*config_path[[:space:]]*=[[:space:]]*[\"']\([^\"':]*\).*/\1/p" /etc/containerd/config.toml 2>/dev/null | head -n 1)
  printf '@@kindload hosts-dir 0\n%s\n' "$dir"
  while [ "$nhosts" -gt 0 ]; do
    nhosts=$((nhosts - 1)); h=$1; shift
    if [ -n "$dir" ]; then s "hosts:$h" cat "$dir/$h/hosts.toml"; s "ca:$h" cat "$dir/$h/kindload-ca.crt"; fi
  done
fi
s arch uname -m
if command -v crictl >/dev/null 2>&1; then
  printf '@@kindload crictl 0\n'
  for name in "$@"; do j "inspecti:$name" crictl inspecti -o json "$name"; done
fi
s images ctr --namespace=k8s.io images ls
[ "$depth" = full ] || exit 0
s version containerd --version
cfg=$(containerd config dump 2>&1); r=$?; printf '@@kindload config %s\n%s\n' "$r" "$cfg"
s content ctr --namespace=k8s.io content ls
for sn in $( (echo overlayfs; printf '%s\n' "$cfg" | sed -n "s/^[[:space:]]*snapshotter[[:space:]]*=[[:space:]]*[\"']\([A-Za-z0-9._-]*\)[\"'].*/\1/p") | sort -u); do
  s "snapshots:$sn" ctr --namespace=k8s.io snapshots --snapshotter "$sn" ls
done
"#;

/// How much a survey reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Image records, CRI's answers about the names, the platform.
    Light,
    /// Also containerd's version and config, content blobs and snapshots.
    Full,
}

/// The argv that runs the survey inside a node: the depth, the registry hosts to read, and
/// the image names to ask crictl about, all as arguments.
pub fn survey_argv(depth: Depth, hosts: &[String], names: &[String]) -> Vec<String> {
    let depth = match depth {
        Depth::Light => "light",
        Depth::Full => "full",
    };
    let mut argv: Vec<String> = vec!["sh".into(), "-c".into(), SURVEY.into(), "kindload-survey".into(), depth.into()];
    argv.push(hosts.len().to_string());
    argv.extend(hosts.iter().cloned());
    argv.extend(names.iter().cloned());
    argv
}

pub fn list_images_argv() -> [&'static str; 4] {
    ["ctr", "--namespace=k8s.io", "images", "ls"]
}

/// The node's image records now: what verification reads again after a load, rather than
/// trusting what the load did.
pub fn list_images(runner: &dyn Runner, provider: Provider, node: &str) -> Result<Vec<CtrImage>, ExecError> {
    Ok(parse_ctr_images(&runner.stdout(&provider.exec(node, &list_images_argv()))?))
}

/// One section of the survey's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub status: i32,
    pub body: String,
}

impl Section {
    pub fn ok(&self) -> bool {
        self.status == 0
    }
}

pub fn parse_survey(stdout: &str) -> Vec<Section> {
    let mut sections: Vec<Section> = Vec::new();
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("@@kindload ") {
            let (name, status) = rest.rsplit_once(' ').unwrap_or((rest, "-1"));
            sections.push(Section {
                name: name.to_string(),
                status: status.parse().unwrap_or(-1),
                body: String::new(),
            });
        } else if let Some(last) = sections.last_mut() {
            last.body.push_str(line);
            last.body.push('\n');
        }
    }
    sections
}

pub fn section<'a>(sections: &'a [Section], name: &str) -> Option<&'a Section> {
    sections.iter().find(|s| s.name == name)
}

/// What a node's containerd holds in the `k8s.io` namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holdings {
    pub images: Vec<CtrImage>,
    /// Content blobs: digest → size in bytes (as precise as ctr prints it).
    pub blobs: HashMap<String, u64>,
    /// Snapshot keys of the CRI snapshotter (committed layers are keyed by chain id).
    pub snapshots: HashSet<String>,
    /// Blobs and snapshots were read (a full survey); else only the image records.
    pub complete: bool,
}

impl Holdings {
    /// From the survey, for `snapshotter`. A listing that failed is an error naming it.
    pub fn from_survey(sections: &[Section], snapshotter: &str) -> Result<Holdings, String> {
        let read = |name: &str| -> Result<&str, String> {
            match section(sections, name) {
                Some(s) if s.ok() => Ok(s.body.as_str()),
                Some(s) => Err(format!("`{name}` listing failed: {}", s.body.trim())),
                None => Err(format!("the node's survey printed no `{name}` listing")),
            }
        };
        let Some(content) = section(sections, "content") else {
            return Ok(Holdings { images: parse_ctr_images(read("images")?), ..Default::default() });
        };
        Ok(Holdings {
            complete: content.ok(),
            images: parse_ctr_images(read("images")?),
            blobs: parse_content(read("content")?),
            // A snapshotter that cannot be listed holds nothing kindload can count on;
            // the import says what is wrong with it.
            snapshots: read(&format!("snapshots:{snapshotter}")).map(parse_snapshot_keys).unwrap_or_default(),
        })
    }
}

/// `ctr content ls`: `DIGEST SIZE AGE LABELS`, sizes in decimal units (`1.571kB`, `3.002MB`).
pub fn parse_content(text: &str) -> HashMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let digest = fields.next().filter(|d| d.starts_with("sha256:"))?;
            Some((digest.to_string(), fields.next().and_then(parse_human_size).unwrap_or(0)))
        })
        .collect()
}

fn parse_human_size(text: &str) -> Option<u64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let scale: f64 = match unit {
        "B" => 1.0,
        "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        _ => return None,
    };
    Some((number.parse::<f64>().ok()? * scale) as u64)
}

/// `ctr snapshots ls`: `KEY PARENT KIND`; only committed snapshots are layers.
pub fn parse_snapshot_keys(text: &str) -> HashSet<String> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.last() == Some(&"Committed")).then(|| fields[0].to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SURVEY_OUTPUT: &str = "@@kindload version 0\ncontainerd github.com/containerd/containerd/v2 2.1.9+unknown\n\
@@kindload config 0\nversion = 3\n\
@@kindload images 0\nREF TYPE DIGEST SIZE PLATFORMS LABELS\n\
@@kindload content 0\nDIGEST\tSIZE\tAGE\tLABELS\nsha256:0c30010fc17737e2299eecaf3380ba46359bd74874733c0736803efc35b733f1\t3.002MB\tLess than a second\t-\n\
@@kindload snapshots:overlayfs 0\nKEY                                                                     PARENT                                                                  KIND      \n\
sha256:4909955fa8b1d3007a29981eb31d23c85fde54a27e118350dbfc4ae7d1adca8a sha256:9a695234dd2c5bbbcee2dc7d5c0d76629f325c7ae0d14502a6955b7f4e112d18 Committed \n\
sha256:9a695234dd2c5bbbcee2dc7d5c0d76629f325c7ae0d14502a6955b7f4e112d18                                                                         Committed \n\
k8s.io/5/abc sha256:9a695234dd2c5bbbcee2dc7d5c0d76629f325c7ae0d14502a6955b7f4e112d18 Active \n\
@@kindload snapshots:native 1\nctr: snapshotter not loaded: native: invalid argument\n";

    #[test]
    fn survey_sections_and_holdings() {
        let sections = parse_survey(SURVEY_OUTPUT);
        assert_eq!(sections.len(), 6);
        assert_eq!(section(&sections, "config").unwrap().body, "version = 3\n");
        let holds = Holdings::from_survey(&sections, "overlayfs").unwrap();
        assert!(holds.complete);
        assert_eq!(holds.blobs.len(), 1);
        assert_eq!(holds.blobs["sha256:0c30010fc17737e2299eecaf3380ba46359bd74874733c0736803efc35b733f1"], 3_002_000);
        assert_eq!(holds.snapshots.len(), 2, "active snapshots are not layers");
        assert!(Holdings::from_survey(&sections, "native").unwrap().snapshots.is_empty());
        let without_images: Vec<Section> = sections.iter().filter(|s| s.name != "images").cloned().collect();
        assert!(Holdings::from_survey(&without_images, "overlayfs").unwrap_err().contains("no `images` listing"));
        let light: Vec<Section> = sections.iter().filter(|s| s.name == "images").cloned().collect();
        let holds = Holdings::from_survey(&light, "overlayfs").unwrap();
        assert!(!holds.complete && holds.blobs.is_empty());
    }

    #[test]
    fn names_are_arguments_not_script() {
        let argv = survey_argv(Depth::Light, &[], &["docker.io/library/app:dev;rm -rf /".to_string()]);
        assert_eq!(argv[2], SURVEY);
        assert_eq!(argv[4..], ["light", "0", "docker.io/library/app:dev;rm -rf /"]);
        let argv = survey_argv(Depth::Light, &["localhost:5001".into(), "r:5000".into()], &["app".into()]);
        assert_eq!(argv[4..], ["light", "2", "localhost:5001", "r:5000", "app"]);
    }
}
