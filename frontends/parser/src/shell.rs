//! Shell-style word expansion, as BuildKit's shell lexer does it.
//!
//! This module owns everything about turning one Dockerfile word into its expanded form:
//! quote removal (`'...'`, `"..."`), escapes (`\` or `` ` `` as set by the `escape` directive),
//! `$VAR` / `${VAR}` substitution with every modifier BuildKit knows (`:-` `-` `:+` `+` `:?` `?`
//! `#` `##` `%` `%%` `/` `//`), special and positional parameters (always unset), and the split
//! into separate words that BuildKit's `ProcessWords` performs after substitution.
//!
//! The behaviour follows BuildKit's `frontend/dockerfile/shell` lexer, including its quirks:
//!
//! - `$` followed by something that is not a name stays a literal `$`.
//! - Inside double quotes the escape character only escapes `"`, `$` and itself.
//! - Patterns of `#`, `%` and `/` are globs with `*` and `?` only; like BuildKit, `[`, `]` and
//!   every other character match themselves. Inside a pattern a backslash (always `\`, whatever
//!   the escape character) may only escape `*`, `?`, `\`, `}` and `/`.
//! - `*` and `?` never match a newline (BuildKit compiles patterns to Go regular expressions).
//! - In `${v//p/r}`, `$0` / `${0}` in the replacement stand for the matched text, `$$` for `$`,
//!   and any other `$name` for nothing (Go's `Regexp.ReplaceAllString`); `${v/p/r}` inserts `r`
//!   literally.
//!
//! Expansion never panics; nesting of `${...}` deeper than [`MAX_NESTING`] is reported as an error
//! instead of exhausting the stack, and so is a word whose substitutions produce more than
//! [`MAX_EXPANSION`] bytes (nested `${v//p/r}` grow exponentially) instead of exhausting memory.

use std::fmt;

/// How deeply `${...}` substitutions may nest inside each other's words.
pub const MAX_NESTING: usize = 200;

/// How many bytes the substitutions of one word may produce in all.
pub const MAX_EXPANSION: usize = 4 << 20;

/// An expansion that cannot be done, e.g. `${x:?is required}` with x unset or a bad substitution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpandError {
    pub message: String,
}

impl fmt::Display for ExpandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExpandError {}

/// Expand one word: quotes removed, escapes processed, variables substituted (ProcessWord).
pub fn expand_word(
    word: &str,
    escape: char,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    process(word, escape, env).map(|(result, _)| result)
}

/// Expand and split into words the way ProcessWords does (quotes keep spaces together).
pub fn expand_words(
    word: &str,
    escape: char,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, ExpandError> {
    process(word, escape, env).map(|(_, words)| words)
}

fn process(
    word: &str,
    escape: char,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, Vec<String>), ExpandError> {
    let mut lexer = Lexer {
        chars: chars_without_bom(word),
        pos: 0,
        escape,
        env,
        raw_escapes: false,
        depth: 0,
        budget: MAX_EXPANSION,
    };
    lexer
        .process_until(None, false)
        .map_err(|message| ExpandError {
            message: format!("failed to process {word:?}: {message}"),
        })
}

/// The characters of `text`; a leading byte-order mark is dropped, as Go's text scanner does.
fn chars_without_bom(text: &str) -> Vec<char> {
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    text.chars().collect()
}

type Fail = String;

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    env: &'a dyn Fn(&str) -> Option<String>,
    /// Keep escape characters in the output (used for the patterns of `#`, `%` and `/`).
    raw_escapes: bool,
    depth: usize,
    /// Bytes substitutions may still produce (see [`MAX_EXPANSION`]).
    budget: usize,
}

