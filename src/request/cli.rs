//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::resolve::engine::EngineKind;
use crate::resolve::engine::PullPolicy;

#[derive(Debug, Parser)]
#[command(
    name = "kindload",
    version = crate::VERSION,
    about = "Load locally built images into kind nodes and prove the kubelet can see them",
    long_about = "Load locally built images into every node of a kind cluster, from Docker or Podman, \
                  and verify each node with crictl (or ctr where crictl is absent).\n\n\
                  Exit status: 0 every image verified on every node; 1 a load or verification failed; \
                  2 bad usage or input (malformed reference, missing image, cluster or engine)."
)]
pub struct Cli {
    /// Log every command kindload runs, shell-pasteable
    #[arg(short, long, global = true)]
    pub verbose: bool,

    /// Print only errors (and the JSON report when asked for)
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Project settings file [default: KINDLOAD_CONFIG, else the nearest kindload.yaml upwards]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Stop and fail a step (a node's import, an engine's save or push, a node's pull, a wait
    /// for another run's lock) that makes no progress for this long [default: kindload.yaml's
    /// stall_timeout_seconds, else 60]
    #[arg(long, global = true, value_name = "SECONDS", env = "KINDLOAD_STALL_TIMEOUT",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub stall_timeout: Option<u64>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load images into every node of the cluster and verify them
    Load(LoadArgs),
    /// Verify that every node can see the images, without loading
    Verify(VerifyArgs),
    /// List the cluster's nodes with their containerd facts
    Nodes(NodesArgs),
    /// Check engine, cluster and nodes, and say how to fix each problem
    Doctor(DoctorArgs),
    /// Skaffold's custom builder or Tilt's custom_build: build $IMAGE (Tilt: $EXPECTED_REF), then push it or load it into the kind cluster
    Build(BuildArgs),
    /// A TLS registry beside the cluster's nodes, trusted by every node
    #[command(subcommand)]
    Registry(RegistryCommand),
    /// Print the completion script for a shell (bash, zsh, fish, powershell, elvish)
    Completions(CompletionsArgs),
    /// Print the manual page (roff), or write one page per command into a directory
    Man(ManArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum OutputFormat {
    #[default]
    Human,
    Json,
}

/// Which cluster, on which provider.
#[derive(Debug, Args, Clone, Default)]
pub struct ClusterArgs {
    /// kind cluster name [default: KIND_CLUSTER_NAME, else from the kube context, else "kind"]
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,

    /// Kube context naming the kind cluster [default: SKAFFOLD_KUBE_CONTEXT, else current-context]
    #[arg(long, value_name = "CONTEXT")]
    pub kube_context: Option<String>,

    /// Engine hosting the node containers [default: KIND_EXPERIMENTAL_PROVIDER, else whichever has the cluster]
    #[arg(long, value_name = "PROVIDER")]
    pub provider: Option<EngineKind>,
}

/// Which engine holds the images.
#[derive(Debug, Args, Clone, Default)]
pub struct EngineArgs {
    /// Engine holding the images [default: KINDLOAD_ENGINE, else docker, then podman]
    #[arg(long, value_name = "ENGINE")]
    pub engine: Option<EngineKind>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct SelectArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Only these nodes (comma-separated names)
    #[arg(long, value_delimiter = ',', value_name = "NODES")]
    pub nodes: Vec<String>,

    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
}

/// How images travel to the nodes.
#[derive(Debug, Args, Clone, Default)]
pub struct TransferArgs {
    /// Send every layer, even those a node already holds
    #[arg(long)]
    pub full: bool,

    /// Keep the image a name pointed at before this load (by default it is removed from the node when nothing else names it)
    #[arg(long)]
    pub keep_superseded: bool,

    /// Stream images into containerd's import even when the cluster has a kindload registry
    #[arg(long)]
    pub sideload: bool,

    /// Versions of each repository a node keeps of those kindload loaded (older ones are removed
    /// unless a container uses them), or `all` to remove none [default: `keep:` in kindload.yaml, else 2]
    #[arg(long, value_name = "N|all", value_parser = crate::plan::retention::Keep::parse)]
    pub keep: Option<crate::plan::retention::Keep>,

    /// How images reach the cluster's registry: `own` (kindload streams the engine's export,
    /// layers uncompressed) or `engine` (docker push, podman push) [default: `push:` in
    /// kindload.yaml, else the cheaper one for the engine: see the README]
    #[arg(long, value_enum, value_name = "own|engine", env = "KINDLOAD_PUSH")]
    pub push: Option<crate::plan::push::PushWith>,

    /// Largest layer (MiB) kept in a temporary file when nodes differ on it and only its bytes tell which it is
    #[arg(long, value_name = "MIB", env = "KINDLOAD_SPOOL_LIMIT_MIB", default_value_t = 1024)]
    pub spool_limit: u64,
}

#[derive(Debug, Args, Clone, Default)]
pub struct LoadArgs {
    /// Images to load, as you would write them in a pod spec
    #[arg(value_name = "IMAGE")]
    pub images: Vec<String>,

    #[command(flatten)]
    pub select: SelectArgs,

    #[command(flatten)]
    pub engine: EngineArgs,

    /// Load from a docker-archive or OCI archive file instead of an engine; - reads stdin
    #[arg(long, value_name = "PATH", conflicts_with_all = ["from_manifests", "from_build_artifacts"])]
    pub archive: Option<PathBuf>,

    /// Load every locally present image referenced by Kubernetes YAML (a file, or - for stdin)
    #[arg(long, value_name = "FILE", conflicts_with = "from_build_artifacts")]
    pub from_manifests: Option<PathBuf>,

    /// Load the images listed in Skaffold's `--file-output` build-artifacts JSON
    #[arg(long, value_name = "FILE")]
    pub from_build_artifacts: Option<PathBuf>,

    #[command(flatten)]
    pub transfer: TransferArgs,

    /// Only through the cluster's registry (`kindload registry up`), as a load with one goes
    /// anyway, but a node that cannot pull from it fails instead of being sideloaded
    #[arg(long, conflicts_with_all = ["archive", "sideload"])]
    pub via_registry: bool,

    /// The registry to use with --via-registry
    #[arg(long = "registry", value_name = "NAME", env = "KINDLOAD_REGISTRY", default_value = crate::registry::DEFAULT_NAME)]
    pub registry_name: String,
}

#[derive(Debug, Args, Clone, Default)]
pub struct BuildArgs {
    /// Dockerfile or Containerfile [default: Dockerfile, else Containerfile, in the build context]
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// When to pull base images: never (local only; a missing base is an error), missing, always
    /// [default: `pull:` in kindload.yaml, else missing]
    #[arg(long, value_enum, value_name = "POLICY")]
    pub pull: Option<PullPolicy>,

    /// Pass this required artifact's ref (Skaffold sets one variable per `requires` alias) as --build-arg ALIAS=<ref>
    #[arg(long = "build-arg-from", value_name = "ALIAS")]
    pub build_arg_from: Vec<String>,

    #[command(flatten)]
    pub select: SelectArgs,

    #[command(flatten)]
    pub engine: EngineArgs,

    #[command(flatten)]
    pub transfer: TransferArgs,
}

#[derive(Debug, Args, Clone, Default)]
pub struct VerifyArgs {
    /// Images to verify
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<String>,

    #[command(flatten)]
    pub select: SelectArgs,

    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Debug, Args, Clone, Default)]
pub struct NodesArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
}

#[derive(Debug, Args, Clone, Default)]
pub struct DoctorArgs {
    /// Images whose names and whereabouts to check
    #[arg(value_name = "IMAGE")]
    pub images: Vec<String>,

