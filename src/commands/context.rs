//! What every command shares: the runner, the output style, and the environment read once.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};
use crate::exec::{RealRunner, Runner};
use crate::report::style::Style;
use crate::request::cli::{ClusterArgs, EngineArgs};
use crate::request::config::{self, Config};
use crate::resolve::cluster::{self, ClusterInputs, ClusterName};
use crate::resolve::engine::{self, EngineChoice, EngineKind, Engines};
use crate::resolve::holdings::Depth;
use crate::resolve::node::{self, Node};
use crate::resolve::provider::{NodeContainer, Provider};

pub struct Context {
    pub runner: RealRunner,
    pub style: Style,
    pub config: Config,
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// SIGINT/SIGTERM kill every child at once; the command then tidies up and exits 130.
pub fn install_signal_handlers() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else { return };
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            INTERRUPTED.store(true, Ordering::SeqCst);
            crate::exec::cancel_all();
        }
    });
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

pub fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.trim().is_empty())
}

impl Context {
    pub fn new(quiet: bool, config_flag: Option<&Path>) -> Result<Self> {
        let explicit = config_flag.map(Path::to_path_buf).or_else(|| env("KINDLOAD_CONFIG").map(PathBuf::from));
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        let config = config::load(config::find(explicit.as_deref(), &cwd).as_deref())?;
        Ok(Context { runner: RealRunner, style: Style::detect(quiet), config })
    }

    pub fn runner(&self) -> &dyn Runner {
        &self.runner
    }

    /// A status line on stderr, unless quiet.
    pub fn say(&self, line: impl AsRef<str>) {
        if !self.style.quiet {
            eprintln!("{}", line.as_ref());
        }
    }

    pub fn cluster_name(&self, args: &ClusterArgs) -> Result<ClusterName> {
        cluster::cluster_name(&ClusterInputs {
            flag: args.cluster.clone(),
            env: env("KIND_CLUSTER_NAME"),
            config: self.config.cluster.clone(),
            kube_context: args.kube_context.clone().or_else(|| env("SKAFFOLD_KUBE_CONTEXT")),
            kubeconfig: env("KUBECONFIG"),
            home: std::env::var_os("HOME").map(Into::into),
        })
    }

    /// `--provider`, else KIND_EXPERIMENTAL_PROVIDER, else None (search both).
    pub fn provider_choice(&self, args: &ClusterArgs) -> Result<Option<EngineKind>> {
        if let Some(p) = args.provider {
            return Ok(Some(p));
        }
        match env("KIND_EXPERIMENTAL_PROVIDER") {
            None => Ok(self.config.provider),
            Some(v) => EngineKind::parse(&v).map(Some).ok_or_else(|| {
                Error::usage(
                    format!("KIND_EXPERIMENTAL_PROVIDER={v} is not a provider kindload supports"),
                    "`export KIND_EXPERIMENTAL_PROVIDER=docker` (or podman), or `unset KIND_EXPERIMENTAL_PROVIDER`",
                )
            }),
        }
    }

    /// The cluster, its provider and its node containers, not yet surveyed.
    pub fn cluster(&self, args: &ClusterArgs) -> Result<(ClusterName, Provider, Vec<NodeContainer>)> {
        let name = self.cluster_name(args)?;
        let (provider, containers) = cluster::find_cluster(self.runner(), &name, self.provider_choice(args)?)?;
        Ok((name, provider, containers))
    }

    /// The cluster, its provider, and every node surveyed to `depth`; crictl is asked about `names`.
    pub fn nodes(
        &self,
        args: &ClusterArgs,
        depth: Depth,
        names: &[String],
    ) -> Result<(ClusterName, Provider, Vec<Node>)> {
        let (name, provider, containers) = self.cluster(args)?;
        let nodes = node::probe_all(self.runner(), provider, containers, depth, names);
        Ok((name, provider, nodes))
    }

    pub fn engine_choice(&self, args: &EngineArgs) -> Result<Option<EngineChoice>> {
        if let Some(kind) = args.engine {
            return Ok(Some(EngineChoice { kind, source: "--engine" }));
        }
        match env("KINDLOAD_ENGINE") {
            None => Ok(self.config.engine.map(|kind| EngineChoice { kind, source: "kindload.yaml" })),
            Some(v) => EngineKind::parse(&v)
                .map(|kind| Some(EngineChoice { kind, source: "KINDLOAD_ENGINE" }))
                .ok_or_else(|| {
                    Error::usage(
                        format!("KINDLOAD_ENGINE={v} is not an engine"),
                        "`export KINDLOAD_ENGINE=docker` (or podman), or `unset KINDLOAD_ENGINE`",
                    )
                }),
        }
    }

    /// The engines to look for images in: the chosen one, or every one that answers (and
    /// those that do not, said on stderr, so that a lookup in the others is no surprise).
    /// The engines to look for images in, asked nothing yet: the image lookup is the first
    /// question, so an engine that has the image costs one query and the other none.
    pub fn engines(&self, args: &EngineArgs) -> Result<Engines> {
        Ok(Engines::unprobed(self.engine_choice(args)?))
    }

    /// The engines, each asked about itself (version, storage, rootless): what `doctor` reports.
    pub fn probed_engines(&self, args: &EngineArgs) -> Result<Engines> {
        match self.engine_choice(args)? {
            Some(choice) => Ok(Engines::only(engine::detect(self.runner(), Some(choice))?)),
            None => {
                let all = engine::detect_all(self.runner());
                if all.answering.is_empty() {
                    return Err(crate::resolve::reach::no_engine("engine", None, &all.silent));
                }
                for silent in all.unreachable() {
                    let others: Vec<String> = all.answering.iter().map(|e| e.kind.to_string()).collect();
                    self.say(format!("note: {silent}; looking in {} only", others.join(" and ")));
                }
                Ok(all)
            }
        }
    }
}
