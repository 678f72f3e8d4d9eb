//! Frontends: loading WebAssembly components, caching their compiled form, and calling them.
//!
//! One [`Runtime`] holds the shared `Engine` and `Linker`; each call to a frontend gets a fresh
//! `Store` with a memory cap, an epoch deadline and an empty, deterministic WASI context
//! ([`wasi`]: no files, no environment, no network, a fixed clock and random seed; stderr goes
//! to a memory pipe so a panic message reaches the user). Components that import anything
//! beyond the frontend world and that WASI subset are refused at load time.

pub mod bindings;
mod cache;
pub mod embedded;
mod file_digest;
mod imports;
mod wasi;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

pub use bindings::{Diagnostic, FrontendInfo, Input, Translation};
pub use cache::{CachedArtifact, LoadKind};
use imports::CallState;
pub use imports::{EmptyImages, FilesRead, ImageResolver, context_path};
pub use wasi::ALLOWED_IMPORTS;

/// How often the epoch ticker advances.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Bounds on one frontend call.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest linear memory (and table) growth allowed, in bytes.
    pub memory: usize,
    /// Wall-clock budget of one call.
    pub time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: 512 << 20,
            time: Duration::from_secs(10),
        }
    }
}

/// The shared engine, linker and compiled-artifact cache.
pub struct Runtime {
    engine: Engine,
    linker: Linker<CallState>,
    cache: cache::ArtifactCache,
    file_digests: file_digest::FileDigests,
    limits: Limits,
}

/// A loaded frontend, ready to instantiate.
pub struct Frontend {
    /// What the user called it: a path or the name of an embedded frontend.
    pub label: String,
    /// `sha256:` digest of the component bytes.
    pub digest: String,
    /// Whether Cranelift ran for this load.
    pub load_kind: LoadKind,
    pre: bindings::FrontendPre<CallState>,
}

/// What the host passes to a call besides the input.
#[derive(Clone)]
pub struct CallContext {
    /// Answers the frontend's `resolve-image-config` calls.
    pub images: Arc<dyn ImageResolver>,
    /// The build context, for `read-context-file` (None: the frontend reads no files).
    pub context_dir: Option<PathBuf>,
    /// Filled with the files the frontend read (`read-context-file`), so that diagnostics in
    /// an included fragment can show its line.
    pub files_read: FilesRead,
}

impl Default for CallContext {
    fn default() -> Self {
        CallContext {
            images: Arc::new(EmptyImages),
            context_dir: None,
            files_read: FilesRead::default(),
        }
    }
}

impl Runtime {
    /// A runtime whose compiled frontends are cached in `cache_dir` (none: compile every time).
    pub fn new(cache_dir: Option<PathBuf>, limits: Limits) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasi::add_to_linker(&mut linker)?;
        bindings::Frontend::add_to_linker::<_, wasmtime::component::HasSelf<CallState>>(
            &mut linker,
            |s| s,
        )?;
        let ticker = engine.weak();
        std::thread::Builder::new()
            .name("wbuild-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })?;
        let cache = cache::ArtifactCache::new(cache_dir);
        Ok(Runtime {
            engine,
            linker,
            file_digests: file_digest::FileDigests::new(cache.file_digests_dir()),
            cache,
            limits,
        })
    }

    /// Load a component from a file. A file whose stat matches the one remembered for its
    /// path ([`file_digest`]) and whose artifact is cached is neither read nor hashed.
    pub fn load_file(&self, path: &Path) -> anyhow::Result<Frontend> {
        let label = path.display().to_string();
        let source = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let mut file = std::fs::File::open(path)
            .with_context(|| format!("reading frontend {}", path.display()))?;
        let before = file
            .metadata()
            .with_context(|| format!("reading frontend {}", path.display()))?;
        if let Some(digest) = self.file_digests.lookup(&source, &before)
            && let Some(component) = self.cache.load_cached(&self.engine, &digest)
        {
            return self.ready(&label, sha256_text(&digest), component, LoadKind::Cached);
        }
        let started = std::time::SystemTime::now();
        let mut bytes = Vec::with_capacity(before.len() as usize);
        std::io::Read::read_to_end(&mut file, &mut bytes)
            .with_context(|| format!("reading frontend {}", path.display()))?;
        let after = file
            .metadata()
            .with_context(|| format!("reading frontend {}", path.display()))?;
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        let fe = self.load_digested(&label, &source.display().to_string(), &bytes, &digest)?;
        self.file_digests
            .remember(&source, &before, &after, started, &digest);
        Ok(fe)
    }