    #[command(flatten)]
    pub cluster: ClusterArgs,

    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Debug, Args, Clone)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args, Clone, Default)]
pub struct ManArgs {
    /// Write kindload.1 and a page per subcommand (kindload-load.1, ...) into this directory instead
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand, Clone)]
pub enum RegistryCommand {
    /// Run the registry (HTTPS, kindload's CA) on the nodes' network and make every node trust it
    Up(RegistryUpArgs),
    /// Is it running (exit 1 when not), where is it reached, which clusters and nodes trust it
    Status(RegistryStatusArgs),
    /// Undo the registry for one cluster; remove the container once no cluster uses it
    Down(RegistryDownArgs),
    /// Print kindload's CA certificate (PEM), for pods and tools that pull from the registry
    Ca(RegistryCaArgs),
    /// Print the Kubernetes objects that tell in-cluster tools about the registry
    Manifests(RegistryManifestsArgs),
}

/// Which registry, for which cluster: the same flags on every `registry` subcommand.
#[derive(Debug, Args, Clone)]
pub struct RegistryTarget {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// The registry's container name, which nodes and pods reach it by
    #[arg(long, value_name = "NAME", env = "KINDLOAD_REGISTRY", default_value = crate::registry::DEFAULT_NAME)]
    pub name: String,
}

#[derive(Debug, Args, Clone)]
pub struct RegistryUpArgs {
    #[command(flatten)]
    pub target: RegistryTarget,

    /// Host port on 127.0.0.1 the registry is published on [default: 5001, or the port it already has]
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,

    /// Registry image (CNCF Distribution), e.g. a mirror of registry:2 or one built locally
    #[arg(long, value_name = "IMAGE", default_value = crate::registry::DEFAULT_IMAGE)]
    pub image: String,
}