/// Collects the words of `ProcessWords`: unquoted whitespace separates words, quoted text and
/// escaped characters never do.
#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if !ch.is_whitespace() {
            self.add_raw_char(ch);
        } else if self.in_word && !self.word.is_empty() {
            self.words.push(std::mem::take(&mut self.word));
            self.in_word = false;
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }

    fn add_str(&mut self, text: &str) {
        text.chars().for_each(|ch| self.add_char(ch));
    }

    fn add_raw_str(&mut self, text: &str) {
        self.word.push_str(text);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek();
        if ch.is_some() {
            self.pos += 1;
        }
        ch
    }

    /// Process until `stop` (consumed) or the end of input when `stop` is `None`.
    fn process_until(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), Fail> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let outcome = self.process_until_inner(stop);
        self.raw_escapes = saved;
        outcome
    }

    fn process_until_inner(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), Fail> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.pos += 1;
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let text = self.process_dollar()?;
                    result.push_str(&text);
                    words.add_str(&text);
                }
                '\'' | '"' => {
                    let text = if ch == '\'' {
                        self.process_single_quote()?
                    } else {
                        self.process_double_quote()?
                    };
                    result.push_str(&text);
                    words.add_raw_str(&text);
                }
                _ => {
                    self.pos += 1;
                    if ch == self.escape {
                        if self.raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        // An escape at the very end is dropped.
                        let Some(escaped) = self.next() else { break };
                        words.add_raw_char(escaped);
                        result.push(escaped);
                    } else {
                        words.add_char(ch);
                        result.push(ch);
                    }
                }
            }
        }
        match stop {
            Some(stop) => Err(format!(
                "unexpected end of statement while looking for matching {stop}"
            )),
            None => Ok((result, words.finish())),
        }
    }

    /// Everything up to the next `'` is literal; nothing can be escaped.
    fn process_single_quote(&mut self) -> Result<String, Fail> {
        self.pos += 1;
        let mut result = String::new();
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    );
                }
                Some('\'') => return Ok(result),
                Some(ch) => result.push(ch),
            }
        }
    }

    /// Everything up to the next `"` is literal except `$` substitutions; the escape character
    /// escapes only `"`, `$` and itself and stays literal before anything else.
    fn process_double_quote(&mut self) -> Result<String, Fail> {
        self.pos += 1;
        let mut result = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    );
                }
                Some('"') => {
                    self.pos += 1;
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                }
                Some(mut ch) => {
                    self.pos += 1;
                    if ch == self.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            // The unterminated quote is reported on the next round.
                            None => continue,
                            Some(next) if next == '"' || next == '$' || next == self.escape => {
                                ch = next;
                                self.pos += 1;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn process_dollar(&mut self) -> Result<String, Fail> {
        if self.depth >= MAX_NESTING {
            return Err(format!(
                "substitutions nested more than {MAX_NESTING} levels deep"
            ));
        }
        self.depth += 1;
        let outcome = self.process_dollar_inner();
        self.depth -= 1;
        let text = outcome?;
        self.spend(text.len())?;
        Ok(text)
    }

    /// Counts `bytes` of substitution output against the word's budget.
    fn spend(&mut self, bytes: usize) -> Result<(), Fail> {
        self.budget = self.budget.checked_sub(bytes).ok_or_else(too_large)?;
        Ok(())
    }

    fn lookup(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }

    fn process_dollar_inner(&mut self) -> Result<String, Fail> {
        self.pos += 1; // the '$'

        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(self.lookup(&name).unwrap_or_default());
        }

        self.pos += 1; // the '{'
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            Some(_) => {}
        }
        let name = self.process_name();
        let first = self.next();
        match first {
            Some('}') => Ok(self.lookup(&name).unwrap_or_default()),
            Some(':' | '+' | '-' | '?' | '#' | '%') => {
                let mut modifier = String::from(first.unwrap_or_default());
                let null_is_unset = first == Some(':');
                let op = if null_is_unset {
                    let op = self.next();
                    modifier.extend(op);
                    op
                } else {
                    first
                };
                let raw = matches!(op, Some('#' | '%'));
                let word = match self.process_until(Some('}'), raw) {
                    Ok((word, _)) => word,
                    Err(_) if self.peek().is_none() => {
                        return Err("syntax error: missing '}'".into());
                    }
                    Err(err) => return Err(err),
                };
                let value = self.lookup(&name);
                let unset = |value: &Option<String>| match value {
                    None => true,
                    Some(value) => null_is_unset && value.is_empty(),
                };
                match op {
                    Some('-') => Ok(if unset(&value) {
                        word
                    } else {
                        value.unwrap_or_default()
                    }),
                    Some('+') => Ok(if unset(&value) { String::new() } else { word }),
                    Some('?') => {
                        let default = match &value {
                            None => "is not allowed to be unset",
                            Some(v) if null_is_unset && v.is_empty() => {
                                "is not allowed to be empty"
                            }
                            Some(v) => return Ok(v.clone()),
                        };
                        let message = if word.is_empty() { default } else { &word };
                        Err(format!("{name}: {message}"))
                    }
                    Some(op @ ('#' | '%')) => {
                        // `#`/`%` remove the shortest match, `##`/`%%` the longest.
                        let (pattern, greedy) = match word.strip_prefix(op) {
                            Some(rest) => (rest, true),
                            None => (word.as_str(), false),
                        };
                        let value = value.unwrap_or_default();
                        if op == '%' {
                            trim_suffix(pattern, &value, greedy)
                        } else {
                            trim_prefix(pattern, &value, greedy)
                        }
                    }
                    _ => Err(format!("unsupported modifier ({modifier}) in substitution")),
                }
            }
            Some('/') => {
                let replace_all = self.peek() == Some('/');
                if replace_all {
                    self.pos += 1;
                }
                let pattern = match self.process_until(Some('/'), true) {
                    Ok((pattern, _)) => pattern,
                    Err(_) if self.peek().is_none() => {
                        return Err("syntax error: missing '/' in ${}".into());
                    }
                    Err(err) => return Err(err),
                };
                let replacement = match self.process_until(Some('}'), true) {
                    Ok((replacement, _)) => replacement,
                    Err(_) if self.peek().is_none() => {
                        return Err("syntax error: missing '}'".into());
                    }
                    Err(err) => return Err(err),
                };
                let value = self.lookup(&name).unwrap_or_default();
                let glob = Glob::compile(&pattern, true)
                    .map_err(|err| format!("invalid pattern ({pattern}) in substitution: {err}"))?;
                let text: Vec<char> = value.chars().collect();
                Ok(if replace_all {
                    glob.replace_all(&text, &replacement, self.budget)?
                } else {
                    match glob.find(&text, 0, false) {
                        Some((start, end)) => {
                            let mut out: String = text[..start].iter().collect();
                            out.push_str(&replacement);
                            out.extend(&text[end..]);
                            out
                        }
                        None => value,
                    }
                })
            }
            Some(other) => Err(format!("unsupported modifier ({other}) in substitution")),
            None => Err("syntax error: missing '}'".into()),
        }
    }

    /// A variable name: letters, digits and `_`; or a run of digits (positional parameter); or
    /// one special parameter character (`@ * # ? - $ !`). Empty when none of these follows.
    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && is_digit(ch) {
                while let Some(digit) = self.peek().filter(|&c| is_digit(c)) {
                    name.push(digit);
                    self.pos += 1;
                }
                return name;
            }
            if name.is_empty() && is_special_param(ch) {
                self.pos += 1;
                return ch.to_string();
            }
            if !is_letter(ch) && !is_digit(ch) && ch != '_' {
                break;
            }
            name.push(ch);
            self.pos += 1;
        }
        name
    }
}

