//! The build cache outside the store: `--cache-to` exports the cache index entries of a build
//! (with the layers they name) to a registry or to a directory, `--cache-from` imports them, so
//! a machine with an empty store finds every step cached and runs no RUN.
//!
//! Format (the same in a registry and in a directory): an OCI image manifest whose config has
//! the media type [`CACHE_CONFIG`] and whose layers are every layer the records name. The config
//! is JSON `{"version": 1, "records": [{"key": "sha256:…", "record": {"layer": L}}]}`: `key` is a
//! step's cache key, `record` the store's cache index record for it, where `L` is `null` (a
//! step that changed no file) or `{"digest", "diff_id", "size", "media_type"}` of its layer.
//! In a registry the manifest is tagged with the `ref`; in a directory it is an OCI image
//! layout (`oci-layout`, `index.json` naming the manifest, `blobs/sha256/…`).

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use futures_util::{StreamExt, TryStreamExt};
use oci_spec::image::ImageManifest;
use serde::{Deserialize, Serialize};

use super::client::{Registry, is_not_found};
use super::reference::ImageName;
use crate::image::manifest::{self, MEDIA_MANIFEST};
use crate::image::{canonical_json, image_index};
use crate::store::{Digest, Store};

/// Media type of the cache config blob.
pub const CACHE_CONFIG: &str = "application/vnd.wbuild.cache.config.v1+json";
const VERSION: u32 = 1;

/// Which records `--cache-to` exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    /// The steps of the final stage's chain (what the result is made of).
    Min,
    /// Every step of every stage the build ran.
    Max,
}

/// Where a cache lives.
#[derive(Debug, Clone)]
pub enum CacheSource {
    /// `type=registry,ref=NAME`
    Registry(String),
    /// `type=local,src=DIR` (or `dest=DIR` for `--cache-to`)
    Local(PathBuf),
}

/// `--cache-to`: where, and which records.
#[derive(Debug, Clone)]
pub struct CacheTarget {
    /// The registry reference or directory.
    pub place: CacheSource,
    /// Which steps' records go.
    pub mode: CacheMode,
}

/// A layer a record needs.
#[derive(Debug, Clone)]
pub struct CacheLayer {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
}

/// Reads a record's layer (the build owns the record format).
pub type LayerOf = dyn Fn(&[u8]) -> anyhow::Result<Option<CacheLayer>> + Sync;

#[derive(Serialize, Deserialize)]
struct CacheConfig {
    version: u32,
    records: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    key: String,
    record: serde_json::Value,
}

fn pairs(spec: &str, flag: &str) -> anyhow::Result<Vec<(String, String)>> {
    spec.split(',')
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .ok_or_else(|| anyhow::anyhow!("{flag} {spec:?}: expected key=value pairs"))
        })
        .collect()
}

fn place(spec: &str, flag: &str, dir_key: &str) -> anyhow::Result<(CacheSource, Option<String>)> {
    let (mut kind, mut reference, mut dir, mut mode) = (None, None, None, None);
    for (k, v) in pairs(spec, flag)? {
        match k.as_str() {
            "type" => kind = Some(v),
            "ref" => reference = Some(v),
            "mode" => mode = Some(v),
            k if k == dir_key => dir = Some(PathBuf::from(v)),
            // Accepted for compatibility with buildx; wbuild's format has no such knobs.
            "oci-mediatypes" | "image-manifest" | "compression" | "ignore-error" => {}
            other => bail!("{flag} {spec:?}: unknown key {other:?}"),
        }
    }
    let p = match (kind.as_deref(), reference, dir) {
        (Some("registry"), Some(r), None) => {
            ImageName::parse(&r).map_err(|e| anyhow::anyhow!("{flag} {spec:?}: {e}"))?;
            CacheSource::Registry(r)
        }
        (Some("registry"), None, _) => bail!("{flag} {spec:?}: ref=NAME is missing"),
        (Some("local"), None, Some(d)) => CacheSource::Local(d),
        (Some("local"), _, None) => bail!("{flag} {spec:?}: {dir_key}=DIR is missing"),
        (Some(t), _, _) if t != "registry" && t != "local" => {
            bail!("{flag} {spec:?}: unknown type {t:?}; use registry or local")
        }
        (None, _, _) => bail!("{flag} {spec:?}: type=registry or type=local is missing"),
        _ => bail!("{flag} {spec:?}: use type=registry,ref=NAME or type=local,{dir_key}=DIR"),
    };
    Ok((p, mode))
}

impl CacheSource {
    /// `--cache-from type=registry,ref=NAME` | `type=local,src=DIR`.
    pub fn parse(spec: &str) -> anyhow::Result<CacheSource> {
        let (p, mode) = place(spec, "--cache-from", "src")?;
        if mode.is_some() {
            bail!("--cache-from {spec:?}: mode= belongs to --cache-to");
        }
        Ok(p)
    }
}

