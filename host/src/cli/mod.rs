//! The command line: argument definitions (clap) and the commands they run.

mod daily;
mod diagnostics;
mod outputs;
mod registry;
mod select;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::catalog::{self, familiar};
use crate::frontend::bindings::{KeyValue, Platform};
use crate::frontend::{CallContext, Input, Limits, Runtime, embedded};
use crate::graph;
use crate::store::Store;

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
    pub daily: daily::DailyOpts,

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

    /// Target platform, e.g. linux/amd64 [default: this machine's]
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,

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
    fn with_level(self, level: Option<i32>) -> anyhow::Result<crate::snapshot::Compression> {
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

/// An error whose message is already fully rendered for the user (diagnostics).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Reported(pub String);

/// Run the command line; the returned error is printed by `main`.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let root = cli.root.clone().unwrap_or_else(Store::default_root);
    let reg = Arc::new(crate::registry::Registry::new(
        cli.insecure_registries.clone(),
    ));
    match cli.command {
        None => build(&root, &cli.build, reg),
        Some(Command::Build(opts)) => build(&root, &opts, reg),
        Some(Command::Plan(opts)) => plan(&root, &opts, reg),
        Some(Command::Pull { name, platform }) => {
            let platform = match platform {
                Some(p) => parse_platform(&p)?,
                None => host_platform(),
            };
            registry::pull(&root, &reg, &name, &platform)
        }
        Some(Command::Push { name }) => registry::push(&root, &reg, &name),
        Some(Command::Login {
            server,
            username,
            password,
            password_stdin,
        }) => registry::login(&reg, server, username, password, password_stdin),
        Some(Command::Logout { server }) => registry::logout(server),
        Some(Command::Frontends { action: None }) => frontends(&root),
        Some(Command::Frontends {
            action: Some(FrontendsCommand::Push { file, name }),
        }) => push_frontend(&root, &reg, &file, &name),
        Some(Command::Import { file, tags }) => import(&root, &file, &tags),
        Some(Command::Images) => images(&root),
        Some(Command::Rm { names }) => rm(&root, &names),
        Some(Command::Prune) => prune(&root),
        Some(Command::Du) => du(&root),
        Some(Command::Check { repair }) => check(&root, repair),
        Some(Command::Debug(DebugCommand::Ast { file })) => debug_ast(&file),
    }
}

fn runtime(root: &Path) -> anyhow::Result<Runtime> {
    Runtime::new(Some(root.join("cache/frontends")), Limits::default())
}

/// The platform of this machine, as OCI names it.
pub fn host_platform() -> Platform {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "arm" => "arm",
        other => other,
    };
    Platform {
        os: "linux".into(),
        architecture: arch.into(),
        variant: (arch == "arm64").then(|| "v8".into()),
    }
}

fn parse_platform(s: &str) -> anyhow::Result<Platform> {
    let parts: Vec<&str> = s.split('/').collect();
    match parts.as_slice() {
        [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
            os: os.to_string(),
            architecture: arch.to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
        }),
        _ => bail!("--platform {s:?}: expected OS/ARCH or OS/ARCH/VARIANT, e.g. linux/amd64"),
    }
}

fn parse_build_args(args: &[String]) -> anyhow::Result<Vec<KeyValue>> {
    let mut out: Vec<KeyValue> = Vec::new();
    for a in args {
        let (key, value) = match a.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => match std::env::var(a) {
                Ok(v) => (a.clone(), v),
                // Docker ignores `--build-arg KEY` when KEY is not in the environment.
                Err(_) => continue,
            },
        };
        if key.is_empty() {
            bail!("--build-arg {a:?}: the name is empty; use --build-arg KEY=VALUE");
        }
        out.retain(|kv| kv.key != key);
        out.push(KeyValue { key, value });
    }
    Ok(out)
}

/// The build file's name (for messages) and text.
fn read_build_file(opts: &BuildOpts) -> anyhow::Result<(PathBuf, String)> {
    let path = opts
        .file
        .clone()
        .unwrap_or_else(|| opts.context.join("Dockerfile"));
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the build file from stdin")?;
        return Ok((path, s));
    }
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "cannot read the build file {}; name it with -f FILE",
            path.display()
        )
    })?;
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("{}: the build file is not UTF-8 text", path.display()))?;
    Ok((path, text))
}