/// Go's `unicode.IsDigit` (approximated by Rust's numeric property for non-ASCII characters).
fn is_digit(ch: char) -> bool {
    ch.is_ascii_digit() || (!ch.is_ascii() && ch.is_numeric())
}

/// Go's `unicode.IsLetter` (approximated by Rust's alphabetic property).
fn is_letter(ch: char) -> bool {
    ch.is_alphabetic()
}

fn is_special_param(ch: char) -> bool {
    matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, Fail> {
    let glob = Glob::compile(pattern, greedy)
        .map_err(|err| format!("invalid pattern ({pattern}) in substitution: {err}"))?;
    let text: Vec<char> = value.chars().collect();
    Ok(match glob.find(&text, 0, true) {
        Some((_, end)) => text[end..].iter().collect(),
        None => value.to_string(),
    })
}

/// The shortest or longest matching suffix is found as a prefix of the reversed value, matched
/// against the reversed pattern (escape pairs kept in order), exactly as BuildKit does.
fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, Fail> {
    let reversed_value: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reverse_pattern(pattern), &reversed_value, greedy)?;
    Ok(trimmed.chars().rev().collect())
}

/// Reverse a pattern but keep each `\x` pair as `\x`: `a\*c` becomes `c\*a`.
fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut pieces: Vec<&[char]> = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        let width = if chars[i] == '\\' && i + 1 < chars.len() {
            2
        } else {
            1
        };
        pieces.push(&chars[i..i + width]);
        i += width;
    }
    pieces.iter().rev().flat_map(|piece| piece.iter()).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    /// `*`: any run of characters other than newline.
    Star,
    /// `?`: one character other than newline.
    Any,
    Literal(char),
}

