//! The command line: argument definitions (clap) and the commands they run.

mod diagnostics;
mod select;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::catalog::{self, StoreImages, familiar};
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
    Frontends,
    /// Import a docker-archive (`docker save`) or OCI layout, as a tar file or a directory
    Import {
        /// The archive
        file: PathBuf,
        /// Name the imported image (repeatable); needed when the archive carries no name
        #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
        tags: Vec<String>,
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
    /// cache entry's layer; list leftovers of killed runs. Exits non-zero when anything is wrong
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
    /// Frontend component (a .wasm file) or the name of an embedded one (`dockerfile`)
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
    /// type=local,dest=DIR | type=tar,dest=FILE (repeatable)
    #[arg(short = 'o', long = "output", value_name = "type=TYPE,dest=PATH")]
    pub outputs: Vec<String>,

    /// Run every step, ignoring the build cache
    #[arg(long)]
    pub no_cache: bool,

    /// Stages built at the same time [default: the number of cores]
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,

    /// Make a secret available to RUN --mount=type=secret: id=ID,src=PATH (a file) or
    /// id=ID,env=VAR (an environment variable; `id=ID` alone reads $ID) (repeatable)
    #[arg(long = "secret", value_name = "id=ID,src=PATH|env=VAR")]
    pub secrets: Vec<String>,

    /// Memory limit of each RUN step (cgroup), in bytes or with a k/m/g suffix, e.g. 512m
    #[arg(long, value_name = "BYTES")]
    pub memory: Option<String>,

    /// Most processes and threads each RUN step may have at once (cgroup pids limit)
    #[arg(long = "pids-limit", value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub pids_limit: Option<u64>,

    /// Write the image ID (the config digest) to this file
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,

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
    match cli.command {
        None => build(&root, &cli.build),
        Some(Command::Build(opts)) => build(&root, &opts),
        Some(Command::Plan(opts)) => plan(&root, &opts),
        Some(Command::Frontends) => frontends(&root),
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

fn translate(root: &Path, opts: &BuildOpts) -> anyhow::Result<Planned> {
    let (path, source) = read_build_file(opts)?;
    let rt = runtime(root)?;
    let choice = select::choose(opts.frontend.as_deref(), &path, &source)?;
    let fe = match &choice {
        select::Choice::Embedded(e) => rt.load_bytes(e.name, e.bytes)?,
        select::Choice::File(p) => rt.load_file(p)?,
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
        images: Arc::new(StoreImages::new(Store::open(root)?)),
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

fn plan(root: &Path, opts: &PlanOpts) -> anyhow::Result<()> {
    let planned = translate(root, &opts.build)?;
    let plan = graph::Plan::new(
        &planned.file_name,
        &planned.frontend,
        &planned.translation.graph,
        &planned.translation.warnings,
    );
    match opts.format {
        PlanFormat::Json => println!("{}", plan.to_json()),
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

fn build(root: &Path, opts: &BuildOpts) -> anyhow::Result<()> {
    let planned = translate(root, opts)?;
    let outputs = opts
        .outputs
        .iter()
        .map(|o| parse_output(o))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let store = Store::open(root)?;
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
        secrets: opts
            .secrets
            .iter()
            .map(|s| parse_secret(s))
            .collect::<anyhow::Result<Vec<_>>>()?,
    };
    build_opts.limits.check_available()?;
    let builder = crate::build::Builder::new(&store, &opts.context, build_opts)?;
    let result = builder.build(&planned.translation.graph)?;
    if let Some(f) = &opts.iidfile {
        std::fs::write(f, &result.config_digest)
            .with_context(|| format!("writing --iidfile {}", f.display()))?;
    }
    eprintln!(
        "built {} ({} steps ran, {} cached)",
        result.manifest_digest, result.ran, result.cached
    );
    for t in &opts.tags {
        eprintln!("named {t}");
    }
    Ok(())
}

/// `type=oci,dest=out.tar` and friends.
fn parse_output(spec: &str) -> anyhow::Result<crate::build::Output> {
    let mut kind = None;
    let mut dest = None;
    for part in spec.split(',') {
        match part.split_once('=') {
            Some(("type", v)) => kind = Some(v),
            Some(("dest", v)) => dest = Some(PathBuf::from(v)),
            _ => bail!("-o {spec:?}: expected type=oci|docker|local|tar,dest=PATH"),
        }
    }
    let Some(dest) = dest else {
        bail!("-o {spec:?}: dest=PATH is missing");
    };
    Ok(match kind {
        Some("oci") => crate::build::Output::Oci(dest),
        Some("docker") => crate::build::Output::Docker(dest),
        Some("local") => crate::build::Output::Local(dest),
        Some("tar") => crate::build::Output::Tar(dest),
        other => bail!(
            "-o {spec:?}: unknown type {:?}; use oci, docker, local or tar",
            other.unwrap_or("")
        ),
    })
}

fn frontends(root: &Path) -> anyhow::Result<()> {
    let rt = runtime(root)?;
    println!(
        "{:<12} {:<10} {:<73} DESCRIPTION",
        "NAME", "VERSION", "DIGEST"
    );
    for e in embedded::ALL {
        let fe = rt.load_bytes(e.name, e.bytes)?;
        let info = rt.info(&fe)?;
        println!(
            "{:<12} {:<10} {:<73} {} (embedded)",
            info.name, info.version, fe.digest, info.description
        );
    }
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
    if report.is_clean() {
        println!("the store is sound");
        return Ok(());
    }
    let (p, l) = (report.problems.len(), report.leftovers.len());
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
