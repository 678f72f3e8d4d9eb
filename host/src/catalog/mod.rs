//! Local images: names in the store pointing at OCI manifests, and what is built on that —
//! importing archives, listing, removing, pruning unreferenced blobs. (Frontends'
//! `resolve-image-config` is answered by `registry::Images`: the store first, then registries.)

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, bail};
use oci_spec::image::ImageManifest;

use crate::image::{self, ImageConfig, normalize};
use crate::store::{Digest, Store};

/// An image the store has under a name.
#[derive(Debug, Clone)]
pub struct LocalImage {
    pub name: String,
    pub manifest_digest: Digest,
    pub manifest: ImageManifest,
    pub config: ImageConfig,
}

impl LocalImage {
    /// Bytes of the config and all layers (as stored, i.e. compressed).
    pub fn size(&self) -> u64 {
        self.manifest.config().size() + self.manifest.layers().iter().map(|l| l.size()).sum::<u64>()
    }

    /// Every blob the image needs: manifest, config, layers.
    pub fn blobs(&self) -> anyhow::Result<Vec<Digest>> {
        let mut out = vec![self.manifest_digest];
        out.push(self.manifest.config().digest().to_string().parse()?);
        for l in self.manifest.layers() {
            out.push(l.digest().to_string().parse()?);
        }
        Ok(out)
    }
}

fn read_blob(store: &Store, d: &Digest) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    store
        .open_blob(d)?
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading blob {d}"))?;
    Ok(bytes)
}

/// The image named `reference` (any spelling Docker accepts), if the store has it.
pub fn lookup(store: &Store, reference: &str) -> anyhow::Result<Option<LocalImage>> {
    let name = normalize(reference).map_err(anyhow::Error::msg)?;
    let Some(manifest_digest) = store.get_ref(&name)? else {
        return Ok(None);
    };
    load(store, name, manifest_digest).map(Some)
}

fn load(store: &Store, name: String, manifest_digest: Digest) -> anyhow::Result<LocalImage> {
    let manifest: ImageManifest = serde_json::from_slice(&read_blob(store, &manifest_digest)?)
        .with_context(|| format!("{name}: manifest {manifest_digest} is not an image manifest"))?;
    let config_digest: Digest = manifest.config().digest().to_string().parse()?;
    let config = ImageConfig::from_json(&read_blob(store, &config_digest)?)
        .with_context(|| format!("{name}: config {config_digest} is not an image config"))?;
    Ok(LocalImage {
        name,
        manifest_digest,
        manifest,
        config,
    })
}

/// Every named image, sorted by name.
pub fn list(store: &Store) -> anyhow::Result<Vec<LocalImage>> {
    store
        .list_refs()?
        .into_iter()
        .map(|(name, d)| load(store, name, d))
        .collect()
}

/// Import a docker-archive or OCI layout (tar or directory). Images are named by the names
/// the archive carries, plus `tags` (which apply to the single image of the archive).
/// Returns the names set, with their manifest digests.
pub fn import(
    store: &Store,
    path: &Path,
    tags: &[String],
) -> anyhow::Result<Vec<(String, Digest)>> {
    // Like a build: blobs written but not yet named must survive a concurrent prune.
    let _gc = store.lock_shared(Store::GC_LOCK)?;
    let images =
        image::import_path(path, store).with_context(|| format!("importing {}", path.display()))?;
    if images.is_empty() {
        bail!("{}: the archive holds no image", path.display());
    }
    if !tags.is_empty() && images.len() > 1 {
        bail!(
            "{}: the archive holds {} images; -t can only name one (import without -t to keep \
             the archive's own names)",
            path.display(),
            images.len()
        );
    }
    let mut named = Vec::new();
    for img in &images {
        let digest: Digest = img.manifest_digest.parse()?;
        let mut names: Vec<String> = img.names.iter().chain(tags).cloned().collect();
        if names.is_empty() {
            bail!(
                "{}: image {} has no name in the archive; name it with -t NAME[:TAG]",
                path.display(),
                img.manifest_digest
            );
        }
        names.dedup();
        for n in names {
            let n = normalize(&n).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            store.set_ref(&n, &digest)?;
            named.push((n, digest));
        }
    }
    Ok(named)
}

/// Remove a name. The blobs stay until `prune`.
pub fn remove(store: &Store, reference: &str) -> anyhow::Result<String> {
    let name = normalize(reference).map_err(anyhow::Error::msg)?;
    if !store.remove_ref(&name)? {
        bail!("no image named {reference}; `wbuild images` lists them");
    }
    Ok(name)
}

/// Drop every blob no named image needs, the unpacked snapshots (rebuilt on demand from
/// layers), the cache index entries (they would point at pruned layers) and temp files left by
/// killed processes. Waits for running builds (they hold the GC lock shared). Returns the bytes
/// freed.
pub fn prune(store: &Store) -> anyhow::Result<u64> {
    let _gc = store.lock(Store::GC_LOCK)?;
    let mut keep = HashSet::new();
    for img in list(store)? {
        keep.extend(img.blobs()?);
    }
    let leftovers = crate::check::find_leftovers(store)?;
    let (_, errors) = crate::check::remove_leftovers(store, &leftovers);
    if let Some(e) = errors.first() {
        bail!("could not remove a leftover of a dead build: {e}");
    }
    let mut freed = store.prune_blobs(&keep)?;
    store.prune_blob_sources()?;
    for (key, size) in store.list_cache()? {
        if store.remove_cache(&key)? {
            freed += size;
        }
    }
    crate::check::remove_step_locks(store)?;
    for entry in std::fs::read_dir(store.snapshots_dir())? {
        let path = entry?.path();
        freed += tree_size(&path);
        std::fs::remove_dir_all(&path)
            .with_context(|| format!("removing snapshot {}", path.display()))?;
    }
    Ok(freed)
}

/// Unpacked filesystems: how many (layer directories of the overlay snapshotter and flattened
/// snapshots) and the bytes of their files.
pub fn snapshot_usage(store: &Store) -> (u64, u64) {
    let dir = store.snapshots_dir();
    let named = |d: &Path| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(d)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.len() == 64 && Digest::from_hex(n).is_ok())
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut all = named(&dir);
    all.extend(named(&dir.join("layers")));
    let bytes = all.iter().map(|p| tree_size(p)).sum();
    (all.len() as u64, bytes)
}

/// Bytes of the regular files under `path` (not following symlinks).
fn tree_size(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return if meta.is_file() { meta.len() } else { 0 };
    }
    std::fs::read_dir(path)
        .map(|rd| rd.flatten().map(|e| tree_size(&e.path())).sum())
        .unwrap_or(0)
}
