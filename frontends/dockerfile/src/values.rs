//! Small value syntaxes of Dockerfiles, validated as BuildKit does: platforms, paths, Go
//! durations, file modes, ports, signals, stage names, sizes, and heredoc expansion.

use crate::bindings::wbuild::frontend::types::Platform;

/// `os/arch[/variant]`, or just an OS or an architecture (as containerd's `platforms.Parse`).
/// `default` fills what is left out.
pub fn parse_platform(text: &str, default: &Platform) -> Result<Platform, String> {
    let lower = text.trim().to_ascii_lowercase();
    let parts: Vec<&str> = lower.split('/').collect();
    if parts.iter().any(|p| p.is_empty()) || parts.len() > 3 {
        return Err(format!(
            "invalid platform \"{text}\": expected os/arch[/variant]"
        ));
    }
    let known_os = [
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
        "js",
        "wasip1",
        "plan9",
        "dragonfly",
    ];
    let (os, arch, variant) = match parts.as_slice() {
        [one] if known_os.contains(one) => {
            if *one == default.os {
                return Ok(default.clone());
            }
            (
                one.to_string(),
                default.architecture.clone(),
                default.variant.clone(),
            )
        }
        [one] => ("linux".to_string(), one.to_string(), None),
        [os, arch] => (os.to_string(), arch.to_string(), None),
        [os, arch, variant] => (os.to_string(), arch.to_string(), Some(variant.to_string())),
        _ => unreachable!("1 to 3 parts"),
    };
    if !os
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!(
            "invalid platform \"{text}\": unknown operating system \"{os}\""
        ));
    }
    let (arch, variant) = normalize_arch(&arch, variant);
    Ok(Platform {
        os,
        architecture: arch,
        variant,
    })
}

fn normalize_arch(arch: &str, variant: Option<String>) -> (String, Option<String>) {
    match arch {
        "i386" | "386" | "x86" => ("386".into(), None),
        "x86_64" | "x86-64" | "amd64" => (
            "amd64".into(),
            variant.filter(|v| v != "v1"), // amd64/v1 is amd64
        ),
        "aarch64" | "arm64" => ("arm64".into(), variant.filter(|v| v != "v8" && v != "8")),
        "armhf" => ("arm".into(), Some("v7".into())),
        "armel" => ("arm".into(), Some("v6".into())),
        "arm" => {
            let v = match variant.as_deref() {
                None | Some("7") | Some("v7") => "v7",
                Some("5") | Some("v5") => "v5",
                Some("6") | Some("v6") => "v6",
                Some("8") | Some("v8") => "v8",
                Some(other) => return ("arm".into(), Some(other.to_string())),
            };
            ("arm".into(), Some(v.into()))
        }
        other => (other.to_string(), variant),
    }
}

/// `linux/arm64/v8` style.
pub fn format_platform(p: &Platform) -> String {
    match &p.variant {
        Some(v) if !v.is_empty() => format!("{}/{}/{}", p.os, p.architecture, v),
        _ => format!("{}/{}", p.os, p.architecture),
    }
}

pub use wbuild_parser::paths::{clean_path, join_workdir};

/// Go's `time.ParseDuration`, in nanoseconds (may be negative).
pub fn parse_duration(s: &str) -> Result<i128, String> {
    let bad = || format!("time: invalid duration \"{s}\"");
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(bad());
        }
        let value: f64 = num.parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale: f64 = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("time: missing unit in duration \"{s}\"")),
            _ => return Err(format!("time: unknown unit \"{unit}\" in duration \"{s}\"")),
        };
        total += value * scale;
    }
    if total > i64::MAX as f64 {
        return Err(format!("time: invalid duration \"{s}\""));
    }
    let ns = total.round() as i128;
    Ok(if neg { -ns } else { ns })
}

/// A chmod(1) symbolic mode: comma-separated clauses `[ugoa]*([-+=]([rwxXst]*|[ugo]))+`.
pub fn valid_symbolic_mode(mode: &str) -> bool {
    if mode.is_empty() {
        return false;
    }
    mode.split(',').all(|clause| {
        let b = clause.as_bytes();
        let mut i = 0;
        while i < b.len() && b"ugoa".contains(&b[i]) {
            i += 1;
        }
        if i == b.len() {
            return false;
        }
        while i < b.len() {
            if !b"+-=".contains(&b[i]) {
                return false;
            }
            i += 1;
            if i < b.len() && b"ugo".contains(&b[i]) {
                i += 1;
                continue;
            }
            while i < b.len() && b"rwxXst".contains(&b[i]) {
                i += 1;
            }
        }
        true
    })
}

