//! Which earlier versions of a repository a node drops after a load (`--keep`): chosen from
//! what the node listed, its records that kindload labelled (with every record naming the
//! same content) and its containers. Only versions kindload loaded are candidates; the
//! newest K of each repository stay, and so does any version a container uses, this run
//! names, or another name (one kindload did not load, or another repository's) refers to.

use std::collections::HashSet;

use crate::resolve::reference::ImageRef;

/// The label kindload puts on each image record it loads: `<Unix milliseconds>:<the record's
/// name>`. The name tells kindload's record from a copy: containerd 1.x's `ctr images tag`
/// copies labels onto the new name, which kindload did not give.
pub const LOADED_LABEL: &str = "io.kindload.loaded";

/// Versions kept per repository when neither `--keep` nor `kindload.yaml` says: the current
/// one and the one a rollback needs.
pub const DEFAULT_KEEP: u32 = 2;

/// How many versions of a repository each node keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The policy is off: nothing older is removed.
    All,
    /// The newest N (at least 1) of the versions kindload loaded.
    Newest(u32),
}

impl Default for Keep {
    fn default() -> Self {
        Keep::Newest(DEFAULT_KEEP)
    }
}

impl Keep {
    /// `all` or a count of at least 1, as `--keep` takes it.
    pub fn parse(text: &str) -> Result<Keep, String> {
        if text == "all" {
            return Ok(Keep::All);
        }
        match text.parse::<u32>() {
            Ok(0) => Err("0 would remove the version just loaded; give 1 or more, or `all`".into()),
            Ok(n) => Ok(Keep::Newest(n)),
            Err(_) => Err(format!("`{text}` is neither a number of versions nor `all`")),
        }
    }

    /// The word for arguments and messages: `all` or the count.
    pub fn word(&self) -> String {
        match self {
            Keep::All => "all".into(),
            Keep::Newest(n) => n.to_string(),
        }
    }
}

/// One row of the node's image listing, with kindload's label when it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    /// The manifest or index digest the name points at.
    pub target: String,
    /// When kindload loaded it under this name (from the label), if kindload did.
    pub loaded: Option<u64>,
}

impl Record {
    /// CRI's `sha256:<id>` records and `import-*` leftovers name no version of their own.
    fn named(&self) -> bool {
        !self.name.starts_with("sha256:") && !self.name.starts_with("import-")
    }
}

/// `ctr -n k8s.io images ls`: REF, DIGEST (third field) and LABELS (last, comma-separated).
pub fn parse_records(table: &str) -> Vec<Record> {
    table
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 5 || fields[0] == "REF" || !fields[2].starts_with("sha256:") {
                return None;
            }
            let loaded = fields[fields.len() - 1].split(',').find_map(|label| {
                let (at, name) = label.strip_prefix(LOADED_LABEL)?.strip_prefix('=')?.split_once(':')?;
                (name == fields[0]).then(|| at.parse().ok())?
            });
            Some(Record { name: fields[0].to_string(), target: fields[2].to_string(), loaded })
        })
        .collect()
}

/// `ctr -n k8s.io containers ls`: the IMAGE column (CONTAINER IMAGE RUNTIME). A container
/// created without an image prints `-` there.
pub fn parse_container_images(table: &str) -> Vec<String> {
    table
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields[..] {
                ["CONTAINER", "IMAGE", ..] => None,
                [_, image, _] | [_, image] if image != "-" => Some(image.to_string()),
                _ => None,
            }
        })
        .collect()
}

/// What to remove from one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Choice {
    /// The names of the versions removed, as the node listed them (the report's).
    pub versions: Vec<String>,
    /// Every record to remove: those names, and CRI's id records of the same content.
    pub records: Vec<String>,
}

