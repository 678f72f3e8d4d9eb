//! The extended-syntax frontend of wbuild (`dockerfile-ext`), compiled to a WebAssembly
//! component (`wasm32-wasip2`) and usable as a library.
//!
//! It is the Dockerfile language — the same parser ([`wbuild_parser`]) and the same compiler
//! ([`wbuild_frontend_dockerfile::compile`]) as the `dockerfile` frontend — plus conditional
//! blocks:
//!
//! ```text
//! ARG BUILD_VERSION=1
//! IF $BUILD_VERSION == 1
//! RUN touch version1
//! ELSE IF $BUILD_VERSION == 2
//! RUN touch version2
//! ELSE
//! RUN touch other
//! DONE
//! ```
//!
//! The parser accepts `IF`, `ELSE` and `DONE` (and `END`, a synonym of `DONE`) as extension
//! keywords; [`blocks`] matches them into a tree and parses the conditions ([`condition`]);
//! the compiler decides each block where it stands, with the ARG and ENV values in scope there,
//! and compiles only the chosen branch. The IR it returns is plain: the host never sees a
//! condition.

pub mod blocks;
pub mod condition;

use wbuild_frontend_dockerfile::bindings;
use wbuild_frontend_dockerfile::bindings::wbuild::frontend::types::{
    Diagnostic, Input, Translation,
};
use wbuild_frontend_dockerfile::compile::{self, Host, HostImports};

/// The keywords this syntax adds to the Dockerfile's.
pub const KEYWORDS: &[&str] = &["if", "else", "done", "end"];

/// Parser options that accept [`KEYWORDS`].
pub fn parse_options() -> wbuild_parser::Options<'static> {
    wbuild_parser::Options {
        extensions: KEYWORDS,
    }
}

/// Parses `input.source`, matches its blocks and compiles it.
pub fn translate(input: &Input, host: &dyn Host) -> Result<Translation, Vec<Diagnostic>> {
    let tree = wbuild_parser::parse_with(&input.source, &parse_options())
        .map_err(|e| vec![compile::parse_diagnostic(&input.file_name, e)])?;
    let file = blocks::FileInfo {
        name: &input.file_name,
        lines: input.source.lines().collect(),
        escape: tree.directives.escape,
    };
    let items = blocks::build(&tree.children, &file)?;
    compile::compile_items(input, &tree.directives, &tree.warnings, &items, host)
}

/// The component's implementation of the `frontend` world.
pub struct ExtFrontend;

impl bindings::Guest for ExtFrontend {
    fn info() -> bindings::FrontendInfo {
        bindings::FrontendInfo {
            name: "dockerfile-ext".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "The Dockerfile language with IF / ELSE IF / ELSE / DONE blocks".into(),
        }
    }

    fn translate(input: Input) -> Result<Translation, Vec<Diagnostic>> {
        translate(&input, &HostImports)
    }
}

// Only the component exports the world: a native build (unit tests) links the Dockerfile
// frontend's library too, whose export would clash.
#[cfg(target_arch = "wasm32")]
bindings::export_frontend!(ExtFrontend with_types_in bindings);
