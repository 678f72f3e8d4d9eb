//! The condition language of `IF` and `ELSE IF`: its tokens, its grammar and its evaluation.
//!
//! ```text
//! condition := or
//! or        := and ( "||" and )*
//! and       := unary ( "&&" unary )*
//! unary     := "!" unary | "(" or ")" | "defined" "(" NAME ")" | word ( "==" | "!=" ) word
//! ```
//!
//! A word is anything up to white space or an operator character (`( ) ! = & |`), with quotes
//! (`'...'`, `"..."`), the escape character and `${...}` keeping operator characters and spaces
//! inside it. Words are expanded exactly as a Dockerfile word is ([`wbuild_parser::shell`]:
//! `$VAR`, `${VAR}` and every modifier, quote removal), then compared as strings. A variable
//! that is not set expands to nothing; `defined(NAME)` is true when NAME has a value (an ENV, or
//! an ARG with a default or a build arg — `ARG NAME` alone does not set it). `!` binds tighter
//! than `==`/`!=`'s operands can, then `&&`, then `||`; `&&` and `||` short-circuit, so
//! `defined(V) && ${V:?}` never fails.

use wbuild_frontend_dockerfile::items::{Condition, ConditionError};

/// How deeply `(` and `!` may nest.
const MAX_DEPTH: usize = 64;

/// A parsed condition, ready to be decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    /// `left == right` (`equal`) or `left != right`.
    Compare {
        left: Word,
        equal: bool,
        right: Word,
    },
    /// `defined(NAME)`.
    Defined(String),
}

/// A word as written, and its byte offset in the condition text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub text: String,
    pub at: usize,
}

/// A condition that cannot be parsed: where (byte offset in the condition text), what, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub at: usize,
    pub text: String,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    LParen,
    RParen,
    Not,
    And,
    Or,
    Eq,
    Ne,
    Word,
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
}

/// Parses a condition (the text after `IF` or `ELSE IF`); `escape` is the file's escape
/// character.
pub fn parse(text: &str, escape: char) -> Result<Expr, SyntaxError> {
    let tokens = tokenize(text, escape)?;
    if tokens.is_empty() {
        return Err(SyntaxError {
            at: 0,
            text: String::new(),
            message: "a condition is required, e.g. `$VAR == value` or `defined(VAR)`".into(),
        });
    }
    let mut p = Parser {
        text,
        tokens,
        pos: 0,
        depth: 0,
    };
    let expr = p.or()?;
    if let Some(t) = p.peek() {
        let message = if t.kind == Kind::RParen {
            "unexpected `)`: no `(` is open".to_string()
        } else {
            format!(
                "unexpected `{}` after a complete condition (join conditions with && or ||)",
                p.slice(t)
            )
        };
        return Err(p.error_at(&t.clone(), message));
    }
    Ok(expr)
}

fn is_operator_char(c: char) -> bool {
    matches!(c, '(' | ')' | '!' | '=' | '&' | '|')
}

fn tokenize(text: &str, escape: char) -> Result<Vec<Token>, SyntaxError> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let end_of = |i: usize| chars.get(i).map_or(text.len(), |c| c.0);
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (start, c) = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let next = chars.get(i + 1).map(|c| c.1);
        let (kind, len) = match (c, next) {
            ('(', _) => (Kind::LParen, 1),
            (')', _) => (Kind::RParen, 1),
            ('!', Some('=')) => (Kind::Ne, 2),
            ('!', _) => (Kind::Not, 1),
            ('=', Some('=')) => (Kind::Eq, 2),
            ('&', Some('&')) => (Kind::And, 2),
            ('|', Some('|')) => (Kind::Or, 2),
            ('=' | '&' | '|', _) => {
                let hint = match c {
                    '=' => "compare with ==",
                    '&' => "write && for `and`",
                    _ => "write || for `or`",
                };
                return Err(SyntaxError {
                    at: start,
                    text: c.to_string(),
                    message: format!("`{c}` alone is not an operator: {hint}"),
                });
            }
            _ => {
                let end = word_end(&chars, i, escape).map_err(|(at, message)| SyntaxError {
                    at: chars[at].0,
                    text: text[chars[at].0..].to_string(),
                    message,
                })?;
                tokens.push(Token {
                    kind: Kind::Word,
                    start,
                    end: end_of(end),
                });
                i = end;
                continue;
            }
        };
        tokens.push(Token {
            kind,
            start,
            end: end_of(i + len),
        });
        i += len;
    }
    Ok(tokens)
}

