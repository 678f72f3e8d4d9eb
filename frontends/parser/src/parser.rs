//! Source text to parse tree: directives, comments, continuations, heredocs and BuildKit's per-instruction argument rules.

use crate::ast::{Directives, Heredoc, Node, ParseError, ParseResult, Warning};

/// Parses a Dockerfile the way BuildKit's parser does.
///
/// Unlike BuildKit's parser, an unknown instruction is an error here (BuildKit reports it one
/// stage later, with the same message).
pub fn parse(source: &str) -> Result<ParseResult, ParseError> {
    parse_with(source, &Options::default())
}

/// What a syntax built on the Dockerfile's accepts beyond it.
#[derive(Debug, Clone, Default)]
pub struct Options<'a> {
    /// Extra keywords (lower case) accepted as instructions, e.g. `["if", "else", "done"]`.
    /// Such a line becomes a [`Node`] whose `value` is the keyword and whose single argument is
    /// the rest of the line as written (no flags, no splitting; empty when there is none). An
    /// extension keyword is never accepted as an `ONBUILD` trigger.
    pub extensions: &'a [&'a str],
}

/// Parses like [`parse`], also accepting the keywords of `options.extensions`.
pub fn parse_with(source: &str, options: &Options) -> Result<ParseResult, ParseError> {
    let lines: Vec<&str> = source.split_inclusive('\n').collect();
    let mut state = DirectiveState::default();
    let mut children = Vec::new();
    let mut warnings = Vec::new();
    let mut idx = 0;

    while idx < lines.len() {
        let mut raw = lines[idx];
        if idx == 0 {
            raw = raw.strip_prefix('\u{feff}').unwrap_or(raw);
        }
        idx += 1;
        let start_line = idx;

        let no_newline = trim_newline(raw);
        let stripped = no_newline.trim_start();
        let column = no_newline[..no_newline.len() - stripped.len()]
            .chars()
            .count()
            + 1;
        state.possible_directive(stripped, start_line)?;
        let first = if stripped.starts_with('#') {
            ""
        } else {
            stripped
        };

        let escape = state.directives.escape;
        let (mut line, mut end_of_line) = trim_continuation(first, escape);
        if end_of_line && line.is_empty() {
            continue;
        }

        let mut empty_continuation = false;
        while !end_of_line && idx < lines.len() {
            let raw = lines[idx];
            idx += 1;
            if is_comment(raw) {
                continue;
            }
            let processed = trim_newline(raw);
            if processed.trim_start().is_empty() {
                empty_continuation = true;
                continue;
            }
            let (part, eol) = trim_continuation(processed, escape);
            line.push_str(&part);
            end_of_line = eol;
        }

        if line.trim().is_empty() {
            // Only escape characters: nothing to parse.
            continue;
        }
        if empty_continuation {
            warnings.push(Warning {
                line: idx,
                message: format!("Empty continuation line found in: {line}"),
            });
        }

        let located = |message: String, line_no: usize| ParseError {
            line: line_no,
            column,
            message,
            text: line.trim().to_string(),
        };

        let mut node = node_from_line(&line, escape, options.extensions)
            .map_err(|m| located(m, start_line))?;

        if node.can_contain_heredoc() && line.contains("<<") {
            for mut heredoc in heredocs_from_line(&line) {
                let mut terminated = false;
                while idx < lines.len() {
                    let body = lines[idx];
                    idx += 1;
                    let mut candidate = trim_newline(body);
                    if heredoc.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == heredoc.name {
                        terminated = true;
                        break;
                    }
                    heredoc.content.push_str(body);
                }
                if !terminated {
                    return Err(located(
                        format!("unterminated heredoc: no line `{}` ends it", heredoc.name),
                        start_line,
                    ));
                }
                if heredoc.chomp {
                    heredoc.content = heredoc
                        .content
                        .split_inclusive('\n')
                        .map(|l| l.trim_start_matches('\t'))
                        .collect();
                }
                node.heredocs.push(heredoc);
            }
        }

        node.start_line = start_line;
        node.end_line = idx;
        node.column = column;
        if let Some(child) = node.child.as_mut() {
            child.start_line = start_line;
            child.end_line = idx;
            child.column = column;
        }
        children.push(node);
    }

    if children.is_empty() {
        return Err(ParseError {
            line: lines.len().max(1),
            column: 1,
            message: "file with no instructions".to_string(),
            text: String::new(),
        });
    }

    Ok(ParseResult {
        directives: state.directives,
        children,
        warnings,
    })
}

// ---------------------------------------------------------------------------------------------
// Lines, comments, continuations

fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

