//! What kindload loaded for each project, so a pre-deploy hook can repair a recreated
//! cluster even when Skaffold's cache skipped the build (and with it every build hook).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::resolve::reference::ImageRef;

/// Recorded loads, per project directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub projects: BTreeMap<String, Vec<Entry>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The image as the engine knows it.
    pub image: String,
    /// Further names the nodes must answer to (Skaffold's `<repo>:<id hex>`).
    #[serde(default)]
    pub names: Vec<String>,
}

impl Entry {
    fn repository(&self) -> Option<String> {
        ImageRef::parse(&self.image).ok().map(|r| r.repository())
    }
}

impl Record {
    /// Remembers `entry`, replacing an older entry of the same repository: a pre-deploy
    /// reload wants the latest build, not every tag ever made.
    pub fn remember(&mut self, project: &str, entry: Entry) {
        let entries = self.projects.entry(project.to_string()).or_default();
        let repository = entry.repository();
        entries.retain(|e| e.image != entry.image && (repository.is_none() || e.repository() != repository));
        entries.push(entry);
    }

    pub fn entries(&self, project: &str) -> &[Entry] {
        self.projects.get(project).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// The project a run belongs to: Skaffold's working directory when it says, else the
/// nearest directory upwards holding a skaffold.yaml, else `cwd`.
pub fn project_dir(skaffold_work_dir: Option<&Path>, cwd: &Path) -> PathBuf {
    if let Some(dir) = skaffold_work_dir {
        return dir.to_path_buf();
    }
    cwd.ancestors().find(|d| d.join("skaffold.yaml").is_file()).unwrap_or(cwd).to_path_buf()
}

/// `KINDLOAD_STATE_DIR`, else `$XDG_STATE_HOME/kindload`, else `~/.local/state/kindload`.
pub fn state_file(lookup: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let dir = lookup("KINDLOAD_STATE_DIR")
        .map(PathBuf::from)
        .or_else(|| lookup("XDG_STATE_HOME").map(|d| PathBuf::from(d).join("kindload")))
        .or_else(|| lookup("HOME").map(|h| PathBuf::from(h).join(".local/state/kindload")))?;
    Some(dir.join("loaded.json"))
}

/// A missing or unreadable record is an empty one: it only ever helps.
pub fn read(path: &Path) -> Record {
    std::fs::read_to_string(path).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default()
}

/// Writes through a temporary file so a concurrent reader never sees half a record.
pub fn write(path: &Path, record: &Record) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("json.{}", std::process::id()));
    std::fs::write(&tmp, serde_json::to_string_pretty(record).expect("record serialises"))?;
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(image: &str) -> Entry {
        Entry { image: image.into(), names: vec![] }
    }

    #[test]
    fn newer_build_of_a_repository_replaces_the_older() {
        let mut record = Record::default();
        record.remember("/p", entry("app:v1"));
        record.remember("/p", entry("other:1"));
        record.remember("/p", entry("docker.io/library/app:v2"));
        let images: Vec<&str> = record.entries("/p").iter().map(|e| e.image.as_str()).collect();
        assert_eq!(images, ["other:1", "docker.io/library/app:v2"]);
        assert!(record.entries("/elsewhere").is_empty());
    }

    #[test]
    fn round_trips_through_the_state_file() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().to_string_lossy().into_owned();
        let path = state_file(&|k| (k == "KINDLOAD_STATE_DIR").then(|| state.clone())).unwrap();
        assert_eq!(read(&path), Record::default(), "missing file reads as empty");
        let mut record = Record::default();
        record.remember("/p", Entry { image: "app:dev".into(), names: vec!["docker.io/library/app:abc".into()] });
        write(&path, &record).unwrap();
        assert_eq!(read(&path), record);
    }

    #[test]
    fn project_is_the_skaffold_dir_upwards() {
        let dir = tempfile::tempdir().unwrap();
        let context = dir.path().join("services/api");
        std::fs::create_dir_all(&context).unwrap();
        std::fs::write(dir.path().join("skaffold.yaml"), "").unwrap();
        assert_eq!(project_dir(None, &context), dir.path());
        assert_eq!(project_dir(Some(Path::new("/w")), &context), Path::new("/w"));
    }
}