/// A compiled glob, matched with the leftmost-first priorities of a backtracking regex engine
/// (which BuildKit's Go regexp reproduces), but in linear time like a Pike VM.
struct Glob {
    tokens: Vec<Token>,
    /// `*` prefers the longest run (true) or the shortest (false).
    greedy: bool,
}

/// One pending step while building a thread list.
enum Step {
    Enter(usize),
    Emit(usize),
}

impl Glob {
    fn compile(pattern: &str, greedy: bool) -> Result<Glob, String> {
        let chars = chars_without_bom(pattern);
        let mut tokens = Vec::with_capacity(chars.len());
        let mut i = 0;
        while i < chars.len() {
            let ch = chars[i];
            i += 1;
            tokens.push(match ch {
                '*' => Token::Star,
                '?' => Token::Any,
                '\\' => {
                    // `\}` and `\/` only protect the ${} syntax; the backslash is not pattern.
                    if matches!(chars.get(i), Some('}' | '/')) {
                        continue;
                    }
                    let escaped = chars.get(i).copied();
                    i += 1;
                    match escaped {
                        Some(c @ ('*' | '?' | '\\')) => Token::Literal(c),
                        Some(c) => return Err(format!("invalid escape '\\{c}'")),
                        None => return Err("invalid escape '\\' at end of pattern".into()),
                    }
                }
                other => Token::Literal(other),
            });
        }
        Ok(Glob { tokens, greedy })
    }

    /// Add state `start` and everything reachable from it without consuming input to `list`,
    /// in priority order. `marks[state] == generation` means already present.
    fn add_thread(
        &self,
        list: &mut Vec<(usize, usize)>,
        marks: &mut [usize],
        generation: usize,
        state: usize,
        origin: usize,
    ) {
        let mut pending = vec![Step::Enter(state)];
        while let Some(step) = pending.pop() {
            match step {
                Step::Emit(state) => list.push((state, origin)),
                Step::Enter(state) => {
                    if marks[state] == generation {
                        continue;
                    }
                    marks[state] = generation;
                    if self.tokens.get(state) == Some(&Token::Star) {
                        if self.greedy {
                            // Consume more first, then try skipping the star.
                            list.push((state, origin));
                            pending.push(Step::Enter(state + 1));
                        } else {
                            // Try skipping first; consuming more comes after.
                            pending.push(Step::Emit(state));
                            pending.push(Step::Enter(state + 1));
                        }
                    } else {
                        list.push((state, origin));
                    }
                }
            }
        }
    }

    /// The leftmost-first match at or after char index `from` (only at `from` when anchored),
    /// as `(start, end)` char indices.
    fn find(&self, text: &[char], from: usize, anchored: bool) -> Option<(usize, usize)> {
        let done = self.tokens.len();
        let mut marks = vec![usize::MAX; done + 1];
        let mut current: Vec<(usize, usize)> = Vec::new();
        let mut following: Vec<(usize, usize)> = Vec::new();
        let mut found = None;
        let mut pos = from;
        loop {
            if found.is_none() && (!anchored || pos == from) {
                // A new attempt starting here, with the lowest priority.
                self.add_thread(&mut current, &mut marks, pos, 0, pos);
            }
            if current.is_empty() {
                break;
            }
            let ch = text.get(pos).copied();
            following.clear();
            for &(state, origin) in &current {
                if state == done {
                    // Lower-priority threads can no longer win.
                    found = Some((origin, pos));
                    break;
                }
                let Some(ch) = ch else { continue };
                let advance = match self.tokens[state] {
                    Token::Star => (ch != '\n').then_some(state),
                    Token::Any => (ch != '\n').then_some(state + 1),
                    Token::Literal(want) => (ch == want).then_some(state + 1),
                };
                if let Some(next) = advance {
                    self.add_thread(&mut following, &mut marks, pos + 1, next, origin);
                }
            }
            if ch.is_none() {
                break;
            }
            std::mem::swap(&mut current, &mut following);
            pos += 1;
        }
        found
    }

