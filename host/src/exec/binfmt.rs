//! Whether this machine can run a platform's programs: natively (the same architecture), or
//! through an emulator registered in the kernel's `binfmt_misc` (Debian's `qemu-user-static`
//! with `binfmt-support` registers one per architecture). Registrations are read from
//! `/proc/sys/fs/binfmt_misc`, never assumed: an entry counts when binfmt_misc is enabled, the
//! entry is enabled, its magic and mask match an ELF header of the platform (the kernel's own
//! test) and it has the `F` flag (the interpreter is opened at registration, so it also runs
//! inside a RUN's root filesystem, which does not have it).
//!
//! Native means the same architecture as this machine, or 386 on amd64 (the kernel's 32-bit
//! compatibility, as Docker assumes too).
//!
//! [`require`] checks a build's graph before any step runs: every stage with a RUN, for its
//! platform.

use std::path::Path;

use crate::ir::{Base, Graph, Op, Platform, platform_text};

/// Where the kernel shows binfmt_misc.
pub const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// `(ELF class, little-endian, e_machine)` of a Linux architecture (OCI's names).
fn elf(arch: &str) -> Option<(u8, bool, u16)> {
    Some(match arch {
        "amd64" => (2, true, 62),
        "arm64" => (2, true, 183),
        "arm" => (1, true, 40),
        "386" => (1, true, 3),
        "ppc64le" => (2, true, 21),
        "ppc64" => (2, false, 21),
        "s390x" => (2, false, 22),
        "riscv64" => (2, true, 243),
        "mips64le" => (2, true, 8),
        "mips64" => (2, false, 8),
        "mipsle" => (1, true, 8),
        "mips" => (1, false, 8),
        "loong64" => (2, true, 258),
        _ => return None,
    })
}

/// The name `qemu-user-static` registers for an architecture (`qemu-NAME`).
fn qemu_name(arch: &str) -> &str {
    match arch {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "386" => "i386",
        "mips64le" => "mips64el",
        "mipsle" => "mipsel",
        "loong64" => "loongarch64",
        other => other,
    }
}

/// The first 64 bytes of an executable ELF file for `arch`.
fn elf_header(arch: &str) -> Option<[u8; 64]> {
    let (class, little, machine) = elf(arch)?;
    let mut h = [0u8; 64];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = class;
    h[5] = if little { 1 } else { 2 };
    h[6] = 1; // EI_VERSION
    let (etype, mach) = if little {
        (2u16.to_le_bytes(), machine.to_le_bytes())
    } else {
        (2u16.to_be_bytes(), machine.to_be_bytes())
    };
    h[16..18].copy_from_slice(&etype);
    h[18..20].copy_from_slice(&mach);
    Some(h)
}

/// How a platform's programs run here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runs {
    /// On this CPU.
    Native,
    /// Through the binfmt_misc entry `name`, whose interpreter is `interpreter`.
    Emulated {
        /// The entry's name (`qemu-aarch64`).
        name: String,
        /// The emulator.
        interpreter: String,
    },
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// A registered entry (the text of its file) that runs `header`: enabled, ELF magic matching
/// under its mask, and with the `F` flag. Returns its interpreter.
fn entry_runs(text: &str, header: &[u8]) -> Result<String, String> {
    let mut enabled = false;
    let (mut interpreter, mut flags, mut offset, mut magic, mut mask) =
        (None, String::new(), 0usize, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line == "enabled" {
            enabled = true;
        } else if let Some(v) = line.strip_prefix("interpreter ") {
            interpreter = Some(v.to_string());
        } else if let Some(v) = line.strip_prefix("flags:") {
            flags = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("offset ") {
            offset = v.trim().parse().unwrap_or(usize::MAX);
        } else if let Some(v) = line.strip_prefix("magic ") {
            magic = hex(v.trim());
        } else if let Some(v) = line.strip_prefix("mask ") {
            mask = hex(v.trim());
        }
    }
    let (Some(interpreter), Some(magic)) = (interpreter, magic) else {
        return Err("not a magic entry".into());
    };
    let matches = magic.iter().enumerate().all(|(i, m)| {
        let k = mask
            .as_ref()
            .and_then(|k| k.get(i))
            .copied()
            .unwrap_or(0xff);
        let b = header.get(offset.saturating_add(i)).copied().unwrap_or(0);
        b & k == m & k
    });
    if !matches {
        return Err("for another architecture".into());
    }
    if !enabled {
        return Err(format!("{interpreter} is registered but disabled"));
    }
    if !flags.contains('F') {
        return Err(format!(
            "{interpreter} is registered without the F flag, so it cannot run inside a RUN's \
             root filesystem"
        ));
    }
    Ok(interpreter)
}

/// How `platform`'s programs run on this machine, judged from the binfmt_misc entries in
/// `dir`; an error says what is missing and how to install it.
pub fn runs_in(dir: &Path, platform: &Platform, host: &Platform) -> anyhow::Result<Runs> {
    let text = platform_text(platform);
    if platform.os != "linux" {
        anyhow::bail!("RUN for {text}: RUN steps execute Linux programs; {text} cannot run here");
    }
    let arch = platform.architecture.as_str();
    if arch == host.architecture || (host.architecture == "amd64" && arch == "386") {
        return Ok(Runs::Native);
    }
    let Some(header) = elf_header(arch) else {
        anyhow::bail!("RUN for {text}: no emulator can run the architecture {arch:?}");
    };
    let install = format!(
        "install an emulator for it: on Debian `apt-get install qemu-user-static binfmt-support` \
         (then `update-binfmts --enable qemu-{}`)",
        qemu_name(arch)
    );
    let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
    if status.trim() != "enabled" {
        anyhow::bail!(
            "RUN for {text}: this machine ({}) cannot run {text} programs and binfmt_misc is {} \
             at {}, so no emulator is registered; mount it (`mount -t binfmt_misc binfmt_misc \
             {}`) and {install}",
            platform_text(host),
            if status.is_empty() {
                "not mounted"
            } else {
                "disabled"
            },
            dir.display(),
            dir.display()
        );
    }
    let mut reasons = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n != "status" && n != "register")
        .collect();
    names.sort();
    for name in names {
        let Ok(entry) = std::fs::read_to_string(dir.join(&name)) else {
            continue;
        };
        match entry_runs(&entry, &header) {
            Ok(interpreter) => return Ok(Runs::Emulated { name, interpreter }),
            Err(r) if r.starts_with("not a magic") || r.starts_with("for another") => {}
            Err(r) => reasons.push(format!("{name}: {r}")),
        }
    }
    let why = if reasons.is_empty() {
        "none is registered in binfmt_misc".to_string()
    } else {
        reasons.join("; ")
    };
    anyhow::bail!(
        "RUN for {text}: this machine ({}) cannot run {text} programs and has no emulator for \
         them ({why}); {install}",
        platform_text(host)
    )
}