impl CacheTarget {
    /// `--cache-to type=registry,ref=NAME[,mode=min|max]` | `type=local,dest=DIR[,mode=…]`.
    pub fn parse(spec: &str) -> anyhow::Result<CacheTarget> {
        let (place, mode) = place(spec, "--cache-to", "dest")?;
        let mode = match mode.as_deref() {
            None | Some("min") => CacheMode::Min,
            Some("max") => CacheMode::Max,
            Some(m) => bail!("--cache-to {spec:?}: mode={m:?}; use min or max"),
        };
        Ok(CacheTarget { place, mode })
    }
}

impl fmt::Display for CacheSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheSource::Registry(r) => write!(f, "{r}"),
            CacheSource::Local(d) => write!(f, "{}", d.display()),
        }
    }
}

impl fmt::Display for CacheTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.place.fmt(f)
    }
}

fn need_registry<'a>(
    reg: Option<&'a Registry>,
    what: &CacheSource,
) -> anyhow::Result<&'a Registry> {
    reg.ok_or_else(|| anyhow::anyhow!("cache {what}: no registry access in this build"))
}

/// Writes the cache manifest for `entries` into the store; returns its digest. Records whose
/// layer the store no longer has are left out.
fn write_manifest(
    store: &Store,
    entries: Vec<(Digest, Vec<u8>)>,
    layer_of: &LayerOf,
) -> anyhow::Result<Digest> {
    let mut records = Vec::new();
    let mut layers = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (key, record) in entries {
        if let Some(l) = layer_of(&record)? {
            let d: Digest = l.digest.parse()?;
            if !store.has_blob(&d) {
                continue;
            }
            if seen.insert(d) {
                layers.push(manifest::descriptor(&l.media_type, &l.digest, l.size)?);
            }
        }
        records.push(Entry {
            key: key.to_string(),
            record: serde_json::from_slice(&record)?,
        });
    }
    let config = canonical_json(&CacheConfig {
        version: VERSION,
        records,
    });
    let (cd, csize) = store.put_blob_from_reader(&config[..], None)?;
    let config_desc = manifest::descriptor(CACHE_CONFIG, &cd.to_string(), csize)?;
    let (_, bytes, _) = manifest::image_manifest(config_desc, layers)?;
    let (md, _) = store.put_blob_from_reader(&bytes[..], None)?;
    Ok(md)
}

/// `--cache-to`: exports `entries` (cache key, record) with their layers.
pub fn export(
    store: &Store,
    reg: Option<&Registry>,
    to: &CacheTarget,
    entries: Vec<(Digest, Vec<u8>)>,
    layer_of: &LayerOf,
) -> anyhow::Result<()> {
    let md = write_manifest(store, entries, layer_of)?;
    match &to.place {
        CacheSource::Registry(r) => {
            let name = ImageName::parse(r)?;
            need_registry(reg, &to.place)?
                .push(store, &md, &name)
                .with_context(|| format!("exporting the build cache to {r}"))?;
        }
        CacheSource::Local(dir) => write_layout(store, &md, dir)
            .with_context(|| format!("exporting the build cache to {}", dir.display()))?,
    }
    Ok(())
}

fn read_blob(store: &Store, d: &Digest) -> anyhow::Result<Vec<u8>> {
    let mut b = Vec::new();
    store.open_blob(d)?.read_to_end(&mut b)?;
    Ok(b)
}

/// An OCI layout in `dir` holding the cache manifest and its blobs (blobs already there are
/// kept; `index.json` is replaced last, atomically).
fn write_layout(store: &Store, md: &Digest, dir: &Path) -> anyhow::Result<()> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    let bytes = read_blob(store, md)?;
    let m: ImageManifest = serde_json::from_slice(&bytes)?;
    let mut all = vec![*md, m.config().digest().to_string().parse()?];
    for l in m.layers() {
        all.push(l.digest().to_string().parse()?);
    }
    for d in &all {
        let path = blobs.join(d.hex());
        if path.is_file() && std::fs::metadata(&path)?.len() == store.blob_size(d)? {
            continue;
        }
        let mut src = store.open_blob(d)?;
        crate::image::write_atomic(&path, |f| std::io::copy(&mut src, f).map(|_| ()))?;
    }
    crate::image::write_atomic(&dir.join("oci-layout"), |f| {
        use std::io::Write as _;
        f.write_all(br#"{"imageLayoutVersion":"1.0.0"}"#)
    })?;
    let desc = manifest::descriptor(MEDIA_MANIFEST, &md.to_string(), bytes.len() as u64)?;
    let index = image_index(vec![desc])?;
    crate::image::write_atomic(&dir.join("index.json"), |f| {
        use std::io::Write as _;
        f.write_all(&index)
    })?;
    Ok(())
}

fn parse_config(bytes: &[u8], what: &CacheSource) -> anyhow::Result<CacheConfig> {
    let c: CacheConfig = serde_json::from_slice(bytes)
        .with_context(|| format!("cache {what}: the cache config is not wbuild's format"))?;
    if c.version != VERSION {
        bail!(
            "cache {what}: format version {} (this wbuild reads {VERSION}); export it again",
            c.version
        );
    }
    Ok(c)
}

