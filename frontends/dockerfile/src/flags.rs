//! Instruction flags (`--from=build`, `--link`, `--mount=...`) parsed the way BuildKit's `BFlags`
//! does: every flag an instruction accepts is declared with its kind, anything else is an error.

use std::collections::HashMap;

/// What a flag takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `--link`, `--link=true`, `--link=false`.
    Bool,
    /// `--from=build`: one value, given at most once.
    String,
    /// `--mount=...`, `--exclude=...`: a value, any number of times.
    Strings,
}

/// A flag problem: the message and the flag as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagError {
    pub message: String,
    pub text: String,
}

/// One occurrence of a flag: its value (none for a bare `--flag`) and the flag as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occurrence {
    pub value: Option<String>,
    pub raw: String,
}

/// The validated flags of one instruction.
#[derive(Debug, Default)]
pub struct Flags {
    seen: HashMap<&'static str, Vec<Occurrence>>,
}

impl Flags {
    /// Parses `raw` against the accepted `spec` (name without `--`, kind).
    pub fn parse(raw: &[String], spec: &[(&'static str, Kind)]) -> Result<Flags, FlagError> {
        let mut flags = Flags::default();
        for arg in raw {
            let err = |message: String| FlagError {
                message,
                text: arg.clone(),
            };
            let Some(body) = arg.strip_prefix("--") else {
                return Err(err(format!("arguments must start with '--': {arg}")));
            };
            if body.is_empty() {
                return Err(err("empty flag name: '--'".to_string()));
            }
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let Some(&(key, kind)) = spec.iter().find(|(n, _)| *n == name) else {
                return Err(err(format!("unknown flag: --{name}")));
            };
            let list = flags.seen.entry(key).or_default();
            match kind {
                Kind::Bool => {
                    if !list.is_empty() {
                        return Err(err(format!("duplicate flag specified: --{name}")));
                    }
                    if let Some(v) = &value
                        && !v.eq_ignore_ascii_case("true")
                        && !v.eq_ignore_ascii_case("false")
                    {
                        return Err(err(format!(
                            "expecting boolean value for flag --{name}, not: {v}"
                        )));
                    }
                }
                Kind::String | Kind::Strings => {
                    if value.is_none() {
                        return Err(err(format!("missing a value on flag: --{name}")));
                    }
                    if kind == Kind::String && !list.is_empty() {
                        return Err(err(format!("duplicate flag specified: --{name}")));
                    }
                }
            }
            list.push(Occurrence {
                value,
                raw: arg.clone(),
            });
        }
        Ok(flags)
    }

    /// The single occurrence of a string flag.
    pub fn string(&self, name: &str) -> Option<&Occurrence> {
        self.seen.get(name).and_then(|l| l.first())
    }

    /// Every occurrence of a repeatable flag, in order.
    pub fn strings(&self, name: &str) -> &[Occurrence] {
        self.seen.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// A boolean flag: none when absent.
    pub fn bool(&self, name: &str) -> Option<bool> {
        self.string(name).map(|o| match &o.value {
            None => true,
            Some(v) => v.eq_ignore_ascii_case("true"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    const SPEC: &[(&str, Kind)] = &[
        ("from", Kind::String),
        ("link", Kind::Bool),
        ("exclude", Kind::Strings),
    ];

    #[test]
    fn parses_kinds() {
        let f = Flags::parse(
            &s(&["--from=build", "--link", "--exclude=a", "--exclude=b"]),
            SPEC,
        )
        .unwrap();
        assert_eq!(f.string("from").unwrap().value.as_deref(), Some("build"));
        assert_eq!(f.bool("link"), Some(true));
        assert_eq!(f.strings("exclude").len(), 2);
        assert_eq!(f.bool("nothing"), None);
        let f = Flags::parse(&s(&["--link=FALSE"]), SPEC).unwrap();
        assert_eq!(f.bool("link"), Some(false));
    }

    #[test]
    fn errors() {
        let e = Flags::parse(&s(&["--foo"]), SPEC).unwrap_err();
        assert_eq!(e.message, "unknown flag: --foo");
        assert_eq!(e.text, "--foo");
        assert!(Flags::parse(&s(&["--from"]), SPEC).is_err());
        assert!(Flags::parse(&s(&["--from=a", "--from=b"]), SPEC).is_err());
        assert!(Flags::parse(&s(&["--link=maybe"]), SPEC).is_err());
        assert!(Flags::parse(&s(&["from"]), SPEC).is_err());
    }
}
