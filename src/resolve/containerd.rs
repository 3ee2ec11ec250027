//! Facts about a node's containerd: its version and the snapshotter the CRI plugin
//! unpacks images with (an import must use the same one, or the kubelet sees no image).

use toml::{Table, Value};

/// From `containerd --version`, the version as printed:
/// `containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3` → `1.6.20~ds1`,
/// `containerd github.com/containerd/containerd/v2 2.1.9+unknown` → `2.1.9+unknown`,
/// `containerd containerd.io 1.7.27 05044ec...` → `1.7.27`, `v1.7.18` → `v1.7.18`.
pub fn parse_containerd_version(output: &str) -> Option<String> {
    // The version is the first word shaped like one: the package path and the
    // distribution name come before it, the commit after it.
    output.split_whitespace().find(|word| looks_like_version(word)).map(str::to_string)
}

fn looks_like_version(word: &str) -> bool {
    let digits = word.strip_prefix('v').unwrap_or(word);
    digits.starts_with(|c: char| c.is_ascii_digit()) && digits.contains('.')
}

/// Lenient semver: the numeric `major[.minor[.patch]]` core, ignoring a leading `v` and any
/// distribution or build suffix. `1.6.20~ds1` → 1.6.20, `v2.1.9+unknown` → 2.1.9,
/// `1.7` → 1.7.0. Pre-release suffixes are dropped too: only the core is compared.
pub fn lenient_version(v: &str) -> Option<semver::Version> {
    let v = v.trim();
    let v = v.strip_prefix('v').unwrap_or(v);
    let core_len = v.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(v.len());
    let core = v[..core_len].trim_end_matches('.');
    let mut numbers = core.split('.').map(|n| n.parse::<u64>().ok());
    let major = numbers.next()??;
    let minor = numbers.next().unwrap_or(Some(0))?;
    let patch = numbers.next().unwrap_or(Some(0))?;
    Some(semver::Version::new(major, minor, patch))
}

/// What `containerd config dump` tells kindload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFacts {
    /// The config schema version; containerd reads a config without one as version 1.
    pub version: Option<i64>,
    /// The CRI plugin's snapshotter; `None` when the dump does not say (do not guess).
    pub snapshotter: Option<String>,
    /// The CRI registry `config_path` (where `hosts.toml` files are read, per pull); None
    /// when the config sets none (kind node images before v0.27).
    pub config_path: Option<String>,
    /// containerd's root directory, where its content store keeps ingests in progress.
    pub root: Option<String>,
    pub warnings: Vec<String>,
}

/// Config versions whose snapshotter location is known.
const KNOWN_VERSIONS: [i64; 3] = [2, 3, 4];

/// Where the CRI snapshotter lives, newest layout first: config version 3+ (containerd 2.x)
/// moved it to the images plugin; version 2 keeps it under the CRI plugin; version 1 used
/// the short plugin name.
const SNAPSHOTTER_PATHS: [&[&str]; 3] = [
    &["plugins", "io.containerd.cri.v1.images", "snapshotter"],
    &["plugins", "io.containerd.grpc.v1.cri", "containerd", "snapshotter"],
    &["plugins", "cri", "containerd", "snapshotter"],
];

/// Where the CRI registry `config_path` lives: config version 3+ in the images plugin,
/// version 2 under the CRI plugin.
const CONFIG_PATH_PATHS: [&[&str]; 2] = [
    &["plugins", "io.containerd.cri.v1.images", "registry", "config_path"],
    &["plugins", "io.containerd.grpc.v1.cri", "registry", "config_path"],
];

