//! Parsing option values: `--build-arg`, `--secret`, `--ssh`, `-o`, and reading the build file.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::args::BuildOpts;
use crate::builder::SecretSource;
use crate::ir::KeyValue;
use crate::session::BuildFile;

pub(super) fn parse_build_args(args: &[String]) -> anyhow::Result<Vec<KeyValue>> {
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
pub(super) fn read_build_file(opts: &BuildOpts) -> anyhow::Result<BuildFile> {
    let path = opts
        .file
        .clone()
        .unwrap_or_else(|| opts.context.join("Dockerfile"));
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the build file from stdin")?;
        return Ok(BuildFile { path, text: s });
    }
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "cannot read the build file {}; name it with -f FILE",
            path.display()
        )
    })?;
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("{}: the build file is not UTF-8 text", path.display()))?;
    Ok(BuildFile { path, text })
}

/// `--secret id=ID,src=PATH` | `id=ID,env=VAR` | `id=ID` (the variable `ID`), as Docker
/// (`source=` and `type=file|env` are accepted too).
pub(super) fn parse_secret(spec: &str) -> anyhow::Result<(String, SecretSource)> {
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
pub(super) fn parse_ssh(spec: &str) -> anyhow::Result<(String, PathBuf)> {
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
