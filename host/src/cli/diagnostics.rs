//! Printing diagnostics the way compilers do: `file:line:column`, the message, the offending
//! line with a marker under the offending text. A diagnostic in a fragment the build file
//! included shows the fragment's line (from the text the frontend read), then one
//! `included from FILE:LINE` line per `INCLUDE` that led there.

use codespan_reporting::diagnostic::{Diagnostic as Report, Label};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, Config};

use crate::frontend::Diagnostic;

/// Render diagnostics against the build file's text; `severity` is `error` or `warning`.
pub fn render(diags: &[Diagnostic], source: &str, warning: bool) -> String {
    render_with_files(diags, source, &[], warning)
}

/// Same, for a frontend that also read `files` (path, text): a diagnostic whose file is one of
/// them (and that says where it was included) is shown against that file's text.
pub fn render_with_files(
    diags: &[Diagnostic],
    source: &str,
    files: &[(String, String)],
    warning: bool,
) -> String {
    let mut out = String::new();
    for d in diags {
        let text = if d.included_from.is_empty() {
            source
        } else {
            files
                .iter()
                .find(|(p, _)| *p == d.file)
                .map_or("", |(_, t)| t.as_str())
        };
        out += &render_one(d, text, warning);
        for l in &d.included_from {
            out += &format!("  included from {}:{}\n", l.file, l.line);
        }
    }
    out
}

fn render_one(d: &Diagnostic, source: &str, warning: bool) -> String {
    let mut out = String::new();
    {
        let file = SimpleFile::new(d.file.clone(), source);
        let head = format!("{}:{}:{}: {}", d.file, d.line, d.column, d.message);
        let report = if warning {
            Report::warning()
        } else {
            Report::error()
        }
        .with_message(head);
        let report = match span_of(source, d) {
            Some(range) => report.with_labels(vec![Label::primary((), range)]),
            None if !d.text.is_empty() => report.with_notes(vec![d.text.clone()]),
            None => report,
        };
        match term::emit_into_string(&Config::default(), &file, &report) {
            Ok(s) => out += &s,
            Err(_) => out += &format!("error: {}:{}:{}: {}\n", d.file, d.line, d.column, d.message),
        }
    }
    out
}

/// The byte range of the diagnostic's text on its line (or from its column to the line end).
fn span_of(source: &str, d: &Diagnostic) -> Option<std::ops::Range<usize>> {
    let line_start: usize = source
        .split_inclusive('\n')
        .take(d.line.checked_sub(1)? as usize)
        .map(str::len)
        .sum();
    if d.line as usize > source.split_inclusive('\n').count() {
        return None;
    }
    let line = source[line_start..].lines().next().unwrap_or("");
    let col = line
        .char_indices()
        .nth(d.column.saturating_sub(1) as usize)
        .map_or(0, |(i, _)| i);
    let first_text_line = d.text.lines().next().unwrap_or("");
    let (start, len) = match line[col..].find(first_text_line) {
        Some(i) if !first_text_line.is_empty() => (col + i, first_text_line.len()),
        _ => match line.find(first_text_line) {
            Some(i) if !first_text_line.is_empty() => (i, first_text_line.len()),
            _ => (col, line.len() - col),
        },
    };
    let begin = (line_start + start).min(source.len());
    Some(begin..(begin + len.max(1)).min(source.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::bindings::Location;

    #[test]
    fn a_fragment_error_shows_the_fragment_line_and_the_include_chain() {
        let d = Diagnostic {
            file: "ci/steps.Dockerfile".into(),
            line: 2,
            column: 5,
            message: "unknown flag: --bogus".into(),
            text: "--bogus".into(),
            included_from: vec![Location {
                file: "Dockerfile".into(),
                line: 3,
                column: 1,
            }],
        };
        let files = vec![(
            "ci/steps.Dockerfile".to_string(),
            "RUN a\nRUN --bogus b\n".to_string(),
        )];
        let out = render_with_files(
            &[d],
            "FROM busybox\n\nINCLUDE ci/steps.Dockerfile\n",
            &files,
            false,
        );
        assert!(
            out.contains("ci/steps.Dockerfile:2:5: unknown flag"),
            "{out}"
        );
        assert!(out.contains("RUN --bogus b"), "{out}");
        assert!(!out.contains("INCLUDE ci/steps"), "{out}");
        assert!(
            out.trim_end().ends_with("included from Dockerfile:3"),
            "{out}"
        );
    }
}
