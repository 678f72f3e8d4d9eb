//! Host-side types and imports generated from `wit/wbuild.wit`. The IR types are used directly
//! throughout the host (graph validation, planning, JSON output). The WIT's doc comments are
//! the types' documentation; the glue `bindgen!` adds around them has none.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    world: "frontend",
    path: "../wit",
    additional_derives: [serde::Serialize],
});

pub use self::wbuild::frontend::host::ImageConfig;
pub use self::wbuild::frontend::types::*;