fn is_comment(raw: &str) -> bool {
    trim_newline(raw).trim_start().starts_with('#')
}

/// Removes a trailing escape character (plus spaces/tabs after it) that continues the line.
/// An escape preceded by another escape is not a continuation (`foo\\`).
fn trim_continuation(line: &str, escape: char) -> (String, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    if let Some(before) = trimmed.strip_suffix(escape)
        && !before.ends_with(escape)
    {
        return (before.to_string(), false);
    }
    (line.to_string(), true)
}

// ---------------------------------------------------------------------------------------------
// Parser directives

#[derive(Default)]
struct DirectiveState {
    directives: Directives,
    done: bool,
    seen: Vec<String>,
}

impl DirectiveState {
    /// Looks at a (left-trimmed) line for `# name=value`; any other line ends the directives.
    fn possible_directive(&mut self, line: &str, line_no: usize) -> Result<(), ParseError> {
        if self.done {
            return Ok(());
        }
        let Some((name, value)) = match_directive(line) else {
            self.done = true;
            return Ok(());
        };
        let key = name.to_ascii_lowercase();
        if !matches!(key.as_str(), "syntax" | "escape" | "check") {
            self.done = true;
            return Ok(());
        }
        let err = |message: String| ParseError {
            line: line_no,
            column: 1,
            message,
            text: line.to_string(),
        };
        if self.seen.contains(&key) {
            return Err(err(format!("only one {key} parser directive can be used")));
        }
        self.seen.push(key.clone());
        match key.as_str() {
            "escape" => match value {
                "\\" => self.directives.escape = '\\',
                "`" => self.directives.escape = '`',
                _ => {
                    return Err(err(format!(
                        "invalid escape token '{value}' does not match ` or \\"
                    )));
                }
            },
            "syntax" => self.directives.syntax = Some((value.to_string(), line_no)),
            _ => self.directives.check = Some((value.to_string(), line_no)),
        }
        Ok(())
    }
}

/// RE2 `\s`: ASCII whitespace without `\v`.
fn is_re_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c')
}

/// Matches `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`.
fn match_directive(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('#')?.trim_start_matches(is_re_space);
    let name_len = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(rest.len(), |(i, _)| i);
    if name_len == 0 {
        return None;
    }
    let name = &rest[..name_len];
    let rest = rest[name_len..]
        .trim_start_matches(is_re_space)
        .strip_prefix('=')?;
    if rest.contains('\n') {
        return None;
    }
    let value = rest.trim_matches(is_re_space);
    if !value.is_empty() {
        return Some((name, value));
    }
    // Only whitespace after `=`: the lazy `.+?` still takes the last character.
    let last = rest.char_indices().last()?;
    Some((name, &rest[last.0..]))
}

// ---------------------------------------------------------------------------------------------
// Instructions

impl Node {
    fn can_contain_heredoc(&self) -> bool {
        let node = match (&self.value[..], &self.child) {
            ("onbuild", Some(child)) => child,
            _ => self,
        };
        matches!(node.value.as_str(), "run" | "copy" | "add") && !node.json
    }
}

