//! `-o/--output` as buildx reads it: `type=oci|docker|local|tar,dest=PATH`,
//! `type=registry,name=NAME` (or `type=image,name=NAME,push=true`), a bare `PATH` for
//! `type=local,dest=PATH`, and `-` (or `dest=-` of the tar-shaped types) for standard output,
//! which must not be a terminal.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

use anyhow::bail;

use crate::builder::Output;

/// Whether an output path means standard output.
pub fn is_stdout(p: &Path) -> bool {
    p == Path::new("-")
}

/// Parses one `-o` value.
pub fn parse(spec: &str) -> anyhow::Result<Output> {
    if !spec.contains('=') {
        // buildx: a bare value is a local directory, `-` a tar of the filesystem on stdout.
        if spec.is_empty() {
            bail!("-o \"\": give a directory, `-`, or type=TYPE,dest=PATH");
        }
        if spec == "-" {
            check_stdout(spec)?;
            return Ok(Output::Tar(PathBuf::from("-")));
        }
        return Ok(Output::Local(PathBuf::from(spec)));
    }
    let mut kind = None;
    let mut dest = None;
    let mut name = None;
    let mut push = None;
    for part in spec.split(',') {
        match part.split_once('=') {
            Some(("type", v)) => kind = Some(v),
            Some(("dest", v)) => dest = Some(PathBuf::from(v)),
            Some(("name", v)) => name = Some(v.to_string()),
            Some(("push", v)) => push = Some(v),
            _ => bail!(
                "-o {spec:?}: expected type=oci|docker|local|tar,dest=PATH or type=registry,name=NAME"
            ),
        }
    }
    if kind == Some("registry") || (kind == Some("image") && push == Some("true")) {
        let Some(name) = name else {
            bail!("-o {spec:?}: name=NAME is missing (where to push)");
        };
        crate::registry::ImageName::parse(&name)
            .map_err(|e| anyhow::anyhow!("-o {spec:?}: {e}"))?;
        return Ok(Output::Registry(name));
    }
    let Some(dest) = dest else {
        bail!("-o {spec:?}: dest=PATH is missing");
    };
    if is_stdout(&dest) {
        if kind == Some("local") {
            bail!(
                "-o {spec:?}: type=local writes a directory; use type=tar,dest=- for the \
                 filesystem on standard output"
            );
        }
        check_stdout(spec)?;
    }
    Ok(match kind {
        Some("oci") => Output::Oci(dest),
        Some("docker") => Output::Docker(dest),
        Some("local") => Output::Local(dest),
        Some("tar") => Output::Tar(dest),
        other => bail!(
            "-o {spec:?}: unknown type {:?}; use oci, docker, local, tar or registry",
            other.unwrap_or("")
        ),
    })
}

fn check_stdout(spec: &str) -> anyhow::Result<()> {
    if std::io::stdout().is_terminal() {
        bail!(
            "-o {spec:?}: refusing to write a tar to a terminal; redirect standard output to a \
             file or a pipe (… > image.tar, … | docker load)"
        );
    }
    Ok(())
}

/// At most one output may go to standard output.
pub fn check_one_stdout(outputs: &[Output]) -> anyhow::Result<()> {
    let n = outputs
        .iter()
        .filter(|o| match o {
            Output::Oci(p) | Output::Docker(p) | Output::Tar(p) => is_stdout(p),
            Output::Local(_) | Output::Registry(_) | Output::Load => false,
        })
        .count();
    if n > 1 {
        bail!("only one -o can write to standard output (dest=-)");
    }
    Ok(())
}

/// `--load` takes one platform: `docker load` keeps one image per name.
pub fn check_load_platform(platform: Option<&str>) -> anyhow::Result<()> {
    if let Some(p) = platform.filter(|p| p.contains(',')) {
        bail!(
            "--load with --platform {p}: the Docker engine takes one platform per image name; \
             build and load each platform on its own (--platform linux/amd64 --load), or push \
             the platforms to a registry"
        );
    }
    Ok(())
}

/// The output a multi-platform result cannot have (as buildx): a Docker image.
pub fn check_multi_platform(outputs: &[Output]) -> anyhow::Result<()> {
    if outputs.iter().any(|o| matches!(o, Output::Docker(_))) {
        bail!(
            "-o type=docker with several platforms: a Docker archive holds one platform's \
             image; choose one with --platform, or write all with -o type=oci"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_values_are_local_dirs() {
        assert!(matches!(parse("out/dir").unwrap(), Output::Local(p) if p == Path::new("out/dir")));
        assert!(parse("type=local,dest=-").is_err());
        assert!(parse("").is_err());
    }
}
