//! What the host gives a running frontend: the `host` interface of the WIT world, and the store
//! state (an empty WASI context, memory limits) each call runs with.

use std::path::PathBuf;

use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{ImageConfig, Platform, wbuild};

/// The files a frontend read from the build context, as (path, text), in the order read.
pub type FilesRead = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

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
    /// What `read-context-file` answered, by path, for the caller's diagnostics.
    pub files_read: FilesRead,
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
        let bytes = read_in_root(root, &path)?;
        let mut read = self.files_read.lock().unwrap_or_else(|e| e.into_inner());
        if !read.iter().any(|(p, _)| *p == path) {
            read.push((path, String::from_utf8_lossy(&bytes).into_owned()));
        }
        Ok(bytes)
    }
}

impl wbuild::frontend::types::Host for CallState {}

/// Read `path` relative to `root` without leaving it, even while symlinks in it are swapped
/// (see `sys::read_confined`).
pub fn read_in_root(root: &std::path::Path, path: &str) -> Result<Vec<u8>, String> {
    crate::sys::read_confined(root, path, MAX_CONTEXT_FILE)
}

/// `input.context-path`: the build file's path relative to the context root, when it lies
/// inside it (`/`-separated); none for stdin (`-`) or a file outside the context.
pub fn context_path(file: &std::path::Path, context: &std::path::Path) -> Option<String> {
    if file == std::path::Path::new("-") {
        return None;
    }
    let file = file.canonicalize().ok()?;
    let context = context.canonicalize().ok()?;
    let rel = file.strip_prefix(&context).ok()?;
    let parts: Vec<&str> = rel
        .components()
        .map(|c| c.as_os_str().to_str())
        .collect::<Option<_>>()?;
    (!parts.is_empty()).then(|| parts.join("/"))
}
