//! The Dockerfile frontend of wbuild, compiled to a WebAssembly component (`wasm32-wasip2`).
//!
//! It parses a Dockerfile with [`wbuild_parser`] and compiles the parse tree into the stage-graph
//! IR of `wit/wbuild.wit`: ARG scoping, variable expansion, flag validation and the resolution of
//! shell forms into argument vectors all happen here, so the host only ever sees plain IR.
//!
//! The crate is also a library: the extended-syntax frontend hands [`compile::compile_items`] a
//! tree of [`items`] whose `IF`/`ELSE` blocks the compiler decides where ARG and ENV values are
//! known.

pub mod bindings {
    //! Types and imports generated from `wit/wbuild.wit`.
    wit_bindgen::generate!({
        world: "frontend",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_frontend",
        default_bindings_module: "wbuild_frontend_dockerfile::bindings",
        additional_derives: [PartialEq],
    });
}

pub mod compile;
mod flags;
pub mod items;
mod mounts;
mod values;

use bindings::wbuild::frontend::types::{Diagnostic, Input, Translation};

/// The component's implementation of the `frontend` world.
pub struct DockerfileFrontend;

impl bindings::Guest for DockerfileFrontend {
    fn info() -> bindings::FrontendInfo {
        bindings::FrontendInfo {
            name: "dockerfile".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "The Dockerfile language as BuildKit implements it".into(),
        }
    }

    fn translate(input: Input) -> Result<Translation, Vec<Diagnostic>> {
        compile::translate(&input, &compile::HostImports)
    }
}

#[cfg(feature = "export")]
bindings::export_frontend!(DockerfileFrontend with_types_in bindings);
