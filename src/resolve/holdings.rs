//! What a node holds, read once per run in one `exec`: its containerd facts, image
//! records, content blobs, unpacked snapshots, and (where crictl exists) what CRI says
//! about the names being loaded. Plan, transfer and verify all read this.

use std::collections::{HashMap, HashSet};

use crate::exec::{ExecError, Runner};
use crate::resolve::provider::Provider;
use crate::resolve::records::{parse_ctr_images, CtrImage};

/// The survey as shell functions: `survey DEPTH NHOSTS HOSTS... NAMES...`. A macro, so that
/// scripts which survey and then do more (a node session) are built from the same text.
macro_rules! survey_functions {
    () => {
        r#"s() { n=$1; shift; o=$("$@" 2>&1); r=$?; printf '@@kindload %s %s\n%s\n' "$n" "$r" "$o"; }
j() { n=$1; shift; o=$("$@" 2>/dev/null); r=$?; printf '@@kindload %s %s\n%s\n' "$n" "$r" "$o"; }
records() {
  n=$#
  for a; do
    case $a in sha256:*) set -- "$@" "name==\"$a\"" "target.digest==$a" ;; *) set -- "$@" "name==\"$a\"" ;; esac
  done
  shift "$n"
  first=$(ctr --namespace=k8s.io images ls "$@" 'name~="^import-"' 2>&1) || { printf '@@kindload images 1\n%s\n' "$first"; return 0; }
  set --
  for t in $(printf '%s\n' "$first" | while read -r _ _ d _; do case $d in sha256:*) echo "$d" ;; esac; done); do
    set -- "$@" "target.digest==$t"
  done
  if [ $# -eq 0 ]; then printf '@@kindload images 0\n%s\n' "$first"; return 0; fi
  s images ctr --namespace=k8s.io images ls "$@"
}
facts() {
kf=
for kp in /proc/[0-9]*; do
  kc=; read -r kc 2>/dev/null < "$kp/comm"
  [ "$kc" = containerd ] || continue
  read -r kst 2>/dev/null < "$kp/stat"; set -- $kst; kf=/run/kindload/facts-${kp#/proc/}-${22}; break
done
if [ -n "$kf" ] && [ -f "$kf.config" ]; then
  ver=$(cat "$kf.version"); vr=0; cfg=$(cat "$kf.config"); r=0
else
  ver=$(containerd --version 2>&1); vr=$?
  cfg=$(containerd config dump 2>&1); r=$?
  if [ -n "$kf" ] && [ "$vr$r" = 00 ] && mkdir -p /run/kindload 2>/dev/null; then
    printf '%s\n' "$ver" > "$kf.version.$$" && mv "$kf.version.$$" "$kf.version"
    printf '%s\n' "$cfg" > "$kf.config.$$" && mv "$kf.config.$$" "$kf.config"
  fi
fi
printf '@@kindload version %s\n%s\n' "$vr" "$ver"
printf '@@kindload config %s\n%s\n' "$r" "$cfg"
}
survey() {
depth=$1; nhosts=$2; shift 2
if [ "$nhosts" -gt 0 ]; then
  dir=$(sed -n "s/^[[:space:]]*config_path[[:space:]]*=[[:space:]]*[\"']\([^\"':]*\).*/\1/p" /etc/containerd/config.toml 2>/dev/null | head -n 1)
  printf '@@kindload hosts-dir 0\n%s\n' "$dir"
  while [ "$nhosts" -gt 0 ]; do
    nhosts=$((nhosts - 1)); h=$1; shift
    if [ -n "$dir" ]; then s "hosts:$h" cat "$dir/$h/hosts.toml"; s "ca:$h" cat "$dir/$h/kindload-ca.crt"; fi
  done
fi
nrec=$1; shift; recs=
while [ "$nrec" -gt 0 ]; do nrec=$((nrec - 1)); recs="$recs $1"; shift; done
if [ "$depth" != holdings ]; then
s arch uname -m
if command -v crictl >/dev/null 2>&1; then
  printf '@@kindload crictl 0\n'
  for name in "$@"; do j "inspecti:$name" crictl inspecti -o json "$name"; done
fi
if [ -n "$recs$*" ]; then set -f; records $recs "$@"; set +f; else s images ctr --namespace=k8s.io images ls; fi
fi
[ "$depth" = light ] && return 0
facts
s content ctr --namespace=k8s.io content ls
for sn in $( (echo overlayfs; printf '%s\n' "$cfg" | sed -n "s/^[[:space:]]*snapshotter[[:space:]]*=[[:space:]]*[\"']\([A-Za-z0-9._-]*\)[\"'].*/\1/p") | sort -u); do
  s "snapshots:$sn" ctr --namespace=k8s.io snapshots --snapshotter "$sn" ls
done
}
"#
    };
}
pub(crate) use survey_functions;

/// containerd's version and config (`facts`) are read once per containerd process: they are
/// kept in the node's `/run/kindload/facts-<pid>-<start time>.*` (a containerd started again
/// reads its config again, and has another pid or start time), as `containerd config dump`
/// costs a tenth of a second.
///
/// The survey run on each node. Fixed text: the names to ask crictl about arrive as
/// positional arguments, never inside the script. Each section is printed as
/// `@@kindload <name> <exit status>` followed by the command's output (stdout and stderr;
/// stdout alone for crictl's JSON). A light survey reads what deciding and verifying a
/// load needs (image records, CRI's answers, the platform); a full one adds containerd's
/// version and config, and the content and snapshots a transfer is planned with. Registry
/// hosts asked about (`localhost:5001`, ...) add, from the hosts directory the registry
/// `config_path` in containerd's config.toml names (where kind sets it; read directly, as
/// `containerd config dump` costs a tenth of a second), each host's `hosts.toml` and
/// kindload's CA file. Listing every record costs containerd a walk of each image's
/// content, so when names or records (digests, registry names) are asked about, the listing
/// holds only what a load reads: those records (a digest also as a target), `import-*`
/// leftovers, and every record naming the same content as them.
pub const SURVEY: &str = concat!(survey_functions!(), "survey \"$@\"\n");

