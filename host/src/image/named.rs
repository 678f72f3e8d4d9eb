//! Named build contexts (`--build-context NAME=VALUE`, as buildx): what `FROM NAME`,
//! `COPY --from=NAME` and `RUN --mount=from=NAME` get instead of the image NAME.
//!
//! - `docker-image://REF`: the image REF (from the store or its registry);
//! - `oci-layout://PATH[@TAG]`: the image of an OCI layout directory (the entry whose
//!   `org.opencontainers.image.ref.name` is TAG, or whose manifest digest is TAG, or the only
//!   one), imported into the store without naming it;
//! - `PATH`: a directory, as a one-layer image with an empty config (files owned by root, as
//!   the build context's files are), made in the store.
//!
//! Each becomes a reference pinned by digest, which the image resolver substitutes for NAME
//! (see [`crate::registry::Images::with_aliases`]).

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::image::{ConfigBuilder, manifest};
use crate::ir::Platform;
use crate::snapshot::{Compression, LayerWriter};
use crate::store::Store;

/// What a `--build-context` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedContext {
    /// A directory: a one-layer image of its files.
    Dir(PathBuf),
    /// `docker-image://REF`.
    Image(String),
    /// `oci-layout://PATH[@TAG]`.
    OciLayout(PathBuf, Option<String>),
}

/// Parses `NAME=PATH|docker-image://REF|oci-layout://PATH[@TAG]`.
pub fn parse(spec: &str) -> anyhow::Result<(String, NamedContext)> {
    let Some((name, value)) = spec
        .split_once('=')
        .filter(|(n, v)| !n.is_empty() && !v.is_empty())
    else {
        bail!(
            "--build-context {spec:?}: expected NAME=PATH, NAME=docker-image://REF or \
             NAME=oci-layout://PATH[@TAG]"
        );
    };
    let ctx = if let Some(r) = value.strip_prefix("docker-image://") {
        crate::registry::ImageName::parse(r)
            .map_err(|e| anyhow::anyhow!("--build-context {spec:?}: {e}"))?;
        NamedContext::Image(r.to_string())
    } else if let Some(p) = value.strip_prefix("oci-layout://") {
        // A tag never holds a `/`, so `@` in a directory name stays part of the path.
        match p.rsplit_once('@') {
            Some((path, tag)) if !tag.contains('/') && !tag.is_empty() => {
                NamedContext::OciLayout(path.into(), Some(tag.to_string()))
            }
            _ => NamedContext::OciLayout(p.into(), None),
        }
    } else if value.contains("://") {
        bail!(
            "--build-context {spec:?}: unknown source; use a directory, docker-image://REF or \
             oci-layout://PATH[@TAG]"
        );
    } else {
        NamedContext::Dir(value.into())
    };
    Ok((name.to_string(), ctx))
}

/// The reference each NAME stands for, with what the store needs for it made or imported
/// (directories and OCI layouts).
pub fn prepare_all(
    store: &Store,
    contexts: &[(String, NamedContext)],
    platform: &Platform,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let mut out = std::collections::BTreeMap::new();
    for (name, ctx) in contexts {
        out.insert(name.clone(), prepare(store, name, ctx, platform)?);
    }
    Ok(out)
}

/// The reference NAME stands for, preparing what the store needs for it.
pub fn prepare(
    store: &Store,
    name: &str,
    ctx: &NamedContext,
    platform: &Platform,
) -> anyhow::Result<String> {
    let pinned = |digest: &str| format!("wbuild-context/{}@{digest}", name.to_ascii_lowercase());
    match ctx {
        NamedContext::Image(r) => Ok(r.clone()),
        NamedContext::OciLayout(path, tag) => {
            if !path.join("oci-layout").is_file() {
                bail!(
                    "--build-context {name}=oci-layout://{}: not an OCI layout directory (no \
                     oci-layout file)",
                    path.display()
                );
            }
            let images = super::import_path(path, store)
                .with_context(|| format!("--build-context {name}: importing {}", path.display()))?;
            let chosen: Vec<_> = images
                .iter()
                .filter(|i| match tag {
                    None => true,
                    Some(t) => {
                        i.manifest_digest == *t
                            || i.names
                                .iter()
                                .any(|n| n == t || n.ends_with(&format!(":{t}")))
                    }
                })
                .collect();
            match chosen.as_slice() {
                [one] => Ok(pinned(&one.manifest_digest)),
                [] => bail!(
                    "--build-context {name}: {} has no image {}",
                    path.display(),
                    tag.as_deref().unwrap_or("")
                ),
                many => {
                    let names: Vec<String> = many
                        .iter()
                        .map(|i| {
                            i.names
                                .first()
                                .cloned()
                                .unwrap_or(i.manifest_digest.clone())
                        })
                        .collect();
                    bail!(
                        "--build-context {name}: {} holds several images ({}); choose one with \
                         oci-layout://PATH@TAG",
                        path.display(),
                        names.join(", ")
                    )
                }
            }
        }
        NamedContext::Dir(dir) => {
            let md = fs::metadata(dir)
                .with_context(|| format!("--build-context {name}={}", dir.display()))?;
            if !md.is_dir() {
                bail!("--build-context {name}={}: not a directory", dir.display());
            }
            Ok(pinned(&dir_image(store, dir, platform)?))
        }
    }
}