/// The platform each stage runs as: its own, else its base stage's, else `default`.
fn stage_platforms(graph: &Graph, default: &Platform) -> Vec<Platform> {
    let mut out: Vec<Platform> = Vec::with_capacity(graph.stages.len());
    for stage in &graph.stages {
        let p = match (&stage.base, &stage.platform) {
            (Base::Stage(i), _) if (*i as usize) < out.len() => out[*i as usize].clone(),
            (_, Some(p)) => p.clone(),
            _ => default.clone(),
        };
        out.push(p);
    }
    out
}

/// Before anything runs: every needed stage with a RUN can run its platform's programs here.
/// `file_name` and the RUN's line go into the error.
pub fn require(graph: &Graph, default: &Platform, file_name: &str) -> anyhow::Result<()> {
    let host = crate::ir::host_platform();
    let platforms = stage_platforms(graph, default);
    let mut checked: Vec<String> = Vec::new();
    for index in crate::graph::reachable(graph) {
        let stage = &graph.stages[index as usize];
        let Some(run) = stage.ops.iter().find(|n| matches!(n.op, Op::Run(_))) else {
            continue;
        };
        let p = &platforms[index as usize];
        if checked.contains(&platform_text(p)) {
            continue;
        }
        runs_in(Path::new(BINFMT_DIR), p, &host)
            .map_err(|e| anyhow::anyhow!("{file_name}:{}: {}: {e:#}", run.span.line, run.text))?;
        checked.push(platform_text(p));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(arch: &str) -> Platform {
        Platform {
            os: "linux".into(),
            architecture: arch.into(),
            variant: None,
        }
    }

    const AARCH64: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\n\
        flags: PF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\n\
        mask ffffffffffffff00fffffffffffffffffeffffff\n";

    fn binfmt(entries: &[(&str, &str)], status: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("status"), status).unwrap();
        std::fs::write(d.path().join("register"), "").unwrap();
        for (n, t) in entries {
            std::fs::write(d.path().join(n), t).unwrap();
        }
        d
    }

    #[test]
    fn emulators_are_read_from_binfmt_misc() {
        let host = p("amd64");
        let d = binfmt(&[("qemu-aarch64", AARCH64)], "enabled\n");
        assert_eq!(runs_in(d.path(), &p("amd64"), &host).unwrap(), Runs::Native);
        assert_eq!(
            runs_in(d.path(), &p("arm64"), &host).unwrap(),
            Runs::Emulated {
                name: "qemu-aarch64".into(),
                interpreter: "/usr/libexec/qemu-binfmt/aarch64-binfmt-P".into()
            }
        );
        // The aarch64 entry does not run s390x (big-endian, another machine).
        let e = runs_in(d.path(), &p("s390x"), &host)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("linux/s390x") && e.contains("qemu-user-static"),
            "{e}"
        );
        assert!(e.contains("update-binfmts --enable qemu-s390x"), "{e}");
        // Disabled, or without F: named as the reason.
        let off = AARCH64.replacen("enabled", "disabled", 1);
        let d = binfmt(&[("qemu-aarch64", &off)], "enabled\n");
        let e = runs_in(d.path(), &p("arm64"), &host)
            .unwrap_err()
            .to_string();
        assert!(e.contains("registered but disabled"), "{e}");
        let no_f = AARCH64.replace("flags: PF", "flags: P");
        let d = binfmt(&[("qemu-aarch64", &no_f)], "enabled\n");
        let e = runs_in(d.path(), &p("arm64"), &host)
            .unwrap_err()
            .to_string();
        assert!(e.contains("without the F flag"), "{e}");
        // binfmt_misc itself off.
        let d = binfmt(&[("qemu-aarch64", AARCH64)], "disabled\n");
        let e = runs_in(d.path(), &p("arm64"), &host)
            .unwrap_err()
            .to_string();
        assert!(e.contains("binfmt_misc is disabled"), "{e}");
    }
}
