//! Builds the embedded frontends (guest crates under `frontends/`) for `wasm32-wasip2` and puts
//! the components in `OUT_DIR`, where `src/frontend/embedded.rs` includes them.
//!
//! The guest build runs a nested `cargo build` with its own target directory, so it never waits
//! on the lock of the build that runs this script.

use std::path::{Path, PathBuf};
use std::process::Command;

/// (crate name, file name in OUT_DIR), in build order. Building a frontend that uses another
/// one as a library (dockerfile-ext uses dockerfile) also writes that library's cdylib, without
/// its exports, over the same file name; so the library is built after its users, which leaves
/// the complete component in `target/frontends/wasm32-wasip2/release/` for tests and users.
const FRONTENDS: &[(&str, &str)] = &[
    ("wbuild-frontend-dockerfile-ext", "dockerfile-ext.wasm"),
    ("wbuild-frontend-dockerfile", "dockerfile.wasm"),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.parent().unwrap().to_path_buf();
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    println!(
        "cargo:rerun-if-changed={}",
        workspace.join("frontends").display()
    );
    println!("cargo:rerun-if-changed={}", workspace.join("wit").display());
    println!(
        "cargo:rerun-if-changed={}",
        workspace.join("Cargo.lock").display()
    );

    let target_dir = workspace.join("target").join("frontends");
    // Each component is copied right after its own build (see FRONTENDS).
    for (krate, file) in FRONTENDS {
        build_guest(&workspace, &target_dir, krate);
        let artifact = target_dir
            .join("wasm32-wasip2/release")
            .join(format!("{}.wasm", krate.replace('-', "_")));
        std::fs::copy(&artifact, out_dir.join(file)).unwrap_or_else(|e| {
            panic!("copying {} failed: {e}", artifact.display());
        });
    }
}

fn build_guest(workspace: &Path, target_dir: &Path, krate: &str) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "-p",
            krate,
        ])
        .arg("--target-dir")
        .arg(target_dir)
        // Small components load faster: no debug info in the embedded frontends.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true");
    // Settings meant for the outer build (clippy's wrapper, host rustflags, coverage) must not leak
    // into the guest build.
    for var in [
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_MAKEFLAGS",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("running cargo for the frontends");
    if !status.success() {
        panic!(
            "building the frontend {krate} for wasm32-wasip2 failed; \
             is the target installed? run `rustup target add wasm32-wasip2`"
        );
    }
}