#[derive(Debug, Args, Clone)]
pub struct RegistryStatusArgs {
    #[command(flatten)]
    pub target: RegistryTarget,

    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
}

#[derive(Debug, Args, Clone)]
pub struct RegistryDownArgs {
    #[command(flatten)]
    pub target: RegistryTarget,

    /// Also delete the volume holding the pushed images (refused while another cluster uses the registry)
    #[arg(long)]
    pub delete_data: bool,

    /// Undo the registry for every cluster that trusts it and remove its container
    #[arg(long)]
    pub all: bool,
}

/// The CA is one per machine, shared by every registry and cluster: the cluster flags are
/// accepted, so scripts can pass the same flags to every subcommand, and do not change it.
#[derive(Debug, Args, Clone)]
pub struct RegistryCaArgs {
    #[command(flatten)]
    pub target: RegistryTarget,
}

#[derive(Debug, Args, Clone)]
pub struct RegistryManifestsArgs {
    #[command(flatten)]
    pub target: RegistryTarget,

    /// Namespace of the ConfigMap holding the CA (e.g. crossplane-system)
    #[arg(long, value_name = "NAMESPACE", default_value = "kube-public")]
    pub ca_namespace: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn load_takes_nodes_as_a_list() {
        let cli =
            Cli::try_parse_from(["kindload", "load", "app:dev", "--nodes", "a,b", "--engine", "podman", "-q"]).unwrap();
        let Command::Load(args) = cli.command else { panic!("not load") };
        assert_eq!(args.select.nodes, ["a", "b"]);
        assert_eq!(args.engine.engine, Some(EngineKind::Podman));
        assert!(cli.quiet);
    }

    #[test]
    fn transfer_flags() {
        let cli =
            Cli::try_parse_from(["kindload", "load", "app:dev", "--full", "--keep-superseded", "--spool-limit", "8"])
                .unwrap();
        let Command::Load(args) = cli.command else { panic!("not load") };
        assert!(args.transfer.full && args.transfer.keep_superseded);
        assert_eq!(args.transfer.spool_limit, 8);
        assert_eq!(args.transfer.keep, None);
    }

    #[test]
    fn keep_takes_a_count_or_all() {
        use crate::plan::retention::Keep;
        let keep = |word: &str| {
            let cli = Cli::try_parse_from(["kindload", "build", "--keep", word])?;
            let Command::Build(args) = cli.command else { panic!("not build") };
            Ok::<_, clap::Error>(args.transfer.keep)
        };
        assert_eq!(keep("1").unwrap(), Some(Keep::Newest(1)));
        assert_eq!(keep("all").unwrap(), Some(Keep::All));
        let err = keep("0").unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("1 or more"), "{err}");
    }

    #[test]
    fn build_takes_a_pull_policy() {
        let cli = Cli::try_parse_from(["kindload", "build", "--pull", "never"]).unwrap();
        let Command::Build(args) = cli.command else { panic!("not build") };
        assert_eq!(args.pull, Some(PullPolicy::Never));
        assert_eq!(Cli::try_parse_from(["kindload", "build", "--pull", "newer"]).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn completions_take_a_known_shell() {
        let cli = Cli::try_parse_from(["kindload", "completions", "zsh"]).unwrap();
        let Command::Completions(args) = cli.command else { panic!("not completions") };
        assert_eq!(args.shell, clap_complete::Shell::Zsh);
        assert_eq!(Cli::try_parse_from(["kindload", "completions", "tcsh"]).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn unknown_engine_is_a_usage_error() {
        let err = Cli::try_parse_from(["kindload", "load", "x", "--engine", "nerdctl"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn every_registry_subcommand_takes_the_same_target_flags() {
        for sub in ["up", "status", "down", "ca", "manifests"] {
            let argv =
                ["kindload", "registry", sub, "--cluster", "dev", "--kube-context", "kind-dev", "--provider", "podman"];
            let cli = Cli::try_parse_from(argv.iter().chain(&["--name", "reg"]))
                .unwrap_or_else(|e| panic!("registry {sub}: {e}"));
            let Command::Registry(command) = cli.command else { panic!("not registry") };
            let target = match command {
                RegistryCommand::Up(a) => a.target,
                RegistryCommand::Status(a) => a.target,
                RegistryCommand::Down(a) => a.target,
                RegistryCommand::Ca(a) => a.target,
                RegistryCommand::Manifests(a) => a.target,
            };
            assert_eq!(target.cluster.cluster.as_deref(), Some("dev"), "{sub}");
            assert_eq!(target.cluster.kube_context.as_deref(), Some("kind-dev"), "{sub}");
            assert_eq!(target.cluster.provider, Some(EngineKind::Podman), "{sub}");
            assert_eq!(target.name, "reg", "{sub}");
        }
    }
}
