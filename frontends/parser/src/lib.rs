//! Dockerfile syntax shared by wbuild's frontends.
//!
//! This crate owns everything about the *text* of a Dockerfile and nothing about its meaning:
//!
//! - [`parse`] turns source text into a parse tree of [`Node`]s: parser directives (`syntax`,
//!   `escape`, `check`), comments, line continuations, heredocs, JSON and shell forms, and the
//!   per-instruction argument rules exactly as BuildKit's parser applies them.
//! - [`Node::dump`] prints a node in BuildKit's parse-tree dump format, so the parser can be
//!   checked against BuildKit's own test data (`wbuild debug ast`).
//! - [`shell`] expands `$VAR` / `${VAR...}` words with every modifier and splits words as
//!   BuildKit's shell lexer does.
//!
//! Both the Dockerfile frontend and the extended-syntax frontend are built on this crate, so the
//! two can never disagree about what a Dockerfile says. It has no dependencies and compiles for
//! `wasm32-wasip2` and for the host alike.

mod ast;
mod parser;
pub mod paths;
pub mod shell;

pub use ast::{Directives, Heredoc, Node, ParseError, ParseResult, Warning};
pub use parser::{Options, parse, parse_with};