/// A translated, validated graph and what produced it.
struct Planned {
    file_name: String,
    frontend: String,
    translation: crate::frontend::Translation,
}

fn translate(
    root: &Path,
    opts: &BuildOpts,
    images: Arc<crate::registry::Images>,
    reg: &crate::registry::Registry,
) -> anyhow::Result<Planned> {
    let (path, source) = read_build_file(opts)?;
    let rt = runtime(root)?;
    let choice = select::choose(opts.frontend.as_deref(), &path, &source)?;
    let fe = match &choice {
        select::Choice::Embedded(e) => rt.load_bytes(e.name, e.bytes)?,
        select::Choice::File(p) => rt.load_file(p)?,
        select::Choice::Registry { reference, line } => {
            let whence = match line {
                Some(l) => format!("{}:{l}: `# syntax={reference}`", path.display()),
                None => format!("--frontend {reference}"),
            };
            let name =
                crate::registry::ImageName::parse(reference).with_context(|| whence.clone())?;
            let pulled = reg
                .pull_frontend(&Store::open(root)?, &name)
                .with_context(|| format!("{whence}: getting the frontend"))?;
            rt.load_bytes(&pulled.pinned, &pulled.component)
                .with_context(|| format!("{whence}: loading {}", pulled.pinned))?
        }
    };
    let target_platform = match &opts.platform {
        Some(p) => parse_platform(p)?,
        None => host_platform(),
    };
    let file_name = path.display().to_string();
    let input = Input {
        file_name: file_name.clone(),
        source: source.clone(),
        build_args: parse_build_args(&opts.build_args)?,
        target: opts.target.clone(),
        target_platform,
        build_platform: host_platform(),
    };
    let cx = CallContext {
        images,
        context_dir: Some(opts.context.clone()),
    };
    let translation = match rt.translate(&fe, &input, &cx)? {
        Ok(t) => t,
        Err(diags) => return Err(Reported(diagnostics::render(&diags, &source, false)).into()),
    };
    graph::validate(&translation.graph)
        .with_context(|| format!("frontend {} returned an invalid stage graph", fe.label))?;
    if !translation.warnings.is_empty() {
        eprint!(
            "{}",
            diagnostics::render(&translation.warnings, &source, true)
        );
    }
    Ok(Planned {
        file_name,
        frontend: format!("{} ({})", fe.label, fe.digest),
        translation,
    })
}

fn plan(root: &Path, opts: &PlanOpts, reg: Arc<crate::registry::Registry>) -> anyhow::Result<()> {
    // Planning asks registries only with --pull; otherwise images come from the store.
    let store = Store::open(root)?;
    let platform = opts
        .build
        .platform
        .as_deref()
        .map(parse_platform)
        .transpose()?;
    let aliases = daily::named_contexts(
        &opts.build.daily,
        &store,
        &platform.unwrap_or_else(host_platform),
    )?;
    let images = Arc::new(
        crate::registry::Images::new(
            store,
            opts.build.pull.then_some(reg.clone()),
            opts.build.pull,
        )
        .with_aliases(aliases),
    );
    let planned = translate(root, &opts.build, images.clone(), &reg)?;
    let plan = graph::Plan::new(
        &planned.file_name,
        &planned.frontend,
        &planned.translation.graph,
        &planned.translation.warnings,
    );
    match opts.format {
        PlanFormat::Json => {
            // Every image reference the frontend resolved, pinned by digest.
            let mut v: serde_json::Value = serde_json::from_str(&plan.to_json())?;
            v["images"] = serde_json::to_value(images.resolutions())?;
            println!("{}", serde_json::to_string_pretty(&v)?)
        }
        PlanFormat::Dot => print!("{}", plan.to_dot()),
    }
    Ok(())
}

