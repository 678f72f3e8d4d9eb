//! The store checker (`wbuild check`) and the sweep of leftovers.
//!
//! [`check`] re-hashes every blob, follows every name to its manifest, config and layers,
//! follows every cache index entry to its layer, and lists what killed processes left behind
//! (temp files and directories, half-made snapshots and cache mounts, RUN bundles with their
//! overlay mounts and runc state). [`repair`] removes the leftovers, corrupt blobs, cache
//! entries that point at missing or corrupt layers and unreadable name records; it never
//! removes a blob whose content matches its digest.
//!
//! [`sweep_if_idle`] is what every build does first: when no other wbuild holds the store's GC
//! lock, everything under the store's temp areas is a leftover of a dead process and goes.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use oci_spec::image::ImageManifest;

use crate::exec::{self, StaleRun};
use crate::image::ImageConfig;
use crate::store::{Digest, LockGuard, Store, StoreError};

/// Something wrong in the store: the data does not say what it should.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The blob's content no longer matches its digest (or cannot be read).
    CorruptBlob { digest: Digest, reason: String },
    /// A name record is unreadable.
    BrokenNameRecord { path: PathBuf, reason: String },
    /// A name points at an image the store cannot give in full.
    BrokenImage { name: String, reason: String },
    /// A cache index entry is unreadable or points at a missing or corrupt layer.
    BrokenCacheEntry { key: Digest, reason: String },
    /// A file or directory the store's layout has no place for.
    Stray { path: PathBuf },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::CorruptBlob { digest, reason } => write!(f, "blob {digest}: {reason}"),
            Problem::BrokenNameRecord { path, reason } => {
                write!(f, "name record {}: {reason}", path.display())
            }
            Problem::BrokenImage { name, reason } => write!(f, "image {name}: {reason}"),
            Problem::BrokenCacheEntry { key, reason } => {
                write!(f, "cache entry {key}: {reason}")
            }
            Problem::Stray { path } => write!(
                f,
                "{}: not part of the store layout (left alone; remove it by hand)",
                path.display()
            ),
        }
    }
}

/// What a dead process left behind. Harmless to builds, removed by the next idle build, by
/// `wbuild prune` and by `wbuild check --repair`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leftover {
    /// A temp file or directory in `tmp/` (partial blob, RUN upper dir, COPY staging, ...).
    Temp(PathBuf),
    /// A snapshot that was being unpacked (`snapshots/.snapshot-*`).
    HalfSnapshot(PathBuf),
    /// A cache mount directory that was being created (`cache-mounts/.new-*`).
    HalfCacheMount(PathBuf),
    /// A temp file of the context hash memo (`cache/.hashmemo.*.tmp`).
    MemoTemp(PathBuf),
    /// A RUN container's bundle, mounts or runc state.
    Run(StaleRun),
    /// A read-only merged view of a layer stack a build mounted (`tmp/.view-*`).
    View(PathBuf),
}

impl fmt::Display for Leftover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Leftover::Temp(p) => write!(f, "temp {}", p.display()),
            Leftover::HalfSnapshot(p) => write!(f, "half-made snapshot {}", p.display()),
            Leftover::HalfCacheMount(p) => write!(f, "half-made cache mount {}", p.display()),
            Leftover::MemoTemp(p) => write!(f, "temp {}", p.display()),
            Leftover::View(p) => write!(f, "mounted filesystem view {}", p.display()),
            Leftover::Run(StaleRun::Bundle { path, mounts }) if !mounts.is_empty() => write!(
                f,
                "RUN bundle {} with {} mount(s) still mounted",
                path.display(),
                mounts.len()
            ),
            Leftover::Run(StaleRun::Bundle { path, .. }) => {
                write!(f, "RUN bundle {}", path.display())
            }
            Leftover::Run(StaleRun::RuncState { id, .. }) => {
                write!(f, "runc container {id} (state of a dead build)")
            }
            Leftover::Run(StaleRun::Network(n)) => {
                write!(f, "RUN network namespace {}", n.path.display())?;
                if n.mounted {
                    write!(f, " (still mounted)")?;
                }
                match n.helper {
                    Some(pid) => write!(f, " with its {} (pid {pid}) running", exec::netns::HELPER),
                    None => Ok(()),
                }
            }
        }
    }
}

