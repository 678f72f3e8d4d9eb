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
//! and fragments of the build context spliced in place:
//!
//! ```text
//! ARG FLAVOUR=alpine
//! INCLUDE ci/${FLAVOUR}.Dockerfile
//! ```
//!
//! The parser accepts `IF`, `ELSE`, `DONE` (and `END`, a synonym of `DONE`) and `INCLUDE` as
//! extension keywords; [`blocks`] matches them into a tree and parses the conditions
//! ([`condition`]); the compiler decides each block where it stands, with the ARG and ENV
//! values in scope there, and compiles only the chosen branch. An `INCLUDE` is read when the
//! compiler reaches it, through the host's `read-context-file`, and its fragment is parsed here
//! ([`ExtFragments`]) with the same syntax. The IR it returns is plain: the host never sees a
//! condition; ops of a fragment name its file (`span.file`, `graph.files`).

pub mod blocks;
pub mod condition;

use wbuild_frontend_dockerfile::bindings;
use wbuild_frontend_dockerfile::bindings::wbuild::frontend::types::{
    Diagnostic, Input, Location, Translation,
};
use wbuild_frontend_dockerfile::compile::{self, Host, HostImports};
use wbuild_frontend_dockerfile::items::{Fragments, Walk};

/// The keywords this syntax adds to the Dockerfile's.
pub const KEYWORDS: &[&str] = &["if", "else", "done", "end", "include"];

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
        included_from: Vec::new(),
    };
    let items = blocks::build(&tree.children, &file)?;
    compile::compile_with_includes(
        input,
        &tree.directives,
        &tree.warnings,
        &items,
        host,
        &ExtFragments,
    )
}

/// Parses included fragments with this syntax: blocks, conditions and further `INCLUDE`s.
/// A fragment's own `# escape=` directive applies to it; `# syntax=` and `# check=` belong to
/// the build file and are ignored in a fragment.
pub struct ExtFragments;

impl Fragments for ExtFragments {
    fn parse(
        &self,
        name: &str,
        source: &str,
        included_from: &[Location],
        walk: &mut Walk<'_>,
    ) -> Result<(), Vec<Diagnostic>> {
        let tree = wbuild_parser::parse_with(source, &parse_options()).map_err(|e| {
            let mut d = compile::parse_diagnostic(name, e);
            d.included_from = included_from.to_vec();
            vec![d]
        })?;
        let file = blocks::FileInfo {
            name,
            lines: source.lines().collect(),
            escape: tree.directives.escape,
            included_from: included_from.to_vec(),
        };
        let items = blocks::build(&tree.children, &file)?;
        walk(&items, tree.directives.escape, &tree.warnings);
        Ok(())
    }
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
