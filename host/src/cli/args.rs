//! The command line's arguments (clap): the commands and their options. Turning them into
//! requests is [`super::build`]'s and [`super::parse`]'s job.
//!
//! Every option is documented by its help text; clap's derive reads doc comments as help, so
//! the subcommand and flatten fields that have none are exempt from `missing_docs` here.
#![allow(missing_docs)]

use std::path::PathBuf;

use anyhow::bail;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Build container images from build files whose language is a WebAssembly component.
#[derive(Parser, Debug)]
#[command(name = "wbuild", version)]
pub struct Cli {
    /// Where wbuild keeps its store and caches [default: /var/lib/wbuild as root,
    /// $XDG_DATA_HOME/wbuild otherwise]
    #[arg(long, global = true, env = "WBUILD_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// Treat this registry (`HOST` or `HOST:PORT`; repeatable) as insecure: HTTPS without
    /// certificate checks if it speaks TLS, else plain HTTP. Loopback hosts always are
    #[arg(long = "insecure-registry", global = true, value_name = "HOST")]
    pub insecure_registries: Vec<String>,

    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub build: BuildOpts,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build an image (the default command: `wbuild .` is `wbuild build .`)
    Build(BuildOpts),
    /// Print the stage graph a build would run, pruned to the target, without running it
    Plan(PlanOpts),
    /// List the frontends built into wbuild and those compiled in the cache
    Frontends {
        #[command(subcommand)]
        action: Option<FrontendsCommand>,
    },
    /// Import a docker-archive (`docker save`) or OCI layout, as a tar file or a directory
    Import {
        /// The archive
        file: PathBuf,
        /// Name the imported image (repeatable); needed when the archive carries no name
        #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
        tags: Vec<String>,
    },
    /// Pull an image from its registry into the store
    Pull {
        /// The image, e.g. alpine:3.20, ghcr.io/org/app@sha256:…
        name: String,
        /// The platform to pull from a multi-platform image [default: this machine's]
        #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
        platform: Option<String>,
    },
    /// Push an image of the store to its registry (the name says where)
    Push {
        /// The image's name in the store, which is also where it goes
        name: String,
    },
    /// Save credentials for a registry (in Docker's config file or its credential helper)
    Login {
        /// The registry host, e.g. ghcr.io or 127.0.0.1:5000 [default: docker.io]
        server: Option<String>,
        /// The user name
        #[arg(short = 'u', long)]
        username: Option<String>,
        /// The password (visible in the process list: prefer --password-stdin)
        #[arg(short = 'p', long)]
        password: Option<String>,
        /// Read the password from stdin
        #[arg(long)]
        password_stdin: bool,
    },
    /// Forget the credentials for a registry
    Logout {
        /// The registry host [default: docker.io]
        server: Option<String>,
    },
    /// List the images in the store
    Images,
    /// Remove image names (their blobs go with the next `prune`)
    Rm {
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
    /// Delete blobs no image needs and temp files left by interrupted runs
    Prune,
    /// Show how much disk the store uses
    Du,
    /// Verify the store: every blob's digest, every name's manifest, config and layers, every
    /// cache entry's layer; list leftovers of killed runs (not damage: the next build or
    /// `prune` removes them). Exits non-zero only for damage
    Check {
        /// Remove leftovers, corrupt blobs, cache entries whose layer is gone and unreadable
        /// name records (never a blob whose content is intact)
        #[arg(long)]
        repair: bool,
    },
    /// Tools for checking frontends and parsers
    #[command(subcommand)]
    Debug(DebugCommand),
}

#[derive(Subcommand, Debug)]
pub enum FrontendsCommand {
    /// Publish a frontend component to a registry, for `# syntax=REGISTRY/REPO:TAG`
    Push {
        /// The component (.wasm)
        file: PathBuf,
        /// Where to push it, e.g. registry.example.com/frontends/toml:1
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum DebugCommand {
    /// Print a Dockerfile's parse tree in BuildKit's dump format
    Ast {
        /// The Dockerfile
        file: PathBuf,
    },
}

/// What selects and feeds the frontend; shared by `build` and `plan`.
#[derive(Args, Debug, Clone)]
pub struct BuildOpts {
    #[command(flatten)]
    pub daily: super::daily::DailyOpts,

    /// Frontend component (a .wasm file) or the name of an embedded one (`dockerfile`,
    /// `dockerfile-ext`)
    #[arg(long, value_name = "FILE.wasm")]
    pub frontend: Option<String>,

    /// The build file [default: CONTEXT/Dockerfile]; `-` reads it from stdin
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Set a build argument; `KEY` alone takes the value from the environment
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,

    /// The stage to build [default: the last one]
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,

    /// Target platform, e.g. linux/amd64, or a comma-separated list of them
    /// (linux/amd64,linux/arm64) for a multi-platform image index [default: this machine's]
    #[arg(long, value_name = "OS/ARCH[/VARIANT][,...]")]
    pub platform: Option<String>,

    /// Attach a SLSA provenance attestation to the result (making it an image index):
    /// mode=min, mode=max (also the build args) or false [default: mode=min with --push or
    /// -o type=registry, else false]
    #[arg(long, value_name = "mode=min|max|false")]
    pub provenance: Option<String>,

    /// Name the result (repeatable)
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,

    /// Also write the result: type=oci,dest=PATH[.tar] | type=docker,dest=FILE.tar |
    /// type=local,dest=DIR | type=tar,dest=FILE | DIR | - (dest=- is standard output;
    /// repeatable)
    #[arg(short = 'o', long = "output", value_name = "type=TYPE,dest=PATH")]
    pub outputs: Vec<String>,

    /// Run every step, ignoring the build cache
    #[arg(long)]
    pub no_cache: bool,

    /// Resolve every base image's tag on its registry, even when the store has it
    #[arg(long)]
    pub pull: bool,

    /// Push the result to the registry of every -t name
    #[arg(long)]
    pub push: bool,

    /// Load the result into the local Docker engine (DOCKER_HOST, default
    /// /var/run/docker.sock), named with every -t name
    #[arg(long)]
    pub load: bool,

    /// Export the build cache: type=registry,ref=NAME[,mode=min|max] or
    /// type=local,dest=DIR[,mode=min|max] (repeatable)
    #[arg(long = "cache-to", value_name = "type=TYPE,...")]
    pub cache_to: Vec<String>,

    /// Import a build cache: type=registry,ref=NAME or type=local,src=DIR (repeatable)
    #[arg(long = "cache-from", value_name = "type=TYPE,...")]
    pub cache_from: Vec<String>,

    /// Stages built at the same time [default: the number of cores]
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,

    /// Make a secret available to RUN --mount=type=secret: id=ID,src=PATH (a file) or
    /// id=ID,env=VAR (an environment variable; `id=ID` alone reads $ID) (repeatable)
    #[arg(long = "secret", value_name = "id=ID,src=PATH|env=VAR")]
    pub secrets: Vec<String>,

    /// Give RUN --mount=type=ssh an SSH agent: `default` (or any ID) alone forwards the agent of
    /// $SSH_AUTH_SOCK, ID=SOCKET a given agent socket (repeatable)
    #[arg(long = "ssh", value_name = "ID[=SOCKET]")]
    pub ssh: Vec<String>,

    /// Memory limit of each RUN step (cgroup), in bytes or with a k/m/g suffix, e.g. 512m
    #[arg(long, value_name = "BYTES")]
    pub memory: Option<String>,

    /// Most processes and threads each RUN step may have at once (cgroup pids limit)
    #[arg(long = "pids-limit", value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub pids_limit: Option<u64>,

    /// Network of every RUN that does not choose one with `RUN --network`: `default` (outbound
    /// network through slirp4netns), `none`, or `host` (needs `--allow network.host`)
    #[arg(long, value_name = "default|none|host", default_value = "default")]
    pub network: String,

    /// Grant an entitlement: `network.host` (RUN --network=host, --network host) or
    /// `security.insecure` (RUN --security=insecure) (repeatable)
    #[arg(long = "allow", value_name = "ENTITLEMENT")]
    pub allow: Vec<String>,

    /// Add a line to every RUN's /etc/hosts: NAME:IP (repeatable)
    #[arg(long = "add-host", value_name = "NAME:IP")]
    pub add_hosts: Vec<String>,

    /// Write the image ID (the config digest) to this file
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,

    /// Write the build result's metadata (digests, names) as JSON to this file
    #[arg(long, value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,

    /// How to show progress: a live view on a terminal (`tty`), a log (`plain`), JSON lines
    /// (`json`); `auto` is tty on a terminal, else plain
    #[arg(long, value_enum, default_value_t = crate::progress::Mode::Auto)]
    pub progress: crate::progress::Mode,

    /// Compression of the layers this build writes
    #[arg(long, value_enum, default_value_t = LayerCompression::Gzip)]
    pub compression: LayerCompression,

    /// Compression level [default: 6 for gzip (0-9), 3 for zstd (1-22)]
    #[arg(long, value_name = "N")]
    pub compression_level: Option<i32>,

    /// The build context directory
    #[arg(value_name = "CONTEXT", default_value = ".")]
    pub context: PathBuf,
}

#[derive(Args, Debug)]
pub struct PlanOpts {
    #[command(flatten)]
    pub build: BuildOpts,

    /// Output format
    #[arg(long, value_enum, default_value_t = PlanFormat::Json)]
    pub format: PlanFormat,
}

/// `--compression`: how new layers are compressed.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCompression {
    Gzip,
    Zstd,
}

impl LayerCompression {
    pub(super) fn with_level(
        self,
        level: Option<i32>,
    ) -> anyhow::Result<crate::snapshot::Compression> {
        use crate::snapshot::Compression;
        Ok(match self {
            LayerCompression::Gzip => match level.unwrap_or(6) {
                l @ 0..=9 => Compression::Gzip { level: l as u32 },
                l => bail!("--compression-level {l}: gzip levels are 0 to 9"),
            },
            LayerCompression::Zstd => match level.unwrap_or(3) {
                l @ 1..=22 => Compression::Zstd { level: l },
                l => bail!("--compression-level {l}: zstd levels are 1 to 22"),
            },
        })
    }
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum PlanFormat {
    Json,
    Dot,
}
