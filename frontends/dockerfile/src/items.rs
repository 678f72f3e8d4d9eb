//! The tree of items the compiler walks: instructions and conditional blocks.
//!
//! A plain Dockerfile is a flat list of instructions. A syntax built on it (the extended-syntax
//! frontend's `IF` / `ELSE IF` / `ELSE` / `DONE`) hands the compiler a tree instead: a
//! [`Choice`] is decided while compiling, at its place in the file, when the ARG and ENV values
//! in scope there are known; only the chosen branch is compiled, so the IR never shows a
//! condition. The condition language belongs to that syntax: the compiler only asks a
//! [`Condition`] whether it holds.

use wbuild_parser::{Node, Warning};

use crate::bindings::wbuild::frontend::types::{Diagnostic, Location};

/// One item of a build file.
pub enum Item<'a> {
    /// An instruction, compiled as in a plain Dockerfile.
    Instruction(&'a Node),
    /// A block of alternatives: the first branch whose condition holds is compiled.
    Choice(Choice<'a>),
    /// `INCLUDE path`: the fragment's items are compiled in its place, read when the compiler
    /// reaches it (so an `INCLUDE` in a branch not taken is never read). Needs [`Fragments`].
    Include(&'a Node),
}

/// How the compiler takes a parsed fragment: its items, its escape character, its parse
/// warnings.
pub type Walk<'w> = dyn FnMut(&[Item<'_>], char, &[Warning]) + 'w;

/// What a syntax with `INCLUDE` gives the compiler: turning a fragment's text into items.
pub trait Fragments {
    /// Parses `source`, the text of the fragment `name` (its path in the build context), builds
    /// its item tree and calls `walk` with it, the fragment's escape character and its parse
    /// warnings. Diagnostics about the fragment carry `included_from`.
    fn parse(
        &self,
        name: &str,
        source: &str,
        included_from: &[Location],
        walk: &mut Walk<'_>,
    ) -> Result<(), Vec<Diagnostic>>;
}

/// `IF ... / ELSE IF ... / ELSE / DONE`.
pub struct Choice<'a> {
    pub branches: Vec<Branch<'a>>,
}

/// One branch of a [`Choice`].
pub struct Branch<'a> {
    /// The line that opens the branch (`IF`, `ELSE IF`, `ELSE`), for messages.
    pub keyword: &'a Node,
    /// None for a branch taken unconditionally (`ELSE`).
    pub condition: Option<Box<dyn Condition + 'a>>,
    pub items: Vec<Item<'a>>,
}

/// A condition decided at compile time.
pub trait Condition {
    /// Whether the condition holds, given the variables visible at its place in the file
    /// (`vars` answers None for a variable that is not set).
    fn holds(&self, vars: &dyn Fn(&str) -> Option<String>) -> Result<bool, ConditionError>;
}

/// A condition that cannot be decided (for example `${X:?X is required}` with X unset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionError {
    /// 1-based position of the offending text in the build file.
    pub line: usize,
    pub column: usize,
    pub message: String,
    /// The offending text.
    pub text: String,
}

impl Item<'_> {
    /// Every instruction in this item, in every branch.
    pub(crate) fn visit_instructions<'s>(&'s self, f: &mut dyn FnMut(&'s Node)) {
        match self {
            Item::Instruction(n) => f(n),
            Item::Include(_) => {}
            Item::Choice(c) => {
                for b in &c.branches {
                    for item in &b.items {
                        item.visit_instructions(f);
                    }
                }
            }
        }
    }
}
