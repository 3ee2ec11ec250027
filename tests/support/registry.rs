//! kindload's own registry for a test cluster (`kindload registry up`), with the environment
//! that points kindload at it and the cleanup of whatever it made.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::{
    engine_command, ensure_registry_image, free_port, kindload_command, podman_containers_conf, run, run_ok, text,
    TestCluster, TestNetwork, REGISTRY_IMAGE,
};

/// A registry name, free port and state directory of one test; the container and its
/// `<name>-data` volume, whatever kindload made of them, are removed on drop. Each test file
/// names its registries with a prefix of its own, so that test binaries running at once never
/// share one.
pub struct TestRegistry {
    pub name: String,
    pub port: u16,
    pub provider: String,
    pub state: tempfile::TempDir,
    /// A bound on every run of `kindload()`: a hung one fails its test instead of the suite.
    run_limit: Option<Duration>,
}

impl TestRegistry {
    /// Makes sure `provider` has the registry image; starts nothing.
    pub fn new(provider: &str, name: String) -> TestRegistry {
        ensure_registry_image(provider);
        TestRegistry {
            name,
            port: free_port(),
            provider: provider.to_string(),
            state: tempfile::tempdir().unwrap(),
            run_limit: None,
        }
    }

    /// Every run of `kindload()` is killed and failed after `limit`.
    pub fn with_run_limit(mut self, limit: Duration) -> TestRegistry {
        self.run_limit = Some(limit);
        self
    }

    /// `kindload_command()` with this registry's state directory and name, and the
    /// containers.conf Podman needs on the test bed.
    pub fn command(&self) -> Command {
        let mut cmd = kindload_command();
        cmd.env("KINDLOAD_STATE_DIR", self.state.path());
        cmd.env("CONTAINERS_CONF", podman_containers_conf());
        cmd.env("KINDLOAD_REGISTRY", &self.name);
        cmd
    }

    /// `command()` as an assert_cmd::Command, bounded by the run limit when one is set.
    pub fn kindload(&self) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::from_std(self.command());
        if let Some(limit) = self.run_limit {
            cmd.timeout(limit);
        }
        cmd
    }

    /// `registry up --cluster <cluster> --image REGISTRY_IMAGE --port <port>`.
    pub fn up_args(&self, cluster: &TestCluster) -> Vec<String> {
        let port = self.port.to_string();
        ["registry", "up", "--cluster", &cluster.name, "--image", REGISTRY_IMAGE, "--port", &port]
            .iter()
            .map(|a| a.to_string())
            .collect()
    }

    /// `kindload registry up` for `cluster`, not yet run.
    pub fn up(&self, cluster: &TestCluster) -> assert_cmd::Command {
        let mut cmd = self.kindload();
        cmd.args(self.up_args(cluster));
        cmd
    }

    /// Where kindload keeps the registry's CA certificate.
    pub fn ca_path(&self) -> PathBuf {
        self.state.path().join("registry/ca.crt")
    }

    /// The registry's address on the host: `localhost:<port>`.
    pub fn host(&self) -> String {
        format!("localhost:{}", self.port)
    }

    /// `<provider> args...` that must succeed; its stdout.
    pub fn engine(&self, args: &[&str]) -> String {
        run_ok(engine_command(&self.provider).args(args))
    }

    /// The registry's access log (stdout and stderr of its container).
    pub fn log(&self) -> String {
        text(&run(engine_command(&self.provider).args(["logs", &self.name])))
    }

    /// Takes the registry off the nodes' network: its published port answers no more.
    pub fn cut_off(&self, network: &TestNetwork) {
        self.engine(&["network", "disconnect", &network.name, &self.name]);
    }

    /// kindload's own client of the registry, trusting only kindload's CA.
    pub fn client(&self) -> kindload::registry::client::Client {
        let ca = std::fs::read_to_string(self.ca_path()).unwrap();
        kindload::registry::client::Client::new(&format!("127.0.0.1:{}", self.port), &ca).unwrap()
    }

    /// The layers and config of `repo:tag` as the registry holds it.
    pub fn blobs_of(&self, repo: &str, tag: &str) -> (Vec<String>, String) {
        let (_, bytes) = self.client().get_manifest(repo, tag).unwrap_or_else(|e| panic!("{repo}:{tag}: {e}"));
        let manifest: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let digest = |v: &serde_json::Value| v["digest"].as_str().unwrap().to_string();
        (manifest["layers"].as_array().unwrap().iter().map(digest).collect(), digest(&manifest["config"]))
    }

    /// The container holding the registry: one, kindload's, and its images in the named volume.
    pub fn assert_one_container_with_its_volume(&self) {
        let label = format!("label=io.kindload.registry={}", self.name);
        let ids = self.engine(&["ps", "--all", "--quiet", "--filter", &label]);
        assert_eq!(ids.lines().count(), 1, "registry containers labelled {}: {ids:?}", self.name);
        let mounts = self.engine(&[
            "container",
            "inspect",
            "--format",
            "{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}};{{end}}",
            &self.name,
        ]);
        let volume = format!("volume {}-data /var/lib/registry;", self.name);
        assert!(mounts.contains(&volume), "the registry's storage is not the named volume: {mounts}");
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = run(engine_command(&self.provider).args(["rm", "-f", &self.name]));
        let _ = run(engine_command(&self.provider).args(["volume", "rm", &format!("{}-data", self.name)]));
    }
}
