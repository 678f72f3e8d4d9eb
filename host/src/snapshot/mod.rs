//! Snapshots and layer diffs: layers ↔ directories.
//!
//! - [`diff_upper`]: overlayfs upperdir → reproducible OCI layer tar (whiteouts converted).
//! - [`LayerWriter`]: compress (gzip/zstd/none) and hash (diff_id, digest, size) in one pass;
//!   gzip runs on several threads ([`ParGzEncoder`]).
//! - [`apply_layer`]: safe, in-root extraction of a layer tar with whiteouts and opaque dirs.
//! - [`decompress`]: sniff gzip/zstd/bzip2/xz/plain by magic bytes.
//! - [`Stacks`]: the overlay snapshotter (one directory per layer, stacked by overlayfs).
//! - [`copy_tree`]: metadata-preserving copy for the copying snapshotter fallback, whose RUN
//!   rootfs is a copy compared with its snapshot afterwards (`treediff`).
//! - [`snapshotter`]: which snapshotter this process uses (overlayfs, fuse-overlayfs, copying).

mod apply;
mod compress;
mod copy;
mod diff;
mod overlay;
mod pgzip;
mod probe;
mod stack;
mod sys;
#[cfg(test)]
mod tests;
mod treediff;

pub use apply::{apply_layer, extract_overlay_layer};
pub use compress::{Compression, LayerWriter, decompress};
pub use copy::copy_tree;
pub use diff::{DiffOptions, DiffStats, diff_trees, diff_upper, diff_upper_over};
#[cfg(test)]
pub(crate) use overlay::probe_overlay;
pub use overlay::{mount_overlay, mount_overlay_readonly, mounts_under, unmount};
pub use probe::{Kind as SnapshotterKind, snapshotter};
pub use stack::Stacks;