/// The versions of `repositories` beyond the newest `keep` that nothing pins, given the
/// node's `records` (every record naming the content of a labelled one), the images its
/// `containers` use, and every name this run loaded (`run_names`). A version is a target;
/// its age is the newest label on a name of it in that repository. Content also named in
/// a repository this run did not load, or by a name kindload did not label, stays.
pub fn choose(
    records: &[Record],
    containers: &[String],
    repositories: &[String],
    run_names: &[String],
    keep: u32,
) -> Choice {
    let repository = |name: &str| ImageRef::parse(name).ok().map(|r| r.repository());
    let in_scope = |r: &Record| repository(&r.name).is_some_and(|repo| repositories.contains(&repo));
    let used: HashSet<String> = containers
        .iter()
        .flat_map(|c| {
            let parsed = ImageRef::parse(c).ok();
            let digest = parsed.as_ref().and_then(|r| r.digest().map(str::to_string));
            [Some(c.clone()), parsed.map(|r| r.normalized()), digest].into_iter().flatten()
        })
        .collect();
    let mut pinned: HashSet<&str> = HashSet::new();
    for r in records {
        let foreign = r.named() && (r.loaded.is_none() || !in_scope(r));
        if foreign || run_names.contains(&r.name) || used.contains(&r.name) || used.contains(&r.target) {
            pinned.insert(&r.target);
        }
    }
    // A version goes only when every repository in scope that has it holds it beyond `keep`.
    let mut kept: HashSet<&str> = HashSet::new();
    let mut beyond: Vec<&str> = Vec::new();
    for repo in repositories {
        let versions = versions(records, repo);
        kept.extend(versions.iter().take(keep as usize).map(|(_, t)| *t));
        beyond.extend(versions.iter().skip(keep as usize).map(|(_, t)| *t));
    }
    let doomed: HashSet<&str> = beyond.into_iter().filter(|t| !kept.contains(t) && !pinned.contains(t)).collect();
    let removed: Vec<&Record> = records.iter().filter(|r| doomed.contains(r.target.as_str())).collect();
    let mut choice = Choice::default();
    for r in removed {
        if !choice.records.contains(&r.name) {
            choice.records.push(r.name.clone());
            if r.named() {
                choice.versions.push(r.name.clone());
            }
        }
    }
    choice
}

/// Whether any of `repositories` holds more than `keep` versions kindload labelled, in
/// `records` that list at least every labelled one: only then can [`choose`] remove any.
pub fn beyond(records: &[Record], repositories: &[String], keep: u32) -> bool {
    repositories.iter().any(|repo| versions(records, repo).len() > keep as usize)
}