/// Parses `containerd config dump` (TOML). Only invalid TOML is an error: an unknown config
/// version or a missing snapshotter become warnings, so a newer containerd is not refused.
pub fn parse_config_dump(dump: &str) -> Result<ConfigFacts, String> {
    let config: Table = dump.parse().map_err(|e| format!("containerd config dump is not valid TOML: {e}"))?;
    let mut warnings = Vec::new();

    let version = match config.get("version") {
        None => Some(1),
        Some(Value::Integer(v)) => Some(*v),
        Some(other) => {
            warnings.push(format!(
                "containerd config version is {other}, not a number; snapshotter detection may be wrong"
            ));
            None
        }
    };
    if let Some(v) = version.filter(|v| !KNOWN_VERSIONS.contains(v)) {
        warnings.push(format!(
            "unknown containerd config version {v} (kindload knows 2, 3 and 4); \
             snapshotter detection may be wrong"
        ));
    }

    let snapshotter = SNAPSHOTTER_PATHS.iter().find_map(|path| non_empty_string_at(&config, path));
    if snapshotter.is_none() {
        let looked: Vec<String> = SNAPSHOTTER_PATHS.iter().map(|path| path.join(".")).collect();
        warnings.push(format!(
            "containerd config dump names no CRI snapshotter (looked at {}); the snapshotter is unknown",
            looked.join(", ")
        ));
    }
    let config_path = CONFIG_PATH_PATHS.iter().find_map(|path| non_empty_string_at(&config, path));
    let root = non_empty_string_at(&config, &["root"]);
    Ok(ConfigFacts { version, snapshotter, config_path, root, warnings })
}