/// The line a node session prints when it waits for work.
pub const READY: &str = "@@kindload ready 0";

/// How much a survey reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Image records, CRI's answers about the names, the platform.
    Light,
    /// Also containerd's version and config, content blobs and snapshots.
    Full,
    /// Only containerd's version and config, content blobs and snapshots: what a transfer
    /// is planned with, read again after a light survey (see `transfer::lock`).
    Holdings,
}

/// What a survey asks about, besides what every survey reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct Asked<'a> {
    /// Registry hosts whose `hosts.toml` and CA to read.
    pub hosts: &'a [String],
    /// Image names: CRI is asked about them, and their records listed.
    pub names: &'a [String],
    /// More records to list: digests (as names and as targets) and registry names.
    pub records: &'a [String],
}

impl Asked<'_> {
    /// The survey's arguments after the depth: each list counted, but the names, which end it.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![self.hosts.len().to_string()];
        args.extend(self.hosts.iter().cloned());
        args.push(self.records.len().to_string());
        args.extend(self.records.iter().cloned());
        args.extend(self.names.iter().cloned());
        args
    }
}

/// The argv that runs the survey inside a node: the depth and what is asked, as arguments.
pub fn survey_argv(depth: Depth, asked: &Asked) -> Vec<String> {
    let depth = match depth {
        Depth::Light => "light",
        Depth::Full => "full",
        Depth::Holdings => "holdings",
    };
    let mut argv: Vec<String> = vec!["sh".into(), "-c".into(), SURVEY.into(), "kindload-survey".into(), depth.into()];
    argv.extend(asked.args());
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
        Holdings::read(sections, snapshotter, None)
    }

    /// From a survey of holdings only (no records): the records are `images`, read before.
    pub fn with_records(sections: &[Section], snapshotter: &str, images: Vec<CtrImage>) -> Result<Holdings, String> {
        Holdings::read(sections, snapshotter, Some(images))
    }

    fn read(sections: &[Section], snapshotter: &str, images: Option<Vec<CtrImage>>) -> Result<Holdings, String> {
        let read = |name: &str| -> Result<&str, String> {
            match section(sections, name) {
                Some(s) if s.ok() => Ok(s.body.as_str()),
                Some(s) => Err(format!("`{name}` listing failed: {}", s.body.trim())),
                None => Err(format!("the node's survey printed no `{name}` listing")),
            }
        };
        let images = match images {
            Some(images) => images,
            None => parse_ctr_images(read("images")?),
        };
        let Some(content) = section(sections, "content") else {
            return Ok(Holdings { images, ..Default::default() });
        };
        Ok(Holdings {
            complete: content.ok(),
            images,
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
    fn the_listing_asks_for_the_records_then_for_all_naming_their_content() {
        // A stand-in ctr, as a shell function, that prints its filters to fd 3 (the listing's
        // own stderr is captured) and, for the first listing, two records.
        let script = concat!(
            "exec 3>&2\nctr() { shift 3; for a; do echo \"arg $a\" >&3; done\n",
            "echo 'REF TYPE DIGEST SIZE PLATFORMS LABELS'\n",
            "case $1 in target*) echo 'other:v0 t sha256:old 1 linux/amd64 -' ;;\n",
            "*) echo 'docker.io/library/app:v1 t sha256:old 1 linux/amd64 -'; echo 'sha256:cfg t sha256:new 1 linux/amd64 -' ;; esac; }\n",
            survey_functions!(),
            "records \"$@\"\n"
        );
        let out = std::process::Command::new("sh")
            .args(["-c", script, "test", "sha256:cfg", "docker.io/library/app:v1"])
            .output()
            .unwrap();
        let asked: Vec<String> = String::from_utf8_lossy(&out.stderr).lines().map(str::to_string).collect();
        assert_eq!(
            asked,
            [
                "arg name==\"sha256:cfg\"",
                "arg target.digest==sha256:cfg",
                "arg name==\"docker.io/library/app:v1\"",
                "arg name~=\"^import-\"",
                "arg target.digest==sha256:old",
                "arg target.digest==sha256:new",
            ]
        );
        let sections = parse_survey(&String::from_utf8_lossy(&out.stdout));
        let images = section(&sections, "images").unwrap();
        assert!(images.ok() && images.body.contains("other:v0"), "the second listing is the one printed");
    }

    #[test]
    fn names_are_arguments_not_script() {
        let names = ["docker.io/library/app:dev;rm -rf /".to_string()];
        let argv = survey_argv(Depth::Light, &Asked { names: &names, ..Default::default() });
        assert_eq!(argv[2], SURVEY);
        assert_eq!(argv[4..], ["light", "0", "0", "docker.io/library/app:dev;rm -rf /"]);
        let (hosts, names, records) = (["localhost:5001".into(), "r:5000".into()], ["app".into()], ["sha256:c".into()]);
        let argv = survey_argv(Depth::Light, &Asked { hosts: &hosts, names: &names, records: &records });
        assert_eq!(argv[4..], ["light", "2", "localhost:5001", "r:5000", "1", "sha256:c", "app"]);
    }
}
