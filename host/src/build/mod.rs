//! Running a build: the stage graph from a frontend, executed step by step on the store.
//!
//! Each stage starts from its base (scratch, a local image, or another stage's result) and
//! applies its ops in order. Every op gets a cache key (`solve::op_cache_key`); an op that
//! changes the filesystem (RUN, COPY, a missing WORKDIR) looks its key up in the store's cache
//! index and runs only on a miss, producing a layer blob. Config-only ops edit the image config.
//! Filesystems are materialised lazily as flattened snapshots under the store's `snapshots/`,
//! only when a step has to look at or run in them.

mod copy;
mod link;
mod no_cache_filter;
mod remote;
mod workdir;

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use crate::catalog;
use crate::context::{Context, HashMemo, IgnoreRules};
use crate::exec::{self, ExtraMount, RunSpec};
use crate::frontend::bindings::{
    Base, BindMount, CacheMount, CacheSharing, CopyOp, CopySource, Graph, Mount, Network, Op,
    OpNode, Platform, RunOp, Source, Stage,
};
use crate::image::config::DEFAULT_PATH;
use crate::image::{BlobSource, ConfigBuilder, Healthcheck, manifest};
use crate::progress::{Progress, StepId};
use crate::registry::cache::{self, CacheLayer, CacheMode, CacheSource, CacheTarget};
use crate::registry::{ImageName, Images, Registry};
use crate::snapshot::{self, Compression, DiffOptions, LayerWriter, Stacks};
use crate::solve::{self, StepInputs};
use crate::store::{Digest, Store};

/// Where the result goes besides the store.
#[derive(Debug, Clone)]
pub enum Output {
    /// OCI image layout: a tar file when the path ends in `.tar`, else a directory.
    Oci(PathBuf),
    /// OCI layout plus `manifest.json`, loadable by `docker load`, podman and skopeo.
    Docker(PathBuf),
    /// The final filesystem as a directory.
    Local(PathBuf),
    /// The final filesystem as a tar file.
    Tar(PathBuf),
    /// Pushed to a registry under this name (`-o type=registry,name=…`, `--push`).
    Registry(String),
    /// Loaded into the local Docker engine (`--load`).
    Load,
}

/// How to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub jobs: usize,
    pub no_cache: bool,
    /// Names for the result in the store (`-t`).
    pub tags: Vec<String>,
    pub outputs: Vec<Output>,
    /// `SOURCE_DATE_EPOCH`: clamps file times and fixes the config's timestamps.
    pub source_date_epoch: Option<i64>,
    pub platform: Platform,
    /// The build file's name, for messages.
    pub file_name: String,
    /// How new layers are compressed (`--compression`).
    pub compression: Compression,
    /// `--ssh ID[=SOCKET]`: SSH agent sockets RUN steps may mount, by id.
    pub ssh: Vec<(String, PathBuf)>,
    /// `--secret id=ID,...`: the secrets RUN steps may mount, by id.
    pub secrets: Vec<(String, SecretSource)>,
    /// `--cache-from`: build caches imported before the build.
    pub cache_from: Vec<CacheSource>,
    /// `--cache-to`: where the build cache is exported after the build.
    pub cache_to: Vec<CacheTarget>,
    /// `--memory`, `--pids-limit`: cgroup limits of every RUN; `--ulimit`: its rlimits.
    pub limits: exec::ResourceLimits,
    /// `--label`: labels set on the result's config.
    pub labels: Vec<(String, String)>,
    /// `--annotation`: annotations of the result's manifest.
    pub annotations: std::collections::BTreeMap<String, String>,
    /// `--no-cache-filter`: stages (by name, case-insensitive, or index) whose steps all run.
    pub no_cache_stages: Vec<String>,
    /// `--shm-size`: size of every RUN's /dev/shm.
    pub shm_size: Option<u64>,
}

/// Where the value of a `--secret` comes from. Read only when a step mounts it.
#[derive(Debug, Clone)]
pub enum SecretSource {
    /// `src=PATH`: the content of a file.
    File(PathBuf),
    /// `env=VAR`: the value of an environment variable of the build process.
    Env(String),
}

/// A layer as the manifest and the cache index record it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LayerRef {
    digest: String,
    diff_id: String,
    size: u64,
    media_type: String,
}

/// What the cache index maps a step's key to.
#[derive(Debug, Serialize, Deserialize)]
struct CacheRecord {
    layer: Option<LayerRef>,
}

/// The layer a cache record needs, for moving the cache between stores.
fn record_layer(record: &[u8]) -> anyhow::Result<Option<CacheLayer>> {
    let rec: CacheRecord = serde_json::from_slice(record).context("a cache record")?;
    Ok(rec.layer.map(|l| CacheLayer {
        digest: l.digest,
        size: l.size,
        media_type: l.media_type,
    }))
}

/// The layer digest a cache index record points at (None for a step that made no layer), or
/// why the record is unreadable. Used by `wbuild check`.
pub(crate) fn cache_record_layer(bytes: &[u8]) -> anyhow::Result<Option<String>> {
    Ok(record_layer(bytes)?.map(|l| l.digest))
}

/// A stage's state between ops, and its result.
#[derive(Clone)]
struct StageState {
    key: Digest,
    config: ConfigBuilder,
    layers: Vec<LayerRef>,
    /// Key of the newest materialised snapshot of this chain, and how many of `layers` it has.
    snapshot: Option<(Digest, usize)>,
    /// The cache index entries of this chain's filesystem steps (key, record), for
    /// `--cache-to`.
    steps: Vec<(Digest, Vec<u8>)>,
    /// The stage being built is in `--no-cache-filter`: its steps ignore the cache.
    no_cache: bool,
}

/// The outcome of a build.
pub struct BuildResult {
    pub manifest_digest: Digest,
    pub config_digest: String,
    /// Size of the manifest blob.
    pub manifest_size: u64,
    /// Steps that ran and steps taken from the cache.
    pub ran: usize,
    pub cached: usize,
}