    /// Go's `Regexp.ReplaceAllString`: every non-overlapping match replaced, with `$`-template
    /// expansion in the replacement.
    fn replace_all(&self, text: &[char], replacement: &str, limit: usize) -> Result<String, Fail> {
        let mut out = String::new();
        let mut last_end = 0;
        let mut search = 0;
        while search <= text.len() {
            let Some((start, end)) = self.find(text, search, false) else {
                break;
            };
            out.extend(&text[last_end..start]);
            if out.len() + replacement.len() > limit {
                return Err(too_large());
            }
            // No replacement for an empty match right after the previous match.
            if end > last_end || start == 0 {
                expand_template(&mut out, replacement, &text[start..end]);
            }
            if out.len() > limit {
                return Err(too_large());
            }
            last_end = end;
            search = if search + 1 > end { search + 1 } else { end };
        }
        out.extend(&text[last_end..]);
        Ok(out)
    }
}

fn too_large() -> Fail {
    format!(
        "the substitutions produce more than {} MiB",
        MAX_EXPANSION >> 20
    )
}

/// Go's `Regexp.Expand` for a pattern without groups: `$$` is `$`, `$0` / `${0}` the match, any
/// other well-formed `$name` / `${name}` nothing, and a malformed `$` stays literal.
fn expand_template(out: &mut String, template: &str, matched: &[char]) {
    let mut rest = template;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        let (braced, body) = match rest.strip_prefix('{') {
            Some(body) => (true, body),
            None => (false, rest),
        };
        let name_len: usize = body
            .chars()
            .take_while(|&c| is_letter(c) || is_digit(c) || c == '_')
            .map(char::len_utf8)
            .sum();
        if name_len == 0 || (braced && !body[name_len..].starts_with('}')) {
            out.push('$');
            continue;
        }
        if &body[..name_len] == "0" {
            out.extend(matched);
        }
        rest = &body[name_len + usize::from(braced)..];
    }
    out.push_str(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    /// SET=val, EMPTY= (set but empty), UNSET not set.
    fn expand(word: &str) -> Result<String, ExpandError> {
        let env = env_of(&[("SET", "val"), ("EMPTY", ""), ("ARG", "x")]);
        expand_word(word, '\\', &env)
    }

    fn ok(word: &str) -> String {
        expand(word).unwrap_or_else(|e| panic!("{word}: {e}"))
    }

    fn err(word: &str) -> String {
        match expand(word) {
            Ok(v) => panic!("{word}: expected an error, got {v:?}"),
            Err(e) => e.message,
        }
    }

    fn with(word: &str, pairs: &[(&str, &str)]) -> Result<String, ExpandError> {
        expand_word(word, '\\', &env_of(pairs))
    }

    #[test]
    fn plain_variables() {
        assert_eq!(ok("$SET"), "val");
        assert_eq!(ok("${SET}"), "val");
        assert_eq!(ok("a${EMPTY}b"), "ab");
        assert_eq!(ok("a${UNSET}b$UNSET"), "ab");
        assert_eq!(ok("$"), "$");
        assert_eq!(ok("$.x"), "$.x");
        assert_eq!(ok("x$ y"), "x$ y");
    }

    #[test]
    fn default_with_colon() {
        assert_eq!(ok("${SET:-w}"), "val");
        assert_eq!(ok("${EMPTY:-w}"), "w");
        assert_eq!(ok("${UNSET:-w}"), "w");
        assert_eq!(ok("${UNSET:-$SET}"), "val");
    }

    #[test]
    fn default_without_colon() {
        assert_eq!(ok("${SET-w}"), "val");
        assert_eq!(ok("${EMPTY-w}"), "");
        assert_eq!(ok("${UNSET-w}"), "w");
    }

    #[test]
    fn alternative_with_colon() {
        assert_eq!(ok("${SET:+w}"), "w");
        assert_eq!(ok("${EMPTY:+w}"), "");
        assert_eq!(ok("${UNSET:+w}"), "");
        assert_eq!(ok("${SET:+${SET}!}"), "val!");
    }

    #[test]
    fn alternative_without_colon() {
        assert_eq!(ok("${SET+w}"), "w");
        assert_eq!(ok("${EMPTY+w}"), "w");
        assert_eq!(ok("${UNSET+w}"), "");
    }

    #[test]
    fn required_with_colon() {
        assert_eq!(ok("${SET:?m}"), "val");
        assert!(err("${EMPTY:?message here$ARG}").contains("EMPTY: message herex"));
        assert!(err("${UNSET:?message here$ARG}").contains("UNSET: message herex"));
        assert!(err("${EMPTY:?}").contains("EMPTY: is not allowed to be empty"));
        assert!(err("${UNSET:?}").contains("UNSET: is not allowed to be unset"));
    }

    #[test]
    fn required_without_colon() {
        assert_eq!(ok("${SET?m}"), "val");
        assert_eq!(ok("${EMPTY?m}"), "");
        assert!(err("${UNSET?message here$ARG}").contains("UNSET: message herex"));
        assert!(err("${UNSET?}").contains("is not allowed to be unset"));
    }

    #[test]
    fn remove_prefix() {
        let env = [("FOO", "xxyy"), ("BAR", "x"), ("NONE", "")];
        let t = |w: &str| with(w, &env).unwrap();
        assert_eq!(t("${FOO#x}"), "xyy");
        assert_eq!(t("${FOO#*x*y}"), "y");
        assert_eq!(t("${FOO#*}"), "xxyy");
        assert_eq!(t("${FOO#$BAR}"), "xyy");
        assert_eq!(t("${FOO#$NONE}"), "xxyy");
        assert_eq!(t("${FOO#}"), "xxyy");
        assert_eq!(t("${FOO#z}"), "xxyy");
        assert_eq!(t("${FOO##*x}"), "yy");
        assert_eq!(t("${FOO##}"), "xxyy");
        assert_eq!(t("${NONE#x}"), "");
        assert_eq!(t("${UNSET#x}"), "");
        assert_eq!(with("${FOO#?\\?}", &[("FOO", "???y")]).unwrap(), "?y");
        assert_eq!(
            with(
                "${FOO#()[]{\\}^$.\\*\\?|\\\\}",
                &[("FOO", "()[]{}^$.*?|\\x")]
            )
            .unwrap(),
            "x"
        );
    }

    #[test]
    fn remove_suffix() {
        let env = [("FOO", "xxyy"), ("NONE", "")];
        let t = |w: &str| with(w, &env).unwrap();
        assert_eq!(t("${FOO%y}"), "xxy");
        assert_eq!(t("${FOO%x}"), "xxyy");
        assert_eq!(t("${FOO%y*}"), "xxy");
        assert_eq!(t("${FOO%%y*}"), "xx");
        assert_eq!(t("${FOO%}"), "xxyy");
        assert_eq!(t("${FOO%%$NONE}"), "xxyy");
        assert_eq!(t("${NONE%y}"), "");
        assert_eq!(t("${UNSET%%y}"), "");
        assert_eq!(t("${ABC:-.}${FOO%x}${ABC:-.}"), ".xxyy.");
        assert_eq!(with("${FOO%%\\**}", &[("FOO", "xx**")]).unwrap(), "xx");
        assert_eq!(with("${FOO%%\\**\\*}", &[("FOO", "a***yy*")]).unwrap(), "a");
        assert_eq!(
            with("${F%.*}.${F##*.}", &[("F", "a.tar.gz")]).unwrap(),
            "a.tar.gz"
        );
        assert_eq!(with("${F%%.*}", &[("F", "a.tar.gz")]).unwrap(), "a");
    }

    #[test]
    fn replace_first_and_all() {
        let t = |w: &str, pairs: &[(&str, &str)]| with(w, pairs).unwrap();
        assert_eq!(
            t(
                "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
                &[("FOO", "/foo*/*/*.txt"), ("NEEDLE", "\\*/")]
            ),
            "/foo.*/*.txt - /foo..*.txt"
        );
        assert_eq!(
            t(
                "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
                &[("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")]
            ),
            "/tmp/bar.txt - /bar.txt"
        );
        assert_eq!(
            t(
                "${FOO/$N/$R} - ${FOO//$N/$R}",
                &[("FOO", "/a/foo/b/c.txt"), ("N", "/?/"), ("R", "/")]
            ),
            "/foo/b/c.txt - /foo/c.txt"
        );
        assert_eq!(
            t("${FOO//\\//\\/}", &[("FOO", "/tmp/foo.txt")]),
            "\\/tmp\\/foo.txt"
        );
        assert_eq!(
            t("${FOO/$BAR/ww}", &[("FOO", "xxyy"), ("BAR", "")]),
            "wwxxyy"
        );
        assert_eq!(t("${FOO///}", &[("FOO", "xxyy")]), "xxyy");
        assert_eq!(t("${FOO///}", &[]), "");
        assert_eq!(t("${FOO/x*/z}", &[("FOO", "axxb")]), "az");
        assert_eq!(t("${FOO/q/z}", &[("FOO", "axxb")]), "axxb");
        assert_eq!(t("${FOO/x/z}", &[("FOO", "")]), "");
        // Empty matches: Go inserts the replacement between every character.
        assert_eq!(t("${FOO//$E/-}", &[("FOO", "ab"), ("E", "")]), "-a-b-");
        // ReplaceAllString template: $0 is the match, $$ a dollar, other names nothing.
        // Only values can bring a `$` into the replacement; escapes stay in it (raw).
        assert_eq!(t("${FOO//b/<$R>}", &[("FOO", "abc"), ("R", "$0")]), "a<b>c");
        assert_eq!(
            t("${FOO//b/$R}", &[("FOO", "abc"), ("R", "$$$1x$")]),
            "a$$c"
        );
        assert_eq!(t("${FOO/b/$R}", &[("FOO", "abc"), ("R", "$0")]), "a$0c");
        assert_eq!(t("${FOO/b/\\$0}", &[("FOO", "abc")]), "a\\$0c");
        // Stars stop at newlines.
        assert_eq!(t("${FOO/a*/z}", &[("FOO", "ab\nab")]), "z\nab");
        assert!(with("${FOO//ww}", &[("FOO", "xxyy")]).is_err());
        assert!(with("${FOO//}", &[("FOO", "xxyy")]).is_err());
    }

    #[test]
    fn invalid_patterns_fail() {
        let env = [("FOO", "abc")];
        assert!(with("${FOO#\\x}", &env).is_err());
        assert!(with("${FOO#a\\}", &env).is_err());
        assert!(with("${FOO/\\x/y}", &env).is_err());
    }

    #[test]
    fn bad_substitutions_fail() {
        for word in [
            "${}",
            "${",
            "${:}",
            "${:-x}",
            "${{a}",
            "${SET",
            "${SET:-x",
            "${SET:=x}",
            "${SET=x}",
            "${SET:x}",
            "${SET.}",
            "${SET/x",
            "${#SET}",
        ] {
            err(word);
        }
    }

    #[test]
    fn special_and_positional_parameters_are_unset() {
        assert_eq!(ok("$1$@$*$#$?$-$$$!$0|${10}|${@:-d}"), "||d");
        assert_eq!(ok("$001a"), "a");
        assert_eq!(ok("$@@@"), "@@");
    }

    #[test]
    fn quotes_and_backslash_escape() {
        assert_eq!(ok(r#"'$SET'"$SET"\$SET"#), "$SETval$SET");
        assert_eq!(ok(r#""a\b\"\$\\""#), r#"a\b"$\"#);
        assert_eq!(ok(r"a\"), "a");
        err("'open");
        err("\"open");
    }

    #[test]
    fn backtick_escape() {
        let env = env_of(&[("SET", "val")]);
        let bt = |w: &str| expand_word(w, '`', &env);
        assert_eq!(bt("`$SET").unwrap(), "$SET");
        assert_eq!(bt("a``b").unwrap(), "a`b");
        assert_eq!(bt(r"C:\path\$SET").unwrap(), r"C:\path\val");
        assert_eq!(bt("\"`\"`$`x\"").unwrap(), "\"$`x");
        assert_eq!(bt("\"``\"").unwrap(), "`");
        assert_eq!(bt("a`").unwrap(), "a");
        assert_eq!(bt("${UNSET:-`}}").unwrap(), "}");
        assert_eq!(
            expand_words("a` b c", '`', &env).unwrap(),
            vec!["a b".to_string(), "c".to_string()]
        );
    }

    #[test]
    fn word_splitting() {
        let env = env_of(&[("SPACE", " a  b "), ("EMPTY", "")]);
        let w = |s: &str| expand_words(s, '\\', &env).unwrap();
        assert_eq!(w("x${SPACE}y"), ["x", "a", "b", "y"]);
        assert_eq!(w("x\"${SPACE}\"y"), ["x a  b y"]);
        assert_eq!(w("  a   b  "), ["a", "b"]);
        assert_eq!(w("a \"\" b"), ["a", "b"]);
        assert_eq!(w("$EMPTY"), Vec::<String>::new());
        assert_eq!(w("a\\ b"), ["a b"]);
    }

    #[test]
    fn multibyte_text() {
        let env = env_of(&[("K", "한국어"), ("E", "é😀é")]);
        let t = |w: &str| expand_word(w, '\\', &env).unwrap();
        assert_eq!(t("안녕$K"), "안녕한국어");
        assert_eq!(
            t("${E#é}|${E%é}|${E/😀/-}|${E#?}|${E%%?*}"),
            "😀é|é😀|é-é|😀é|"
        );
        assert_eq!(t("${K:-😀}${X:-😀}"), "한국어😀");
        assert_eq!(t("\u{FEFF}a"), "a");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let mut word = String::new();
        for _ in 0..10_000 {
            word.push_str("${X:-");
        }
        assert!(expand(&word).is_err());
        word.push_str(&"}".repeat(10_000));
        assert!(expand(&word).is_err());
        let ok_depth = format!("{}v{}", "${X:-".repeat(50), "}".repeat(50));
        assert_eq!(expand(&ok_depth).unwrap(), "v");
    }

    #[test]
    fn never_panics_on_arbitrary_input() {
        let alphabet: Vec<char> = "${}:-+?#%/*\\`'\" aé한😀\n0@SETEMPTY".chars().collect();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut word = String::new();
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = (seed >> 58) as usize;
            for _ in 0..len {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                word.push(alphabet[(seed >> 33) as usize % alphabet.len()]);
            }
            let _ = expand(&word);
            let env = env_of(&[("SET", "a*b?c/d}")]);
            let _ = expand_words(&word, '`', &env);
        }
    }

    #[test]
    fn exponential_substitutions_are_an_error_not_a_hang() {
        // Found by the `expand` fuzz target: an empty pattern matches between every character,
        // so each nesting level multiplies the length by the value's.
        let value = "x".repeat(1000);
        let env = env_of(&[("L", value.as_str())]);
        for word in [
            "${L///{ ${L///{ ${L///{ $L}}}",
            "${L//x/${L//x/${L//x/yy}}}",
        ] {
            let err = expand_word(word, '\\', &env).unwrap_err().to_string();
            assert!(err.contains("more than 4 MiB"), "{word}: {err}");
        }
        // Large but bounded results are still fine.
        let out = expand_word("${L//x/${L}}", '\\', &env).unwrap();
        assert_eq!(out.len(), 1_000_000);
    }

    #[test]
    fn long_inputs_are_fast() {
        let value = "a".repeat(20_000);
        let env = env_of(&[("V", value.as_str())]);
        let out = expand_word("${V//a*b/x}${V%%*b}${V#*a*a*a*b}", '\\', &env).unwrap();
        assert_eq!(out.len(), 60_000);
    }
}
