//! Root filesystems of step states: the overlay snapshotter's layer stacks (each layer unpacked
//! once, mounted as overlay lower dirs, read through a merged view), the copying fallback of
//! flattened snapshots where overlays are unavailable, and writing a layer from an overlay
//! upper (or any directory shaped like one).

use std::io::BufReader;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::{Builder, StageState};
use crate::snapshot::{self, DiffOptions, LayerWriter, Stacks};
use crate::solve::LayerRef;
use crate::store::Digest;

impl Builder<'_> {
    /// The overlay snapshotter, when this host can mount overlays (kernel overlayfs, or
    /// fuse-overlayfs rootless; see [`snapshot::snapshotter`]); probed the first time a step
    /// needs a filesystem, so a fully cached build never mounts anything. A slower path than
    /// native overlayfs is named in a line of the progress output.
    pub(super) fn stacks(&self) -> Option<&Stacks> {
        self.stacks
            .get_or_init(|| {
                let choice = snapshot::snapshotter(&self.store.tmp_dir());
                if let Some(note) = &choice.note {
                    self.progress.message(note);
                }
                if choice.kind == snapshot::SnapshotterKind::Copy {
                    return None;
                }
                match Stacks::new(&self.store.snapshots_dir(), &self.store.tmp_dir()) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        self.progress.message(&format!(
                            "warning: overlay snapshots unavailable, copying instead: {e:#}"
                        ));
                        None
                    }
                }
            })
            .as_ref()
    }

    /// The state's filesystem as overlay lower dirs (top first), each layer unpacked once;
    /// None when the overlay snapshotter is unavailable or the stack is too deep to mount.
    pub(super) fn stack_lowers(&self, state: &StageState) -> anyhow::Result<Option<Vec<PathBuf>>> {
        let Some(stacks) = self.stacks() else {
            return Ok(None);
        };
        if !stacks.fits(state.layers.len()) {
            return Ok(None);
        }
        // Overlayfs refuses a directory twice in one stack. The same layer twice in a row
        // (two steps that made identical diffs) applies like once, so it is stacked once; the
        // same layer apart from itself cannot be stacked, and the copying fallback takes it.
        let mut seen = std::collections::HashSet::new();
        let mut lowers = Vec::with_capacity(state.layers.len());
        let mut previous: Option<&str> = None;
        for l in state.layers.iter().rev() {
            if previous == Some(l.diff_id.as_str()) {
                continue;
            }
            previous = Some(&l.diff_id);
            if !seen.insert(l.diff_id.as_str()) {
                return Ok(None);
            }
            let dir = stacks
                .layer(&l.diff_id, || {
                    let d: Digest = l.digest.parse()?;
                    Ok(Box::new(BufReader::new(self.store.stream_blob(&d)?)))
                })
                .with_context(|| format!("unpacking layer {}", l.digest))?;
            lowers.push(dir);
        }
        Ok(Some(lowers))
    }

    /// The state's filesystem as a directory to read: a merged overlay view of its layers, or
    /// a flattened snapshot, materialised if needed.
    pub(super) fn rootfs(&self, state: &mut StageState) -> anyhow::Result<PathBuf> {
        if let Some(lowers) = self.stack_lowers(state)? {
            let stacks = self.stacks().expect("stack_lowers found the stacks");
            return stacks.view(&state.key, &lowers);
        }
        let dir = self.store.snapshots_dir().join(state.key.hex());
        if dir.is_dir() {
            state.snapshot = Some((state.key, state.layers.len()));
            return Ok(dir);
        }
        let tmp = tempfile::Builder::new()
            .prefix(".snapshot-")
            .tempdir_in(self.store.snapshots_dir())?;
        let from = match state.snapshot {
            Some((key, n)) => {
                let src = self.store.snapshots_dir().join(key.hex());
                if src.is_dir() { Some((src, n)) } else { None }
            }
            None => None,
        };
        let first = match from {
            Some((src, n)) => {
                snapshot::copy_tree(&src, tmp.path())?;
                n
            }
            None => 0,
        };
        for l in &state.layers[first..] {
            let d: Digest = l.digest.parse()?;
            let blob = BufReader::new(self.store.stream_blob(&d)?);
            snapshot::apply_layer(snapshot::decompress(blob)?, tmp.path())
                .with_context(|| format!("unpacking layer {}", l.digest))?;
        }
        let tmp = tmp.keep();
        if std::fs::rename(&tmp, &dir).is_err() {
            // Another build made the same snapshot first: use theirs.
            let _ = std::fs::remove_dir_all(&tmp);
        }
        state.snapshot = Some((state.key, state.layers.len()));
        Ok(dir)
    }

    /// Write a layer from a directory shaped like an overlay upper; None when it is empty.
    pub(super) fn layer_from(&self, upper: &Path) -> anyhow::Result<Option<LayerRef>> {
        self.layer_from_over(upper, None)
    }

    /// [`Builder::layer_from`] of a tree COPY or ADD staged, which the overlay snapshotter
    /// then keeps as the layer's directory instead of deleting it (and unpacking the blob
    /// again when a later step, view or export needs the layer): deleting tens of thousands
    /// of staged files cost more than writing them. A staged tree qualifies when its diff has
    /// no whiteouts or opaque markers; its times are settled to the tar's as it is read (whole
    /// seconds, clamped to SOURCE_DATE_EPOCH), so it reads exactly as its blob unpacked.
    pub(super) fn layer_from_staged(
        &self,
        staging: tempfile::TempDir,
    ) -> anyhow::Result<Option<LayerRef>> {
        let (layer, stats) = self.write_layer(staging.path(), None, self.stacks().is_some())?;
        let plain = stats.whiteouts == 0 && stats.opaque_dirs == 0;
        if let (Some(stacks), Some(l), true) = (self.stacks(), &layer, plain) {
            let tree = staging.keep();
            if stacks.adopt(&l.diff_id, &tree).unwrap_or(false) {
                return Ok(layer);
            }
            let _rm = crate::progress::profile::span("copy: remove staging");
            std::fs::remove_dir_all(&tree)
                .with_context(|| format!("removing {}", tree.display()))?;
        } else {
            let _rm = crate::progress::profile::span("copy: remove staging");
            drop(staging);
        }
        Ok(layer)
    }

    /// The filesystem a RUN's upper dir was mounted over, when the snapshotter is
    /// fuse-overlayfs: its upper dirs have whiteouts and opaque markers that hide nothing,
    /// which the layer leaves out by looking below (see [`snapshot::diff_upper_over`]).
    pub(super) fn below_for_diff(&self, state: &mut StageState) -> anyhow::Result<Option<PathBuf>> {
        match self
            .stacks()
            .map(|_| snapshot::snapshotter(&self.store.tmp_dir()).kind.clone())
        {
            Some(snapshot::SnapshotterKind::FuseOverlayfs(_)) => Ok(Some(self.rootfs(state)?)),
            _ => Ok(None),
        }
    }

    /// [`Builder::layer_from`] of an upper that was mounted over `below`.
    pub(super) fn layer_from_over(
        &self,
        upper: &Path,
        below: Option<&Path>,
    ) -> anyhow::Result<Option<LayerRef>> {
        Ok(self.write_layer(upper, below, false)?.0)
    }

    /// The layer of `upper` (over `below`) and what its diff held; `settle_times` as in
    /// [`DiffOptions::settle_times`].
    fn write_layer(
        &self,
        upper: &Path,
        below: Option<&Path>,
        settle_times: bool,
    ) -> anyhow::Result<(Option<LayerRef>, snapshot::DiffStats)> {
        // A plain tar unless the result leaves the store compressed (`layer_compression`).
        let compression = self.layer_compression;
        let diff = crate::progress::profile::span("layer: diff+hash");
        // The LayerWriter hashes what it writes (the blob digest): the blob writer need not.
        let mut w = LayerWriter::new(self.store.blob_writer_unhashed()?, compression)?;
        let stats = snapshot::diff_upper_over(
            upper,
            &mut w,
            &DiffOptions {
                source_date_epoch: self.opts.source_date_epoch,
                settle_times,
            },
            below,
        )?;
        if stats.entries == 0 {
            return Ok((None, stats));
        }
        let (digests, blob) = w.finish()?;
        drop(diff);
        let _blob = crate::progress::profile::span("layer: blob fsync");
        // Made durable by the syncfs before the step's cache record (put_cache_synced).
        let (digest, size) = blob.finish_unsynced(Some(&digests.digest.parse()?))?;
        let layer = LayerRef {
            digest: digest.to_string(),
            diff_id: digests.diff_id,
            size,
            media_type: compression.media_type().into(),
        };
        Ok((Some(layer), stats))
    }
}