    /// Load a component from its bytes; `label` names it in messages.
    pub fn load_bytes(&self, label: &str, bytes: &[u8]) -> anyhow::Result<Frontend> {
        self.load_digested(label, label, bytes, &Sha256::digest(bytes).into())
    }

    /// Load `bytes`, whose sha256 is `digest`.
    fn load_digested(
        &self,
        label: &str,
        source: &str,
        bytes: &[u8],
        digest: &[u8; 32],
    ) -> anyhow::Result<Frontend> {
        if !wasmparser_is_component(bytes) {
            bail!(
                "{label} is not a WebAssembly component; build frontends for the wasm32-wasip2 \
                 target (or wrap a core module with `wasm-tools component new`)"
            );
        }
        let (component, load_kind) = self
            .cache
            .load(&self.engine, bytes, digest, source)
            .with_context(|| format!("compiling frontend {label}"))?;
        self.ready(label, sha256_text(digest), component, load_kind)
    }

    /// The compiled frontends in the cache (see [`CachedArtifact::usable`]).
    pub fn cached(&self) -> anyhow::Result<Vec<CachedArtifact>> {
        self.cache.list(&self.engine)
    }

    /// Load a usable frontend [`Runtime::cached`] listed.
    pub fn load_cached(&self, artifact: &CachedArtifact) -> anyhow::Result<Frontend> {
        let component = self.cache.load_listed(&self.engine, artifact)?;
        let info = artifact
            .info
            .as_ref()
            .context("the artifact has no description")?;
        self.ready(
            &info.source,
            info.digest.clone(),
            component,
            LoadKind::Cached,
        )
    }

    /// Checks a compiled component's imports and prepares its instantiation.
    fn ready(
        &self,
        label: &str,
        digest: String,
        component: Component,
        load_kind: LoadKind,
    ) -> anyhow::Result<Frontend> {
        self.check_imports(label, &component)?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("{label} does not implement the wbuild:frontend world"))?;
        let pre = bindings::FrontendPre::new(instance_pre)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("{label} does not implement the wbuild:frontend world"))?;
        Ok(Frontend {
            label: label.to_string(),
            digest,
            load_kind,
            pre,
        })
    }

    fn check_imports(&self, label: &str, component: &Component) -> anyhow::Result<()> {
        let ty = component.component_type();
        for (name, _) in ty.imports(&self.engine) {
            if !ALLOWED_IMPORTS.iter().any(|p| name.starts_with(p)) {
                bail!(
                    "frontend {label} imports `{name}`, which frontends may not use: a frontend \
                     gets the wbuild:frontend/host interface and the WASI 0.2 interfaces of \
                     io, cli, clocks, random, filesystem and sockets, linked empty and \
                     deterministic (no files, no network, a fixed clock and random seed)"
                );
            }
        }
        Ok(())
    }

    fn store(&self, cx: &CallContext) -> (Store<CallState>, MemoryOutputPipe) {
        let stderr = MemoryOutputPipe::new(64 << 10);
        let state = CallState {
            wasi: wasi::context(stderr.clone()),
            table: Default::default(),
            limits: StoreLimitsBuilder::new()
                .memory_size(self.limits.memory)
                .table_elements(1 << 20)
                .instances(64)
                .trap_on_grow_failure(true)
                .build(),
            images: cx.images.clone(),
            context: cx.context_dir.clone(),
            files_read: cx.files_read.clone(),
            host_time: Duration::ZERO,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        let ticks = (self.limits.time.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64;
        store.set_epoch_deadline(ticks);
        // At the deadline, time the host spent resolving images (registry round trips) is
        // given back; a frontend that used up its own time is interrupted.
        let mut credited = Duration::ZERO;
        store.epoch_deadline_callback(move |ctx| {
            let owed = ctx.data().host_time.saturating_sub(credited);
            let owed_ticks = (owed.as_millis() / EPOCH_TICK.as_millis()) as u64;
            if owed_ticks == 0 {
                return Err(wasmtime::Trap::Interrupt.into());
            }
            credited += EPOCH_TICK * owed_ticks as u32;
            Ok(wasmtime::UpdateDeadline::Continue(owed_ticks))
        });
        (store, stderr)
    }

    /// Ask a frontend who it is.
    pub fn info(&self, fe: &Frontend) -> anyhow::Result<FrontendInfo> {
        let (mut store, stderr) = self.store(&CallContext::default());
        let instance = fe.pre.instantiate(&mut store)?;
        instance
            .call_info(&mut store)
            .map_err(|e| call_error(fe, e, &stderr, self.limits))
    }

    /// Translate a build file. The outer error is a frontend failure (trap, timeout, memory);
    /// the inner one the frontend's diagnostics about the file.
    pub fn translate(
        &self,
        fe: &Frontend,
        input: &Input,
        cx: &CallContext,
    ) -> anyhow::Result<Result<Translation, Vec<Diagnostic>>> {
        let (mut store, stderr) = self.store(cx);
        let instance = fe
            .pre
            .instantiate(&mut store)
            .map_err(|e| call_error(fe, e, &stderr, self.limits))?;
        instance
            .call_translate(&mut store, input)
            .map_err(|e| call_error(fe, e, &stderr, self.limits))
    }
}

fn call_error(
    fe: &Frontend,
    err: wasmtime::Error,
    stderr: &MemoryOutputPipe,
    limits: Limits,
) -> anyhow::Error {
    let output = String::from_utf8_lossy(&stderr.contents())
        .trim()
        .to_string();
    let why = match err.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => {
            format!("it ran longer than its time limit of {:?}", limits.time)
        }
        Some(wasmtime::Trap::MemoryOutOfBounds) | Some(wasmtime::Trap::HeapMisaligned) => {
            format!("it crashed ({err})")
        }
        // StoreLimits with trap_on_grow_failure reports a refused growth this way.
        _ if format!("{err:?}").contains("forcing trap when growing") => {
            format!(
                "it needed more than its memory limit of {} MiB",
                limits.memory >> 20
            )
        }
        _ => format!("{err:#}"),
    };
    if output.is_empty() {
        anyhow::anyhow!("frontend {} failed: {why}", fe.label)
    } else {
        anyhow::anyhow!("frontend {} failed: {why}\n{output}", fe.label)
    }
}

