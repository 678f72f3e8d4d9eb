//! A third-party wbuild frontend: a declarative TOML build spec turned into wbuild's stage-graph
//! IR. It is built outside the wbuild workspace from `wit/wbuild.wit` alone, to show that the WIT
//! interface is all a frontend author needs. See README.md for the spec.
//!
//! Everything a frontend must do is here: parse the file, resolve names (stage bases and
//! `copy.from` name earlier stages), turn shell lines into argument vectors, make working
//! directories absolute, give every op its source span and text, and report errors as
//! diagnostics with line, column and the offending text.

wit_bindgen::generate!({
    world: "frontend",
    path: "../../wit",
});

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
// `input`, `translation` and `diagnostic` are `use`d by the world, so they are at the top.
use wbuild::frontend::types::{
    Base, CopyOp, CopySource, Graph, ImageRef, KeyValue, Network, Op, OpNode, RunOp, Security,
    Source, Span, Stage,
};

/// The whole spec file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    /// The stage to build when `--target` is not given (default: the last).
    target: Option<Spanned<String>>,
    #[serde(default)]
    stage: Vec<Spanned<StageSpec>>,
}

/// `[[stage]]`: ops apply in a fixed order: env, workdir, copy (in order), run (in order), cmd.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StageSpec {
    name: Option<Spanned<String>>,
    /// An image reference, `scratch`, or the name of an earlier stage.
    base: Spanned<String>,
    env: Option<Spanned<BTreeMap<String, String>>>,
    workdir: Option<Spanned<String>>,
    #[serde(default)]
    copy: Vec<Spanned<CopySpec>>,
    #[serde(default)]
    run: Vec<Spanned<String>>,
    cmd: Option<Spanned<Vec<String>>>,
}

/// One `copy` entry: `src` (a path or a list of paths) to `dest`, from the build context or
/// from `from` (an earlier stage's name or an image).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CopySpec {
    src: Sources,
    dest: String,
    from: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Sources {
    One(String),
    Many(Vec<String>),
}

struct TomlFrontend;

impl Guest for TomlFrontend {
    fn info() -> FrontendInfo {
        FrontendInfo {
            name: "toml-spec".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "A declarative TOML build spec (an example third-party frontend)".into(),
        }
    }

    fn translate(input: Input) -> Result<Translation, Vec<Diagnostic>> {
        translate(&input).map_err(|e| vec![e])
    }
}

export!(TomlFrontend);

/// Byte offsets to 1-based lines and columns, and the text of a line.
struct Text<'a> {
    file: &'a str,
    source: &'a str,
}

impl Text<'_> {
    fn position(&self, offset: usize) -> (u32, u32) {
        let offset = offset.min(self.source.len());
        let before = self.source.get(..offset).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        (line as u32, column as u32)
    }

    fn span(&self, range: &Range<usize>) -> Span {
        let (line, column) = self.position(range.start);
        let (end_line, end_column) = self.position(range.end.saturating_sub(1).max(range.start));
        Span {
            line,
            column,
            end_line,
            end_column,
            file: None,
        }
    }

    fn snippet(&self, range: &Range<usize>) -> String {
        self.source
            .get(range.clone())
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    }

    fn error(&self, range: &Range<usize>, message: impl Into<String>) -> Diagnostic {
        let (line, column) = self.position(range.start);
        Diagnostic {
            file: self.file.to_string(),
            line,
            column,
            message: message.into(),
            text: self.snippet(range),
            included_from: Vec::new(),
        }
    }
}

