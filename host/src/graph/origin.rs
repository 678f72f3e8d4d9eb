//! Where a stage or an op came from, for progress lines, error messages and the image
//! history: the build file or a fragment it included (`span.file`, `graph.files`), the line,
//! and the chain of `INCLUDE` lines that led to the fragment.

use crate::frontend::bindings::{Graph, Span};

/// `file:line` of `span`; `main` is the build file's name.
pub fn location(graph: &Graph, main: &str, span: &Span) -> String {
    let file = span
        .file
        .and_then(|i| graph.files.get(i as usize))
        .map_or(main, |f| f.name.as_str());
    format!("{file}:{}", span.line)
}

/// [`location`], followed by `(included from Dockerfile:3)` for a fragment (innermost first,
/// joined by `, `).
pub fn describe(graph: &Graph, main: &str, span: &Span) -> String {
    let here = location(graph, main, span);
    match span.file.and_then(|i| graph.files.get(i as usize)) {
        Some(f) if !f.included_from.is_empty() => {
            let chain: Vec<String> = f
                .included_from
                .iter()
                .map(|l| format!("{}:{}", l.file, l.line))
                .collect();
            format!("{here} (included from {})", chain.join(", "))
        }
        _ => here,
    }
}

/// For an op of a fragment, its `file:line`; none for the build file itself (whose lines
/// the history does not record either).
pub fn fragment(graph: &Graph, span: &Span) -> Option<String> {
    let f = graph.files.get(span.file? as usize)?;
    Some(format!("{}:{}", f.name, span.line))
}

/// The first span that names a file the graph does not have, as (stage, file index).
pub fn bad_file(graph: &Graph) -> Option<(usize, u32)> {
    let n = graph.files.len();
    for (i, stage) in graph.stages.iter().enumerate() {
        let spans = std::iter::once(&stage.span).chain(stage.ops.iter().map(|o| &o.span));
        for span in spans {
            if let Some(f) = span.file.filter(|&f| f as usize >= n) {
                return Some((i, f));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::bindings::{Location, SourceFile};
    use crate::graph::testing;

    #[test]
    fn fragments_are_named_with_their_include_chain() {
        let mut g = testing::graph_of_one_stage();
        g.files.push(SourceFile {
            name: "ci/steps.Dockerfile".into(),
            text: "RUN a\n".into(),
            included_from: vec![
                Location {
                    file: "ci/a".into(),
                    line: 2,
                    column: 1,
                },
                Location {
                    file: "Dockerfile".into(),
                    line: 3,
                    column: 1,
                },
            ],
        });
        let mut span = testing::span(1);
        assert_eq!(describe(&g, "Dockerfile", &span), "Dockerfile:1");
        assert_eq!(fragment(&g, &span), None);
        span.file = Some(0);
        assert_eq!(
            describe(&g, "Dockerfile", &span),
            "ci/steps.Dockerfile:1 (included from ci/a:2, Dockerfile:3)"
        );
        assert_eq!(fragment(&g, &span).unwrap(), "ci/steps.Dockerfile:1");
        assert_eq!(bad_file(&g), None);
        g.stages[0].ops[0].span.file = Some(1);
        assert_eq!(bad_file(&g), Some((0, 1)));
    }
}