/// `EXPOSE` port specs: `80`, `80/udp`, `8000-8002/tcp` (ranges become single ports).
pub fn parse_ports(spec: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = match spec.rsplit_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    // A leading `ip:` (deprecated `EXPOSE 127.0.0.1:80`) is ignored as Docker does; a
    // host-port mapping is not allowed.
    let ports = ports.rsplit(':').next().unwrap_or(ports);
    let parse = |p: &str| -> Result<u32, String> {
        p.parse::<u32>()
            .ok()
            .filter(|n| *n <= 65535)
            .ok_or_else(|| format!("invalid containerPort: {spec}"))
    };
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => {
            let p = parse(ports)?;
            (p, p)
        }
    };
    if hi < lo {
        return Err(format!(
            "invalid range specified for container port: {spec}"
        ));
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

/// A signal name (`SIGTERM`, `TERM`, `SIGRTMIN+3`) or number.
pub fn valid_signal(s: &str) -> bool {
    if s.is_empty() {
        return false;
    }
    if s.chars().all(|c| c.is_ascii_digit()) {
        return s.parse::<u32>().is_ok_and(|n| n > 0 && n < 128);
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    const NAMES: &[&str] = &[
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
        "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
        "TRAP", "TSTP", "TTIN", "TTOU", "UNUSED", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU",
        "XFSZ", "RTMIN", "RTMAX",
    ];
    if NAMES.contains(&name) {
        return true;
    }
    for base in ["RTMIN+", "RTMAX-"] {
        if let Some(n) = name.strip_prefix(base) {
            return n.parse::<u32>().is_ok_and(|n| n <= 30);
        }
    }
    false
}

/// BuildKit's stage name rule: `^[a-z][a-z0-9-_\.]*$` (after lower-casing).
pub fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

/// docker/go-units `RAMInBytes`: `1024`, `64m`, `1.5GiB`, `512kb` (binary units).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || format!("invalid size: '{s}'");
    let t = s.trim();
    let num_len = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let value: f64 = t[..num_len].parse().map_err(|_| bad())?;
    let unit = t[num_len..].trim().to_ascii_lowercase();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(&unit);
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024f64.powi(2),
        "g" => 1024f64.powi(3),
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return Err(bad()),
    };
    let bytes = value * mult;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// `http://` or `https://`.
pub fn is_url(s: &str) -> bool {
    let l = s.to_ascii_lowercase();
    l.starts_with("http://") || l.starts_with("https://")
}

/// A git source as BuildKit recognises it for `ADD`: `git@host:repo`, `git://`, `ssh://`, or an
/// http(s) URL whose path ends in `.git` (optionally followed by `#ref`).
pub fn is_git(s: &str) -> bool {
    let l = s.to_ascii_lowercase();
    if l.starts_with("git@") || l.starts_with("git://") || l.starts_with("ssh://") {
        return true;
    }
    if is_url(&l) {
        let path = l.split('#').next().unwrap_or(&l);
        let path = path.split('?').next().unwrap_or(path);
        return path.trim_end_matches('/').ends_with(".git");
    }
    false
}

/// Expands variables in a heredoc body the way BuildKit does (quotes and escapes kept as
/// written): `$NAME` and `${...}` are replaced, `\$` stays literal.
pub fn expand_heredoc(
    body: &str,
    escape: char,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let chars: Vec<char> = body.chars().collect();
    let mut out = String::with_capacity(body.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == escape && i + 1 < chars.len() {
            out.push(c);
            out.push(chars[i + 1]);
            i += 2;
            continue;
        }
        if c == '$' && i + 1 < chars.len() {
            if chars[i + 1] == '{' {
                let mut depth = 0;
                let mut j = i + 1;
                while j < chars.len() {
                    match chars[j] {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                if j >= chars.len() {
                    return Err("missing '}' in heredoc variable".into());
                }
                let word: String = chars[i..=j].iter().collect();
                let v =
                    wbuild_parser::shell::expand_word(&word, escape, env).map_err(|e| e.message)?;
                out.push_str(&v);
                i = j + 1;
                continue;
            }
            let n = chars[i + 1..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                .count();
            if n > 0 {
                let name: String = chars[i + 1..i + 1 + n].iter().collect();
                out.push_str(&env(&name).unwrap_or_default());
                i += 1 + n;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(os: &str, arch: &str, v: Option<&str>) -> Platform {
        Platform {
            os: os.into(),
            architecture: arch.into(),
            variant: v.map(Into::into),
        }
    }

    #[test]
    fn platforms() {
        let d = p("linux", "amd64", None);
        assert_eq!(
            parse_platform("linux/arm64", &d).unwrap(),
            p("linux", "arm64", None)
        );
        assert_eq!(
            parse_platform("linux/arm64/v8", &d).unwrap(),
            p("linux", "arm64", None)
        );
        assert_eq!(
            parse_platform("linux/arm/v7", &d).unwrap(),
            p("linux", "arm", Some("v7"))
        );
        assert_eq!(
            parse_platform("linux/armhf", &d).unwrap(),
            p("linux", "arm", Some("v7"))
        );
        assert_eq!(
            parse_platform("arm64", &d).unwrap(),
            p("linux", "arm64", None)
        );
        assert_eq!(parse_platform("linux", &d).unwrap(), d);
        assert_eq!(parse_platform("Linux/X86_64", &d).unwrap(), d);
        assert!(parse_platform("linux//", &d).is_err());
        assert!(parse_platform("a/b/c/d", &d).is_err());
        assert_eq!(
            format_platform(&p("linux", "arm", Some("v7"))),
            "linux/arm/v7"
        );
    }

    #[test]
    fn paths() {
        assert_eq!(clean_path("/a/./b/../c/"), "/a/c");
        assert_eq!(clean_path("/../x"), "/x");
        assert_eq!(join_workdir("/app", "src"), "/app/src");
        assert_eq!(join_workdir("/app", "/opt//x/"), "/opt/x");
        assert_eq!(join_workdir("", "rel"), "/rel");
        assert_eq!(join_workdir("/a/b", "../c"), "/a/c");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), 30_000_000_000);
        assert_eq!(parse_duration("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(parse_duration("1.5h").unwrap(), 5_400_000_000_000);
        assert_eq!(parse_duration("500ms").unwrap(), 500_000_000);
        assert_eq!(parse_duration("0").unwrap(), 0);
        assert_eq!(parse_duration("-1s").unwrap(), -1_000_000_000);
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("1x").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn modes_ports_signals_names() {
        assert!(valid_symbolic_mode("u+x"));
        assert!(valid_symbolic_mode("u+x,g-w"));
        assert!(valid_symbolic_mode("a=rX"));
        assert!(valid_symbolic_mode("+x"));
        assert!(valid_symbolic_mode("go=u"));
        assert!(!valid_symbolic_mode("u"));
        assert!(!valid_symbolic_mode("x+q"));
        assert!(!valid_symbolic_mode(""));
        assert_eq!(parse_ports("80").unwrap(), vec!["80/tcp"]);
        assert_eq!(parse_ports("53/UDP").unwrap(), vec!["53/udp"]);
        assert_eq!(
            parse_ports("8000-8002").unwrap(),
            vec!["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        assert!(parse_ports("http").is_err());
        assert!(parse_ports("80/xyz").is_err());
        assert!(parse_ports("70000").is_err());
        assert!(valid_signal("SIGTERM") && valid_signal("kill") && valid_signal("9"));
        assert!(valid_signal("SIGRTMIN+3"));
        assert!(!valid_signal("SIGFOO") && !valid_signal("0"));
        assert!(valid_stage_name("build-1.x_y"));
        assert!(!valid_stage_name("1build") && !valid_stage_name("a$b") && !valid_stage_name(""));
        assert_eq!(parse_size("64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn sources() {
        assert!(is_url("https://x/y.tar.gz") && !is_url("./x"));
        assert!(is_git("git@github.com:moby/buildkit.git#v0.10"));
        assert!(is_git("https://github.com/moby/buildkit.git#main"));
        assert!(!is_git("https://example.com/file.tar"));
    }
}