/// Stores a one-layer image of `dir` (owner root, modes and times kept); returns its manifest
/// digest.
fn dir_image(store: &Store, dir: &Path, platform: &Platform) -> anyhow::Result<String> {
    let mut w = LayerWriter::new(store.blob_writer()?, Compression::Gzip { level: 6 })?;
    {
        let mut tar = tar::Builder::new(&mut w);
        tar.mode(tar::HeaderMode::Complete);
        append_tree(&mut tar, dir, "")?;
        tar.finish()?;
    }
    w.flush()?;
    let (digests, blob) = w.finish()?;
    let (layer_digest, layer_size) = blob.finish(None)?;
    let mut config = ConfigBuilder::scratch(&platform.os, &platform.architecture);
    config.layer(
        &format!("build context {}", dir.display()),
        &digests.diff_id,
    );
    let (_, config_bytes, _) = config.build();
    let (cd, csize) = store.put_blob_from_reader(&mut config_bytes.as_slice(), None)?;
    let (_, manifest_bytes, _) = manifest::image_manifest(
        manifest::descriptor(manifest::MEDIA_CONFIG, &cd.to_string(), csize)?,
        vec![manifest::descriptor(
            Compression::Gzip { level: 6 }.media_type(),
            &layer_digest.to_string(),
            layer_size,
        )?],
    )?;
    let (md, _) = store.put_blob_from_reader(&mut manifest_bytes.as_slice(), None)?;
    Ok(md.to_string())
}

fn append_tree<W: std::io::Write>(
    tar: &mut tar::Builder<W>,
    dir: &Path,
    rel: &str,
) -> anyhow::Result<()> {
    let mut names: Vec<_> = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for n in names {
        let path = dir.join(&n);
        let Some(n) = n.to_str() else {
            bail!("non-UTF-8 file name in a build context: {}", path.display());
        };
        let rel = if rel.is_empty() {
            n.to_string()
        } else {
            format!("{rel}/{n}")
        };
        let md = fs::symlink_metadata(&path)?;
        let mut h = tar::Header::new_gnu();
        h.set_metadata_in_mode(&md, tar::HeaderMode::Complete);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(md.mtime().max(0) as u64);
        let ft = md.file_type();
        if ft.is_dir() {
            tar.append_data(&mut h, format!("{rel}/"), std::io::empty())?;
            append_tree(tar, &path, &rel)?;
        } else if ft.is_symlink() {
            h.set_size(0);
            tar.append_link(&mut h, &rel, fs::read_link(&path)?)?;
        } else if ft.is_file() {
            tar.append_data(&mut h, &rel, fs::File::open(&path)?)?;
        } else {
            bail!(
                "--build-context: {} is neither a file, a directory nor a symlink",
                path.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_kinds() {
        assert_eq!(
            parse("base=docker-image://busybox:1").unwrap(),
            ("base".into(), NamedContext::Image("busybox:1".into()))
        );
        assert_eq!(
            parse("l=oci-layout:///x/lay@v2").unwrap(),
            (
                "l".into(),
                NamedContext::OciLayout("/x/lay".into(), Some("v2".into()))
            )
        );
        assert_eq!(
            parse("d=../src").unwrap(),
            ("d".into(), NamedContext::Dir("../src".into()))
        );
        assert!(parse("x=git://h/r").is_err());
        assert!(parse("x").is_err());
    }
}