const INSTRUCTIONS: &[&str] = &[
    "add",
    "arg",
    "cmd",
    "copy",
    "entrypoint",
    "env",
    "expose",
    "from",
    "healthcheck",
    "label",
    "maintainer",
    "onbuild",
    "run",
    "shell",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

/// BuildKit's `reWhitespace`: `[\t\v\f\r ]+`.
fn is_ws_delim(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

/// Splits on runs of `[\t\v\f\r ]`, like Go's `regexp.Split(s, -1)` (empty input gives `[""]`).
fn split_ws(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if is_ws_delim(c) {
            while chars.peek().is_some_and(|&c| is_ws_delim(c)) {
                chars.next();
            }
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

/// Splits at the first run of `[\t\v\f\r ]` (Go `regexp.Split(s, 2)`).
fn split_ws_2(s: &str) -> (&str, Option<&str>) {
    match s.find(is_ws_delim) {
        Some(i) => (&s[..i], Some(s[i..].trim_start_matches(is_ws_delim))),
        None => (s, None),
    }
}

fn node_from_line(line: &str, escape: char, extensions: &[&str]) -> Result<Node, String> {
    let (cmd, rest) = split_ws_2(line.trim());
    let lower = cmd.to_lowercase();
    if extensions.contains(&lower.as_str()) {
        return Ok(Node {
            value: lower,
            args: vec![rest.unwrap_or_default().to_string()],
            flags: Vec::new(),
            json: false,
            heredocs: Vec::new(),
            child: None,
            original: line.to_string(),
            start_line: 0,
            end_line: 0,
            column: 0,
        });
    }
    let (args_str, flags) = match rest {
        Some(rest) => extract_flags(rest),
        None => (String::new(), Vec::new()),
    };
    let rest = args_str.trim();
    let value = cmd.to_lowercase();
    if !INSTRUCTIONS.contains(&value.as_str()) {
        let mut message = format!("unknown instruction: {cmd}");
        if let Some(s) = suggest(&value) {
            message.push_str(&format!(" (did you mean {s}?)"));
        }
        return Err(message);
    }

    let mut node = Node {
        value,
        args: Vec::new(),
        flags,
        json: false,
        heredocs: Vec::new(),
        child: None,
        original: line.to_string(),
        start_line: 0,
        end_line: 0,
        column: 0,
    };
    let upper = node.value.to_uppercase();
    match node.value.as_str() {
        "add" | "copy" | "volume" => {
            (node.args, node.json) = parse_maybe_json_to_list(rest)?;
        }
        "cmd" | "entrypoint" | "run" | "shell" => {
            (node.args, node.json) = parse_maybe_json(rest)?;
        }
        "arg" => node.args = parse_words(rest, escape),
        "env" | "label" => node.args = parse_name_val(rest, &upper, escape)?,
        "expose" | "from" => {
            if !rest.is_empty() {
                node.args = split_ws(rest);
            }
        }
        "maintainer" | "stopsignal" | "user" | "workdir" => {
            if !rest.is_empty() {
                node.args = vec![rest.to_string()];
            }
        }
        "healthcheck" => (node.args, node.json) = parse_health_config(rest)?,
        "onbuild" => {
            if !rest.is_empty() {
                let child = node_from_line(rest, escape, extensions)?;
                match child.value.as_str() {
                    ext if extensions.contains(&ext) => {
                        return Err(format!(
                            "{} isn't allowed as an ONBUILD trigger",
                            ext.to_uppercase()
                        ));
                    }
                    "onbuild" => return Err("ONBUILD ONBUILD is not allowed".to_string()),
                    "from" | "maintainer" => {
                        return Err(format!(
                            "{} isn't allowed as an ONBUILD trigger",
                            child.value.to_uppercase()
                        ));
                    }
                    _ => {}
                }
                node.child = Some(Box::new(child));
            }
        }
        _ => unreachable!("instruction list and dispatch agree"),
    }
    Ok(node)
}

/// A near-miss instruction name, for the unknown-instruction message.
fn suggest(word: &str) -> Option<&'static str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                let cost = usize::from(ca != *cb);
                cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
            }
            prev = cur;
        }
        prev[b.len()]
    }
    if word.is_empty() || word.chars().count() > 20 {
        return None;
    }
    INSTRUCTIONS
        .iter()
        .map(|i| (distance(word, i), *i))
        .filter(|&(d, _)| d <= 2)
        .min()
        .map(|(_, i)| i)
}

/// Leading `--flag[=value]` words (BuildKit's extractBuilderFlags). Returns the rest of the line
/// and the flags; quotes in flags are removed and `\` escapes the next character.
fn extract_flags(line: &str) -> (String, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut blank_ok = false;
    let mut pos = 0;
    loop {
        let at_end = pos >= chars.len();
        let ch = if at_end { '\0' } else { chars[pos].1 };
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                pos += 1;
                continue;
            }
            if ch != '-' || chars.get(pos + 1).map(|c| c.1) != Some('-') {
                return (line[chars[pos].0..].to_string(), words);
            }
            phase = Phase::Word;
        }
        if at_end {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        }
        match phase {
            Phase::Word => {
                if ch.is_whitespace() {
                    phase = Phase::Spaces;
                    if word == "--" {
                        return (line[chars[pos].0..].to_string(), words);
                    }
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    word.clear();
                    blank_ok = false;
                } else if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                } else if ch == '\\' {
                    if pos + 1 < chars.len() {
                        pos += 1;
                        word.push(chars[pos].1);
                    }
                } else {
                    word.push(ch);
                }
            }
            Phase::Quote(q) => {
                if ch == q {
                    phase = Phase::Word;
                } else if ch == '\\' {
                    if pos + 1 < chars.len() {
                        pos += 1;
                        word.push(chars[pos].1);
                    } else {
                        phase = Phase::Word;
                    }
                } else {
                    word.push(ch);
                }
            }
            Phase::Spaces => unreachable!(),
        }
        pos += 1;
    }
    (String::new(), words)
}

