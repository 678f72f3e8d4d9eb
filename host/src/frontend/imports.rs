//! What the host gives a running frontend: the `host` interface of the WIT world, and the store
//! state (an empty WASI context, memory limits) each call runs with.

use std::path::PathBuf;

use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{ImageConfig, Platform, wbuild};

/// Largest file a frontend may read from the build context.
pub const MAX_CONTEXT_FILE: u64 = 16 << 20;

/// Answers `resolve-image-config`. The build pipeline plugs the image store and registry in here;
/// planning without them answers with an empty config.
pub trait ImageResolver: Send + Sync {
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<ImageConfig, String>;
}

/// A resolver that knows no images: every image has an empty config.
pub struct EmptyImages;

impl ImageResolver for EmptyImages {
    fn resolve(&self, _reference: &str, _platform: &Platform) -> Result<ImageConfig, String> {
        Ok(ImageConfig {
            digest: None,
            env: Vec::new(),
            working_dir: String::new(),
            user: String::new(),
            shell: Vec::new(),
            onbuild: Vec::new(),
        })
    }
}

/// The state of one frontend call.
pub struct CallState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limits: StoreLimits,
    pub images: std::sync::Arc<dyn ImageResolver>,
    /// The build context root, when the build has one.
    pub context: Option<PathBuf>,
    /// Time spent answering `resolve-image-config` (registry round trips): not the
    /// frontend's, so it is not charged to its time limit.
    pub host_time: std::time::Duration,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wbuild::frontend::host::Host for CallState {
    fn resolve_image_config(
        &mut self,
        reference: String,
        platform: Platform,
    ) -> Result<ImageConfig, String> {
        let started = std::time::Instant::now();
        let r = self.images.resolve(&reference, &platform);
        self.host_time += started.elapsed();
        r
    }

    fn read_context_file(&mut self, path: String) -> Result<Vec<u8>, String> {
        let Some(root) = &self.context else {
            return Err("this build has no context directory".into());
        };
        read_in_root(root, &path)
    }
}

impl wbuild::frontend::types::Host for CallState {}

/// Read `path` relative to `root` without leaving it: `..` and absolute paths are refused, and so
/// is any symlink whose target resolves outside the root.
pub fn read_in_root(root: &std::path::Path, path: &str) -> Result<Vec<u8>, String> {
    use std::path::Component;
    let rel = std::path::Path::new(path.trim_start_matches('/'));
    if rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!(
            "{path}: only paths inside the build context can be read"
        ));
    }
    let root = root
        .canonicalize()
        .map_err(|e| format!("build context {}: {e}", root.display()))?;
    let full = root
        .join(rel)
        .canonicalize()
        .map_err(|e| format!("{path}: {e}"))?;
    if !full.starts_with(&root) {
        return Err(format!("{path}: leads outside the build context"));
    }
    let meta = std::fs::metadata(&full).map_err(|e| format!("{path}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{path}: not a regular file"));
    }
    if meta.len() > MAX_CONTEXT_FILE {
        return Err(format!(
            "{path}: {} bytes is more than a frontend may read ({MAX_CONTEXT_FILE})",
            meta.len()
        ));
    }
    std::fs::read(&full).map_err(|e| format!("{path}: {e}"))
}