/// `--secret id=ID,src=PATH` | `id=ID,env=VAR` | `id=ID` (the variable `ID`), as Docker
/// (`source=` and `type=file|env` are accepted too).
fn parse_secret(spec: &str) -> anyhow::Result<(String, crate::build::SecretSource)> {
    use crate::build::SecretSource;
    let (mut id, mut src, mut env, mut kind) = (None, None, None, None);
    for part in spec.split(',') {
        let (k, v) = part.split_once('=').ok_or_else(|| {
            anyhow::anyhow!("--secret {spec:?}: expected key=value pairs, e.g. id=ID,src=PATH")
        })?;
        match k.trim() {
            "id" => id = Some(v.to_string()),
            "src" | "source" => src = Some(v.to_string()),
            "env" => env = Some(v.to_string()),
            "type" => kind = Some(v.to_string()),
            other => anyhow::bail!(
                "--secret {spec:?}: unknown key {other:?} (use id=ID,src=PATH or id=ID,env=VAR)"
            ),
        }
    }
    let id = id
        .filter(|i| !i.is_empty())
        .ok_or_else(|| anyhow::anyhow!("--secret {spec:?}: missing id=ID"))?;
    let source = match (kind.as_deref(), src, env) {
        (_, Some(_), Some(_)) => {
            anyhow::bail!("--secret {spec:?}: give either src=PATH or env=VAR, not both")
        }
        (Some("env"), Some(v), None) | (_, None, Some(v)) => SecretSource::Env(v),
        (Some("file") | None, Some(p), None) => SecretSource::File(PathBuf::from(p)),
        (Some("file"), None, None) => SecretSource::File(PathBuf::from(&id)),
        (Some("env") | None, None, None) => SecretSource::Env(id.clone()),
        (Some(t), _, _) => anyhow::bail!("--secret {spec:?}: unknown type {t:?} (file or env)"),
    };
    Ok((id, source))
}

/// `--ssh default` | `--ssh ID=SOCKET`: an SSH agent socket by id. Key files (which BuildKit
/// loads into an agent of its own) are refused with what to do instead.
fn parse_ssh(spec: &str) -> anyhow::Result<(String, PathBuf)> {
    let (id, path) = match spec.split_once('=') {
        Some((id, p)) => (id.to_string(), PathBuf::from(p)),
        None => {
            let sock = std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty());
            let Some(sock) = sock else {
                bail!(
                    "--ssh {spec}: SSH_AUTH_SOCK is not set; start an agent (`eval $(ssh-agent)` \
                     and `ssh-add`) or give its socket: --ssh {spec}=/path/to/agent.sock"
                );
            };
            (spec.to_string(), PathBuf::from(sock))
        }
    };
    if id.is_empty() {
        bail!("--ssh {spec:?}: the id is empty; use --ssh default or --ssh ID=SOCKET");
    }
    use std::os::unix::fs::FileTypeExt;
    let md = std::fs::metadata(&path)
        .with_context(|| format!("--ssh {spec}: cannot use {}", path.display()))?;
    if !md.file_type().is_socket() {
        bail!(
            "--ssh {spec}: {} is not an agent socket (key files are not loaded by wbuild; \
             add the key to an ssh-agent with `ssh-add` and pass the agent)",
            path.display()
        );
    }
    Ok((id, path))
}