/// The result of [`check`].
#[derive(Debug, Default)]
pub struct Report {
    pub blobs: usize,
    pub names: usize,
    pub cache_entries: usize,
    pub snapshots: usize,
    pub problems: Vec<Problem>,
    pub leftovers: Vec<Leftover>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty() && self.leftovers.is_empty()
    }
}

/// Takes the GC lock exclusively, waiting for running builds and prunes; with it held, every
/// temp file, half-made snapshot and RUN bundle belongs to a dead process.
pub fn lock_store(store: &Store) -> anyhow::Result<LockGuard> {
    if let Some(g) = store.try_lock(Store::GC_LOCK)? {
        return Ok(g);
    }
    eprintln!("waiting for other wbuild processes on this store to finish...");
    Ok(store.lock(Store::GC_LOCK)?)
}

/// Checks the whole store. Hold [`lock_store`]'s guard while calling it.
pub fn check(store: &Store) -> anyhow::Result<Report> {
    let mut report = Report::default();
    // Blobs: every one re-hashed.
    let mut bad_blobs: BTreeMap<Digest, String> = BTreeMap::new();
    let blobs = store.list_blobs()?;
    report.blobs = blobs.len();
    let present: HashSet<Digest> = blobs.iter().map(|(d, _)| *d).collect();
    for (digest, _) in &blobs {
        if let Err(e) = store.verify_blob(digest) {
            let reason = match e {
                StoreError::CorruptBlob { actual, .. } => {
                    format!("corrupt: its content hashes to {actual}")
                }
                other => format!("unreadable: {other}"),
            };
            bad_blobs.insert(*digest, reason);
        }
    }
    for (digest, reason) in &bad_blobs {
        report.problems.push(Problem::CorruptBlob {
            digest: *digest,
            reason: reason.clone(),
        });
    }
    let blob_state = |d: &Digest| -> Option<String> {
        if !present.contains(d) {
            Some(format!("{d} is missing"))
        } else {
            bad_blobs.get(d).map(|_| format!("{d} is corrupt"))
        }
    };
    let blobs_dir = store.blobs_dir();
    report.problems.extend(strays(&blobs_dir, |name, is_file| {
        is_file && Digest::from_hex(name).is_ok()
    })?);

    // Names: manifest → config and layers.
    for (path, parsed) in store.scan_refs()? {
        report.names += 1;
        let (name, manifest) = match parsed {
            Ok(v) => v,
            Err(e) => {
                report.problems.push(Problem::BrokenNameRecord {
                    path,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        if let Err(reason) = check_target(store, &manifest, &blob_state) {
            report.problems.push(Problem::BrokenImage { name, reason });
        }
    }

    // Cache index: each entry's layer.
    for (key, _) in store.list_cache()? {
        report.cache_entries += 1;
        let Some(bytes) = store.get_cache(&key)? else {
            continue;
        };
        let reason = match crate::solve::cache_record_layer(&bytes) {
            Err(e) => Some(format!("unreadable record: {e:#}")),
            Ok(None) => None,
            Ok(Some(layer)) => match layer.parse::<Digest>() {
                Err(e) => Some(format!("bad layer digest: {e}")),
                Ok(d) => blob_state(&d).map(|s| format!("its layer {s}")),
            },
        };
        if let Some(reason) = reason {
            report
                .problems
                .push(Problem::BrokenCacheEntry { key, reason });
        }
    }
    let cache_dir = store.cache_dir();
    let memos = store.context_memo_dir();
    let frontends = store.frontend_cache_dir();
    let variants = store.layer_variants_dir();
    report.problems.extend(strays(&cache_dir, |name, is_file| {
        // `context-hashes.json`: the single memo file of earlier versions, no longer read.
        (is_file && (Digest::from_hex(name).is_ok() || name == "context-hashes.json"))
            || (!is_file
                && (frontends.ends_with(name) || memos.ends_with(name) || variants.ends_with(name)))
            || is_memo_temp(name)
    })?);

    // Snapshots: complete ones are named by their key.
    report.snapshots = entries(&store.snapshots_dir())?
        .iter()
        .filter(|(name, is_file)| !is_file && Digest::from_hex(name).is_ok())
        .count();
    report
        .problems
        .extend(strays(&store.snapshots_dir(), |name, is_file| {
            (!is_file && Digest::from_hex(name).is_ok())
                || name.starts_with(".snapshot-")
                || (!is_file && matches!(name, "layers" | "l" | "empty"))
        })?);
    let layers = store.snapshots_dir().join("layers");
    report.snapshots += entries(&layers)?
        .iter()
        .filter(|(name, is_file)| !is_file && Digest::from_hex(name).is_ok())
        .count();
    report.problems.extend(strays(&layers, |name, is_file| {
        (!is_file && Digest::from_hex(name).is_ok()) || name.starts_with(".unpack-")
    })?);

    report.leftovers = find_leftovers(store)?;
    Ok(report)
}

/// A name's target: an image manifest, or an index each of whose entries (images and
/// attestation manifests alike) is checked as one.
fn check_target(
    store: &Store,
    digest: &Digest,
    blob_state: &dyn Fn(&Digest) -> Option<String>,
) -> Result<(), String> {
    if let Some(s) = blob_state(digest) {
        return Err(format!("manifest {s}"));
    }
    let bytes = read_blob(store, digest)?;
    if !crate::image::index::is_index(&bytes) {
        return check_image(store, digest, blob_state);
    }
    let entries = crate::image::index::entries(&bytes, &format!("index {digest}"))
        .map_err(|e| e.to_string())?;
    for e in &entries {
        if let Some(a) = &e.attests
            && !entries
                .iter()
                .any(|i| &i.digest == a && i.platform.is_some())
        {
            return Err(format!(
                "index {digest}: attestation manifest {} describes {a}, which the index does not \
                 list",
                e.digest
            ));
        }
        let d: Digest = e
            .digest
            .parse()
            .map_err(|err| format!("index {digest}: entry digest: {err}"))?;
        check_image(store, &d, blob_state).map_err(|r| format!("index {digest}: {r}"))?;
    }
    Ok(())
}

fn check_image(
    store: &Store,
    manifest_digest: &Digest,
    blob_state: &dyn Fn(&Digest) -> Option<String>,
) -> Result<(), String> {
    if let Some(s) = blob_state(manifest_digest) {
        return Err(format!("manifest {s}"));
    }
    let bytes = read_blob(store, manifest_digest)?;
    let manifest: ImageManifest = serde_json::from_slice(&bytes)
        .map_err(|e| format!("manifest {manifest_digest} is not an image manifest: {e}"))?;
    let config_digest: Digest = manifest
        .config()
        .digest()
        .to_string()
        .parse()
        .map_err(|e| format!("manifest {manifest_digest}: config digest: {e}"))?;
    if let Some(s) = blob_state(&config_digest) {
        return Err(format!("config {s}"));
    }
    let config = ImageConfig::from_json(&read_blob(store, &config_digest)?)
        .map_err(|e| format!("config {config_digest} is not an image config: {e}"))?;
    let mut missing = Vec::new();
    for l in manifest.layers() {
        let d: Digest = l
            .digest()
            .to_string()
            .parse()
            .map_err(|e| format!("manifest {manifest_digest}: layer digest: {e}"))?;
        if let Some(s) = blob_state(&d) {
            missing.push(format!("layer {s}"));
        }
    }
    if !missing.is_empty() {
        return Err(missing.join(", "));
    }
    if config.rootfs.diff_ids.len() != manifest.layers().len() {
        return Err(format!(
            "manifest {manifest_digest} has {} layers but its config lists {} diff_ids",
            manifest.layers().len(),
            config.rootfs.diff_ids.len()
        ));
    }
    Ok(())
}

fn read_blob(store: &Store, d: &Digest) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    store
        .open_blob(d)
        .map_err(|e| e.to_string())?
        .read_to_end(&mut bytes)
        .map_err(|e| format!("reading {d}: {e}"))?;
    Ok(bytes)
}

fn is_memo_temp(name: &str) -> bool {
    name.starts_with(".hashmemo.") && name.ends_with(".tmp")
}

/// (name, is a regular file) of every entry of `dir`; empty when `dir` does not exist.
fn entries(dir: &Path) -> anyhow::Result<Vec<(String, bool)>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e.with_context(|| format!("listing {}", dir.display()))?;
        let is_file = e.file_type().map(|t| t.is_file()).unwrap_or(false);
        out.push((e.file_name().to_string_lossy().into_owned(), is_file));
    }
    out.sort();
    Ok(out)
}

fn strays(dir: &Path, ok: impl Fn(&str, bool) -> bool) -> anyhow::Result<Vec<Problem>> {
    Ok(entries(dir)?
        .into_iter()
        .filter(|(name, is_file)| !ok(name, *is_file))
        .map(|(name, _)| Problem::Stray {
            path: dir.join(name),
        })
        .collect())
}

/// Whether a file in `tmp/` is held by a live writer (its flock is taken).
fn held_by_live_writer(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    use std::os::fd::AsRawFd as _;
    // SAFETY: flock on a valid descriptor owned by `file`; released when it closes.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    rc != 0
}

/// Everything dead processes left behind. Only meaningful with [`lock_store`]'s guard held
/// (otherwise a running build's work in progress shows up too).
pub fn find_leftovers(store: &Store) -> anyhow::Result<Vec<Leftover>> {
    let mut out = Vec::new();
    for run in exec::find_stale(&store.exec_dir())? {
        out.push(Leftover::Run(run));
    }
    let tmp = store.tmp_dir();
    for (name, is_file) in entries(&tmp)? {
        let path = tmp.join(&name);
        if is_file && held_by_live_writer(&path) {
            continue;
        }
        if !is_file && name.starts_with(".view-") {
            out.push(Leftover::View(path));
            continue;
        }
        out.push(Leftover::Temp(path));
    }
    let snaps = store.snapshots_dir();
    for (name, _) in entries(&snaps)? {
        if name.starts_with(".snapshot-") {
            out.push(Leftover::HalfSnapshot(snaps.join(name)));
        }
    }
    // The overlay snapshotter's layers being unpacked and links being made.
    let layers = snaps.join("layers");
    for (name, _) in entries(&layers)? {
        if name.starts_with(".unpack-") {
            out.push(Leftover::HalfSnapshot(layers.join(name)));
        }
    }
    let links = snaps.join("l");
    for (name, _) in entries(&links)? {
        if name.starts_with('.') {
            out.push(Leftover::Temp(links.join(name)));
        }
    }
    let mounts = store.cache_mounts_dir();
    for (name, _) in entries(&mounts)? {
        if name.starts_with(".new-") {
            out.push(Leftover::HalfCacheMount(mounts.join(name)));
        }
    }
    let cache = store.cache_dir();
    for (name, is_file) in entries(&cache)? {
        if is_file && is_memo_temp(&name) {
            out.push(Leftover::MemoTemp(cache.join(name)));
        }
    }
    Ok(out)
}

/// Removes one leftover. A directory is removed only when nothing is mounted under it.
pub fn remove_leftover(store: &Store, leftover: &Leftover) -> anyhow::Result<()> {
    match leftover {
        Leftover::Run(run) => exec::remove_stale(&store.exec_dir(), run),
        Leftover::Temp(p)
        | Leftover::HalfSnapshot(p)
        | Leftover::HalfCacheMount(p)
        | Leftover::MemoTemp(p) => remove_path(p),
        Leftover::View(p) => {
            // A view only reads layer directories; with no build running it is safe to drop.
            // (Not mounted any more is fine: remove_path refuses what still is.)
            let _ = crate::snapshot::unmount(p);
            remove_path(p)
        }
    }
}

fn remove_path(p: &Path) -> anyhow::Result<()> {
    let meta = match std::fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("stat {}", p.display())),
    };
    if meta.is_dir() {
        let mounted = crate::snapshot::mounts_under(p)?;
        if !mounted.is_empty() {
            anyhow::bail!(
                "{} has mounts under it ({mounted:?}); not removing it",
                p.display()
            );
        }
        make_writable(p);
        std::fs::remove_dir_all(p).with_context(|| format!("removing {}", p.display()))
    } else {
        std::fs::remove_file(p).with_context(|| format!("removing {}", p.display()))
    }
}

