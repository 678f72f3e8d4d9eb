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
    if s.contains(',') {
        anyhow::bail!("--platform {s:?}: one platform here (OS/ARCH[/VARIANT]), not a list");
    }
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

/// Operating systems `--platform` accepts (Go's GOOS values that OCI images use).
const KNOWN_OS: &[&str] = &[
    "linux",
    "windows",
    "darwin",
    "freebsd",
    "netbsd",
    "openbsd",
    "solaris",
    "illumos",
    "aix",
    "android",
    "ios",
    "plan9",
    "dragonfly",
    "js",
    "wasip1",
];
/// Architectures `--platform` accepts (Go's GOARCH values that OCI images use).
const KNOWN_ARCH: &[&str] = &[
    "amd64", "arm64", "arm", "386", "ppc64le", "ppc64", "s390x", "riscv64", "mips64le", "mips64",
    "mipsle", "mips", "loong64", "wasm",
];

/// `OS/ARCH[/VARIANT]`, as the text of a `--platform` list entry (for messages).
pub fn platform_text(p: &Platform) -> String {
    match &p.variant {
        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
        None => format!("{}/{}", p.os, p.architecture),
    }
}

/// `--platform`'s comma-separated list (`linux/amd64,linux/arm64`): every entry checked (a
/// known OS and architecture, as Go names them), duplicates dropped, the order kept.
pub fn parse_platforms(s: &str) -> anyhow::Result<Vec<Platform>> {
    let mut out: Vec<Platform> = Vec::new();
    for entry in s.split(',') {
        let entry = entry.trim();
        if entry.is_empty() {
            anyhow::bail!(
                "--platform {s:?}: an empty entry; give a comma-separated list such as \
                 linux/amd64,linux/arm64"
            );
        }
        let p = parse_platform(entry).map_err(|_| {
            anyhow::anyhow!(
                "--platform {s:?}: {entry:?} is not OS/ARCH or OS/ARCH/VARIANT, e.g. linux/arm64"
            )
        })?;
        if !KNOWN_OS.contains(&p.os.as_str()) {
            anyhow::bail!(
                "--platform {s:?}: {entry:?} has the unknown operating system {:?} (known: {})",
                p.os,
                KNOWN_OS.join(", ")
            );
        }
        if !KNOWN_ARCH.contains(&p.architecture.as_str()) {
            anyhow::bail!(
                "--platform {s:?}: {entry:?} has the unknown architecture {:?} (known: {})",
                p.architecture,
                KNOWN_ARCH.join(", ")
            );
        }
        if p.variant.as_deref() == Some("") {
            anyhow::bail!("--platform {s:?}: {entry:?} has an empty variant");
        }
        if !out.iter().any(|o| platform_text(o) == platform_text(&p)) {
            out.push(p);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod platform_tests {
    use super::*;

    #[test]
    fn platform_lists() {
        let ps = parse_platforms("linux/amd64, linux/arm64/v8,linux/amd64").unwrap();
        let texts: Vec<String> = ps.iter().map(platform_text).collect();
        assert_eq!(texts, ["linux/amd64", "linux/arm64/v8"]);
        for (bad, says) in [
            ("linux/amd64,", "an empty entry"),
            ("linux/amd64,linux", "\"linux\" is not OS/ARCH"),
            ("linux/amd64,linux/x86", "unknown architecture \"x86\""),
            ("linus/amd64", "unknown operating system \"linus\""),
            ("linux/arm/v7/x", "is not OS/ARCH"),
        ] {
            let e = parse_platforms(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let e = parse_platform("linux/amd64,linux/arm64")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a list"), "{e}");
        let e = parse_platforms("linux//x").unwrap_err().to_string();
        assert!(e.contains("is not OS/ARCH"), "{e}");
    }
}
