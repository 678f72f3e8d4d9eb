//! `--ulimit NAME=SOFT[:HARD]` as `docker build` takes it: the rlimits of every RUN process
//! (runc sets them in the container; it cannot raise a hard limit above wbuild's own).

use anyhow::{Result, bail};
use oci_spec::runtime::{PosixRlimit, PosixRlimitBuilder, PosixRlimitType};

/// Docker's ulimit names, in a fixed order (the index into [`Ulimits`]).
const NAMES: [(&str, PosixRlimitType); 16] = [
    ("core", PosixRlimitType::RlimitCore),
    ("cpu", PosixRlimitType::RlimitCpu),
    ("data", PosixRlimitType::RlimitData),
    ("fsize", PosixRlimitType::RlimitFsize),
    ("locks", PosixRlimitType::RlimitLocks),
    ("memlock", PosixRlimitType::RlimitMemlock),
    ("msgqueue", PosixRlimitType::RlimitMsgqueue),
    ("nice", PosixRlimitType::RlimitNice),
    ("nofile", PosixRlimitType::RlimitNofile),
    ("nproc", PosixRlimitType::RlimitNproc),
    ("rss", PosixRlimitType::RlimitRss),
    ("rtprio", PosixRlimitType::RlimitRtprio),
    ("rttime", PosixRlimitType::RlimitRttime),
    ("sigpending", PosixRlimitType::RlimitSigpending),
    ("stack", PosixRlimitType::RlimitStack),
    ("as", PosixRlimitType::RlimitAs),
];

const NOFILE: usize = 8;

/// (soft, hard) per name of [`NAMES`]; None: the default.
pub type Ulimits = [Option<(u64, u64)>; 16];

/// Sets one `NAME=SOFT[:HARD]` (`-1` or `unlimited` for no limit; HARD defaults to SOFT).
pub fn parse_ulimit(into: &mut Ulimits, spec: &str) -> Result<()> {
    let Some((name, values)) = spec.split_once('=') else {
        bail!("--ulimit {spec:?}: expected NAME=SOFT[:HARD], e.g. nofile=1024:4096");
    };
    let Some(i) = NAMES.iter().position(|(n, _)| *n == name) else {
        let names: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
        bail!(
            "--ulimit {spec:?}: unknown limit {name:?} (one of {})",
            names.join(", ")
        );
    };
    let num = |s: &str| -> Result<u64> {
        match s {
            "-1" | "unlimited" => Ok(u64::MAX),
            _ => s
                .parse::<u64>()
                .map_err(|_| anyhow::anyhow!("--ulimit {spec:?}: {s:?} is not a number")),
        }
    };
    let (soft, hard) = match values.split_once(':') {
        Some((s, h)) => (num(s)?, num(h)?),
        None => (num(values)?, num(values)?),
    };
    if soft > hard {
        bail!("--ulimit {spec:?}: the soft limit is above the hard limit");
    }
    into[i] = Some((soft, hard));
    Ok(())
}

/// A short stable text of the limits set, for cache keys (empty when none is).
pub fn describe(u: &Ulimits) -> Vec<String> {
    NAMES
        .iter()
        .zip(u)
        .filter_map(|((n, _), v)| v.map(|(s, h)| format!("ulimit {n}={s}:{h}")))
        .collect()
}

/// The container's rlimits: NOFILE at `default_nofile` unless set, plus every limit set.
pub(super) fn rlimits(u: &Ulimits, default_nofile: u64) -> Result<Vec<PosixRlimit>> {
    let mut out = Vec::new();
    for (i, (_, typ)) in NAMES.iter().enumerate() {
        let v = match (u[i], i == NOFILE) {
            (Some(v), _) => v,
            (None, true) => (default_nofile, default_nofile),
            (None, false) => continue,
        };
        out.push(
            PosixRlimitBuilder::default()
                .typ(*typ)
                .soft(v.0)
                .hard(v.1)
                .build()?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_ulimits() {
        let mut u = Ulimits::default();
        parse_ulimit(&mut u, "nofile=1024:2048").unwrap();
        parse_ulimit(&mut u, "nproc=-1").unwrap();
        assert_eq!(u[NOFILE], Some((1024, 2048)));
        assert_eq!(
            describe(&u),
            [
                "ulimit nofile=1024:2048",
                "ulimit nproc=18446744073709551615:18446744073709551615"
            ]
        );
        assert!(parse_ulimit(&mut u, "nofile=10:5").is_err());
        assert!(parse_ulimit(&mut u, "files=1").is_err());
        assert!(parse_ulimit(&mut u, "nofile").is_err());
    }
}