fn non_empty_string_at(config: &Table, path: &[&str]) -> Option<String> {
    let (last, tables) = path.split_last()?;
    let mut table = config;
    for key in tables {
        table = table.get(*key)?.as_table()?;
    }
    let value = table.get(*last)?.as_str()?;
    (!value.is_empty()).then(|| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP_1_6: &str = include_str!("../../tests/fixtures/containerd-1.6/containerd-config-dump.toml");
    const DUMP_1_7: &str = include_str!("../../tests/fixtures/containerd-1.7/containerd-config-dump.toml");
    const DUMP_2_1: &str = include_str!("../../tests/fixtures/containerd-2.1/containerd-config-dump.toml");

    fn version(major: u64, minor: u64, patch: u64) -> Option<semver::Version> {
        Some(semver::Version::new(major, minor, patch))
    }

    #[test]
    fn version_from_captured_output() {
        let cases = [
            (include_str!("../../tests/fixtures/containerd-1.6/containerd--version.txt"), "1.6.20~ds1"),
            (include_str!("../../tests/fixtures/containerd-1.7/containerd--version.txt"), "1.7.24~ds1"),
            (include_str!("../../tests/fixtures/containerd-2.1/containerd--version.txt"), "2.1.9+unknown"),
        ];
        for (output, expected) in cases {
            assert_eq!(parse_containerd_version(output).as_deref(), Some(expected), "{output:?}");
        }
    }

    #[test]
    fn version_from_other_builds() {
        let cases = [
            ("containerd containerd.io 1.7.27 05044ec0a9a75232cad458027ca83437aae3f4da\n", Some("1.7.27")),
            (
                "containerd github.com/containerd/containerd v1.7.18 ae71819c4f5e67bb4d5ae76a6b735f29cc25774e",
                Some("v1.7.18"),
            ),
            ("v1.7.18", Some("v1.7.18")),
            ("containerd github.com/containerd/containerd/v2 2.1.9+unknown ", Some("2.1.9+unknown")),
            ("", None),
            ("containerd: command not found", None),
        ];
        for (output, expected) in cases {
            assert_eq!(parse_containerd_version(output).as_deref(), expected, "{output:?}");
        }
    }

    #[test]
    fn lenient_versions() {
        assert_eq!(lenient_version("1.6.20~ds1"), version(1, 6, 20));
        assert_eq!(lenient_version("v2.1.9+unknown"), version(2, 1, 9));
        assert_eq!(lenient_version("1.7"), version(1, 7, 0));
        assert_eq!(lenient_version("2"), version(2, 0, 0));
        assert_eq!(lenient_version("1.7.0-rc.1"), version(1, 7, 0));
        assert_eq!(lenient_version("1.7.24~ds1"), version(1, 7, 24));
        assert_eq!(lenient_version(""), None);
        assert_eq!(lenient_version("unknown"), None);
        assert_eq!(lenient_version("v"), None);
        assert!(lenient_version("1.6.20~ds1") < lenient_version("2.1.9+unknown"));
    }

    #[test]
    fn fixture_dumps() {
        let cases = [(DUMP_1_6, 2), (DUMP_1_7, 2), (DUMP_2_1, 3)];
        for (dump, expected_version) in cases {
            let facts = parse_config_dump(dump).unwrap();
            assert_eq!(facts.version, Some(expected_version));
            assert_eq!(facts.snapshotter.as_deref(), Some("overlayfs"));
            assert!(facts.warnings.is_empty(), "{:?}", facts.warnings);
        }
    }

    #[test]
    fn config_path_for_versions_2_and_3() {
        for dump in [DUMP_1_6, DUMP_1_7, DUMP_2_1] {
            assert_eq!(parse_config_dump(dump).unwrap().config_path, None);
        }
        let v2 = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n";
        assert_eq!(parse_config_dump(v2).unwrap().config_path.as_deref(), Some("/etc/containerd/certs.d"));
        let v3 = "version = 3\n[plugins.\"io.containerd.cri.v1.images\".registry]\n  config_path = \"/etc/containerd/certs.d:/etc/docker/certs.d\"\n";
        assert_eq!(
            parse_config_dump(v3).unwrap().config_path.as_deref(),
            Some("/etc/containerd/certs.d:/etc/docker/certs.d")
        );
        let empty = "version = 3\n[plugins.\"io.containerd.cri.v1.images\".registry]\n  config_path = \"\"\n";
        assert_eq!(parse_config_dump(empty).unwrap().config_path, None);
    }

    #[test]
    fn version_4_reads_the_images_plugin() {
        let dump = r#"
version = 4
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "erofs"
"#;
        let facts = parse_config_dump(dump).unwrap();
        assert_eq!(facts.version, Some(4));
        assert_eq!(facts.snapshotter.as_deref(), Some("erofs"));
        assert!(facts.warnings.is_empty());
    }

    #[test]
    fn non_default_snapshotter_in_version_2_layout() {
        let dump = r#"
version = 2
[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "native"
"#;
        let facts = parse_config_dump(dump).unwrap();
        assert_eq!(facts.snapshotter.as_deref(), Some("native"));
    }

    #[test]
    fn images_plugin_wins_over_the_cri_plugin() {
        let dump = r#"
version = 3
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "native"
[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
"#;
        assert_eq!(parse_config_dump(dump).unwrap().snapshotter.as_deref(), Some("native"));
    }

    #[test]
    fn unknown_version_is_a_warning_not_a_failure() {
        let dump = r#"
version = 9
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
"#;
        let facts = parse_config_dump(dump).unwrap();
        assert_eq!(facts.version, Some(9));
        assert_eq!(facts.snapshotter.as_deref(), Some("overlayfs"));
        assert_eq!(facts.warnings.len(), 1);
        assert!(facts.warnings[0].contains("version 9"), "{}", facts.warnings[0]);
        assert!(facts.warnings[0].contains("snapshotter detection may be wrong"));
    }

    #[test]
    fn missing_version_means_1() {
        let dump = "[plugins.cri.containerd]\n  snapshotter = \"overlayfs\"\n";
        let facts = parse_config_dump(dump).unwrap();
        assert_eq!(facts.version, Some(1));
        assert_eq!(facts.snapshotter.as_deref(), Some("overlayfs"));
        assert!(facts.warnings[0].contains("version 1"));
    }

    #[test]
    fn missing_or_empty_snapshotter_is_unknown_not_overlayfs() {
        for dump in
            ["version = 2\n", "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  snapshotter = \"\"\n"]
        {
            let facts = parse_config_dump(dump).unwrap();
            assert_eq!(facts.version, Some(2));
            assert_eq!(facts.snapshotter, None);
            assert_eq!(facts.warnings.len(), 1, "{:?}", facts.warnings);
            assert!(facts.warnings[0].contains("snapshotter"));
        }
    }

    #[test]
    fn broken_toml_is_an_error() {
        let err = parse_config_dump("version = 2\n[plugins\n").unwrap_err();
        assert!(err.contains("not valid TOML"), "{err}");
    }
}