/// The versions of `repo` kindload labelled in `records`, newest first: each target once,
/// at the newest label on a name of it.
fn versions<'a>(records: &'a [Record], repo: &str) -> Vec<(u64, &'a str)> {
    let mut versions: Vec<(u64, &str)> = Vec::new();
    for r in records.iter().filter(|r| r.named()) {
        let Some(at) = r.loaded else { continue };
        if ImageRef::parse(&r.name).ok().map(|n| n.repository()).as_deref() != Some(repo) {
            continue;
        }
        match versions.iter_mut().find(|(_, t)| *t == r.target) {
            Some(v) => v.0 = v.0.max(at),
            None => versions.push((at, &r.target)),
        }
    }
    versions.sort_by(|a, b| b.cmp(a));
    versions
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTR_21: &str = include_str!("../../tests/fixtures/containerd-2.1/ctr-images-ls-kindload-versions.txt");
    const CTR_16: &str = include_str!("../../tests/fixtures/containerd-1.6/ctr-images-ls-kindload-versions.txt");
    const CONTAINERS_21: &str = include_str!("../../tests/fixtures/containerd-2.1/ctr-containers-ls.txt");
    const A_ID: &str = "sha256:25df391a9102a1490c3f3117209c6c364a36e02e153084eed799f89225de7f07";
    const B_ID: &str = "sha256:10623161cf304f23e166d48a8d73056ed3634ad373945e09f87bef619af6deb6";
    const APP: &str = "docker.io/probe/app";

    fn record(name: &str, target: &str, loaded: Option<u64>) -> Record {
        Record { name: name.into(), target: target.into(), loaded }
    }

    fn repos(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn listings_of_every_version_parse_with_the_label() {
        for table in [CTR_21, CTR_16] {
            let records = parse_records(table);
            assert_eq!(records.len(), 6);
            assert_eq!(records[0].name, "docker.io/probe/app:a");
            assert_eq!(records[0].loaded, Some(123));
            assert_eq!(records[3].loaded, Some(124), "the registry's name, labelled on its own");
            assert_eq!(records[5].name, A_ID);
            assert_eq!(records[5].loaded, None, "CRI's id record carries no label");
            // app:t was tagged by hand from app:b: ctr 2.1 copies no label, 1.6 copies app:b's,
            // which names app:b, so neither is kindload's.
            assert_eq!(records[2].name, "docker.io/probe/app:t");
            assert_eq!(records[2].loaded, None);
        }
        assert!(CTR_16.lines().nth(3).unwrap().contains("io.kindload.loaded=124:docker.io/probe/app:b"));
        assert_eq!(parse_container_images(CONTAINERS_21), ["docker.io/probe/app:a"]);
        assert_eq!(parse_container_images("CONTAINER IMAGE RUNTIME\nsandbox - io.containerd.runc.v2\n"), [""; 0]);
    }

    #[test]
    fn captured_nodes_keep_what_containers_and_foreign_names_hold() {
        // a is used by container c1; b is also named by app:t, which kindload did not give.
        let (containers, none) = (parse_container_images(CONTAINERS_21), Vec::<String>::new());
        let run = repos(&["docker.io/probe/app:c"]);
        let both = repos(&[APP, "localhost:5001/probe/app"]);
        for table in [CTR_21, CTR_16] {
            let records = parse_records(table);
            assert_eq!(choose(&records, &containers, &repos(&[APP]), &run, 1), Choice::default());
            let a_goes = choose(&records, &none, &repos(&[APP]), &run, 1);
            assert_eq!(a_goes.versions, ["docker.io/probe/app:a"]);
            assert_eq!(a_goes.records, ["docker.io/probe/app:a", A_ID]);
            let all = choose(&records, &none, &both, &[], 0);
            assert_eq!(all, a_goes, "b stays for app:t, whatever is kept");
            // Without app:t, b's names in both repositories go, with its id record; with only
            // one repository in scope, the other's name keeps it.
            let without_t: Vec<Record> = records.iter().filter(|r| !r.name.ends_with(":t")).cloned().collect();
            let all = choose(&without_t, &none, &both, &[], 0);
            assert_eq!(all.records.len(), 5, "{all:?}");
            assert!(all.records.contains(&B_ID.to_string()));
            assert_eq!(choose(&without_t, &none, &repos(&[APP]), &[], 0).versions, ["docker.io/probe/app:a"]);
        }
    }

    #[test]
    fn the_newest_k_by_load_time_stay_not_by_tag_text() {
        let mut records = Vec::new();
        // Tags sort the other way round from their load times.
        for (i, tag) in ["z", "y", "x", "w", "v"].iter().enumerate() {
            let target = format!("sha256:{}", i.to_string().repeat(64));
            records.push(record(&format!("docker.io/library/app:{tag}"), &target, Some(100 + i as u64)));
            records.push(record(&format!("sha256:c{i}"), &target, None));
        }
        let app = repos(&["docker.io/library/app"]);
        let run = repos(&["docker.io/library/app:v"]);
        let choice = choose(&records, &[], &app, &run, 2);
        assert_eq!(choice.versions, ["docker.io/library/app:z", "docker.io/library/app:y", "docker.io/library/app:x"]);
        assert_eq!(choice.records.len(), 6, "their id records too");
        assert_eq!(choose(&records, &[], &app, &run, 5), Choice::default());
        assert!(beyond(&records, &app, 4) && !beyond(&records, &app, 5), "five versions");
        assert!(!beyond(&records, &repos(&["docker.io/library/other"]), 1));
        let one = choose(&records, &[], &app, &run, 1);
        assert_eq!(one.versions.len(), 4);
        assert!(!one.versions.contains(&"docker.io/library/app:v".to_string()));
        // This run's names stay whatever their age; a container by id or by digest pins too.
        let old_run = repos(&["docker.io/library/app:z"]);
        assert!(!choose(&records, &[], &app, &old_run, 1).versions.contains(&"docker.io/library/app:z".to_string()));
        let by_id = repos(&["sha256:c1"]);
        assert!(!choose(&records, &by_id, &app, &run, 1).versions.contains(&"docker.io/library/app:y".to_string()));
        let by_digest = vec![format!("docker.io/library/app@sha256:{}", "2".repeat(64))];
        assert!(!choose(&records, &by_digest, &app, &run, 1).versions.contains(&"docker.io/library/app:x".to_string()));
        let short = repos(&["app:w"]);
        assert!(!choose(&records, &short, &app, &run, 1).versions.contains(&"docker.io/library/app:w".to_string()));
        // Another repository's versions are not this run's to judge.
        assert_eq!(choose(&records, &[], &repos(&["docker.io/library/other"]), &run, 1), Choice::default());
    }

    #[test]
    fn a_version_two_names_share_counts_once_at_its_newest() {
        let records = vec![
            record("docker.io/library/app:1", "sha256:m1", Some(10)),
            record("docker.io/library/app:latest", "sha256:m1", Some(30)),
            record("docker.io/library/app:2", "sha256:m2", Some(20)),
        ];
        let app = repos(&["docker.io/library/app"]);
        let choice = choose(&records, &[], &app, &[], 1);
        assert_eq!(choice.versions, ["docker.io/library/app:2"]);
        assert!(beyond(&records, &app, 1) && !beyond(&records, &app, 2), "two versions, not three");
    }

    #[test]
    fn keep_words() {
        assert_eq!(Keep::parse("all"), Ok(Keep::All));
        assert_eq!(Keep::parse("3"), Ok(Keep::Newest(3)));
        assert!(Keep::parse("0").unwrap_err().contains("1 or more"));
        assert!(Keep::parse("two").is_err());
        assert_eq!(Keep::default(), Keep::Newest(2));
        assert_eq!(Keep::Newest(2).word(), "2");
    }
}