/// Runs builds against one store and build context.
pub struct Builder<'a> {
    store: &'a Store,
    context: Context,
    memo: Mutex<HashMemo>,
    opts: BuildOptions,
    counts: Mutex<(usize, usize)>,
    progress: Arc<Progress>,
    /// The overlay snapshotter, set up on first use (see [`Builder::stacks`]).
    stacks: OnceLock<Option<Stacks>>,
    /// Files `ADD <url>` fetched in this build, by URL.
    downloads: Mutex<HashMap<String, Arc<remote::Download>>>,
    /// Where base images come from: the store, then the registry.
    images: Arc<Images>,
    registry: Option<Arc<Registry>>,
}

impl<'a> Builder<'a> {
    pub fn new(
        store: &'a Store,
        context_dir: &Path,
        opts: BuildOptions,
        progress: Arc<Progress>,
    ) -> anyhow::Result<Self> {
        let context = Context::open(context_dir)?;
        let memo = HashMemo::load(&store.root().join("cache/context-hashes.json"))
            .unwrap_or_else(|_| HashMemo::in_memory());
        Ok(Builder {
            store,
            context,
            memo: Mutex::new(memo),
            opts,
            counts: Mutex::new((0, 0)),
            progress,
            stacks: OnceLock::new(),
            downloads: Mutex::new(HashMap::new()),
            images: Arc::new(Images::offline(store.clone())),
            registry: None,
        })
    }

    /// Resolve images through `images` and push to `registry` (without, the store only).
    pub fn with_registry(mut self, images: Arc<Images>, registry: Arc<Registry>) -> Self {
        self.images = images;
        self.registry = Some(registry);
        self
    }

    /// Build the graph's target and name/export the result.
    pub fn build(&self, graph: &Graph) -> anyhow::Result<BuildResult> {
        let _gc = self.store.lock_shared(Store::GC_LOCK)?;
        no_cache_filter::check(&self.opts.no_cache_stages, graph)?;
        for from in &self.opts.cache_from {
            let n = cache::import(self.store, self.registry.as_deref(), from, &record_layer)?;
            self.progress
                .message(&format!("imported {n} cache records from {from}"));
        }
        let results = solve::run_stages(graph, self.opts.jobs, |index, deps| {
            self.build_stage(graph, index, deps)
        })
        .map_err(|f| f.error)?;
        if let Ok(mut memo) = self.memo.lock() {
            let _ = memo.save();
        }
        let target = &results[&graph.target];
        let result = self.commit_image(target)?;
        for out in &self.opts.outputs {
            self.export(out, target, &result)?;
        }
        for to in &self.opts.cache_to {
            let mut entries: Vec<(Digest, Vec<u8>)> = match to.mode {
                CacheMode::Min => target.steps.clone(),
                CacheMode::Max => results.values().flat_map(|s| s.steps.clone()).collect(),
            };
            entries.sort();
            entries.dedup();
            let n = entries.len();
            cache::export(
                self.store,
                self.registry.as_deref(),
                to,
                entries,
                &record_layer,
            )?;
            self.progress
                .message(&format!("exported {n} cache records to {to}"));
        }
        Ok(result)
    }

    fn build_stage(
        &self,
        graph: &Graph,
        index: u32,
        deps: &HashMap<u32, StageState>,
    ) -> anyhow::Result<StageState> {
        let stage = &graph.stages[index as usize];
        let label = stage_label(stage, index);
        let total = stage.ops.len();
        self.progress
            .stage_started(&format!("[{label} 0/{total}] {}", stage.text));
        let mut state = self.base_state(stage, deps)?;
        state.no_cache = no_cache_filter::matches(&self.opts.no_cache_stages, stage, index);
        for (i, node) in stage.ops.iter().enumerate() {
            let step = format!("[{label} {}/{total}] {}", i + 1, node.text);
            self.apply_op(&mut state, node, deps, &step)
                .with_context(|| {
                    format!("{}:{}: {}", self.opts.file_name, node.span.line, node.text)
                })?;
        }
        Ok(state)
    }

