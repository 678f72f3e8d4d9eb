//! Frontends compiled into the wbuild binary (built by `host/build.rs`).

/// An embedded frontend: its name (usable in `--frontend` and `# syntax=`) and component bytes.
pub struct Embedded {
    /// The name `--frontend` and `# syntax=` use.
    pub name: &'static str,
    /// What it translates, for `wbuild frontends`.
    pub description: &'static str,
    /// The component.
    pub bytes: &'static [u8],
}

/// The Dockerfile frontend, the default.
pub const DOCKERFILE: Embedded = Embedded {
    name: "dockerfile",
    description: "the Dockerfile language as BuildKit implements it",
    bytes: include_bytes!(concat!(env!("OUT_DIR"), "/dockerfile.wasm")),
};

/// The Dockerfile language with `IF` / `ELSE IF` / `ELSE` / `DONE` blocks.
pub const DOCKERFILE_EXT: Embedded = Embedded {
    name: "dockerfile-ext",
    description: "the Dockerfile language with IF / ELSE IF / ELSE / DONE blocks",
    bytes: include_bytes!(concat!(env!("OUT_DIR"), "/dockerfile-ext.wasm")),
};

/// Every embedded frontend.
pub const ALL: &[Embedded] = &[DOCKERFILE, DOCKERFILE_EXT];

/// The embedded frontend called `name`.
pub fn find(name: &str) -> Option<&'static Embedded> {
    ALL.iter().find(|e| e.name == name)
}