fn build(root: &Path, opts: &BuildOpts, reg: Arc<crate::registry::Registry>) -> anyhow::Result<()> {
    let mut outputs = opts
        .outputs
        .iter()
        .map(|o| outputs::parse(o))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if opts.push {
        if opts.tags.is_empty() {
            bail!("--push needs a name to push to: add -t NAME[:TAG]");
        }
        for t in &opts.tags {
            outputs.push(crate::build::Output::Registry(t.clone()));
        }
    }
    if opts.load {
        outputs::check_load_platform(opts.platform.as_deref())?;
        outputs.push(crate::build::Output::Load);
    }
    outputs::check_one_stdout(&outputs)?;
    let store = Store::open(root)?;
    // What killed builds left behind is cleared first, while no other wbuild uses the store
    // (it needs the GC lock alone, so before this build takes its share below).
    match crate::check::sweep_if_idle(&store) {
        Ok((_, errors)) => {
            for e in errors {
                eprintln!("warning: could not remove a leftover of a dead build: {e}");
            }
        }
        Err(e) => eprintln!("warning: could not look for leftovers of dead builds: {e:#}"),
    }
    // Held from the first blob the frontend's image lookups store, so a prune cannot take them.
    let _gc = store.lock_shared(Store::GC_LOCK)?;
    let platform = opts.platform.as_deref().map(parse_platform).transpose()?;
    let aliases =
        daily::named_contexts(&opts.daily, &store, &platform.unwrap_or_else(host_platform))?;
    let images = Arc::new(
        crate::registry::Images::new(store.clone(), Some(reg.clone()), opts.pull)
            .with_aliases(aliases),
    );
    let planned = translate(root, opts, images.clone(), &reg)?;
    if opts.daily.call_check()? {
        return daily::report_check(&planned.translation.warnings);
    }
    let source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => Some(v.parse::<i64>().map_err(|_| {
            anyhow::anyhow!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds since 1970")
        })?),
        _ => None,
    };
    let limits = crate::exec::ResourceLimits {
        memory: opts
            .memory
            .as_deref()
            .map(crate::exec::parse_memory)
            .transpose()?,
        pids: opts.pids_limit,
        ulimits: opts.daily.ulimits()?,
    };
    let build_opts = crate::build::BuildOptions {
        limits,
        jobs: opts
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        no_cache: opts.no_cache,
        tags: opts.tags.clone(),
        outputs,
        source_date_epoch,
        platform: match &opts.platform {
            Some(p) => parse_platform(p)?,
            None => host_platform(),
        },
        file_name: planned.file_name.clone(),
        compression: opts.compression.with_level(opts.compression_level)?,
        ssh: opts
            .ssh
            .iter()
            .map(|s| parse_ssh(s))
            .collect::<anyhow::Result<Vec<_>>>()?,
        secrets: opts
            .secrets
            .iter()
            .map(|s| parse_secret(s))
            .collect::<anyhow::Result<Vec<_>>>()?,
        cache_from: opts
            .cache_from
            .iter()
            .map(|s| crate::registry::cache::CacheSource::parse(s))
            .collect::<anyhow::Result<Vec<_>>>()?,
        cache_to: opts
            .cache_to
            .iter()
            .map(|s| crate::registry::cache::CacheTarget::parse(s))
            .collect::<anyhow::Result<Vec<_>>>()?,
        labels: opts.daily.labels()?,
        annotations: opts.daily.annotations()?,
        no_cache_stages: opts.daily.no_cache_filter.clone(),
        shm_size: opts.daily.shm_size()?,
    };
    build_opts.limits.check_available()?;
    let quiet = opts.daily.quiet.then(daily::QuietLog::default);
    let progress = match &quiet {
        Some(q) => q.progress(),
        None => crate::progress::Progress::stderr(opts.progress),
    };
    let builder = crate::build::Builder::new(&store, &opts.context, build_opts, progress.clone())?
        .with_registry(images, reg);
    // The live view ends before anything else is printed, the error of a failed build included.
    let result = builder.build(&planned.translation.graph);
    drop(builder);
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            progress.finish();
            if let Some(q) = &quiet {
                q.show();
            }
            return Err(e);
        }
    };
    if quiet.is_some() {
        println!("{}", result.config_digest);
    }
    if let Some(f) = &opts.iidfile {
        write_file_atomically(f, result.config_digest.as_bytes())
            .with_context(|| format!("writing --iidfile {}", f.display()))?;
    }
    if let Some(f) = &opts.metadata_file {
        let names = opts
            .tags
            .iter()
            .map(|t| catalog::normalize(t).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let meta = serde_json::json!({
            "containerimage.digest": result.manifest_digest.to_string(),
            "containerimage.config.digest": result.config_digest,
            "containerimage.descriptor": {
                "mediaType": crate::image::manifest::MEDIA_MANIFEST,
                "digest": result.manifest_digest.to_string(),
                "size": result.manifest_size,
            },
            "image.name": names.join(","),
            "wbuild.steps": { "ran": result.ran, "cached": result.cached },
        });
        let mut text = serde_json::to_vec_pretty(&meta)?;
        text.push(b'\n');
        write_file_atomically(f, &text)
            .with_context(|| format!("writing --metadata-file {}", f.display()))?;
    }
    progress.message(&format!(
        "built {} ({} steps ran, {} cached)",
        result.manifest_digest, result.ran, result.cached
    ));
    for t in &opts.tags {
        progress.message(&format!("named {t}"));
    }
    progress.finish();
    Ok(())
}