/// A component starts with the wasm magic and the component-model layer/version word.
fn sha256_text(digest: &[u8; 32]) -> String {
    format!("sha256:{}", hex::encode(digest))
}

fn wasmparser_is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && &bytes[0..4] == b"\0asm" && bytes[6..8] == [1, 0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_component() {
        let rt = Runtime::new(None, Limits::default()).unwrap();
        let Err(err) = rt.load_bytes("junk.wasm", b"not wasm at all") else {
            panic!("junk loaded")
        };
        assert!(
            err.to_string().contains("not a WebAssembly component"),
            "{err}"
        );
        // A core module (version 1, layer 0) is not a component either.
        let core = b"\0asm\x01\0\0\0";
        let Err(err) = rt.load_bytes("core.wasm", core) else {
            panic!("a core module loaded")
        };
        assert!(err.to_string().contains("wasm32-wasip2"), "{err}");
    }

    #[test]
    fn every_embedded_frontend_is_the_one_its_name_says() {
        let rt = Runtime::new(None, Limits::default()).unwrap();
        for e in embedded::ALL {
            let fe = rt.load_bytes(e.name, e.bytes).unwrap();
            assert_eq!(rt.info(&fe).unwrap().name, e.name);
        }
    }

    #[test]
    fn embedded_frontend_loads_from_cache_the_second_time() {
        let dir = tempfile::tempdir().unwrap();
        let rt = Runtime::new(Some(dir.path().into()), Limits::default()).unwrap();
        let fe = rt
            .load_bytes("dockerfile", embedded::DOCKERFILE.bytes)
            .unwrap();
        assert_eq!(fe.load_kind, LoadKind::Compiled);
        assert_eq!(rt.info(&fe).unwrap().name, "dockerfile");
        let fe = rt
            .load_bytes("dockerfile", embedded::DOCKERFILE.bytes)
            .unwrap();
        assert_eq!(fe.load_kind, LoadKind::Cached);
        assert!(fe.digest.starts_with("sha256:") && fe.digest.len() == 71);

        // A damaged artifact is replaced, not trusted. (It is damaged once nothing maps it: a
        // mapped artifact must not be rewritten in place, see `cache::map_artifact`.)
        drop(fe);
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            std::fs::write(entry.unwrap().path(), b"garbage").unwrap();
        }
        let fe = rt
            .load_bytes("dockerfile", embedded::DOCKERFILE.bytes)
            .unwrap();
        assert_eq!(fe.load_kind, LoadKind::Compiled);
        assert_eq!(rt.info(&fe).unwrap().name, "dockerfile");
    }

    #[test]
    fn a_frontend_file_is_read_again_once_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let rt = Runtime::new(Some(dir.path().join("cache")), Limits::default()).unwrap();
        let file = dir.path().join("fe.wasm");
        std::fs::write(&file, embedded::DOCKERFILE.bytes).unwrap();
        std::thread::sleep(crate::sys::RACY_WINDOW * 2);
        let digest = |b: &[u8]| sha256_text(&Sha256::digest(b).into());

        let fe = rt.load_file(&file).unwrap();
        assert_eq!(fe.load_kind, LoadKind::Compiled);
        // Remembered: the second load neither reads nor hashes the file, and says the same.
        let fe = rt.load_file(&file).unwrap();
        assert_eq!(fe.load_kind, LoadKind::Cached);
        assert_eq!(fe.digest, digest(embedded::DOCKERFILE.bytes));
        assert_eq!(rt.info(&fe).unwrap().name, "dockerfile");
        drop(fe);

        // Another component written over it: its own digest and its own code, never the
        // remembered one.
        std::fs::write(&file, embedded::DOCKERFILE_EXT.bytes).unwrap();
        let fe = rt.load_file(&file).unwrap();
        assert_eq!(fe.digest, digest(embedded::DOCKERFILE_EXT.bytes));
        assert_eq!(rt.info(&fe).unwrap().name, "dockerfile-ext");

        // Something that is not a component is refused even where a component was before.
        std::fs::write(&file, b"junk").unwrap();
        let Err(err) = rt.load_file(&file) else {
            panic!("junk loaded")
        };
        assert!(format!("{err:#}").contains("not a WebAssembly component"));
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;
    use crate::frontend::bindings::Platform;

    fn input(instructions: usize) -> Input {
        let mut source = String::from("FROM busybox\n");
        for i in 0..instructions {
            source += &format!("ENV K{i}=\"value number {i} with some padding to use memory\"\n");
        }
        let platform = Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        };
        Input {
            file_name: "Dockerfile".into(),
            context_path: None,
            source,
            build_args: vec![],
            target: None,
            target_platform: platform.clone(),
            build_platform: platform,
        }
    }

    #[test]
    fn a_frontend_over_its_memory_limit_fails_cleanly() {
        let rt = Runtime::new(
            None,
            Limits {
                memory: 4 << 20,
                time: Duration::from_secs(30),
            },
        )
        .unwrap();
        let fe = rt
            .load_bytes("dockerfile", embedded::DOCKERFILE.bytes)
            .unwrap();
        let err = rt
            .translate(&fe, &input(20_000), &CallContext::default())
            .unwrap_err();
        assert!(err.to_string().contains("memory limit of 4 MiB"), "{err:#}");
        // The runtime is still usable afterwards.
        assert!(
            rt.translate(&fe, &input(10), &CallContext::default())
                .unwrap()
                .is_ok()
        );
    }

    /// A resolver as slow as a registry far away.
    struct SlowImages;

    impl ImageResolver for SlowImages {
        fn resolve(
            &self,
            reference: &str,
            platform: &Platform,
        ) -> Result<bindings::ImageConfig, String> {
            std::thread::sleep(Duration::from_millis(400));
            EmptyImages.resolve(reference, platform)
        }
    }

    #[test]
    fn time_spent_resolving_images_is_not_charged_to_the_frontend() {
        let limits = Limits {
            memory: 1 << 30,
            time: Duration::from_millis(200),
        };
        let rt = Runtime::new(None, limits).unwrap();
        let fe = rt
            .load_bytes("dockerfile", embedded::DOCKERFILE.bytes)
            .unwrap();
        let mut inp = input(1);
        inp.source = "FROM a\nFROM b\nFROM c\n".into();
        let cx = CallContext {
            images: std::sync::Arc::new(SlowImages),
            ..Default::default()
        };
        let t = rt.translate(&fe, &inp, &cx).unwrap().unwrap();
        assert_eq!(t.graph.stages.len(), 3);
    }

    #[test]
    fn a_frontend_over_its_time_limit_is_interrupted() {
        let rt = Runtime::new(
            None,
            Limits {
                memory: 1 << 30,
                time: Duration::from_millis(10),
            },
        )
        .unwrap();
        let fe = rt
            .load_bytes("dockerfile", embedded::DOCKERFILE.bytes)
            .unwrap();
        let started = std::time::Instant::now();
        let err = rt
            .translate(&fe, &input(200_000), &CallContext::default())
            .unwrap_err();
        assert!(err.to_string().contains("time limit"), "{err:#}");
        assert!(started.elapsed() < Duration::from_secs(20));
    }
}
