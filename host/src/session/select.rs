//! Choosing the frontend for a build: `--frontend`, else a `# syntax=` line at the top of the
//! build file, else the embedded Dockerfile frontend.

use std::path::{Path, PathBuf};

use anyhow::bail;

use crate::frontend::embedded::{self, Embedded};

pub enum Choice {
    Embedded(&'static Embedded),
    File(PathBuf),
    /// A frontend published to a registry (`REGISTRY/REPO:TAG` or `@sha256:…`), and the line
    /// of the `# syntax=` directive that named it.
    Registry {
        reference: String,
        line: Option<usize>,
    },
}

/// Whether `value` names a registry artifact rather than a file: a reference with a registry
/// host (`host.domain/…`, `host:port/…`, `localhost/…`) or a digest.
fn is_registry_ref(value: &str) -> bool {
    let Some((first, _)) = value.split_once('/') else {
        return false;
    };
    !value.ends_with(".wasm")
        && (first.contains('.')
            || first.contains(':')
            || first == "localhost"
            || value.contains('@'))
        && crate::registry::ImageName::parse(value).is_ok()
}

/// `flag` is `--frontend`; `build_file` and `source` the build file's path and text.
pub fn choose(flag: Option<&str>, build_file: &Path, source: &str) -> anyhow::Result<Choice> {
    if let Some(f) = flag {
        if let Some(e) = embedded::find(f) {
            return Ok(Choice::Embedded(e));
        }
        if is_registry_ref(f) && !Path::new(f).exists() {
            return Ok(Choice::Registry {
                reference: f.to_string(),
                line: None,
            });
        }
        return Ok(Choice::File(PathBuf::from(f)));
    }
    let Some((value, line)) = syntax_directive(source) else {
        return Ok(Choice::Embedded(&embedded::DOCKERFILE));
    };
    if let Some(e) = embedded::find(&value) {
        return Ok(Choice::Embedded(e));
    }
    if value.ends_with(".wasm") {
        let base = build_file.parent().unwrap_or(Path::new("."));
        return Ok(Choice::File(base.join(value)));
    }
    // Docker's own frontend images name the Dockerfile language; ours is built in.
    let image = value.trim_start_matches("docker.io/");
    if image == "docker/dockerfile"
        || image.starts_with("docker/dockerfile:")
        || image.starts_with("docker/dockerfile@")
    {
        return Ok(Choice::Embedded(&embedded::DOCKERFILE));
    }
    if is_registry_ref(&value) {
        return Ok(Choice::Registry {
            reference: value,
            line: Some(line),
        });
    }
    bail!(
        "{}:{line}: `# syntax={value}` names neither a .wasm file, an embedded frontend ({}) nor \
         a frontend in a registry; give a path ending in .wasm, relative to the build file, or \
         REGISTRY/REPO:TAG of a frontend pushed with `wbuild frontends push`",
        build_file.display(),
        embedded::ALL
            .iter()
            .map(|e| e.name)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The `# syntax=` directive: only in the leading comment lines, as Docker reads it.
pub fn syntax_directive(source: &str) -> Option<(String, usize)> {
    for (i, line) in source.lines().enumerate() {
        let t = line.trim();
        let comment = t.strip_prefix('#')?;
        if let Some((k, v)) = comment.split_once('=')
            && k.trim().eq_ignore_ascii_case("syntax")
        {
            return Some((v.trim().to_string(), i + 1));
        }
    }
    None
}