/// Write `bytes` to `path` through a temp file beside it and a rename, so a reader never sees
/// half a file.
fn write_file_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let mut tmp = tempfile::NamedTempFile::new_in(dir.unwrap_or(Path::new(".")))?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// `type=oci,dest=out.tar` and friends.
/// `wbuild frontends`: the embedded frontends, then the other frontends compiled in the cache
/// (frontends used with `--frontend FILE.wasm` or `# syntax=FILE.wasm`), each with the name
/// and version it reports, its digest and where it came from.
/// `wbuild frontends push FILE NAME`: checks that FILE is a frontend this wbuild can load, then
/// publishes it as a wasm OCI artifact.
fn push_frontend(
    root: &Path,
    reg: &crate::registry::Registry,
    file: &Path,
    name: &str,
) -> anyhow::Result<()> {
    let rt = runtime(root)?;
    let fe = rt.load_file(file)?;
    let info = rt.info(&fe)?;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let image = crate::registry::ImageName::parse(name)?;
    let (digest, stats) = reg.push_frontend(&Store::open(root)?, &bytes, &image)?;
    println!(
        "pushed {} {} as {} ({} blobs uploaded, {} already there)",
        info.name,
        info.version,
        image.pinned(&digest.to_string()),
        stats.uploaded,
        stats.existing
    );
    Ok(())
}

fn frontends(root: &Path) -> anyhow::Result<()> {
    let rt = runtime(root)?;
    let mut rows = Vec::new();
    let mut embedded_digests = Vec::new();
    for e in embedded::ALL {
        let fe = rt.load_bytes(e.name, e.bytes)?;
        let info = rt.info(&fe)?;
        embedded_digests.push(fe.digest.clone());
        rows.push([
            info.name,
            info.version,
            fe.digest,
            "embedded".to_string(),
            info.description,
        ]);
    }
    let cached = rt.cached()?;
    let mut artifact_bytes = 0;
    for artifact in &cached {
        artifact_bytes += artifact.artifact_size;
        let Some(meta) = &artifact.info else {
            rows.push([
                "?".into(),
                "?".into(),
                "?".into(),
                artifact.path.display().to_string(),
                "an artifact without its description (recompiled on next use)".into(),
            ]);
            continue;
        };
        if embedded_digests.contains(&meta.digest) {
            continue;
        }
        if !artifact.usable {
            rows.push([
                "?".into(),
                "?".into(),
                meta.digest.clone(),
                meta.source.clone(),
                "compiled by another version of wbuild (recompiled on next use)".into(),
            ]);
            continue;
        }
        let described = rt
            .load_cached(artifact)
            .and_then(|fe| rt.info(&fe).map(|i| (fe, i)));
        match described {
            Ok((fe, info)) => rows.push([
                info.name,
                info.version,
                fe.digest,
                meta.source.clone(),
                info.description,
            ]),
            Err(e) => rows.push([
                "?".into(),
                "?".into(),
                meta.digest.clone(),
                meta.source.clone(),
                format!("cannot be loaded: {e:#}"),
            ]),
        }
    }
    let header = ["NAME", "VERSION", "DIGEST", "SOURCE", "DESCRIPTION"].map(String::from);
    let mut widths = [0usize; 4];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (w, cell) in widths.iter().zip(row) {
            line += &format!("{cell:<w$}  ");
        }
        line += &row[4];
        println!("{line}");
    }
    println!(
        "\n{} compiled in {} ({:.1} MiB)",
        cached.len(),
        root.join("cache/frontends").display(),
        artifact_bytes as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}