/// The index (into `chars`) just past the word starting at `i`.
fn word_end(chars: &[(usize, char)], mut i: usize, escape: char) -> Result<usize, (usize, String)> {
    let mut braces: Vec<usize> = Vec::new();
    while i < chars.len() {
        let c = chars[i].1;
        if braces.is_empty() && (c.is_whitespace() || is_operator_char(c)) {
            break;
        }
        match c {
            _ if c == escape => i += 2,
            '\'' => {
                let open = i;
                i += 1;
                while i < chars.len() && chars[i].1 != '\'' {
                    i += 1;
                }
                if i >= chars.len() {
                    return Err((open, "unterminated single quote".into()));
                }
                i += 1;
            }
            '"' => {
                let open = i;
                i += 1;
                while i < chars.len() && chars[i].1 != '"' {
                    i += if chars[i].1 == escape { 2 } else { 1 };
                }
                if i >= chars.len() {
                    return Err((open, "unterminated double quote".into()));
                }
                i += 1;
            }
            '$' if chars.get(i + 1).map(|c| c.1) == Some('{') => {
                braces.push(i);
                i += 2;
            }
            '}' if !braces.is_empty() => {
                braces.pop();
                i += 1;
            }
            _ => i += 1,
        }
    }
    if let Some(&open) = braces.first() {
        return Err((open, "unterminated `${`: no `}` closes it".into()));
    }
    Ok(i.min(chars.len()))
}