/// Gives the owner write and search permission on every directory under `p`, so that a tree a
/// RUN left with read-only directories can be removed.
fn make_writable(p: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let Ok(meta) = std::fs::symlink_metadata(p) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let mode = meta.permissions().mode();
    if mode & 0o700 != 0o700 {
        let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode | 0o700));
    }
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            make_writable(&e.path());
        }
    }
}

/// Removes every leftover; returns how many went. Errors for single leftovers are collected,
/// so one stuck mount does not stop the rest.
pub fn remove_leftovers(store: &Store, leftovers: &[Leftover]) -> (usize, Vec<String>) {
    let mut removed = 0;
    let mut errors = Vec::new();
    for l in leftovers {
        match remove_leftover(store, l) {
            Ok(()) => removed += 1,
            Err(e) => errors.push(format!("{l}: {e:#}")),
        }
    }
    (removed, errors)
}

/// What [`repair`] did.
#[derive(Debug, Default)]
pub struct Repairs {
    pub actions: Vec<String>,
    pub errors: Vec<String>,
}

/// Fixes what can be fixed without losing good data: removes leftovers, corrupt blobs (a later
/// build or import writes them again), cache entries that point at missing or corrupt layers
/// (the step runs again next time) and unreadable name records. Images whose blobs are gone
/// stay named and reported: rebuild or re-import them, or `wbuild rm` them.
pub fn repair(store: &Store, report: &Report) -> anyhow::Result<Repairs> {
    let mut r = Repairs::default();
    for l in &report.leftovers {
        match remove_leftover(store, l) {
            Ok(()) => r.actions.push(format!("removed {l}")),
            Err(e) => r.errors.push(format!("{l}: {e:#}")),
        }
    }
    for p in &report.problems {
        match p {
            Problem::CorruptBlob { digest, .. } => {
                store.remove_blob(digest)?;
                r.actions.push(format!("removed corrupt blob {digest}"));
            }
            Problem::BrokenCacheEntry { key, .. } => {
                store.remove_cache(key)?;
                r.actions.push(format!("dropped cache entry {key}"));
            }
            Problem::BrokenNameRecord { path, .. } => {
                store.remove_ref_file(path)?;
                r.actions
                    .push(format!("removed unreadable name record {}", path.display()));
            }
            Problem::BrokenImage { .. } | Problem::Stray { .. } => {}
        }
    }
    // Removing a corrupt layer breaks the cache entries that pointed at it.
    let corrupt: HashSet<Digest> = report
        .problems
        .iter()
        .filter_map(|p| match p {
            Problem::CorruptBlob { digest, .. } => Some(*digest),
            _ => None,
        })
        .collect();
    if !corrupt.is_empty() {
        for (key, _) in store.list_cache()? {
            let Some(bytes) = store.get_cache(&key)? else {
                continue;
            };
            if let Ok(Some(layer)) = crate::solve::cache_record_layer(&bytes)
                && layer.parse::<Digest>().is_ok_and(|d| corrupt.contains(&d))
                && store.remove_cache(&key)?
            {
                r.actions.push(format!("dropped cache entry {key}"));
            }
        }
    }
    Ok(r)
}

/// Removes leftovers of dead processes when no other wbuild uses the store (the GC lock is
/// free). Builds call this first; a busy store is left alone. Returns how many were removed
/// and the errors met (which do not stop a build).
pub fn sweep_if_idle(store: &Store) -> anyhow::Result<(usize, Vec<String>)> {
    let Some(_gc) = store.try_lock(Store::GC_LOCK)? else {
        return Ok((0, Vec::new()));
    };
    let leftovers = find_leftovers(store)?;
    let result = remove_leftovers(store, &leftovers);
    remove_step_locks(store)?;
    Ok(result)
}

/// Removes the lock files of build steps (one per step ever run), so they do not pile up.
/// Only with the GC lock held exclusively: builds take step locks only while holding it shared.
pub fn remove_step_locks(store: &Store) -> anyhow::Result<usize> {
    let dir = store.locks_dir();
    let mut removed = 0;
    for (name, is_file) in entries(&dir)? {
        if is_file && name.starts_with(crate::solve::STEP_LOCK_PREFIX) {
            match std::fs::remove_file(dir.join(&name)) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing lock {name}")),
            }
        }
    }
    Ok(removed)
}
