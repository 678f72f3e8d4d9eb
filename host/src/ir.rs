//! The stage-graph IR: the only thing that crosses from a frontend to the rest of the host.
//!
//! The types are generated from `wit/wbuild.wit` (package `wbuild:frontend`, interface `types`)
//! by wasmtime's `bindgen!` in the frontend module, and used directly everywhere: graph
//! validation, planning, cache keys, the builder. A [`Graph`] is a list of [`Stage`]s and a
//! target; a stage has a [`Base`] and [`OpNode`]s, each with the [`Span`] of the instruction it
//! came from. This module also knows this machine's [`Platform`].

pub use crate::frontend::bindings::ImageConfig;
pub use crate::frontend::bindings::wbuild::frontend::types::*;

/// The platform of this machine, as OCI names it.
pub fn host_platform() -> Platform {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "arm" => "arm",
        other => other,
    };
    Platform {
        os: "linux".into(),
        architecture: arch.into(),
        variant: (arch == "arm64").then(|| "v8".into()),
    }
}

/// `OS/ARCH[/VARIANT]`, as `--platform` takes it.
pub fn parse_platform(s: &str) -> anyhow::Result<Platform> {
    let parts: Vec<&str> = s.split('/').collect();
    match parts.as_slice() {
        [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
            os: os.to_string(),
            architecture: arch.to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
        }),
        _ => {
            anyhow::bail!("--platform {s:?}: expected OS/ARCH or OS/ARCH/VARIANT, e.g. linux/amd64")
        }
    }
}