/// Space-separated words, quotes and escapes kept as written (BuildKit's parseWords).
fn parse_words(rest: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut blank_ok = false;
    let mut pos = 0;
    loop {
        let at_end = pos >= chars.len();
        let mut ch = if at_end { '\0' } else { chars[pos] };
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                pos += 1;
                continue;
            }
            phase = Phase::Word;
        }
        if at_end {
            if blank_ok || !word.is_empty() {
                words.push(word);
            }
            break;
        }
        match phase {
            Phase::Word => {
                if ch.is_whitespace() {
                    phase = Phase::Spaces;
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    word.clear();
                    blank_ok = false;
                    pos += 1;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                }
                if ch == escape {
                    if pos + 1 == chars.len() {
                        pos += 1;
                        continue;
                    }
                    word.push(ch);
                    pos += 1;
                    ch = chars[pos];
                }
                word.push(ch);
            }
            Phase::Quote(q) => {
                if ch == q {
                    phase = Phase::Word;
                }
                if ch == escape && q != '\'' {
                    if pos + 1 == chars.len() {
                        phase = Phase::Word;
                        pos += 1;
                        continue;
                    }
                    pos += 1;
                    word.push(ch);
                    ch = chars[pos];
                }
                word.push(ch);
            }
            Phase::Spaces => unreachable!(),
        }
        pos += 1;
    }
    words
}

/// `ENV`/`LABEL`: legacy `name value` gives `[name, value, ""]`, `a=b c=d` gives
/// `[a, b, "=", c, d, "="]`.
fn parse_name_val(rest: &str, key: &str, escape: char) -> Result<Vec<String>, String> {
    let words = parse_words(rest, escape);
    if words.is_empty() {
        return Ok(Vec::new());
    }
    if !words[0].contains('=') {
        let (name, value) = split_ws_2(rest);
        let Some(value) = value else {
            return Err(format!(
                "{key} must have two arguments (`{key} name value` or `{key} name=value`)"
            ));
        };
        return Ok(vec![name.to_string(), value.to_string(), String::new()]);
    }
    let mut args = Vec::new();
    for word in words {
        let Some((name, value)) = word.split_once('=') else {
            return Err(format!(
                "Syntax error - can't find = in {}. Must be of the form: name=value",
                go_quote(&word)
            ));
        };
        if name.is_empty() {
            return Err(format!("{key} names can not be blank"));
        }
        args.extend([name.to_string(), value.to_string(), "=".to_string()]);
    }
    Ok(args)
}

const NOT_STRING_ARRAY: &str =
    "when using JSON array syntax, arrays must be comprised of strings only";

fn parse_maybe_json(rest: &str) -> Result<(Vec<String>, bool), String> {
    if rest.is_empty() {
        return Ok((Vec::new(), false));
    }
    match parse_json_array(rest) {
        Json::Strings(v) => Ok((v, true)),
        Json::NotStrings => Err(NOT_STRING_ARRAY.to_string()),
        Json::Invalid => Ok((vec![rest.to_string()], false)),
    }
}

fn parse_maybe_json_to_list(rest: &str) -> Result<(Vec<String>, bool), String> {
    match parse_json_array(rest) {
        Json::Strings(v) => Ok((v, true)),
        Json::NotStrings => Err(NOT_STRING_ARRAY.to_string()),
        Json::Invalid if rest.is_empty() => Ok((Vec::new(), false)),
        Json::Invalid => Ok((split_ws(rest), false)),
    }
}

/// `HEALTHCHECK NONE` / `HEALTHCHECK [--flags] CMD ...`: the type word, then maybe-JSON.
fn parse_health_config(rest: &str) -> Result<(Vec<String>, bool), String> {
    let sep = rest.find(char::is_whitespace).unwrap_or(rest.len());
    if sep == 0 {
        return Ok((Vec::new(), false));
    }
    let typ = &rest[..sep];
    let (cmd, json) = parse_maybe_json(rest[sep..].trim_start())?;
    let mut args = vec![typ.to_string()];
    args.extend(cmd);
    Ok((args, json))
}

// ---------------------------------------------------------------------------------------------
// JSON arrays (Go encoding/json semantics: strict, one value, max nesting 10000)

enum Json {
    Strings(Vec<String>),
    NotStrings,
    Invalid,
}

