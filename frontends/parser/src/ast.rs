//! The parse tree: what [`crate::parse`] returns, and its dump in BuildKit's format.

/// Parser directives found at the top of the file (`# syntax=...`, `# escape=...`, `# check=...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    /// The escape character: `\` unless `# escape=` says `` ` ``.
    pub escape: char,
    /// `# syntax=` value and its 1-based line.
    pub syntax: Option<(String, usize)>,
    /// `# check=` value and its 1-based line.
    pub check: Option<(String, usize)>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            escape: '\\',
            syntax: None,
            check: None,
        }
    }
}

/// A heredoc attached to an instruction (`RUN <<EOF`, `COPY <<-"EOF" /dst`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word, without quotes and without the `<<`/`<<-` prefix.
    pub name: String,
    /// The body, every line ending in `\n`; with `<<-`, leading tabs are already removed.
    pub content: String,
    /// False when the delimiter was quoted (`<<"EOF"`, `<<'EOF'`): no variable expansion.
    pub expand: bool,
    /// True for `<<-`.
    pub chomp: bool,
}

/// One instruction of the parse tree.
///
/// Mirrors BuildKit's parser node: `value` is the lower-cased instruction keyword, `args` the
/// arguments after that instruction's splitting rule (for example `ENV a=b` gives
/// `["a", "b", "="]`, the shell form of `RUN` gives the whole rest of the line as one argument,
/// the JSON form one argument per array element), `flags` the leading `--flag[=value]` words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Lower-cased instruction keyword: `from`, `run`, `copy`, ...
    pub value: String,
    /// Arguments, already split by the instruction's rule.
    pub args: Vec<String>,
    /// Leading flags as written, e.g. `--from=build`, `--link`.
    pub flags: Vec<String>,
    /// True when the arguments were given in JSON form (`["a", "b"]`).
    pub json: bool,
    /// Heredocs of this instruction, in order of appearance.
    pub heredocs: Vec<Heredoc>,
    /// The instruction for `ONBUILD`: the trigger, parsed.
    pub child: Option<Box<Node>>,
    /// The instruction's text as written, continuation lines joined (without heredoc bodies).
    pub original: String,
    /// First and last line (1-based, inclusive), including continuation lines and heredoc bodies.
    pub start_line: usize,
    pub end_line: usize,
    /// 1-based column of the keyword on `start_line`.
    pub column: usize,
}

/// A successfully parsed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseResult {
    pub directives: Directives,
    pub children: Vec<Node>,
    pub warnings: Vec<Warning>,
}

/// Something suspicious but accepted (for example an empty continuation line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub line: usize,
    pub message: String,
}

/// A file that cannot be parsed. `line`/`column` are 1-based; `text` is the offending text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub text: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}:{}: {}", self.line, self.column, self.message)?;
        if !self.text.is_empty() {
            write!(f, ": {}", self.text)?;
        }
        Ok(())
    }
}

impl std::error::Error for ParseError {}

impl Node {
    /// This node in BuildKit's parse-tree dump format: `(copy ["--from=a"] "src" "dst")`,
    /// `(onbuild (run "echo" "test"))`. Strings are quoted as Go's `strconv.Quote` does.
    pub fn dump(&self) -> String {
        let quote = crate::parser::go_quote;
        let mut out = format!("({}", self.value);
        if !self.flags.is_empty() {
            let flags: Vec<String> = self.flags.iter().map(|f| quote(f)).collect();
            out.push_str(&format!(" [{}]", flags.join(" ")));
        }
        if let Some(child) = &self.child {
            out.push(' ');
            out.push_str(&child.dump());
        }
        for arg in &self.args {
            out.push(' ');
            out.push_str(&quote(arg));
        }
        out.push(')');
        out
    }
}
