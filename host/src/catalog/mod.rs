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

/// An image the store has under a name: an image manifest, or an image index (a
/// multi-platform result) whose platforms' images, and attestation manifests, are listed.
#[derive(Debug, Clone)]
pub struct LocalImage {
    pub name: String,
    /// What the name points at: the manifest, or the index.
    pub digest: Digest,
    /// The image manifest (of an index: this machine's platform if it has it, else the first).
    pub manifest_digest: Digest,
    pub manifest: ImageManifest,
    pub config: ImageConfig,
    /// Of an index: every platform's image (`os/arch[/variant]`, manifest digest, manifest,
    /// config), in the index's order.
    pub platforms: Vec<(String, Digest, ImageManifest, ImageConfig)>,
    /// Of an index: its attestation manifests.
    pub attestations: Vec<(Digest, ImageManifest)>,
}

impl LocalImage {
    /// Bytes of the configs and layers of every platform and attestation (as stored, i.e.
    /// compressed), each blob counted once.
    pub fn size(&self) -> u64 {
        let mut seen = HashSet::new();
        let mut total = 0;
        let manifests: Vec<&ImageManifest> = if self.platforms.is_empty() {
            vec![&self.manifest]
        } else {
            self.platforms
                .iter()
                .map(|p| &p.2)
                .chain(self.attestations.iter().map(|a| &a.1))
                .collect()
        };
        for m in manifests {
            for d in std::iter::once(m.config()).chain(m.layers()) {
                if seen.insert(d.digest().to_string()) {
                    total += d.size();
                }
            }
        }
        total
    }

    /// Every blob the image needs: index, manifests, configs, layers.
    pub fn blobs(&self) -> anyhow::Result<Vec<Digest>> {
        let mut out = vec![self.digest];
        let mut manifests = vec![(self.manifest_digest, &self.manifest)];
        manifests.extend(self.platforms.iter().map(|p| (p.1, &p.2)));
        manifests.extend(self.attestations.iter().map(|a| (a.0, &a.1)));
        for (d, m) in manifests {
            out.push(d);
            out.push(m.config().digest().to_string().parse()?);
            for l in m.layers() {
                out.push(l.digest().to_string().parse()?);
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// The platforms of the image: `os/arch[/variant]` of each (one for a manifest).
    pub fn platform_names(&self) -> Vec<String> {
        if self.platforms.is_empty() {
            let c = &self.config;
            let mut p = format!("{}/{}", c.os, c.architecture);
            if let Some(v) = &c.variant {
                p = format!("{p}/{v}");
            }
            vec![p]
        } else {
            self.platforms.iter().map(|p| p.0.clone()).collect()
        }
    }

    /// The image for `platform`: of an index the entry for it, of a manifest the manifest if
    /// its config is for it.
    pub fn for_platform(
        &self,
        platform: &crate::ir::Platform,
    ) -> Option<(Digest, ImageManifest, ImageConfig)> {
        use crate::registry::matches_platform;
        if self.platforms.is_empty() {
            return matches_platform(&self.config, platform).then(|| {
                (
                    self.manifest_digest,
                    self.manifest.clone(),
                    self.config.clone(),
                )
            });
        }
        self.platforms
            .iter()
            .find(|p| matches_platform(&p.3, platform))
            .map(|p| (p.1, p.2.clone(), p.3.clone()))
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

fn load_manifest(
    store: &Store,
    name: &str,
    manifest_digest: &Digest,
) -> anyhow::Result<(ImageManifest, ImageConfig)> {
    let manifest: ImageManifest = serde_json::from_slice(&read_blob(store, manifest_digest)?)
        .with_context(|| format!("{name}: manifest {manifest_digest} is not an image manifest"))?;
    let config_digest: Digest = manifest.config().digest().to_string().parse()?;
    let config = ImageConfig::from_json(&read_blob(store, &config_digest)?)
        .with_context(|| format!("{name}: config {config_digest} is not an image config"))?;
    Ok((manifest, config))
}

fn load(store: &Store, name: String, digest: Digest) -> anyhow::Result<LocalImage> {
    let bytes = read_blob(store, &digest)?;
    if !image::index::is_index(&bytes) {
        let (manifest, config) = load_manifest(store, &name, &digest)?;
        return Ok(LocalImage {
            name,
            digest,
            manifest_digest: digest,
            manifest,
            config,
            platforms: vec![],
            attestations: vec![],
        });
    }
    let mut platforms = Vec::new();
    let mut attestations = Vec::new();
    for e in image::index::entries(&bytes, &format!("{name}: index {digest}"))? {
        let d: Digest = e.digest.parse()?;
        match e.platform {
            Some(p) => {
                let (m, c) = load_manifest(store, &name, &d)?;
                platforms.push((crate::ir::platform_text(&p), d, m, c));
            }
            None => {
                let m: ImageManifest = serde_json::from_slice(&read_blob(store, &d)?)
                    .with_context(|| format!("{name}: index entry {d} is not a manifest"))?;
                attestations.push((d, m));
            }
        }
    }
    let host = crate::ir::host_platform();
    let main = platforms
        .iter()
        .find(|p| crate::registry::matches_platform(&p.3, &host))
        .or(platforms.first())
        .with_context(|| format!("{name}: index {digest} has no image for any platform"))?
        .clone();
    Ok(LocalImage {
        name,
        digest,
        manifest_digest: main.1,
        manifest: main.2,
        config: main.3,
        platforms,
        attestations,
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
    // The compressed forms of layers: a memo whose blobs were just pruned (made again when
    // an image needs them).
    let variants = store.layer_variants_dir();
    if variants.exists() {
        std::fs::remove_dir_all(&variants)
            .with_context(|| format!("removing {}", variants.display()))?;
    }
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
