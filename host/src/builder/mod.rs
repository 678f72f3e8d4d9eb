//! The builder: runs a validated stage graph on the store, step by step.
//!
//! Each stage starts from its base ([`base`]: scratch, an image, another stage's result) and
//! applies its ops in order ([`Builder::build`] schedules stages through [`crate::solve`]). Every
//! op gets a cache key; a filesystem op (RUN, COPY/ADD, a missing WORKDIR) looks its key up in
//! the step cache and runs only on a miss, producing a layer ([`run`], [`copy`], [`workdir`]);
//! config-only ops edit the image config ([`config`]). Filesystems come from overlay layer
//! stacks, with flattened copies as the fallback ([`rootfs`]). The target's image is committed
//! and exported at the end ([`export`]).
//!
//! One file per concern: this one holds the driver (stages, op dispatch, the step-cache
//! protocol's use); [`options`] what a build is asked and reports; [`mounts`] RUN's bind, cache
//! and secret mounts; [`staging`] how COPY lays out the copied files; [`remote`] `ADD <url>`.

mod base;
mod config;
mod copy;
mod export;
mod git;
mod link;
mod mounts;
mod no_cache_filter;
mod options;
mod platforms;
mod remote;
mod rootfs;
mod run;
mod ssh;
mod staging;
mod workdir;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::Context as _;

pub use options::{BuildOptions, BuildResult, Output, PlatformResult, SecretSource};
pub(crate) use platforms::{PlatformBuild, ProvenanceRequest, build_platforms};

use config::apply_config;

use crate::context::{Context, HashMemo};
use crate::image::ConfigBuilder;
use crate::ir::{Graph, Op, OpNode, Stage};
use crate::progress::{Progress, StepId};
use crate::registry::cache::{self, CacheLayer, CacheMode};
use crate::registry::{Images, Registry};
use crate::snapshot::Stacks;
use crate::solve::{self, CacheRecord, LayerRef, StepCache, StepInputs};
use crate::store::{Digest, Store};

/// A stage's state between ops, and its result.
#[derive(Clone)]
pub(crate) struct StageState {
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

/// Runs builds against one store and build context.
pub struct Builder<'a> {
    store: &'a Store,
    context: Context,
    /// Content digests of context files, shared by the platforms of one build.
    memo: Arc<Mutex<HashMemo>>,
    opts: BuildOptions,
    counts: Mutex<(usize, usize)>,
    progress: Arc<Progress>,
    /// The overlay snapshotter, set up on first use (see [`Builder::stacks`]).
    stacks: OnceLock<Option<Stacks>>,
    /// Files `ADD <url>` fetched in this build, by URL.
    downloads: Mutex<HashMap<String, Arc<remote::Download>>>,
    /// Commits `ADD <git URL>` resolved to in this build, by URL.
    git_commits: Mutex<HashMap<String, git::Resolved>>,
    /// Where base images come from: the store, then the registry.
    images: Arc<Images>,
    registry: Option<Arc<Registry>>,
    /// The network namespace the default-network RUN steps share, made by the first of them.
    network: crate::exec::netns::SharedNetwork,
    /// Before every stage label in progress (`linux/arm64 `) when several platforms build.
    label_prefix: String,
    /// Stage slots shared with the other platforms' builders of the same build (`--jobs`).
    slots: Option<Arc<platforms::Slots>>,
    /// How a step that runs writes its layer: in `--compression` when the result leaves the
    /// store compressed anyway (a registry, an OCI layout, a docker archive), so the layer is
    /// not written twice; else as a plain tar (see `image::compressed`).
    layer_compression: crate::snapshot::Compression,
}