struct Parser<'t> {
    text: &'t str,
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn peek_kind(&self) -> Option<Kind> {
        self.peek().map(|t| t.kind)
    }

    fn slice(&self, t: &Token) -> &str {
        &self.text[t.start..t.end]
    }

    fn error_at(&self, t: &Token, message: String) -> SyntaxError {
        SyntaxError {
            at: t.start,
            text: self.slice(t).to_string(),
            message,
        }
    }

    fn error_at_end(&self, message: String) -> SyntaxError {
        let at = self.text.trim_end().len();
        SyntaxError {
            at,
            text: self.text.trim().to_string(),
            message,
        }
    }

    fn or(&mut self) -> Result<Expr, SyntaxError> {
        let mut left = self.and()?;
        while self.peek_kind() == Some(Kind::Or) {
            self.pos += 1;
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, SyntaxError> {
        let mut left = self.unary()?;
        while self.peek_kind() == Some(Kind::And) {
            self.pos += 1;
            let right = self.unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, SyntaxError> {
        let Some(t) = self.peek().cloned() else {
            return Err(self.error_at_end(
                "the condition ends too early: a comparison, `(`, `!` or defined(NAME) is \
                 missing"
                    .into(),
            ));
        };
        match t.kind {
            Kind::Not | Kind::LParen => {
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err(self.error_at(
                        &t,
                        format!("the condition nests more than {MAX_DEPTH} levels deep"),
                    ));
                }
                self.pos += 1;
                let e = if t.kind == Kind::Not {
                    Expr::Not(Box::new(self.unary()?))
                } else {
                    let inner = self.or()?;
                    if self.peek_kind() != Some(Kind::RParen) {
                        return Err(self.error_at(&t, "this `(` is never closed".into()));
                    }
                    self.pos += 1;
                    inner
                };
                self.depth -= 1;
                Ok(e)
            }
            Kind::Word => {
                self.pos += 1;
                let word = self.slice(&t).to_string();
                if word == "defined" && self.peek_kind() == Some(Kind::LParen) {
                    return self.defined(&t);
                }
                let equal = match self.peek_kind() {
                    Some(Kind::Eq) => true,
                    Some(Kind::Ne) => false,
                    _ => {
                        return Err(self.error_at(
                            &t,
                            format!(
                                "`{word}` is not a condition: compare it (`{word} == value`, \
                                 `{word} != value`) or test a variable with defined(NAME)"
                            ),
                        ));
                    }
                };
                let op = self.tokens[self.pos].clone();
                self.pos += 1;
                let Some(r) = self.peek().cloned().filter(|r| r.kind == Kind::Word) else {
                    return Err(self.error_at(
                        &op,
                        format!(
                            "`{}` needs a value on its right (use \"\" for the empty string)",
                            self.slice(&op)
                        ),
                    ));
                };
                self.pos += 1;
                Ok(Expr::Compare {
                    left: Word {
                        text: word,
                        at: t.start,
                    },
                    equal,
                    right: Word {
                        text: self.slice(&r).to_string(),
                        at: r.start,
                    },
                })
            }
            _ => Err(self.error_at(
                &t,
                format!(
                    "unexpected `{}`: expected a comparison, `(`, `!` or defined(NAME)",
                    self.slice(&t)
                ),
            )),
        }
    }

    /// `defined` `(` NAME `)`, the `defined` word already taken.
    fn defined(&mut self, kw: &Token) -> Result<Expr, SyntaxError> {
        self.pos += 1; // (
        let name = self.peek().cloned().filter(|t| t.kind == Kind::Word);
        let close = self.tokens.get(self.pos + 1).map(|t| t.kind);
        match (name, close) {
            (Some(n), Some(Kind::RParen)) if is_name(self.slice(&n)) => {
                self.pos += 2;
                Ok(Expr::Defined(self.slice(&n).to_string()))
            }
            (Some(n), _) if !is_name(self.slice(&n)) => Err(self.error_at(
                &n,
                format!(
                    "defined() takes a variable name (letters, digits, _), not `{}`",
                    self.slice(&n)
                ),
            )),
            _ => Err(self.error_at(
                kw,
                "defined needs one variable name in parentheses: defined(NAME)".into(),
            )),
        }
    }
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Why a word could not be expanded, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError {
    pub at: usize,
    pub text: String,
    pub message: String,
}

impl Expr {
    /// Decides the condition; `vars` answers None for a variable that is not set.
    pub fn eval(
        &self,
        escape: char,
        vars: &dyn Fn(&str) -> Option<String>,
    ) -> Result<bool, EvalError> {
        Ok(match self {
            Expr::Or(a, b) => a.eval(escape, vars)? || b.eval(escape, vars)?,
            Expr::And(a, b) => a.eval(escape, vars)? && b.eval(escape, vars)?,
            Expr::Not(a) => !a.eval(escape, vars)?,
            Expr::Defined(name) => vars(name).is_some(),
            Expr::Compare { left, equal, right } => {
                (left.expand(escape, vars)? == right.expand(escape, vars)?) == *equal
            }
        })
    }
}

impl Word {
    fn expand(
        &self,
        escape: char,
        vars: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, EvalError> {
        wbuild_parser::shell::expand_word(&self.text, escape, vars).map_err(|e| EvalError {
            at: self.at,
            text: self.text.clone(),
            message: e.message,
        })
    }
}

/// Maps byte offsets in a condition's text to positions in the build file.
#[derive(Debug, Clone)]
pub struct Locator {
    /// Line and column where the condition text starts.
    pub line: usize,
    pub column: usize,
    /// How many characters of the condition are on that first line; offsets beyond it are
    /// looked for on the instruction's continuation lines.
    pub first_line_chars: usize,
    /// The instruction's continuation lines (after the first), with their line numbers.
    pub more_lines: Vec<(usize, String)>,
}

impl Locator {
    /// The line and column of `text`, found at byte offset `at` of `condition`.
    pub fn locate(&self, condition: &str, at: usize, text: &str) -> (usize, usize) {
        let before = condition.get(..at).map_or(0, |s| s.chars().count());
        if before < self.first_line_chars {
            return (self.line, self.column + before);
        }
        if !text.is_empty() {
            for (n, l) in &self.more_lines {
                if let Some(b) = l.find(text) {
                    return (*n, l[..b].chars().count() + 1);
                }
            }
        }
        (self.line, self.column)
    }
}

/// A parsed condition with what it needs to decide itself and to report errors.
pub struct Located {
    pub expr: Expr,
    pub text: String,
    pub escape: char,
    pub locator: Locator,
}

impl Condition for Located {
    fn holds(&self, vars: &dyn Fn(&str) -> Option<String>) -> Result<bool, ConditionError> {
        self.expr.eval(self.escape, vars).map_err(|e| {
            let (line, column) = self.locator.locate(&self.text, e.at, &e.text);
            ConditionError {
                line,
                column,
                message: e.message,
                text: e.text,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(k: &str) -> Option<String> {
        match k {
            "V" => Some("2".into()),
            "EMPTY" => Some(String::new()),
            "NAME" => Some("my app".into()),
            "PATHISH" => Some("/usr/local/bin".into()),
            _ => None,
        }
    }

    fn eval(text: &str) -> bool {
        let e = parse(text, '\\').unwrap_or_else(|e| panic!("{text}: {e:?}"));
        e.eval('\\', &vars)
            .unwrap_or_else(|e| panic!("{text}: {e:?}"))
    }

    fn syntax_error(text: &str) -> SyntaxError {
        match parse(text, '\\') {
            Ok(e) => panic!("{text} parsed as {e:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn comparisons() {
        assert!(eval("$V == 2"));
        assert!(eval("$V==2"));
        assert!(eval("${V}==2"));
        assert!(!eval("$V != 2"));
        assert!(eval("$V!=3"));
        assert!(eval("\"$NAME\" == 'my app'"));
        assert!(eval("$NAME == \"my app\""));
        assert!(eval("my\\ app == \"$NAME\""));
        assert!(eval("$UNSET == \"\""));
        assert!(eval("$EMPTY == ''"));
        assert!(eval("x$V == x2"));
        assert!(!eval("'$V' == 2"));
    }

    #[test]
    fn modifiers_are_the_dockerfile_ones() {
        assert!(eval("${UNSET:-dflt} == dflt"));
        assert!(eval("${EMPTY:-dflt} == dflt"));
        assert!(eval("${EMPTY-dflt} == ''"));
        assert!(eval("${V:+set} == set"));
        assert!(eval("${UNSET+set} == ''"));
        assert!(eval("${PATHISH#/usr} == /local/bin"));
        assert!(eval("${PATHISH##*/} == bin"));
        assert!(eval("${PATHISH%/*} == /usr/local"));
        assert!(eval("${PATHISH%%/l*} == /usr"));
        assert!(eval("${PATHISH/local/share} == /usr/share/bin"));
        assert!(eval("${PATHISH//\\//:} == :usr:local:bin"));
        assert!(eval("${UNSET:-a b} == 'a b'"));
        assert!(eval("${UNSET:-a==b} == 'a==b'"));
        assert!(eval("${UNSET:-(x)} == '(x)'"));
        let e = parse("${UNSET:?must be set} == 1", '\\').unwrap();
        let err = e.eval('\\', &vars).unwrap_err();
        assert_eq!(err.at, 0);
        assert!(err.message.contains("must be set"), "{err:?}");
    }

    #[test]
    fn boolean_operators_and_precedence() {
        assert!(eval("$V == 1 || $V == 2"));
        assert!(!eval("$V == 1 && $V == 2"));
        assert!(eval("$V == 2 && $NAME == 'my app'"));
        // && binds tighter than ||.
        assert!(eval("$V == 2 || $V == 1 && $V == 3"));
        assert!(!eval("($V == 2 || $V == 1) && $V == 3"));
        assert!(eval("!($V == 1)"));
        assert!(eval("! $V == 1"));
        assert!(!eval("!!($V == 1)"));
        assert!(eval("((($V == 2)))"));
        // ! applies to the comparison after it, not to the left word.
        assert!(eval("!$V == 1"));
    }

    #[test]
    fn defined() {
        assert!(eval("defined(V)"));
        assert!(eval("defined(EMPTY)"));
        assert!(!eval("defined(UNSET)"));
        assert!(eval("!defined(UNSET)"));
        assert!(eval("defined( V )"));
        assert!(eval("defined(V) && $V == 2"));
        // Short-circuit: the right side is never expanded.
        assert!(!eval("defined(UNSET) && ${UNSET:?boom} == x"));
        assert!(eval("defined(V) || ${UNSET:?boom} == x"));
        // `defined` alone is an ordinary word.
        assert!(eval("defined == defined"));
    }

    #[test]
    fn syntax_errors_say_where() {
        let e = syntax_error("");
        assert!(e.message.contains("condition is required"), "{e:?}");
        let e = syntax_error("$V");
        assert_eq!((e.at, e.text.as_str()), (0, "$V"));
        assert!(e.message.contains("is not a condition"), "{e:?}");
        let e = syntax_error("$V = 1");
        assert_eq!((e.at, e.text.as_str()), (3, "="));
        assert!(e.message.contains("compare with =="), "{e:?}");
        let e = syntax_error("$V == 1 & $X == 2");
        assert_eq!(e.at, 8);
        let e = syntax_error("$V == 1 | $X == 2");
        assert!(e.message.contains("||"), "{e:?}");
        let e = syntax_error("$V ==");
        assert_eq!((e.at, e.text.as_str()), (3, "=="));
        assert!(e.message.contains("needs a value"), "{e:?}");
        let e = syntax_error("($V == 1");
        assert_eq!((e.at, e.text.as_str()), (0, "("));
        assert!(e.message.contains("never closed"), "{e:?}");
        let e = syntax_error("$V == 1)");
        assert_eq!((e.at, e.text.as_str()), (7, ")"));
        let e = syntax_error("$V == 1 $X == 2");
        assert_eq!((e.at, e.text.as_str()), (8, "$X"));
        assert!(e.message.contains("&& or ||"), "{e:?}");
        let e = syntax_error("$V == 1 &&");
        assert!(e.message.contains("ends too early"), "{e:?}");
        let e = syntax_error("'abc == 1");
        assert_eq!(e.at, 0);
        assert!(e.message.contains("unterminated single quote"), "{e:?}");
        let e = syntax_error("x == \"abc");
        assert_eq!(e.at, 5);
        assert!(e.message.contains("unterminated double quote"), "{e:?}");
        let e = syntax_error("${V == 1");
        assert!(e.message.contains("unterminated `${`"), "{e:?}");
        let e = syntax_error("defined($V)");
        assert_eq!((e.at, e.text.as_str()), (8, "$V"));
        let e = syntax_error("defined(A B)");
        assert!(e.message.contains("defined(NAME)"), "{e:?}");
        let e = syntax_error("defined()");
        assert!(e.message.contains("defined(NAME)"), "{e:?}");
        let e = syntax_error("== 1");
        assert!(e.message.contains("unexpected `==`"), "{e:?}");
        let deep = format!("{}$V == 1{}", "(".repeat(100), ")".repeat(100));
        assert!(syntax_error(&deep).message.contains("nests more than"));
        let bangs = format!("{}$V == 1", "!".repeat(1000));
        assert!(syntax_error(&bangs).message.contains("nests more than"));
    }

    #[test]
    fn escape_character_of_the_file() {
        let e = parse("a`=`=b == 'a==b'", '`').unwrap();
        assert!(e.eval('`', &vars).unwrap());
        // With a backtick escape, a backslash is an ordinary character.
        let e = parse("a\\b == 'a\\b'", '`').unwrap();
        assert!(e.eval('`', &vars).unwrap());
    }

    #[test]
    fn locator_maps_offsets_to_lines() {
        let l = Locator {
            line: 4,
            column: 4,
            first_line_chars: 8,
            more_lines: vec![(5, "  && $X == 2".into())],
        };
        let cond = "$V == 1   && $X == 2";
        assert_eq!(l.locate(cond, 6, "1"), (4, 10));
        assert_eq!(l.locate(cond, 13, "$X"), (5, 6));
        assert_eq!(l.locate(cond, 13, "$Q"), (4, 4));
    }

    #[test]
    fn never_panics_on_generated_conditions() {
        const PIECES: &[&str] = &[
            "$V", "${", "}", "(", ")", "!", "=", "==", "!=", "&", "&&", "|", "||", "'", "\"", "\\",
            " ", "defined", "a", "${V:-", "${V#", "é", "\u{3000}",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let len = (next() % 12) as usize;
            let text: String = (0..len)
                .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
                .collect();
            match parse(&text, '\\') {
                Ok(e) => {
                    let _ = e.eval('\\', &vars);
                }
                Err(e) => assert!(
                    text.is_char_boundary(e.at) && e.at <= text.len(),
                    "{text:?}"
                ),
            }
        }
    }
}