fn parse_json_array(rest: &str) -> Json {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Json::Invalid;
    }
    let mut p = JsonParser {
        s: rest.as_bytes(),
        src: rest,
        pos: 1,
    };
    let mut out = Vec::new();
    let mut all_strings = true;
    p.ws();
    if p.peek() == Some(b']') {
        p.pos += 1;
    } else {
        loop {
            p.ws();
            if p.peek() == Some(b'"') {
                match p.string() {
                    Some(s) => out.push(s),
                    None => return Json::Invalid,
                }
            } else {
                all_strings = false;
                if !p.skip_value() {
                    return Json::Invalid;
                }
            }
            p.ws();
            match p.peek() {
                Some(b',') => p.pos += 1,
                Some(b']') => {
                    p.pos += 1;
                    break;
                }
                _ => return Json::Invalid,
            }
        }
    }
    p.ws();
    if p.pos != p.s.len() {
        return Json::Invalid;
    }
    if all_strings {
        Json::Strings(out)
    } else {
        Json::NotStrings
    }
}

struct JsonParser<'a> {
    s: &'a [u8],
    src: &'a str,
    pos: usize,
}

impl JsonParser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let h = self.src.get(self.pos..self.pos + 4)?;
        if !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        self.pos += 4;
        u32::from_str_radix(h, 16).ok()
    }

    /// A string starting at `"`; `None` when malformed.
    fn string(&mut self) -> Option<String> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let start = self.pos;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            out.push_str(self.src.get(start..self.pos)?);
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    return Some(out);
                }
                b'\\' => {
                    self.pos += 1;
                    let e = self.peek()?;
                    self.pos += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\x08'),
                        b'f' => out.push('\x0c'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let c = if (0xD800..0xDC00).contains(&hi) {
                                // Try a low surrogate; Go replaces a lone half with U+FFFD.
                                let save = self.pos;
                                let lo = if self.src.get(self.pos..self.pos + 2) == Some("\\u") {
                                    self.pos += 2;
                                    self.hex4()
                                } else {
                                    None
                                };
                                match lo {
                                    Some(lo) if (0xDC00..0xE000).contains(&lo) => char::from_u32(
                                        0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00),
                                    ),
                                    _ => {
                                        self.pos = save;
                                        None
                                    }
                                }
                            } else {
                                char::from_u32(hi)
                            };
                            out.push(c.unwrap_or('\u{fffd}'));
                        }
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
    }

    fn literal(&mut self, word: &str) -> bool {
        if self.src.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    fn number(&mut self) -> bool {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                while matches!(self.peek(), Some(b'0'..=b'9')) {
                    self.pos += 1;
                }
            }
            _ => return false,
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return false;
            }
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.pos += 1;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return false;
            }
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.pos += 1;
            }
        }
        true
    }

    /// Validates one value (iteratively, nesting limited like Go's decoder).
    fn skip_value(&mut self) -> bool {
        // Stack of open containers: b'[' or b'{'. Depth starts at 1 (the outer array).
        let mut stack: Vec<u8> = Vec::new();
        loop {
            self.ws();
            // A value.
            match self.peek() {
                Some(b'"') => {
                    if self.string().is_none() {
                        return false;
                    }
                }
                Some(b't') => {
                    if !self.literal("true") {
                        return false;
                    }
                }
                Some(b'f') => {
                    if !self.literal("false") {
                        return false;
                    }
                }
                Some(b'n') => {
                    if !self.literal("null") {
                        return false;
                    }
                }
                Some(b'-' | b'0'..=b'9') => {
                    if !self.number() {
                        return false;
                    }
                }
                Some(open @ (b'[' | b'{')) => {
                    self.pos += 1;
                    if stack.len() + 2 > 10000 {
                        return false;
                    }
                    stack.push(open);
                    self.ws();
                    let close = if open == b'[' { b']' } else { b'}' };
                    if self.peek() == Some(close) {
                        self.pos += 1;
                        stack.pop();
                    } else {
                        if open == b'{' && !self.object_key() {
                            return false;
                        }
                        continue;
                    }
                }
                _ => return false,
            }
            // After a value: close containers or move to the next element.
            loop {
                let Some(&top) = stack.last() else {
                    return true;
                };
                self.ws();
                let close = if top == b'[' { b']' } else { b'}' };
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        if top == b'{' && !self.object_key() {
                            return false;
                        }
                        break;
                    }
                    Some(c) if c == close => {
                        self.pos += 1;
                        stack.pop();
                    }
                    _ => return false,
                }
            }
        }
    }

    fn object_key(&mut self) -> bool {
        self.ws();
        if self.peek() != Some(b'"') || self.string().is_none() {
            return false;
        }
        self.ws();
        if self.peek() != Some(b':') {
            return false;
        }
        self.pos += 1;
        true
    }
}

// ---------------------------------------------------------------------------------------------
// Heredocs

/// The heredocs named on an instruction line (`<<EOF`, `<<-EOF`, `<<"EOF"`, `2<<EOF`).
fn heredocs_from_line(line: &str) -> Vec<Heredoc> {
    raw_words(line)
        .iter()
        .filter_map(|w| heredoc_from_word(w))
        .collect()
}

