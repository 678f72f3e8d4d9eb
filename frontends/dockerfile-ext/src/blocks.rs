//! Block structure: the flat instruction list of the parser becomes a tree of items, with every
//! `IF` / `ELSE IF` / `ELSE` / `DONE` (or `END`) matched and every condition parsed.
//!
//! All problems are collected, each at its line and column with the offending text: an `IF`
//! without `DONE`, `ELSE`, `ELSE IF` or `DONE` without `IF`, a branch after `ELSE`, stray
//! words after `ELSE` or `DONE`, and bad conditions (even in branches that will not be taken).

use wbuild_frontend_dockerfile::bindings::wbuild::frontend::types::{Diagnostic, Location};
use wbuild_frontend_dockerfile::items::{Branch, Choice, Item};
use wbuild_parser::Node;

use crate::condition::{self, Located, Locator};

/// How deeply blocks may nest (the compiler walks them recursively).
pub const MAX_NESTING: usize = 100;

/// What the block builder needs to know about the file.
pub struct FileInfo<'s> {
    pub name: &'s str,
    pub lines: Vec<&'s str>,
    pub escape: char,
    /// For a fragment, the `INCLUDE` lines that led to it (innermost first); empty for the
    /// build file.
    pub included_from: Vec<Location>,
}

impl FileInfo<'_> {
    fn diag(&self, line: usize, column: usize, message: String, text: &str) -> Diagnostic {
        Diagnostic {
            file: self.name.to_string(),
            line: line.max(1) as u32,
            column: column.max(1) as u32,
            message,
            text: text.to_string(),
            included_from: self.included_from.clone(),
        }
    }

    fn at_node(&self, node: &Node, message: String) -> Diagnostic {
        self.diag(node.start_line, node.column, message, &node.original)
    }
}

/// An `IF` whose `DONE` has not been seen yet.
struct Open<'a> {
    opener: &'a Node,
    done: Vec<Branch<'a>>,
    current: Branch<'a>,
    /// The `ELSE` of this block, once seen.
    else_seen: Option<&'a Node>,
}

/// Builds the item tree of `nodes` (parsed with the extension keywords).
pub fn build<'a>(nodes: &'a [Node], file: &FileInfo) -> Result<Vec<Item<'a>>, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let mut root: Vec<Item<'a>> = Vec::new();
    let mut stack: Vec<Open<'a>> = Vec::new();

    for node in nodes {
        match node.value.as_str() {
            "if" => {
                if stack.len() >= MAX_NESTING {
                    errors.push(
                        file.at_node(node, format!("IF blocks nest more than {MAX_NESTING} deep")),
                    );
                    break;
                }
                let text = node.args.first().map(String::as_str).unwrap_or_default();
                let condition = condition_of(node, text, "IF", file).map_err(|d| errors.push(d));
                stack.push(Open {
                    opener: node,
                    done: Vec::new(),
                    current: Branch {
                        keyword: node,
                        condition: condition.ok(),
                        items: Vec::new(),
                    },
                    else_seen: None,
                });
            }
            "else" => {
                let rest = node.args.first().map(String::as_str).unwrap_or_default();
                let (first, cond) = match rest.split_once(char::is_whitespace) {
                    Some((f, c)) => (f, c.trim_start()),
                    None => (rest, ""),
                };
                let else_if = first.eq_ignore_ascii_case("if");
                let what = if else_if { "ELSE IF" } else { "ELSE" };
                let Some(open) = stack.last_mut() else {
                    errors.push(
                        file.at_node(node, format!("{what} without IF: no IF block is open here")),
                    );
                    continue;
                };
                if let Some(prev) = open.else_seen {
                    errors.push(file.at_node(
                        node,
                        format!(
                            "{what} after ELSE: the ELSE at line {} must be the last branch of \
                             its IF (line {})",
                            prev.start_line, open.opener.start_line
                        ),
                    ));
                    continue;
                }
                let condition = if else_if {
                    condition_of(node, cond, "ELSE IF", file)
                        .map_err(|d| errors.push(d))
                        .ok()
                } else {
                    if !rest.is_empty() {
                        errors.push(file.at_node(
                            node,
                            format!(
                                "ELSE takes no condition: write `ELSE IF {rest}` for another \
                                 condition"
                            ),
                        ));
                    }
                    open.else_seen = Some(node);
                    None
                };
                let branch = std::mem::replace(
                    &mut open.current,
                    Branch {
                        keyword: node,
                        condition,
                        items: Vec::new(),
                    },
                );
                open.done.push(branch);
            }
            "done" | "end" => {
                let kw = node.value.to_ascii_uppercase();
                let rest = node.args.first().map(String::as_str).unwrap_or_default();
                if !rest.is_empty() {
                    errors.push(file.at_node(node, format!("{kw} takes no arguments")));
                }
                let Some(mut open) = stack.pop() else {
                    errors.push(
                        file.at_node(node, format!("{kw} without IF: no IF block is open here")),
                    );
                    continue;
                };
                open.done.push(open.current);
                let item = Item::Choice(Choice {
                    branches: open.done,
                });
                match stack.last_mut() {
                    Some(parent) => parent.current.items.push(item),
                    None => root.push(item),
                }
            }
            kind => {
                let item = if kind == "include" {
                    Item::Include(node)
                } else {
                    Item::Instruction(node)
                };
                match stack.last_mut() {
                    Some(open) => open.current.items.push(item),
                    None => root.push(item),
                }
            }
        }
    }
    for open in stack.iter().rev() {
        errors.push(file.at_node(
            open.opener,
            format!(
                "IF without DONE: the block opened at line {} is never closed (end it with a \
                 DONE line)",
                open.opener.start_line
            ),
        ));
    }
    if errors.is_empty() {
        Ok(root)
    } else {
        errors.sort_by_key(|d| (d.line, d.column));
        Err(errors)
    }
}