impl<'a> Builder<'a> {
    pub fn new(
        store: &'a Store,
        context_dir: &Path,
        opts: BuildOptions,
        progress: Arc<Progress>,
    ) -> anyhow::Result<Self> {
        let context = Context::open(context_dir)?;
        let memo = HashMemo::load(&store.context_memo_path(context_dir))
            .unwrap_or_else(|_| HashMemo::in_memory());
        let layer_compression = layer_compression(&opts.outputs, opts.compression);
        Ok(Builder {
            store,
            context,
            memo: Arc::new(Mutex::new(memo)),
            opts,
            counts: Mutex::new((0, 0)),
            progress,
            stacks: OnceLock::new(),
            downloads: Mutex::new(HashMap::new()),
            git_commits: Mutex::new(HashMap::new()),
            images: Arc::new(Images::offline(store.clone())),
            registry: None,
            network: Default::default(),
            label_prefix: String::new(),
            slots: None,
            layer_compression,
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
        self.import_caches()?;
        let (results, target) = self.run_graph(graph)?;
        let result = self.commit_image(&target, &self.opts.tags, &self.opts.outputs)?;
        for out in &self.opts.outputs {
            self.export(out, &target, &result)?;
        }
        let steps = self.cache_steps(&results, &target);
        self.export_caches(steps)?;
        Ok(result)
    }

    /// `--cache-from`: every source's records into the store.
    fn import_caches(&self) -> anyhow::Result<()> {
        for from in &self.opts.cache_from {
            let n = cache::import(self.store, self.registry.as_deref(), from, &record_layer)?;
            self.progress
                .message(&format!("imported {n} cache records from {from}"));
        }
        Ok(())
    }

    /// Runs every stage the target needs (after checking each RUN's platform can run here);
    /// returns every stage's state and the target's.
    fn run_graph(&self, graph: &Graph) -> anyhow::Result<(HashMap<u32, StageState>, StageState)> {
        no_cache_filter::check(&self.opts.no_cache_stages, graph)?;
        crate::exec::binfmt::require(graph, &self.opts.platform, &self.opts.file_name)?;
        let results = solve::run_stages(graph, self.opts.jobs, |index, deps| {
            let _slot = self.slots.as_ref().map(|s| s.take());
            self.build_stage(graph, index, deps)
        })
        .map_err(|f| f.error)?;
        if let Ok(mut memo) = self.memo.lock() {
            let _ = memo.save();
        }
        let target = results[&graph.target].clone();
        Ok((results, target))
    }

    /// The cache index entries each `--cache-to` carries (one list per target, in order).
    fn cache_steps(
        &self,
        results: &HashMap<u32, StageState>,
        target: &StageState,
    ) -> Vec<Vec<(Digest, Vec<u8>)>> {
        self.opts
            .cache_to
            .iter()
            .map(|to| match to.mode {
                CacheMode::Min => target.steps.clone(),
                CacheMode::Max => results.values().flat_map(|s| s.steps.clone()).collect(),
            })
            .collect()
    }

    /// `--cache-to`: `steps[i]` (sorted, deduplicated) to the i-th target.
    fn export_caches(&self, steps: Vec<Vec<(Digest, Vec<u8>)>>) -> anyhow::Result<()> {
        for (to, entries) in self.opts.cache_to.iter().zip(steps) {
            // The layers leave the store compressed, as an image's do.
            let mut entries = entries
                .into_iter()
                .map(|(key, record)| Ok((key, self.record_for_export(&record)?)))
                .collect::<anyhow::Result<Vec<_>>>()?;
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
        Ok(())
    }

    pub(super) fn build_stage(
        &self,
        graph: &Graph,
        index: u32,
        deps: &HashMap<u32, StageState>,
    ) -> anyhow::Result<StageState> {
        let stage = &graph.stages[index as usize];
        let label = format!("{}{}", self.label_prefix, stage_label(stage, index));
        let total = stage.ops.len();
        self.progress
            .stage_started(&format!("[{label} 0/{total}] {}", stage.text));
        let from = crate::graph::origin::describe(graph, &self.opts.file_name, &stage.span);
        let mut state = self.base_state(stage, deps, &from)?;
        state.no_cache = no_cache_filter::matches(&self.opts.no_cache_stages, stage, index);
        for (i, node) in stage.ops.iter().enumerate() {
            // Ops of an included fragment name it in progress, history and errors.
            let fragment = crate::graph::origin::fragment(graph, &node.span);
            let at = fragment
                .as_ref()
                .map_or(String::new(), |f| format!(" ({f})"));
            let step = format!("[{label} {}/{total}] {}{at}", i + 1, node.text);
            state.config.origin(fragment);
            self.apply_op(&mut state, node, deps, &step)
                .with_context(|| {
                    let whence =
                        crate::graph::origin::describe(graph, &self.opts.file_name, &node.span);
                    format!("{whence}: {}", node.text)
                })?;
        }
        state.config.origin(None);
        Ok(state)
    }

    pub(super) fn apply_op(
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
    pub(super) fn cached_step(
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
        // A step's record is its key: its layer is stored uncompressed whatever the build's
        // `--compression` (that applies when an image leaves the store), and a record imported
        // with a compressed layer (`--cache-from`) serves as well.
        let record = key;
        let cache = StepCache::new(self.store);
        let mut _step_lock = None;
        let hit = if self.opts.no_cache || state.no_cache {
            None
        } else {
            match cache.lookup(&record)? {
                Some(rec) => Some(rec),
                None => {
                    // Another build (or stage) may be running this very step: wait for it and
                    // take its result instead of running it twice. The lock covers this one
                    // key only, so unrelated steps of other builds run meanwhile.
                    _step_lock = match cache.try_lock_step(&key)? {
                        Some(g) => Some(g),
                        None => {
                            self.progress.message(&format!(
                                "{step}\n  waiting for another build running the same step"
                            ));
                            Some(cache.lock_step(&key)?)
                        }
                    };
                    cache.lookup(&record)?
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
                let whole = crate::progress::profile::span("step (all)");
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
                let bytes = {
                    let _r = crate::progress::profile::span("cache record");
                    cache.record(&record, &rec)?
                };
                drop(whole);
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
}

impl Builder<'_> {
    /// A cache record as `--cache-to` exports it: an uncompressed layer replaced by its
    /// compressed blob (the build's `--compression`); a record whose layer the store no longer
    /// has is left as it is (the export leaves it out).
    fn record_for_export(&self, record: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut rec = CacheRecord::parse(record)?;
        let Some(layer) = rec.layer.as_mut() else {
            return Ok(record.to_vec());
        };
        let tar: Digest = layer.digest.parse()?;
        if !crate::image::compressed::is_uncompressed(&layer.media_type)
            || !self.store.has_blob(&tar)
        {
            return Ok(record.to_vec());
        }
        let (d, size, media_type) = crate::image::compressed::compressed_layer(
            self.store,
            &tar,
            self.opts.compression,
            false,
        )?;
        layer.digest = d.to_string();
        layer.size = size;
        layer.media_type = media_type.to_string();
        Ok(serde_json::to_vec(&rec)?)
    }
}

/// How the steps of a build with `outputs` write their layers (see `Builder::layer_compression`).
fn layer_compression(
    outputs: &[Output],
    compression: crate::snapshot::Compression,
) -> crate::snapshot::Compression {
    if outputs.iter().any(Output::compresses) {
        compression
    } else {
        crate::snapshot::Compression::None
    }
}

/// The layer a cache record needs, for moving the cache between stores.
fn record_layer(record: &[u8]) -> anyhow::Result<Option<CacheLayer>> {
    Ok(CacheRecord::parse(record)?.layer.map(|l| CacheLayer {
        digest: l.digest,
        size: l.size,
        media_type: l.media_type,
    }))
}

/// `name` or the stage index, for progress lines.
fn stage_label(stage: &Stage, index: u32) -> String {
    match &stage.name {
        Some(n) => n.clone(),
        None => format!("stage-{index}"),
    }
}