fn debug_ast(file: &Path) -> anyhow::Result<()> {
    let source =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    match wbuild_parser::parse(&source) {
        Ok(tree) => {
            for node in &tree.children {
                println!("{}", node.dump());
            }
            Ok(())
        }
        Err(e) => {
            let d = crate::frontend::Diagnostic {
                file: file.display().to_string(),
                line: e.line as u32,
                column: e.column as u32,
                message: e.message,
                text: e.text,
            };
            Err(Reported(diagnostics::render(&[d], &source, false)).into())
        }
    }
}

fn import(root: &Path, file: &Path, tags: &[String]) -> anyhow::Result<()> {
    let store = Store::open(root)?;
    for (name, digest) in catalog::import(&store, file, tags)? {
        println!("{} {digest}", familiar(&name));
    }
    Ok(())
}

fn images(root: &Path) -> anyhow::Result<()> {
    let store = Store::open(root)?;
    println!("{:<40} {:<19} {:>10}  CREATED", "NAME", "DIGEST", "SIZE");
    for img in catalog::list(&store)? {
        println!(
            "{:<40} {:<19} {:>10}  {}",
            familiar(&img.name),
            &img.manifest_digest.to_string()[..19],
            human_bytes(img.size()),
            img.config.created.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}

fn rm(root: &Path, names: &[String]) -> anyhow::Result<()> {
    let store = Store::open(root)?;
    for n in names {
        println!("removed {}", familiar(&catalog::remove(&store, n)?));
    }
    Ok(())
}

fn prune(root: &Path) -> anyhow::Result<()> {
    let store = Store::open(root)?;
    let freed = catalog::prune(&store)?;
    println!("freed {} ({freed} bytes)", human_bytes(freed));
    Ok(())
}

fn check(root: &Path, repair: bool) -> anyhow::Result<()> {
    use crate::check;
    let store = Store::open(root)?;
    let _gc = check::lock_store(&store)?;
    let mut report = check::check(&store)?;
    let print = |r: &check::Report| {
        println!(
            "checked {} blobs, {} names, {} cache entries, {} snapshots",
            r.blobs, r.names, r.cache_entries, r.snapshots
        );
        for p in &r.problems {
            println!("problem: {p}");
        }
        for l in &r.leftovers {
            println!("leftover: {l}");
        }
    };
    print(&report);
    if repair && !report.is_clean() {
        let done = check::repair(&store, &report)?;
        for a in &done.actions {
            println!("repair: {a}");
        }
        for e in &done.errors {
            println!("repair failed: {e}");
        }
        report = check::check(&store)?;
        println!("after repair:");
        print(&report);
    }
    let (p, l) = (report.problems.len(), report.leftovers.len());
    if p == 0 {
        // Leftovers of killed runs are not damage: the next build or a prune sweeps them.
        if l == 0 {
            println!("the store is sound");
        } else {
            println!(
                "the store is sound; {l} leftover(s) of killed runs: the next build or \
                 `wbuild prune` removes them"
            );
        }
        return Ok(());
    }
    let hint = if repair {
        "images with missing blobs need a rebuild or re-import (or `wbuild rm NAME`)"
    } else {
        "`wbuild check --repair` removes leftovers, corrupt blobs and broken cache entries"
    };
    bail!("the store has {p} problem(s) and {l} leftover(s); {hint}")
}

fn du(root: &Path) -> anyhow::Result<()> {
    let store = Store::open(root)?;
    let u = store.disk_usage()?;
    println!("{:<12} {:>8} {:>12}", "KIND", "COUNT", "SIZE");
    println!(
        "{:<12} {:>8} {:>12}",
        "blobs",
        u.blobs,
        human_bytes(u.blob_bytes)
    );
    println!("{:<12} {:>8} {:>12}", "images", u.refs, "-");
    let (snapshots, snapshot_bytes) = catalog::snapshot_usage(&store);
    println!(
        "{:<12} {:>8} {:>12}",
        "snapshots",
        snapshots,
        human_bytes(snapshot_bytes)
    );
    println!(
        "{:<12} {:>8} {:>12}",
        "cache",
        u.cache_entries,
        human_bytes(u.cache_bytes)
    );
    println!(
        "{:<12} {:>8} {:>12}",
        "temp",
        u.tmp_files,
        human_bytes(u.tmp_bytes)
    );
    Ok(())
}

/// `1.5 MiB`-style sizes.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