/// Parses the condition `text` of an `IF` or `ELSE IF` line.
fn condition_of<'a>(
    node: &'a Node,
    text: &str,
    what: &str,
    file: &FileInfo,
) -> Result<Box<dyn wbuild_frontend_dockerfile::items::Condition + 'a>, Diagnostic> {
    let locator = locator(node, text, file);
    match condition::parse(text, file.escape) {
        Ok(expr) => Ok(Box::new(Located {
            expr,
            text: text.to_string(),
            escape: file.escape,
            locator,
        })),
        Err(e) => {
            let (line, column) = locator.locate(text, e.at, &e.text);
            let shown = if e.text.is_empty() {
                node.original.as_str()
            } else {
                e.text.as_str()
            };
            Err(file.diag(
                line,
                column,
                format!("bad condition in {what}: {}", e.message),
                shown,
            ))
        }
    }
}

/// Where `text` (the condition, a suffix of the instruction) sits in the file.
fn locator(node: &Node, text: &str, file: &FileInfo) -> Locator {
    let original = node.original.trim_end();
    let offset = if original.ends_with(text) {
        original.len() - text.len()
    } else {
        0
    };
    let column = node.column + original[..offset].chars().count();
    let first = file
        .lines
        .get(node.start_line.wrapping_sub(1))
        .copied()
        .unwrap_or_default();
    let first_line_chars = first.chars().count().saturating_sub(column - 1);
    let more_lines = (node.start_line + 1..=node.end_line)
        .filter_map(|n| file.lines.get(n - 1).map(|l| (n, l.to_string())))
        .collect();
    Locator {
        line: node.start_line,
        column,
        first_line_chars,
        more_lines,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Vec<Node> {
        wbuild_parser::parse_with(src, &crate::parse_options())
            .unwrap()
            .children
    }

    fn file(src: &str) -> FileInfo<'_> {
        FileInfo {
            name: "Dockerfile",
            lines: src.lines().collect(),
            escape: '\\',
            included_from: Vec::new(),
        }
    }

    /// The tree as text: instructions by keyword, blocks as `{cond? items | ...}`.
    fn shape(items: &[Item]) -> String {
        items
            .iter()
            .map(|i| match i {
                Item::Instruction(n) => n.value.clone(),
                Item::Include(n) => format!("include:{}", n.args[0]),
                Item::Choice(c) => {
                    let branches: Vec<String> = c
                        .branches
                        .iter()
                        .map(|b| {
                            let head = if b.condition.is_some() { "?" } else { "" };
                            format!("{head}{}", shape(&b.items))
                        })
                        .collect();
                    format!("{{{}}}", branches.join(" | "))
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn ok(src: &str) -> String {
        let nodes = parse(src);
        let f = file(src);
        match build(&nodes, &f) {
            Ok(items) => shape(&items),
            Err(e) => panic!("{src}: {e:#?}"),
        }
    }

    fn errors(src: &str) -> Vec<(u32, u32, String, String)> {
        let nodes = parse(src);
        let f = file(src);
        match build(&nodes, &f) {
            Ok(items) => panic!("{src} built {}", shape(&items)),
            Err(e) => e
                .into_iter()
                .map(|d| (d.line, d.column, d.message, d.text))
                .collect(),
        }
    }

    #[test]
    fn blocks_nest_and_keep_order() {
        assert_eq!(
            ok(
                "FROM a\nIF $A == 1\nRUN x\nELSE IF $A == 2\nRUN y\nRUN z\nELSE\nENV q=1\nDONE\nCMD c\n"
            ),
            "from {?run | ?run run | env} cmd"
        );
        assert_eq!(
            ok("IF $A == 1\nARG B=1\nIF $B == 1\nARG C\nEND\nDONE\nFROM a\n"),
            "{?arg {?arg}} from"
        );
        assert_eq!(ok("FROM a\nif $A == 1\nelse\nend\n"), "from {? | }");
        assert_eq!(
            ok("FROM a\nIF $A == 1\n  include x/${A}.df\nDONE\nINCLUDE y\n"),
            "from {?include:x/${A}.df} include:y"
        );
        assert_eq!(
            ok(
                "FROM a\nIF $A==1\n  IF $B==1\n    RUN x\n  ELSE\n    ONBUILD RUN y\n  DONE\nDONE\n"
            ),
            "from {?{?run | onbuild}}"
        );
    }

    #[test]
    fn structure_errors_point_at_the_keyword() {
        let e = errors("FROM a\nIF $A == 1\nRUN x\n");
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].0, e[0].1), (2, 1));
        assert!(e[0].2.contains("IF without DONE"), "{e:?}");
        assert_eq!(e[0].3, "IF $A == 1");

        let e = errors("FROM a\n  ELSE\n");
        assert_eq!((e[0].0, e[0].1), (2, 3));
        assert!(e[0].2.starts_with("ELSE without IF"), "{e:?}");
        let e = errors("FROM a\nELSE IF $x == 1\n");
        assert!(e[0].2.starts_with("ELSE IF without IF"), "{e:?}");
        let e = errors("FROM a\nDONE\n");
        assert!(e[0].2.starts_with("DONE without IF"), "{e:?}");
        let e = errors("FROM a\nEND\n");
        assert!(e[0].2.starts_with("END without IF"), "{e:?}");

        let e = errors("FROM a\nIF $A == 1\nELSE\nRUN x\nELSE\nDONE\n");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].0, 5);
        assert!(
            e[0].2.contains("ELSE after ELSE: the ELSE at line 3"),
            "{e:?}"
        );
        let e = errors("FROM a\nIF $A == 1\nELSE\nELSE IF $A == 2\nDONE\n");
        assert!(e[0].2.starts_with("ELSE IF after ELSE"), "{e:?}");

        let e = errors("FROM a\nIF $A == 1\nELSE $A == 2\nDONE x\n");
        assert_eq!(e.len(), 2);
        assert!(e[0].2.contains("write `ELSE IF $A == 2`"), "{e:?}");
        assert!(e[1].2.contains("DONE takes no arguments"), "{e:?}");

        let deep = "IF 1 == 1\n".repeat(MAX_NESTING + 1) + &"DONE\n".repeat(MAX_NESTING + 1);
        let e = errors(&format!("FROM a\n{deep}"));
        assert!(
            e.iter()
                .any(|d| d.0 == MAX_NESTING as u32 + 2 && d.2.contains("nest more than"))
        );
        assert_eq!(
            ok(&("IF 1 == 1\n".repeat(MAX_NESTING) + &"DONE\n".repeat(MAX_NESTING)))
                .matches('{')
                .count(),
            MAX_NESTING
        );

        // Several unclosed blocks: each one is reported.
        let e = errors("IF $A == 1\nIF $B == 1\nFROM a\n");
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].0, e[1].0), (1, 2));
    }

    #[test]
    fn condition_errors_have_line_column_and_text() {
        let e = errors("FROM a\n  IF $A = 1\nDONE\n");
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].0, e[0].1), (2, 9));
        assert!(e[0].2.starts_with("bad condition in IF:"), "{e:?}");
        assert_eq!(e[0].3, "=");

        let e = errors("FROM a\nIF $A == 1\nELSE IF   ($B == 2\nDONE\n");
        assert_eq!((e[0].0, e[0].1), (3, 11));
        assert!(e[0].2.starts_with("bad condition in ELSE IF:"), "{e:?}");
        assert_eq!(e[0].3, "(");

        let e = errors("FROM a\nIF\nDONE\n");
        assert!(e[0].2.contains("condition is required"), "{e:?}");
        assert_eq!(e[0].3, "IF");

        // On a continuation line.
        let e = errors("FROM a\nIF $A == 1 \\\n   && $B ! 2\nDONE\n");
        assert_eq!((e[0].0, e[0].1), (3, 7));
        assert_eq!(e[0].3, "$B");
    }
}