    fn base_state(
        &self,
        stage: &Stage,
        deps: &HashMap<u32, StageState>,
    ) -> anyhow::Result<StageState> {
        let platform = stage.platform.clone().unwrap_or(self.opts.platform.clone());
        // Docker records the build time; SOURCE_DATE_EPOCH makes it reproducible.
        let created = Some(crate::image::config::rfc3339(
            self.opts.source_date_epoch.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64)
            }),
        ));
        match &stage.base {
            Base::Stage(i) => {
                let mut state = deps[i].clone();
                // As BuildKit: a stage's ONBUILD triggers ran in the stage built on it (the
                // frontend ran them); they fire once and are not in the child's config.
                state.config.take_onbuild();
                Ok(state)
            }
            Base::Scratch => {
                let mut config = ConfigBuilder::scratch(&platform.os, &platform.architecture);
                config.created(created);
                Ok(StageState {
                    key: solve::stage_base_key(&stage.base, None, &platform),
                    config,
                    layers: vec![],
                    snapshot: None,
                    steps: vec![],
                    no_cache: false,
                })
            }
            Base::Image(r) => {
                let img = self
                    .images
                    .image(&r.reference, &platform)?
                    .with_context(|| {
                        format!(
                            "{}:{}: image {} is not in the store; pull it with `wbuild pull {}` or \
                         import it with `wbuild import`",
                            self.opts.file_name, stage.span.line, r.reference, r.reference
                        )
                    })?;
                let pinned = img.pinned();
                if stage.span.line > 0 {
                    self.progress
                        .message(&format!("  {} is {pinned}", r.reference));
                }
                let layers = img
                    .manifest
                    .layers()
                    .iter()
                    .zip(&img.config.rootfs.diff_ids)
                    .map(|(l, diff_id)| LayerRef {
                        digest: l.digest().to_string(),
                        diff_id: diff_id.clone(),
                        size: l.size(),
                        // Docker's layer types name the same bytes as OCI's.
                        media_type: crate::image::Compression::from_media_type(
                            l.media_type().as_ref(),
                        )
                        .map_or_else(
                            || l.media_type().to_string(),
                            |c| c.layer_media_type().to_string(),
                        ),
                    })
                    .collect();
                let mut config = ConfigBuilder::from_base(img.config.clone());
                // ONBUILD triggers were run by the frontend; they do not carry over.
                config.take_onbuild();
                config.created(created);
                config.config_only(&format!("FROM {pinned}"));
                let digest = img.manifest_digest.to_string();
                Ok(StageState {
                    key: solve::stage_base_key(&stage.base, Some(&digest), &platform),
                    config,
                    layers,
                    snapshot: None,
                    steps: vec![],
                    no_cache: false,
                })
            }
        }
    }

    fn apply_op(
        &self,
        state: &mut StageState,
        node: &OpNode,
        deps: &HashMap<u32, StageState>,
        step: &str,
    ) -> anyhow::Result<()> {
        let op = &node.op;
        match op {
            Op::Run(run) => {
                let history = format!("RUN {}", run.args.join(" "));
                let inputs = self.run_inputs(run, deps)?;
                self.cached_step(state, op, inputs, step, &history, |b, st, id| {
                    b.run_step(st, run, deps, id)
                })
            }
            Op::Copy(copy) => {
                let inputs = self.copy_inputs(copy, deps)?;
                self.cached_step(state, op, inputs, step, &node.text, |b, st, _| {
                    b.copy_step(st, copy, deps)
                })
            }
            Op::Workdir(dir) => {
                state.config.workdir(dir);
                self.cached_step(
                    state,
                    op,
                    StepInputs::default(),
                    step,
                    &node.text,
                    |b, st, _| b.mkdir_step(st, dir),
                )
            }
            _ => {
                apply_config(&mut state.config, op, &node.text);
                state.key = solve::op_cache_key(&state.key, op, &StepInputs::default());
                Ok(())
            }
        }
    }

    /// Run `work` for a filesystem step unless the cache has its key; record its layer with
    /// `history` as the history entry (the same whether the step ran or came from the cache).
    fn cached_step(
        &self,
        state: &mut StageState,
        op: &Op,
        inputs: StepInputs,
        step: &str,
        history: &str,
        work: impl FnOnce(&Self, &mut StageState, StepId) -> anyhow::Result<Option<LayerRef>>,
    ) -> anyhow::Result<()> {
        // A `COPY --link` layer is keyed without its parent; the chain after it is not.
        let (key, next_key) = if link::linked(op) {
            let key = solve::op_cache_key(&link::layer_base(&state.config), op, &inputs);
            (key, solve::linked_key(&state.key, &key))
        } else {
            let key = solve::op_cache_key(&state.key, op, &inputs);
            (key, key)
        };
        // The same step's layer in another compression is another record; the chain of keys
        // does not depend on compression.
        let record = solve::record_key(&key, self.opts.compression.media_type());
        let lookup = || -> anyhow::Result<Option<CacheRecord>> {
            Ok(self
                .store
                .get_cache(&record)?
                .and_then(|b| serde_json::from_slice::<CacheRecord>(&b).ok())
                .filter(|r| {
                    r.layer.as_ref().is_none_or(|l| {
                        l.digest
                            .parse()
                            .is_ok_and(|d: Digest| self.store.has_blob(&d))
                    })
                }))
        };
        let mut _step_lock = None;
        let hit = if self.opts.no_cache || state.no_cache {
            None
        } else {
            match lookup()? {
                Some(rec) => Some(rec),
                None => {
                    // Another build (or stage) may be running this very step: wait for it and
                    // take its result instead of running it twice. The lock covers this one
                    // key only, so unrelated steps of other builds run meanwhile.
                    let name = step_lock_name(&key);
                    _step_lock = match self.store.try_lock(&name)? {
                        Some(g) => Some(g),
                        None => {
                            self.progress.message(&format!(
                                "{step}\n  waiting for another build running the same step"
                            ));
                            Some(self.store.lock(&name)?)
                        }
                    };
                    lookup()?
                }
            }
        };
        let layer = match hit {
            Some(rec) => {
                self.progress.step_cached(step);
                self.counts.lock().unwrap().1 += 1;
                state.steps.push((record, serde_json::to_vec(&rec)?));
                rec.layer
            }
            None => {
                let id = self.progress.step_started(step);
                let layer = match work(self, state, id) {
                    Ok(layer) => layer,
                    Err(e) => {
                        self.progress.step_failed(id, &format!("{e:#}"));
                        return Err(e);
                    }
                };
                let rec = CacheRecord {
                    layer: layer.clone(),
                };
                let bytes = serde_json::to_vec(&rec)?;
                self.store.put_cache(&record, &bytes)?;
                state.steps.push((record, bytes));
                self.progress.step_done(id);
                self.counts.lock().unwrap().0 += 1;
                layer
            }
        };
        match &layer {
            Some(l) => {
                state.config.layer(history, &l.diff_id);
                state.layers.push(l.clone());
            }
            None => {
                state.config.config_only(history);
            }
        }
        state.key = next_key;
        Ok(())
    }

    /// The overlay snapshotter, when this host can mount overlays (root, overlayfs); probed
    /// the first time a step needs a filesystem, so a fully cached build never mounts anything.
    fn stacks(&self) -> Option<&Stacks> {
        self.stacks
            .get_or_init(|| {
                if !exec::overlay_usable() {
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
    fn stack_lowers(&self, state: &StageState) -> anyhow::Result<Option<Vec<PathBuf>>> {
        let Some(stacks) = self.stacks() else {
            return Ok(None);
        };
        if !stacks.fits(state.layers.len()) {
            return Ok(None);
        }
        let mut lowers = Vec::with_capacity(state.layers.len());
        for l in state.layers.iter().rev() {
            let dir = stacks
                .layer(&l.diff_id, || {
                    let d: Digest = l.digest.parse()?;
                    Ok(Box::new(BufReader::new(self.store.open_blob(&d)?)))
                })
                .with_context(|| format!("unpacking layer {}", l.digest))?;
            lowers.push(dir);
        }
        Ok(Some(lowers))
    }

    /// The state's filesystem as a directory to read: a merged overlay view of its layers, or
    /// a flattened snapshot, materialised if needed.
    fn rootfs(&self, state: &mut StageState) -> anyhow::Result<PathBuf> {
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
            let blob = BufReader::new(self.store.open_blob(&d)?);
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
    fn layer_from(&self, upper: &Path) -> anyhow::Result<Option<LayerRef>> {
        let compression = self.opts.compression;
        let mut w = LayerWriter::new(self.store.blob_writer()?, compression)?;
        let stats = snapshot::diff_upper(
            upper,
            &mut w,
            &DiffOptions {
                source_date_epoch: self.opts.source_date_epoch,
            },
        )?;
        if stats.entries == 0 {
            return Ok(None);
        }
        let (digests, blob) = w.finish()?;
        let (digest, size) = blob.finish(None)?;
        Ok(Some(LayerRef {
            digest: digest.to_string(),
            diff_id: digests.diff_id,
            size,
            media_type: compression.media_type().into(),
        }))
    }

    fn run_step(
        &self,
        state: &mut StageState,
        run: &RunOp,
        deps: &HashMap<u32, StageState>,
        id: StepId,
    ) -> anyhow::Result<Option<LayerRef>> {
        let lowers = match self.stack_lowers(state)? {
            Some(lowers) => lowers,
            None => vec![self.rootfs(state)?],
        };
        let cfg = state.config.image().config.clone();
        let mut env: Vec<(String, String)> = state
            .config
            .image()
            .env_pairs()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if !env.iter().any(|(k, _)| k == "PATH") {
            env.push(("PATH".into(), DEFAULT_PATH.into()));
        }
        for kv in &run.extra_env {
            env.retain(|(k, _)| *k != kv.key);
            env.push((kv.key.clone(), kv.value.clone()));
        }
        // Temp dirs and locks the mounts need until the command has finished.
        let mut keep = MountResources::default();
        let mut mounts = Vec::new();
        if let Some(size) = self.opts.shm_size {
            // `--shm-size`, as BuildKit: a tmpfs of that size on /dev/shm (mounts of the RUN
            // itself come after it).
            mounts.push(ExtraMount::Tmpfs {
                target: "/dev/shm".into(),
                size: Some(size),
            });
        }
        let mut ssh_env_set = false;
        for m in &run.mounts {
            match m {
                Mount::Tmpfs(t) => mounts.push(ExtraMount::Tmpfs {
                    target: t.target.clone(),
                    size: t.size,
                }),
                Mount::Text(t) => mounts.push(ExtraMount::File {
                    target: t.target.clone(),
                    content: t.content.clone().into_bytes(),
                    mode: t.mode,
                    uid: 0,
                    gid: 0,
                }),
                Mount::Bind(b) => mounts.push(self.bind_mount(b, deps, &mut keep)?),
                Mount::Cache(c) => mounts.push(self.cache_mount(c, deps, &mut keep)?),
                Mount::Secret(s) => {
                    let Some(value) = self.secret_value(&s.id)? else {
                        if s.required {
                            bail!(
                                "RUN --mount=type=secret,id={id}: the secret {id:?} is required \
                                 but was not provided; pass it with `--secret id={id},src=PATH` \
                                 (or `--secret id={id},env=VAR`)",
                                id = s.id
                            );
                        }
                        continue;
                    };
                    if let Some(var) = &s.env {
                        let text = String::from_utf8(value.clone()).with_context(|| {
                            format!(
                                "secret {:?} is not UTF-8 text, so it cannot go in ${var}",
                                s.id
                            )
                        })?;
                        env.retain(|(k, _)| k != var);
                        env.push((var.clone(), text));
                    }
                    if s.target.is_some() || s.env.is_none() {
                        let target = s
                            .target
                            .clone()
                            .unwrap_or_else(|| format!("/run/secrets/{}", s.id));
                        mounts.push(ExtraMount::File {
                            target,
                            content: value,
                            mode: s.mode,
                            uid: s.uid,
                            gid: s.gid,
                        });
                    }
                }
                Mount::Ssh(s) => {
                    let Some(socket) = self.opts.ssh.iter().find(|(id, _)| *id == s.id) else {
                        if s.required {
                            bail!(
                                "RUN --mount=type=ssh,id={id}: no SSH agent {id:?} was given; \
                                 pass one with `--ssh {id}` (the agent of $SSH_AUTH_SOCK) or \
                                 `--ssh {id}=/path/to/agent.sock`",
                                id = s.id
                            );
                        }
                        continue;
                    };
                    // The agent's socket is bound into the container; the first ssh mount is
                    // the one SSH_AUTH_SOCK names, as in BuildKit. Never part of the key.
                    if !ssh_env_set {
                        env.retain(|(k, _)| k != "SSH_AUTH_SOCK");
                        env.push(("SSH_AUTH_SOCK".into(), s.target.clone()));
                        ssh_env_set = true;
                    }
                    mounts.push(ExtraMount::Bind {
                        source: socket.1.clone(),
                        target: s.target.clone(),
                        readonly: false,
                    });
                }
            }
        }
        let work = tempfile::Builder::new()
            .prefix(".run-")
            .tempdir_in(self.store.tmp_dir())?;
        let upper = work.path().join("upper");
        let ovl_work = work.path().join("work");
        std::fs::create_dir_all(&upper)?;
        std::fs::create_dir_all(&ovl_work)?;
        let spec = RunSpec {
            state_dir: crate::check::exec_state_dir(self.store),
            rootfs_lowers: lowers,
            upper: upper.clone(),
            work: ovl_work,
            args: run.args.clone(),
            env,
            cwd: cfg
                .working_dir
                .clone()
                .filter(|w| !w.is_empty())
                .unwrap_or("/".into()),
            user: cfg.user.clone().unwrap_or_default(),
            hostname: "wbuild".into(),
            network: match run.network {
                Network::None => exec::Network::None,
                Network::Host => exec::Network::Host,
            },
            mounts,
            limits: self.opts.limits,
        };
        let outcome = exec::run(&spec, &mut |chunk: &[u8]| {
            self.progress.step_output(id, chunk)
        })?;
        if !outcome.success() {
            let why = match (outcome.exit_code, self.opts.limits.memory) {
                (137, Some(m)) => format!(
                    " (killed by SIGKILL: the cgroup's out-of-memory killer stops a step that \
                     needs more than --memory {m} bytes)"
                ),
                _ => String::new(),
            };
            bail!("the command exited with code {}{why}", outcome.exit_code);
        }
        let layer = self.layer_from(&upper)?;
        drop(keep);
        Ok(layer)
    }

    fn copy_inputs(
        &self,
        copy: &CopyOp,
        deps: &HashMap<u32, StageState>,
    ) -> anyhow::Result<StepInputs> {
        let mut inputs = StepInputs::default();
        for s in &copy.sources {
            if let CopySource::Url(url) = s {
                let d = self.download(url, copy)?;
                inputs.remote.push(format!("{url} {} {}", d.name, d.digest));
            }
        }
        if matches!(copy.from, Source::Context) {
            let paths = path_sources(copy)?;
            if !paths.is_empty() {
                let matches =
                    self.context
                        .resolve_copy_sources(&paths, &copy.excludes, copy.parents)?;
                let mut memo = self.memo.lock().unwrap();
                inputs.context = Some(self.context.digest(&matches, &mut memo)?);
            }
        } else {
            self.add_source_input(&copy.from, deps, &mut inputs)?;
        }
        Ok(inputs)
    }

    /// The file `ADD <url>` names, fetched once per build (its digest keys the step).
    fn download(&self, url: &str, copy: &CopyOp) -> anyhow::Result<Arc<remote::Download>> {
        if let Some(d) = self.downloads.lock().unwrap().get(url) {
            return Ok(d.clone());
        }
        let checksum = copy.add.as_ref().and_then(|a| a.checksum.as_deref());
        let id = self.progress.step_started(&format!("fetching {url}"));
        let d = match remote::download(url, checksum, &self.store.tmp_dir()) {
            Ok(d) => d,
            Err(e) => {
                self.progress.step_failed(id, &format!("{e:#}"));
                return Err(e);
            }
        };
        self.progress.step_done(id);
        let d = Arc::new(d);
        self.downloads
            .lock()
            .unwrap()
            .insert(url.to_string(), d.clone());
        Ok(d)
    }

    /// Record a stage's key or an image's manifest digest as an input of a step.
    fn add_source_input(
        &self,
        from: &Source,
        deps: &HashMap<u32, StageState>,
        inputs: &mut StepInputs,
    ) -> anyhow::Result<()> {
        match from {
            Source::Context => {}
            Source::Stage(i) => inputs.stages.push(deps[i].key.to_string()),
            Source::Image(r) => {
                let platform = r.platform.clone().unwrap_or(self.opts.platform.clone());
                let img = self
                    .images
                    .resolve(&r.reference, &platform)?
                    .with_context(|| {
                        format!(
                            "{}: the image is not in the store; pull it with `wbuild pull {}` or \
                         import it with `wbuild import`",
                            r.reference, r.reference
                        )
                    })?;
                inputs.images.push(img.manifest_digest.to_string());
            }
        }
        Ok(())
    }

    fn copy_step(
        &self,
        state: &mut StageState,
        copy: &CopyOp,
        deps: &HashMap<u32, StageState>,
    ) -> anyhow::Result<Option<LayerRef>> {
        let linked = link::is_linked(copy);
        if linked {
            link::check_chown(copy)?;
        }
        let parent = if linked {
            None
        } else {
            Some(self.rootfs(state)?)
        };
        let source_ctx = self.source_root(&copy.from, deps)?;
        let from = source_ctx.as_ref().unwrap_or(&self.context);
        let unpack_urls = copy.add.as_ref().and_then(|a| a.unpack) == Some(true);
        let mut downloads = Vec::new();
        for s in &copy.sources {
            if let CopySource::Url(url) = s {
                downloads.push(self.download(url, copy)?);
            }
        }
        let mut downloads = downloads.iter();
        let inline: Vec<copy::LiteralFile> = copy
            .sources
            .iter()
            .filter_map(|s| match s {
                CopySource::Inline(f) => Some(copy::LiteralFile {
                    name: &f.name,
                    content: copy::LiteralContent::Text(&f.content),
                    mode: 0o644,
                    mtime: None,
                    unpack: false,
                }),
                CopySource::Url(_) => downloads.next().map(|d| copy::LiteralFile {
                    name: &d.name,
                    content: copy::LiteralContent::File(d.path()),
                    mode: 0o600,
                    mtime: d.mtime,
                    unpack: unpack_urls,
                }),
                _ => None,
            })
            .collect();
        let sources = path_sources(copy)?;
        let workdir = state
            .config
            .image()
            .config
            .working_dir
            .clone()
            .unwrap_or_else(|| "/".into());
        let staging = tempfile::Builder::new()
            .prefix(".copy-")
            .tempdir_in(self.store.tmp_dir())?;
        copy::stage_copy(
            &copy::CopyRequest {
                from,
                from_context: matches!(copy.from, Source::Context),
                sources: &sources,
                inline: &inline,
                excludes: &copy.excludes,
                dest: &copy.dest,
                workdir: &workdir,
                parent_rootfs: parent.as_deref(),
                chown: copy.chown.as_deref(),
                chmod: copy.chmod.as_ref(),
                parents: copy.parents,
                unpack: copy.add.as_ref().is_some_and(|a| a.unpack.unwrap_or(true)),
            },
            staging.path(),
        )?;
        self.layer_from(staging.path())
    }

    /// WORKDIR creates its directory when the filesystem lacks it, as Docker does.
    fn mkdir_step(&self, state: &mut StageState, dir: &str) -> anyhow::Result<Option<LayerRef>> {
        let parent = self.rootfs(state)?;
        // Follow the image's symlinks inside the image, never the host's.
        let resolved = exec::resolve_container_path(&parent, dir)?;
        let rel = resolved.trim_start_matches('/');
        if rel.is_empty() || std::fs::symlink_metadata(parent.join(rel)).is_ok_and(|m| m.is_dir()) {
            return Ok(None);
        }
        let staging = tempfile::Builder::new()
            .prefix(".mkdir-")
            .tempdir_in(self.store.tmp_dir())?;
        let user = state.config.image().config.user.clone().unwrap_or_default();
        workdir::stage(&parent, rel, &user, staging.path())?;
        self.layer_from(staging.path())
    }

    /// Store the config and manifest of the target stage and name it.
    fn commit_image(&self, target: &StageState) -> anyhow::Result<BuildResult> {
        let mut config = target.config.clone();
        for (k, v) in &self.opts.labels {
            config.label(k, v);
        }
        let (_, config_bytes, config_digest) = config.build();
        let (cd, csize) = self
            .store
            .put_blob_from_reader(&mut config_bytes.as_slice(), None)?;
        let config_desc = manifest::descriptor(manifest::MEDIA_CONFIG, &cd.to_string(), csize)?;
        let layers = target
            .layers
            .iter()
            .map(|l| manifest::descriptor(&l.media_type, &l.digest, l.size))
            .collect::<Result<Vec<_>, _>>()?;
        let (_, manifest_bytes, _) =
            manifest::annotated_manifest(config_desc, layers, &self.opts.annotations)?;
        let (md, manifest_size) = self
            .store
            .put_blob_from_reader(&mut manifest_bytes.as_slice(), None)?;
        for tag in &self.opts.tags {
            let name = catalog::normalize(tag).map_err(anyhow::Error::msg)?;
            self.store.set_ref(&name, &md)?;
        }
        let (ran, cached) = *self.counts.lock().unwrap();
        Ok(BuildResult {
            manifest_digest: md,
            config_digest,
            manifest_size,
            ran,
            cached,
        })
    }

    fn export(
        &self,
        out: &Output,
        target: &StageState,
        result: &BuildResult,
    ) -> anyhow::Result<()> {
        let opts = crate::image::ExportOptions {
            names: self.opts.tags.clone(),
            mtime: self.opts.source_date_epoch.unwrap_or(0).max(0) as u64,
        };
        let digest = result.manifest_digest.to_string();
        let src: &dyn BlobSource = self.store;
        match out {
            // `dest=-`: the tar goes to standard output (the CLI refused a terminal).
            Output::Oci(p) | Output::Docker(p) if p == Path::new("-") => {
                let docker = matches!(out, Output::Docker(_));
                crate::image::export_tar_to(src, &digest, &opts, docker, &mut std::io::stdout())?
            }
            Output::Tar(p) if p == Path::new("-") => {
                let root = self.rootfs(&mut target.clone())?;
                let opts = DiffOptions {
                    source_date_epoch: self.opts.source_date_epoch,
                };
                let mut w = std::io::BufWriter::new(std::io::stdout().lock());
                snapshot::diff_upper(&root, &mut w, &opts)?;
                w.flush()?;
            }
            Output::Oci(p) if p.extension().is_some_and(|e| e == "tar") => {
                crate::image::export_oci_tar(src, &digest, &opts, p)?
            }
            Output::Oci(p) => crate::image::export_oci_dir(src, &digest, &opts, p)?,
            Output::Docker(p) => crate::image::export_docker_tar(src, &digest, &opts, p)?,
            Output::Load => {
                let how =
                    crate::image::load::load(self.store, &digest, &result.config_digest, &opts)?;
                self.progress.message(match how {
                    crate::image::load::Loaded::Sent => "loaded into the Docker engine",
                    crate::image::load::Loaded::Tagged => {
                        "the Docker engine had the image already; named it there"
                    }
                });
            }
            Output::Registry(name) => {
                let Some(reg) = &self.registry else {
                    bail!("pushing {name}: no registry access in this build");
                };
                let image = ImageName::parse(name)?;
                let stats = reg.push(self.store, &result.manifest_digest, &image)?;
                self.progress.message(&format!(
                    "pushed {image}@{} ({} blobs uploaded, {} mounted, {} already there)",
                    result.manifest_digest, stats.uploaded, stats.mounted, stats.existing
                ));
            }
            Output::Local(p) => {
                let mut st = target.clone();
                let root = self.rootfs(&mut st)?;
                std::fs::create_dir_all(p)?;
                snapshot::copy_tree(&root, p)
                    .with_context(|| format!("writing the filesystem to {}", p.display()))?;
            }
            Output::Tar(p) => {
                let mut st = target.clone();
                let root = self.rootfs(&mut st)?;
                let dir = p.parent().filter(|d| !d.as_os_str().is_empty());
                let mut tmp = tempfile::NamedTempFile::new_in(dir.unwrap_or(Path::new(".")))
                    .with_context(|| format!("creating {}", p.display()))?;
                let mut w = std::io::BufWriter::new(tmp.as_file_mut());
                let opts = DiffOptions {
                    source_date_epoch: self.opts.source_date_epoch,
                };
                snapshot::diff_upper(&root, &mut w, &opts)?;
                w.flush()?;
                drop(w);
                tmp.as_file().sync_all()?;
                tmp.persist(p)
                    .with_context(|| format!("writing {}", p.display()))?;
            }
        }
        Ok(())
    }
}

/// RUN mounts: bind, cache and secret.
impl Builder<'_> {
    /// What a RUN reads besides its parent: the context files, stages and images its bind
    /// mounts (and seeded cache mounts) take files from. Secrets never enter the key.
    fn run_inputs(
        &self,
        run: &RunOp,
        deps: &HashMap<u32, StageState>,
    ) -> anyhow::Result<StepInputs> {
        let mut inputs = StepInputs {
            exec: self.opts.limits.describe_ulimits(),
            ..StepInputs::default()
        };
        if let Some(size) = self.opts.shm_size {
            inputs.exec.push(format!("shm-size {size}"));
        }
        let mut context_paths = Vec::new();
        for m in &run.mounts {
            let (from, path) = match m {
                Mount::Bind(b) => (&b.from, b.source_path.as_str()),
                Mount::Cache(c) => match &c.from {
                    Some(f) => (f, c.source_path.as_deref().unwrap_or("/")),
                    None => continue,
                },
                _ => continue,
            };
            if matches!(from, Source::Context) {
                context_paths.push(path.to_string());
            } else {
                self.add_source_input(from, deps, &mut inputs)?;
            }
        }
        if !context_paths.is_empty() {
            let matches = self
                .context
                .resolve_sources(&context_paths, &[])
                .context("RUN --mount source")?;
            let mut memo = self.memo.lock().unwrap();
            inputs.context = Some(self.context.digest(&matches, &mut memo)?);
        }
        Ok(inputs)
    }

    /// The files a COPY or a mount reads from a stage or an image, as a context over their
    /// snapshot (no ignore rules); None for the build context itself.
    fn source_root(
        &self,
        from: &Source,
        deps: &HashMap<u32, StageState>,
    ) -> anyhow::Result<Option<Context>> {
        let mut state = match from {
            Source::Context => return Ok(None),
            Source::Stage(i) => deps[i].clone(),
            Source::Image(r) => self.image_state(r, deps)?,
        };
        let root = self.rootfs(&mut state)?;
        Ok(Some(Context::with_rules(&root, IgnoreRules::default())?))
    }

    /// The host path of `path` inside a mount source, resolved so that it cannot leave it.
    fn mount_source_path(
        &self,
        from: &Source,
        path: &str,
        deps: &HashMap<u32, StageState>,
    ) -> anyhow::Result<PathBuf> {
        let other = self.source_root(from, deps)?;
        let ctx = other.as_ref().unwrap_or(&self.context);
        let found = ctx
            .resolve_sources(&[path.to_string()], &[])
            .with_context(|| format!("RUN --mount source {path}"))?;
        match found.as_slice() {
            [m] if m.resolved.is_empty() => Ok(ctx.root().to_path_buf()),
            [m] => Ok(ctx.root().join(&m.resolved)),
            _ => bail!("RUN --mount source {path} names more than one file"),
        }
    }

    /// The state of a local image used as a mount or copy source.
    fn image_state(
        &self,
        r: &crate::frontend::bindings::ImageRef,
        deps: &HashMap<u32, StageState>,
    ) -> anyhow::Result<StageState> {
        let fake = Stage {
            name: None,
            base: Base::Image(r.clone()),
            platform: r.platform.clone(),
            ops: vec![],
            span: crate::frontend::bindings::Span {
                line: 0,
                column: 0,
                end_line: 0,
                end_column: 0,
            },
            text: String::new(),
        };
        self.base_state(&fake, deps)
    }

    /// `RUN --mount=type=bind`: read-only, or a throwaway copy when `readwrite`.
    fn bind_mount(
        &self,
        b: &BindMount,
        deps: &HashMap<u32, StageState>,
        keep: &mut MountResources,
    ) -> anyhow::Result<ExtraMount> {
        let src = self.mount_source_path(&b.from, &b.source_path, deps)?;
        if matches!(b.from, Source::Context)
            && !self.context.ignore_rules().is_empty()
            && src.is_dir()
        {
            // A context directory is shown as COPY sees it: without what .dockerignore leaves
            // out. Those files are not part of the step's key either.
            let tmp = tempfile::Builder::new()
                .prefix(".bind-")
                .tempdir_in(self.store.tmp_dir())?;
            copy::stage_copy(
                &copy::CopyRequest {
                    from: &self.context,
                    from_context: false,
                    sources: std::slice::from_ref(&b.source_path),
                    inline: &[],
                    excludes: &[],
                    dest: "/",
                    workdir: "/",
                    parent_rootfs: None,
                    chown: None,
                    chmod: None,
                    parents: false,
                    unpack: false,
                },
                tmp.path(),
            )
            .with_context(|| format!("RUN --mount source {}", b.source_path))?;
            let source = tmp.path().to_path_buf();
            keep.dirs.push(tmp);
            return Ok(ExtraMount::Bind {
                source,
                target: b.target.clone(),
                readonly: !b.readwrite,
            });
        }
        if !b.readwrite {
            return Ok(ExtraMount::Bind {
                source: src,
                target: b.target.clone(),
                readonly: true,
            });
        }
        let tmp = tempfile::Builder::new()
            .prefix(".bind-")
            .tempdir_in(self.store.tmp_dir())?;
        let copy = tmp.path().join("src");
        if std::fs::symlink_metadata(&src)?.is_dir() {
            snapshot::copy_tree(&src, &copy)?;
        } else {
            std::fs::copy(&src, &copy)
                .with_context(|| format!("copying {} for a bind mount", src.display()))?;
        }
        keep.dirs.push(tmp);
        Ok(ExtraMount::Bind {
            source: copy,
            target: b.target.clone(),
            readonly: false,
        })
    }

    /// `RUN --mount=type=cache`: a directory under the store root kept across builds by id.
    fn cache_mount(
        &self,
        c: &CacheMount,
        deps: &HashMap<u32, StageState>,
        keep: &mut MountResources,
    ) -> anyhow::Result<ExtraMount> {
        let hex = Digest::of_bytes(c.id.as_bytes()).hex();
        let parent = crate::check::cache_mounts_dir(self.store);
        std::fs::create_dir_all(&parent)?;
        let lock = format!("cache-mount-{hex}");
        let mut dir = parent.join(&hex);
        match c.sharing {
            CacheSharing::Shared => {}
            CacheSharing::Locked => keep.locks.push(self.store.lock(&lock)?),
            CacheSharing::Private => match self.store.try_lock(&lock)? {
                Some(g) => keep.locks.push(g),
                None => {
                    // Another step is using it: this one gets a fresh, empty cache.
                    let tmp = tempfile::Builder::new()
                        .prefix(".cache-")
                        .tempdir_in(self.store.tmp_dir())?;
                    dir = tmp.path().join("cache");
                    keep.dirs.push(tmp);
                }
            },
        }
        if !dir.exists() {
            let tmp = tempfile::Builder::new()
                .prefix(".new-")
                .tempdir_in(&parent)?;
            let new = tmp.path().join("cache");
            match &c.from {
                Some(from) => {
                    let path = c.source_path.as_deref().unwrap_or("/");
                    let src = self.mount_source_path(from, path, deps)?;
                    snapshot::copy_tree(&src, &new)?;
                }
                None => std::fs::create_dir(&new)?,
            }
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&new, std::fs::Permissions::from_mode(c.mode & 0o7777))?;
            std::os::unix::fs::chown(&new, Some(c.uid), Some(c.gid))
                .with_context(|| format!("chown of cache mount {:?}", c.id))?;
            if std::fs::rename(&new, &dir).is_err() && !dir.is_dir() {
                bail!(
                    "could not create the cache mount directory {}",
                    dir.display()
                );
            }
        }
        Ok(ExtraMount::Bind {
            source: dir,
            target: c.target.clone(),
            readonly: c.readonly,
        })
    }

    /// The value of `--secret id=...`, or None when the user did not pass it.
    fn secret_value(&self, id: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let Some((_, src)) = self.opts.secrets.iter().rev().find(|(i, _)| i == id) else {
            return Ok(None);
        };
        match src {
            SecretSource::File(p) => std::fs::read(p)
                .map(Some)
                .with_context(|| format!("reading secret {id:?} from {}", p.display())),
            SecretSource::Env(var) => Ok(std::env::var_os(var).map(|v| {
                use std::os::unix::ffi::OsStringExt as _;
                v.into_vec()
            })),
        }
    }
}

/// What a RUN's mounts hold on to until the command ends: copies and private caches (removed
/// afterwards) and cache-mount locks.
#[derive(Default)]
struct MountResources {
    dirs: Vec<tempfile::TempDir>,
    locks: Vec<crate::store::LockGuard>,
}

/// The lock a build holds while it runs the step with cache key `key`.
pub(crate) fn step_lock_name(key: &Digest) -> String {
    format!("{STEP_LOCK_PREFIX}{}", key.hex())
}

/// Prefix of the per-step lock names (their files are removed by `wbuild prune`).
pub(crate) const STEP_LOCK_PREFIX: &str = "step-";

/// `name` or the stage index, for progress lines.
fn stage_label(stage: &Stage, index: u32) -> String {
    match &stage.name {
        Some(n) => n.clone(),
        None => format!("stage-{index}"),
    }
}

/// The path sources of a COPY; remote sources are refused until network support exists.
fn path_sources(copy: &CopyOp) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for s in &copy.sources {
        match s {
            CopySource::Path(p) => out.push(p.clone()),
            CopySource::Inline(_) => {}
            CopySource::Url(_) => {}
            CopySource::Git(u) => bail!(
                "ADD {u}: git sources are not supported by `wbuild build` yet; clone the \
                 repository into the build context and COPY it"
            ),
        }
    }
    Ok(out)
}

/// Apply a config-only op to the image config, recording history like BuildKit.
fn apply_config(config: &mut ConfigBuilder, op: &Op, text: &str) {
    match op {
        Op::Env(kvs) => {
            for kv in kvs {
                config.env(&kv.key, &kv.value);
            }
        }
        Op::Label(kvs) => {
            for kv in kvs {
                config.label(&kv.key, &kv.value);
            }
        }
        Op::User(u) => {
            config.user(u);
        }
        Op::Expose(ports) => {
            for p in ports {
                config.expose(p);
            }
        }
        Op::Volume(vs) => {
            for v in vs {
                config.volume(v);
            }
        }
        Op::Entrypoint(argv) => {
            // The IR says exactly what changes: ENTRYPOINT alone leaves CMD as it is (a
            // Dockerfile frontend emits its own `cmd(none)` where Docker resets it).
            let cmd = config.image().config.cmd.clone();
            config.entrypoint(argv.clone());
            config.cmd(cmd);
        }
        Op::Cmd(argv) => {
            config.cmd(argv.clone());
        }
        Op::Shell(argv) => {
            config.shell(argv.clone());
        }
        Op::Healthcheck(h) => {
            config.healthcheck(Some(Healthcheck {
                test: h.test.clone(),
                interval: h.interval.unwrap_or(0) as i64,
                timeout: h.timeout.unwrap_or(0) as i64,
                start_period: h.start_period.unwrap_or(0) as i64,
                start_interval: h.start_interval.unwrap_or(0) as i64,
                retries: h.retries.unwrap_or(0) as i64,
            }));
        }
        Op::Stopsignal(s) => {
            config.stop_signal(s);
        }
        Op::Onbuild(t) => {
            config.onbuild(t);
        }
        Op::Maintainer(m) => {
            config.author(m);
        }
        Op::Arg(_) | Op::Run(_) | Op::Copy(_) | Op::Workdir(_) => {}
    }
    if !matches!(op, Op::Run(_) | Op::Copy(_) | Op::Workdir(_)) {
        config.config_only(text);
    }
}