fn translate(input: &Input) -> Result<Translation, Diagnostic> {
    let text = Text {
        file: &input.file_name,
        source: &input.source,
    };
    let spec: Spec = toml::from_str(&input.source).map_err(|e| {
        let range = e.span().unwrap_or(0..0);
        text.error(&range, e.message().trim().to_string())
    })?;
    if spec.stage.is_empty() {
        return Err(text.error(
            &(0..0),
            "the spec has no [[stage]]: there is nothing to build",
        ));
    }

    let mut names: Vec<Option<String>> = Vec::new();
    let mut stages = Vec::new();
    for spanned in &spec.stage {
        let range = spanned.span();
        let s = spanned.get_ref();
        let index = stages.len();
        let earlier = |name: &str| names.iter().position(|n| n.as_deref() == Some(name));

        let name = match &s.name {
            None => None,
            Some(n) => {
                let lower = n.get_ref().to_ascii_lowercase();
                if lower.is_empty()
                    || !lower
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                {
                    return Err(
                        text.error(&n.span(), "a stage name is letters, digits, -, _ and .")
                    );
                }
                if earlier(&lower).is_some() {
                    return Err(text.error(&n.span(), format!("duplicate stage name \"{lower}\"")));
                }
                Some(lower)
            }
        };

        let base_name = s.base.get_ref().trim();
        let base = if base_name.is_empty() {
            return Err(text.error(
                &s.base.span(),
                "base must name an image, a stage or scratch",
            ));
        } else if base_name == "scratch" {
            Base::Scratch
        } else if let Some(i) = earlier(&base_name.to_ascii_lowercase()) {
            Base::Stage(i as u32)
        } else {
            Base::Image(ImageRef {
                reference: base_name.to_string(),
                platform: None,
            })
        };

        let stage_span = text.span(&range);
        let stage_text = text.snippet(&range);
        let mut ops = Vec::new();
        let mut push = |op: Op, range: &Range<usize>| {
            ops.push(OpNode {
                op,
                span: text.span(range),
                text: text.snippet(range),
            })
        };
        if let Some(env) = &s.env {
            let pairs = env
                .get_ref()
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect();
            push(Op::Env(pairs), &env.span());
        }
        if let Some(w) = &s.workdir {
            let dir = w.get_ref();
            if !dir.starts_with('/') {
                return Err(text.error(&w.span(), "workdir must be an absolute path"));
            }
            push(Op::Workdir(dir.clone()), &w.span());
        }
        for c in &s.copy {
            let spec = c.get_ref();
            let from = match &spec.from {
                None => Source::Context,
                Some(f) => match earlier(&f.get_ref().to_ascii_lowercase()) {
                    Some(i) => Source::Stage(i as u32),
                    None if name.as_deref() == Some(&f.get_ref().to_ascii_lowercase()) => {
                        return Err(text.error(&f.span(), "a stage cannot copy from itself"));
                    }
                    None => Source::Image(ImageRef {
                        reference: f.get_ref().clone(),
                        platform: None,
                    }),
                },
            };
            let sources: Vec<String> = match &spec.src {
                Sources::One(s) => vec![s.clone()],
                Sources::Many(v) => v.clone(),
            };
            if sources.is_empty() || sources.iter().any(|s| s.is_empty()) || spec.dest.is_empty() {
                return Err(text.error(&c.span(), "copy needs a non-empty src and dest"));
            }
            push(
                Op::Copy(CopyOp {
                    from,
                    sources: sources.into_iter().map(CopySource::Path).collect(),
                    dest: spec.dest.clone(),
                    chown: None,
                    chmod: None,
                    link: false,
                    parents: false,
                    excludes: Vec::new(),
                    add: None,
                }),
                &c.span(),
            );
        }
        for r in &s.run {
            if r.get_ref().trim().is_empty() {
                return Err(text.error(&r.span(), "an empty run line"));
            }
            push(
                Op::Run(RunOp {
                    args: vec!["/bin/sh".into(), "-c".into(), r.get_ref().clone()],
                    extra_env: Vec::new(),
                    network: Network::None,
                    security: Security::Sandbox,
                    mounts: Vec::new(),
                }),
                &r.span(),
            );
        }
        if let Some(c) = &s.cmd {
            if c.get_ref().is_empty() {
                return Err(text.error(&c.span(), "cmd needs at least one argument"));
            }
            push(Op::Cmd(Some(c.get_ref().clone())), &c.span());
        }
        names.push(name.clone());
        stages.push(Stage {
            name,
            base,
            platform: None,
            ops,
            span: stage_span,
            text: stage_text,
        });
        debug_assert_eq!(stages.len(), index + 1);
    }

    let wanted = input
        .target
        .as_ref()
        .map(|t| (t.to_ascii_lowercase(), 0..0))
        .or_else(|| {
            spec.target
                .as_ref()
                .map(|t| (t.get_ref().to_ascii_lowercase(), t.span()))
        });
    let target = match wanted {
        None => stages.len() - 1,
        Some((t, range)) => names
            .iter()
            .position(|n| n.as_deref() == Some(t.as_str()))
            .ok_or_else(|| {
                text.error(&range, format!("target stage \"{t}\" is not in the spec"))
            })?,
    };
    Ok(Translation {
        graph: Graph {
            stages,
            target: target as u32,
            files: Vec::new(),
        },
        warnings: Vec::new(),
    })
}
