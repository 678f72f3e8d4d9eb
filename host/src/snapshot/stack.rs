//! The overlay snapshotter: every layer is unpacked once, into a directory of its own keyed by
//! its diff_id (`snapshots/layers/<hex>`, whiteouts in overlayfs form), and a filesystem is a
//! stack of those directories. A RUN mounts the stack under its upper dir directly; anything
//! that has to read a filesystem (COPY, WORKDIR, `-o local`) gets a read-only merged overlay
//! mount, kept until the [`Stacks`] that made it is dropped. Nothing is copied per step, and
//! layers shared by images and steps are on disk once.
//!
//! Mount options are limited to a page, so lower dirs are named by short symlinks
//! (`l/<16 hex>`, as Docker's overlay2 does); a stack that would still not fit is reported by
//! [`Stacks::fits`] and the caller falls back to flattened snapshots.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use sha2::{Digest as _, Sha256};

use super::{decompress, extract_overlay_layer};
use crate::store::Digest;

/// The longest `lowerdir=` list we pass to mount(2) (its data is limited to one page).
const MAX_LOWERDIR_BYTES: usize = 3500;

/// Layer directories of one store and the merged mounts made from them.
pub struct Stacks {
    layers: PathBuf,
    links: PathBuf,
    views: PathBuf,
    /// An always-empty directory, the bottom of stacks of a single layer.
    empty: PathBuf,
    mounted: Mutex<HashMap<Digest, tempfile::TempDir>>,
}

/// Hashes what is read through it: the diff_id of a layer as it is unpacked.
struct HashRead<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for HashRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

impl Stacks {
    /// The stacks of the store whose snapshot directory is `snapshots` and temp dir `tmp`.
    pub fn new(snapshots: &Path, tmp: &Path) -> Result<Stacks> {
        let layers = snapshots.join("layers");
        let links = snapshots.join("l");
        let empty = snapshots.join("empty");
        for d in [&layers, &links, &empty] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        Ok(Stacks {
            layers,
            links,
            views: tmp.to_path_buf(),
            empty,
            mounted: Mutex::new(HashMap::new()),
        })
    }

    /// Whether a stack of `n` layers fits in one mount.
    pub fn fits(&self, n: usize) -> bool {
        let per = self.links.as_os_str().len() + 1 + 16 + 1;
        (n + 1) * per <= MAX_LOWERDIR_BYTES
    }

    /// The lower dir of the layer `diff_id`, unpacking the blob `open` gives when it is not
    /// there yet. The unpacked content must hash to `diff_id`, or nothing is kept.
    pub fn layer(
        &self,
        diff_id: &str,
        open: impl FnOnce() -> Result<Box<dyn Read + Send>>,
    ) -> Result<PathBuf> {
        let d: Digest = diff_id
            .parse()
            .with_context(|| format!("layer diff_id {diff_id:?}"))?;
        let hex = d.hex();
        let dir = self.layers.join(&hex);
        if !dir.is_dir() {
            let _unpack = crate::progress::profile::span("snapshot: unpack");
            let tmp = tempfile::Builder::new()
                .prefix(".unpack-")
                .tempdir_in(&self.layers)?;
            let mut reader = HashRead {
                inner: decompress(open()?)?,
                hash: Sha256::new(),
            };
            extract_overlay_layer(&mut reader, tmp.path())?;
            // Whatever follows the tar's end is part of the diff_id too.
            io::copy(&mut reader, &mut io::sink())?;
            let got = Digest::from_sha256(reader.hash.finalize().into());
            if got != d {
                bail!("layer content hashes to {got}, not to its diff_id {diff_id}");
            }
            let tmp = tmp.keep();
            if std::fs::rename(&tmp, &dir).is_err() {
                // Another build unpacked it first: theirs is the same.
                let _ = std::fs::remove_dir_all(&tmp);
            }
        }
        let link = self.links.join(&hex[..16]);
        if std::fs::read_link(&link).ok().as_deref() != Some(dir.as_path()) {
            let tmp = self
                .links
                .join(format!(".{}-{}", &hex[..16], std::process::id()));
            let _ = std::fs::remove_file(&tmp);
            std::os::unix::fs::symlink(&dir, &tmp)?;
            std::fs::rename(&tmp, &link)?;
        }
        Ok(link)
    }

    /// Make the directory `tree` the layer `diff_id`'s directory (renamed into place) when
    /// there is none yet; false when there is (the caller removes `tree`). `tree` must read
    /// exactly as the layer's blob unpacked (see `Builder::layer_from_staged`) and be on the
    /// store's filesystem.
    pub fn adopt(&self, diff_id: &str, tree: &Path) -> Result<bool> {
        let d: Digest = diff_id
            .parse()
            .with_context(|| format!("layer diff_id {diff_id:?}"))?;
        let dir = self.layers.join(d.hex());
        if dir.is_dir() {
            return Ok(false);
        }
        // Fails when another build put the layer there first (theirs is the same) or `tree`
        // is on another filesystem: either way the caller removes it.
        Ok(std::fs::rename(tree, &dir).is_ok())
    }

    /// A read-only merged view of `lowers` (top first) for the filesystem whose key is `key`,
    /// mounted once per key and kept until the `Stacks` is dropped.
    pub fn view(&self, key: &Digest, lowers: &[PathBuf]) -> Result<PathBuf> {
        if lowers.is_empty() {
            // `FROM scratch` with no layer yet: nothing to merge.
            return Ok(self.empty.clone());
        }
        let mut mounted = self.mounted.lock().unwrap();
        if let Some(dir) = mounted.get(key) {
            return Ok(dir.path().to_path_buf());
        }
        let dir = tempfile::Builder::new()
            .prefix(".view-")
            .tempdir_in(&self.views)?;
        let mut all = lowers.to_vec();
        if all.len() < 2 {
            all.push(self.empty.clone());
        }
        super::mount_overlay_readonly(&all, dir.path())?;
        let path = dir.path().to_path_buf();
        mounted.insert(*key, dir);
        Ok(path)
    }
}

impl Drop for Stacks {
    fn drop(&mut self) {
        let mounted = std::mem::take(&mut *self.mounted.lock().unwrap());
        for (_, dir) in mounted {
            if let Err(e) = super::unmount(dir.path()) {
                eprintln!("warning: {e:#}");
                // Never remove what may still be a mount of layer directories.
                let _ = dir.keep();
            }
        }
    }
}
