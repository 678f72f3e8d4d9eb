//! `INCLUDE`: compiling a fragment of the build context in place of the line that names it.
//!
//! The path is expanded as a `FROM` line is (global ARGs and build args), resolved against the
//! directory of the including file inside the build context, read through
//! [`Host::read_context_file`](super::Host) when the compiler reaches the line (an `INCLUDE` in
//! a branch not taken is never read), parsed by the syntax's [`Fragments`](crate::items::Fragments)
//! and compiled with the state of the including file: a fragment can declare ARGs, start stages,
//! add instructions to the current stage and include further fragments.
//!
//! While a fragment is compiled, the compiler's current [`Frame`] is the fragment's: its
//! diagnostics carry the fragment's name, line and column and the chain of lines that included
//! it, and its ops carry its index in `graph.files`. A cycle, nesting deeper than
//! [`MAX_INCLUDE_DEPTH`] and a fragment that cannot be read are errors at the `INCLUDE` line.

use wbuild_parser::Node;

use super::{Compiler, Current};
use crate::bindings::wbuild::frontend::types::{Input, Location, SourceFile};

/// How many fragments may be open inside each other.
pub const MAX_INCLUDE_DEPTH: usize = 32;

/// A file being compiled.
pub(super) struct Frame {
    /// The name diagnostics show: `input.file-name`, or the fragment's context path.
    pub name: String,
    /// The file's path in the build context, when known (fragments always; the build file
    /// when `input.context-path` says so).
    pub path: Option<String>,
    /// Its index in `graph.files`; none for the build file.
    pub index: Option<u32>,
    pub lines: Vec<String>,
    pub escape: char,
    /// The `INCLUDE` lines that led here, innermost first.
    pub included_from: Vec<Location>,
}

impl Frame {
    pub fn main(input: &Input, escape: char) -> Frame {
        Frame {
            name: input.file_name.clone(),
            path: input.context_path.clone(),
            index: None,
            lines: input.source.lines().map(str::to_string).collect(),
            escape,
            included_from: Vec::new(),
        }
    }
}

/// Joins `path` to the directory of `base` (a context path; none means the context root) and
/// removes `.` and `..`. A leading `/` starts at the context root. Errors when `..` climbs out.
pub fn resolve(base: Option<&str>, path: &str) -> Result<String, String> {
    let mut parts: Vec<&str> = Vec::new();
    if !path.starts_with('/')
        && let Some(base) = base
    {
        parts.extend(base.split('/').filter(|p| !p.is_empty() && *p != "."));
        parts.pop();
    }
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(format!("{path} leads outside the build context"));
                }
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(format!("{path} names no file"));
    }
    Ok(parts.join("/"))
}

impl Compiler<'_> {
    /// The line of the build file itself that `node` is on or was included from.
    pub(super) fn main_line(&self, node: &Node) -> usize {
        self.file
            .included_from
            .last()
            .map_or(node.start_line, |l| l.line as usize)
    }

    /// The chain of files from the build file to `also`, for messages: `a -> b -> c`.
    fn chain(&self, also: &str) -> String {
        let mut names: Vec<&str> = self.outer.iter().map(|f| f.name.as_str()).collect();
        names.push(&self.file.name);
        names.push(also);
        names.join(" -> ")
    }

    pub(super) fn include(&mut self, node: &Node, current: &mut Option<Current>) {
        if let Err(d) = self.try_include(node, current) {
            self.errors.push(d);
        }
    }

    fn try_include(&mut self, node: &Node, current: &mut Option<Current>) -> super::R<()> {
        let Some(fragments) = self.fragments else {
            return Err(self.err(node, "unknown instruction: INCLUDE"));
        };
        let raw = node.args.first().map(|a| a.trim()).unwrap_or_default();
        if raw.is_empty() {
            return Err(self.err(node, "INCLUDE requires the path of a fragment to include"));
        }
        if raw.split_whitespace().count() > 1 {
            return Err(self.err_text(
                node,
                "INCLUDE takes exactly one path (quote a path with spaces)",
                raw,
            ));
        }
        if raw.starts_with("--") {
            return Err(self.err_text(node, "INCLUDE takes no flags", raw));
        }
        let expanded = self.expand_global(node, raw)?;
        let path = resolve(self.file.path.as_deref(), &expanded)
            .map_err(|e| self.err_text(node, format!("INCLUDE {raw}: {e}"), raw))?;
        let mut open = self.outer.iter().chain(std::iter::once(&self.file));
        if open.any(|f| f.path.as_deref() == Some(path.as_str())) {
            return Err(self.err_text(
                node,
                format!(
                    "INCLUDE cycle: {} (a file cannot include itself, directly or through \
                     others)",
                    self.chain(&path)
                ),
                raw,
            ));
        }
        if self.outer.len() + 1 > MAX_INCLUDE_DEPTH {
            return Err(self.err_text(
                node,
                format!(
                    "INCLUDE nests deeper than {MAX_INCLUDE_DEPTH} files: {}",
                    self.chain(&path)
                ),
                raw,
            ));
        }
        let bytes = self.host.read_context_file(&path).map_err(|e| {
            self.err_text(
                node,
                format!("INCLUDE {raw}: cannot read the fragment {e}"),
                raw,
            )
        })?;
        let text = String::from_utf8(bytes).map_err(|_| {
            self.err_text(
                node,
                format!("INCLUDE {raw}: the fragment {path} is not UTF-8 text"),
                raw,
            )
        })?;

        let mut included_from = vec![Location {
            file: self.file.name.clone(),
            line: node.start_line.max(1) as u32,
            column: node.column.max(1) as u32,
        }];
        included_from.extend(self.file.included_from.iter().cloned());
        let index = self.files.len() as u32;
        self.files.push(SourceFile {
            name: path.clone(),
            text: text.clone(),
            included_from: included_from.clone(),
        });
        let frame = Frame {
            name: path.clone(),
            path: Some(path.clone()),
            index: Some(index),
            lines: text.lines().map(str::to_string).collect(),
            escape: self.file.escape,
            included_from: included_from.clone(),
        };
        let outer = std::mem::replace(&mut self.file, frame);
        self.outer.push(outer);
        let parsed = fragments.parse(&path, &text, &included_from, &mut |items, escape, warns| {
            self.file.escape = escape;
            for w in warns {
                let d = self.diag_at(w.line, 1, w.message.clone(), "");
                self.warnings.push(d);
            }
            self.walk(items, current);
        });
        self.file = self.outer.pop().expect("the including file");
        if let Err(diags) = parsed {
            self.errors.extend(diags);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::resolve;

    #[test]
    fn paths_are_relative_to_the_including_file() {
        assert_eq!(resolve(None, "a.Dockerfile").unwrap(), "a.Dockerfile");
        assert_eq!(resolve(Some("Dockerfile"), "./a").unwrap(), "a");
        assert_eq!(resolve(Some("ci/Dockerfile"), "a").unwrap(), "ci/a");
        assert_eq!(resolve(Some("ci/x/f"), "../y//z").unwrap(), "ci/y/z");
        assert_eq!(resolve(Some("ci/x/f"), "/top").unwrap(), "top");
        assert!(resolve(Some("ci/f"), "../../etc/passwd").is_err());
        assert!(resolve(None, "..").is_err());
        assert!(resolve(None, "./").is_err());
    }
}