/// Shell-style word split keeping quotes and escapes as written.
fn raw_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                word.push(c);
                for c in chars.by_ref() {
                    word.push(c);
                    if c == '\'' {
                        break;
                    }
                }
            }
            '"' => {
                in_word = true;
                word.push(c);
                while let Some(c) = chars.next() {
                    word.push(c);
                    if c == '\\' {
                        if let Some(n) = chars.next() {
                            word.push(n);
                        }
                    } else if c == '"' {
                        break;
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.push(c);
                if let Some(n) = chars.next() {
                    word.push(n);
                }
            }
            _ => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// Removes quotes and escapes from a word, as the shell would.
fn unquote_word(word: &str) -> String {
    let mut out = String::new();
    let mut chars = word.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    out.push(c);
                }
            }
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' if matches!(chars.peek(), Some('"' | '\\' | '$' | '`')) => {
                            out.push(chars.next().unwrap_or('\\'));
                        }
                        _ => out.push(c),
                    }
                }
            }
            '\\' => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            _ => out.push(c),
        }
    }
    out
}

fn heredoc_from_word(word: &str) -> Option<Heredoc> {
    let rest = word.trim_start_matches(|c: char| c.is_ascii_digit());
    let rest = rest.strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let name = unquote_word(rest);
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    let expand = quotes(&name) == quotes(rest);
    Some(Heredoc {
        name,
        content: String::new(),
        expand,
        chomp,
    })
}

// ---------------------------------------------------------------------------------------------
// Dump