fn check_manifest(bytes: &[u8], what: &CacheSource) -> anyhow::Result<ImageManifest> {
    let m: ImageManifest = serde_json::from_slice(bytes)
        .with_context(|| format!("cache {what}: not an image manifest"))?;
    if m.config().media_type().to_string() != CACHE_CONFIG {
        bail!(
            "cache {what}: this is an image, not a wbuild build cache (config type {})",
            m.config().media_type()
        );
    }
    Ok(m)
}

/// Adds the imported records to the store's cache index (keeping records the store has);
/// returns how many were added.
fn add_records(store: &Store, config: CacheConfig, layer_of: &LayerOf) -> anyhow::Result<usize> {
    let mut added = 0;
    for e in config.records {
        let key: Digest = e.key.parse()?;
        let record = serde_json::to_vec(&e.record)?;
        if let Some(l) = layer_of(&record)?
            && !store.has_blob(&l.digest.parse()?)
        {
            continue;
        }
        if store.get_cache(&key)?.is_none() {
            store.put_cache(&key, &record)?;
            added += 1;
        }
    }
    Ok(added)
}

/// `--cache-from`: imports a cache's records and layers into the store. A cache that does not
/// exist yet is not an error (the first build creates it): a warning is printed.
pub fn import(
    store: &Store,
    reg: Option<&Registry>,
    from: &CacheSource,
    layer_of: &LayerOf,
) -> anyhow::Result<usize> {
    match from {
        CacheSource::Registry(r) => {
            let reg = need_registry(reg, from)?;
            let name = ImageName::parse(r)?;
            let conn = reg.conn(&name.host)?;
            let conn = &conn;
            reg.block_on(async {
                let oci = name.oci();
                let probe = reg
                    .retry(|| conn.client.fetch_manifest_digest(&oci, &conn.auth))
                    .await;
                if let Err(e) = &probe
                    && is_not_found(e)
                {
                    eprintln!("warning: no build cache at {r} yet; building without it");
                    return Ok(0);
                }
                let (bytes, _) = reg.fetch_manifest(conn, store, &name).await?;
                let m = check_manifest(&bytes, from)?;
                reg.fetch_blob(conn, store, &name, m.config()).await?;
                let config = parse_config(
                    &read_blob(store, &m.config().digest().to_string().parse()?)?,
                    from,
                )?;
                futures_util::stream::iter(m.layers())
                    .map(|l| reg.fetch_blob(conn, store, &name, l))
                    .buffer_unordered(4)
                    .try_collect::<Vec<bool>>()
                    .await?;
                add_records(store, config, layer_of)
            })
        }
        CacheSource::Local(dir) => {
            let index = dir.join("index.json");
            let bytes = match std::fs::read(&index) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    eprintln!(
                        "warning: no build cache in {} yet; building without it",
                        dir.display()
                    );
                    return Ok(0);
                }
                Err(e) => return Err(e).with_context(|| format!("reading {}", index.display())),
            };
            let idx: oci_spec::image::ImageIndex = serde_json::from_slice(&bytes)
                .with_context(|| format!("{}: not an OCI index", index.display()))?;
            let Some(desc) = idx.manifests().first() else {
                bail!("cache {}: index.json names no manifest", dir.display());
            };
            let copy_in = |d: &str| -> anyhow::Result<Digest> {
                let d: Digest = d.parse()?;
                if !store.has_blob(&d) {
                    let path = dir.join("blobs/sha256").join(d.hex());
                    let f = std::fs::File::open(&path)
                        .with_context(|| format!("cache {}: missing blob {d}", dir.display()))?;
                    store
                        .put_blob_from_reader(f, Some(&d))
                        .with_context(|| format!("cache {}: blob {d} is damaged", dir.display()))?;
                }
                Ok(d)
            };
            let md = copy_in(desc.digest().as_ref())?;
            let m = check_manifest(&read_blob(store, &md)?, from)?;
            let cd = copy_in(m.config().digest().as_ref())?;
            let config = parse_config(&read_blob(store, &cd)?, from)?;
            for l in m.layers() {
                copy_in(l.digest().as_ref())?;
            }
            add_records(store, config, layer_of)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_specs() {
        let t = CacheTarget::parse("type=registry,ref=127.0.0.1:5000/c:build,mode=max").unwrap();
        assert!(matches!(t.place, CacheSource::Registry(ref r) if r == "127.0.0.1:5000/c:build"));
        assert_eq!(t.mode, CacheMode::Max);
        let t = CacheTarget::parse("type=local,dest=/tmp/c").unwrap();
        assert!(matches!(t.place, CacheSource::Local(_)));
        assert_eq!(t.mode, CacheMode::Min);
        assert!(CacheSource::parse("type=local,src=/tmp/c").is_ok());
        for bad in [
            "type=local,dest=/x,mode=all",
            "type=s3,ref=x",
            "ref=x",
            "type=registry",
            "type=local",
        ] {
            assert!(CacheTarget::parse(bad).is_err(), "{bad}");
        }
        assert!(CacheSource::parse("type=registry,ref=x,mode=max").is_err());
        assert!(CacheSource::parse("type=local,dest=/x").is_err());
    }
}