/// Go's `strconv.Quote`.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if go_is_print(c) => out.push(c),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// Go's `strconv.IsPrint`, approximated without Unicode tables: controls, spaces other than
/// U+0020, line/paragraph separators, format characters, private use, noncharacters and the
/// wholly unassigned planes are not printable.
fn go_is_print(c: char) -> bool {
    let u = c as u32;
    if u < 0x20 || (0x7f..=0x9f).contains(&u) {
        return false;
    }
    if u < 0x7f {
        return true;
    }
    const NOT_PRINT: &[(u32, u32)] = &[
        (0x00a0, 0x00a0),
        (0x00ad, 0x00ad),
        (0x0600, 0x0605),
        (0x061c, 0x061c),
        (0x06dd, 0x06dd),
        (0x070f, 0x070f),
        (0x0890, 0x0891),
        (0x08e2, 0x08e2),
        (0x1680, 0x1680),
        (0x180e, 0x180e),
        (0x2000, 0x200f),
        (0x2028, 0x202f),
        (0x205f, 0x2064),
        (0x2066, 0x206f),
        (0x3000, 0x3000),
        (0xd800, 0xf8ff),
        (0xfdd0, 0xfdef),
        (0xfeff, 0xfeff),
        (0xfff9, 0xfffb),
        (0x110bd, 0x110bd),
        (0x110cd, 0x110cd),
        (0x13430, 0x1343f),
        (0x1bca0, 0x1bca3),
        (0x1d173, 0x1d17a),
        (0x40000, 0xdffff),
        (0xe0000, 0xe00ff),
        (0xe01f0, 0x10ffff),
    ];
    if u & 0xfffe == 0xfffe {
        return false;
    }
    !NOT_PRINT.iter().any(|&(lo, hi)| (lo..=hi).contains(&u))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump(src: &str) -> String {
        parse(src)
            .unwrap()
            .children
            .iter()
            .map(Node::dump)
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn heredoc_basic() {
        let r = parse("FROM a\nRUN <<EOF\necho hi\n  echo there\nEOF\nRUN true\n").unwrap();
        let n = &r.children[1];
        assert_eq!(n.dump(), r#"(run "<<EOF")"#);
        assert_eq!(n.heredocs.len(), 1);
        let h = &n.heredocs[0];
        assert_eq!(h.name, "EOF");
        assert_eq!(h.content, "echo hi\n  echo there\n");
        assert!(h.expand);
        assert!(!h.chomp);
        assert_eq!((n.start_line, n.end_line), (2, 5));
        assert_eq!(r.children[2].start_line, 6);
        assert_eq!(n.original, "RUN <<EOF");
    }

    #[test]
    fn heredoc_several_per_line() {
        let r = parse("COPY <<A <<\"B\" /dst/\na1\nA\nb1\nb2\nB\n").unwrap();
        let n = &r.children[0];
        assert_eq!(n.args, ["<<A", "<<\"B\"", "/dst/"]);
        assert_eq!(n.heredocs.len(), 2);
        assert_eq!(n.heredocs[0].name, "A");
        assert_eq!(n.heredocs[0].content, "a1\n");
        assert!(n.heredocs[0].expand);
        assert_eq!(n.heredocs[1].name, "B");
        assert_eq!(n.heredocs[1].content, "b1\nb2\n");
        assert!(!n.heredocs[1].expand);
        assert_eq!(n.end_line, 6);
    }

    #[test]
    fn heredoc_chomp_and_quotes() {
        let r = parse("RUN cat <<-'X' > /f\n\t\tone\n\ttwo\n\tX\n").unwrap();
        let h = &r.children[0].heredocs[0];
        assert_eq!(h.name, "X");
        assert!(h.chomp);
        assert!(!h.expand);
        assert_eq!(h.content, "one\ntwo\n");
        assert_eq!(r.children[0].args, ["cat <<-'X' > /f"]);
    }

    #[test]
    fn heredoc_not_in_json_or_other_instructions() {
        let r = parse("RUN [\"<<EOF\"]\nENV a=<<EOF\nCMD <<EOF\n").unwrap();
        assert_eq!(r.children.len(), 3);
        assert!(r.children.iter().all(|n| n.heredocs.is_empty()));
    }

    #[test]
    fn heredoc_onbuild() {
        let r = parse("ONBUILD RUN <<EOF\nx\nEOF\n").unwrap();
        assert_eq!(r.children[0].heredocs[0].content, "x\n");
        assert_eq!(r.children[0].dump(), r#"(onbuild (run "<<EOF"))"#);
    }

    #[test]
    fn heredoc_unterminated() {
        let e = parse("FROM a\nRUN <<EOF\necho\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("unterminated heredoc"), "{e}");
    }

    #[test]
    fn directives() {
        let r = parse("# Syntax = docker/dockerfile:1  \n#check=skip=all\n#escape=`\nFROM a\n")
            .unwrap();
        assert_eq!(
            r.directives.syntax,
            Some(("docker/dockerfile:1".to_string(), 1))
        );
        assert_eq!(r.directives.check, Some(("skip=all".to_string(), 2)));
        assert_eq!(r.directives.escape, '`');

        // After a non-directive line, directives are plain comments.
        let r = parse("FROM a\n# escape=`\nRUN a \\\n b\n").unwrap();
        assert_eq!(r.directives.escape, '\\');
        assert_eq!(r.children[1].args, ["a  b"]);

        let e = parse("# escape=`\n# escape=\\\nFROM a\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("only one escape"), "{e}");
        let e = parse("# syntax=a\n# SYNTAX=b\nFROM a\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = parse("# escape=x\nFROM a\n").unwrap_err();
        assert_eq!((e.line, e.column), (1, 1));
        assert!(e.message.contains("invalid escape"), "{e}");
        // An unknown directive ends directives.
        let r = parse("# foo=bar\n# escape=`\nFROM a\n").unwrap();
        assert_eq!(r.directives.escape, '\\');
    }

    #[test]
    fn escape_backtick() {
        let src = "# escape=`\nFROM a\nRUN dir c:\\ `\n  && echo `\n# comment\n  done\n";
        assert_eq!(
            dump(src),
            "(from \"a\")\n(run \"dir c:\\\\   && echo   done\")"
        );
    }

    #[test]
    fn empty_continuation_warns() {
        let r = parse("FROM a\nRUN a \\\n\n b\n").unwrap();
        assert_eq!(r.children[1].args, ["a  b"]);
        assert_eq!(r.warnings.len(), 1);
        assert_eq!(r.children[1].end_line, 4);
    }

    #[test]
    fn error_locations() {
        let e = parse("FROM a\n  FORM b\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 3));
        assert!(e.message.starts_with("unknown instruction: FORM"), "{e}");
        assert_eq!(e.text, "FORM b");
        let e = parse("FROM a\n\u{e9}\u{e9} ÉCHO b\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = parse("FROM a\n\u{3000}\u{3000}BAD x\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 3));
        let e = parse("FROM a\nENV x\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 1));
        let e = parse("ONBUILD ONBUILD RUN x\n").unwrap_err();
        assert!(e.message.contains("ONBUILD ONBUILD"));
        assert!(parse("ONBUILD FROM x\n").is_err());
        assert!(parse("ONBUILD maintainer x\n").is_err());
        assert!(parse("CMD [1]\n").is_err());
    }

    #[test]
    fn columns_and_lines() {
        let r = parse("\u{feff}FROM a\n\n   RUN x \\\n  y\n").unwrap();
        assert_eq!(r.children[0].column, 1);
        let n = &r.children[1];
        assert_eq!((n.start_line, n.end_line, n.column), (3, 4, 4));
        assert_eq!(n.original, "RUN x   y");
    }

    #[test]
    fn flags_and_json() {
        assert_eq!(
            dump(
                "COPY --from=\"a b\" --chmod=755 x y\nRUN [\"a\"] b\nHEALTHCHECK --interval=5s CMD [\"x\"]\nHEALTHCHECK NONE\n"
            ),
            "(copy [\"--from=a b\" \"--chmod=755\"] \"x\" \"y\")\n(run \"[\\\"a\\\"] b\")\n(healthcheck [\"--interval=5s\"] \"CMD\" \"x\")\n(healthcheck \"NONE\")"
        );
        assert!(parse("FROM a\nRUN [\"a\"]").unwrap().children[1].json);
    }

    #[test]
    fn extension_keywords_only_when_asked() {
        let src = "FROM a\nIF $X == \\\n  1\nrun y\nElse\nDONE\n";
        let e = parse(src).unwrap_err();
        assert!(e.message.starts_with("unknown instruction: IF"), "{e}");
        let options = Options {
            extensions: &["if", "else", "done"],
        };
        let r = parse_with(src, &options).unwrap();
        let n = &r.children[1];
        assert_eq!(n.value, "if");
        assert_eq!(n.args, ["$X ==   1"]);
        assert!(n.flags.is_empty());
        assert_eq!((n.start_line, n.end_line, n.column), (2, 3, 1));
        assert_eq!(r.children[3].value, "else");
        assert_eq!(r.children[3].args, [""]);
        assert_eq!(r.children[4].value, "done");
        // Flags are not taken out of an extension line.
        let r = parse_with("IF --x == y\n", &options).unwrap();
        assert_eq!(r.children[0].args, ["--x == y"]);
        let e = parse_with("ONBUILD IF a == b\n", &options).unwrap_err();
        assert!(
            e.message.contains("IF isn't allowed as an ONBUILD trigger"),
            "{e}"
        );
    }

    #[test]
    fn go_quoting() {
        assert_eq!(
            go_quote("a\"\\\u{7}\u{0}\u{7f}\u{85}é♥\u{a0}\u{1F600}"),
            "\"a\\\"\\\\\\a\\x00\\x7f\\u0085é♥\\u00a0😀\""
        );
    }

    #[test]
    fn never_panics_on_odd_input() {
        for src in [
            "\\",
            "`",
            "RUN \\",
            "#",
            "# escape=",
            "# escape= ",
            "RUN [",
            "RUN [\"\\ud800\"]",
            "RUN <<",
            "RUN <<-",
            "COPY 2<<E\nE",
            "É\\\nx",
            "ONBUILD",
            "ONBUILD \\\n",
            "FROM\u{85}x",
            "HEALTHCHECK \u{a0}CMD x",
            "ENV =x",
            "LABEL \"a\"",
            "ENV a=\"b",
            "RUN \"\\",
        ] {
            let _ = parse(src);
        }
        assert_eq!(
            dump("RUN [\"\\ud800\", \"\\ud83d\\ude00\"]"),
            "(run \"\u{fffd}\" \"😀\")"
        );
        let deep = format!("CMD [{}{}]", "[".repeat(20000), "]".repeat(20000));
        assert!(!parse(&deep).unwrap().children[0].json);
    }

    #[test]
    fn never_panics_on_generated_input() {
        const PIECES: &[&str] = &[
            "RUN ",
            "run",
            "COPY ",
            "ONBUILD ",
            "ENV ",
            "LABEL ",
            "HEALTHCHECK ",
            "FROM ",
            "ARG ",
            "CMD ",
            "# escape=`",
            "# syntax=x",
            "#",
            "\\",
            "`",
            "\n",
            "\r\n",
            " ",
            "\t",
            "\"",
            "'",
            "[",
            "]",
            ",",
            "=",
            "--",
            "-",
            "<<",
            "<<-",
            "EOF",
            "\u{e9}",
            "\u{3000}",
            "\u{a0}",
            "\u{1F600}",
            "\u{feff}",
            "\\u12",
            "{",
            "}",
            ":",
            "1",
            "a",
            "\u{85}",
        ];
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let len = (next() % 24) as usize;
            let src: String = (0..len)
                .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
                .collect();
            if let Ok(r) = parse(&src) {
                for n in &r.children {
                    let _ = n.dump();
                    assert!(n.start_line >= 1 && n.end_line >= n.start_line, "{src:?}");
                }
            }
        }
    }
}
