//! Path patterns: Docker's `.dockerignore` / `COPY --exclude` patterns (whole-path matching with
//! `**`) and the per-component globs of COPY sources (Go's `filepath.Match`), plus the lexical
//! path cleaning (Go's `filepath.Clean`) both rely on.
//!
//! Semantics follow moby/patternmatcher: `*` and `?` never match `/`; `**` matches any number of
//! path components (`**/` may match nothing, a trailing `**` matches everything below);
//! `[...]` classes with ranges and `^` negation (never matching `/`); `\` escapes the next char.

use anyhow::{Result, bail};

#[derive(Debug, Clone)]
enum Tok {
    Lit(char),
    /// `*`: any run of non-`/` characters.
    Star,
    /// `?`: one non-`/` character.
    Quest,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    /// `**/` or `**` followed by more pattern: `(.*/)?`.
    AnyDirs,
    /// trailing `**`: `.*`.
    Any,
}

/// A compiled Docker path pattern, matched against a cleaned, `/`-separated relative path.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// The pattern as written, for `.dockerignore` listings in the tests.
    #[cfg_attr(not(test), allow(dead_code))]
    text: String,
    toks: Vec<Tok>,
}

impl Pattern {
    /// Compiles a whole-path pattern (with `**` support). The text should already be cleaned.
    pub fn new(text: &str) -> Result<Pattern> {
        Ok(Pattern {
            text: text.to_string(),
            toks: compile(text, true)?,
        })
    }

    /// Compiles a single-component glob as Go's `filepath.Match` does (`**` is just two `*`).
    pub fn component(text: &str) -> Result<Pattern> {
        Ok(Pattern {
            text: text.to_string(),
            toks: compile(text, false)?,
        })
    }

    /// The pattern as written (after cleaning).
    #[cfg(test)]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the whole of `path` matches.
    pub fn matches(&self, path: &str) -> bool {
        let s: Vec<char> = path.chars().collect();
        let mut cur = vec![false; s.len() + 1];
        cur[0] = true;
        for tok in &self.toks {
            cur = step(tok, &s, &cur);
            if !cur.iter().any(|&b| b) {
                return false;
            }
        }
        cur[s.len()]
    }

    /// Conservatively, whether some path strictly below directory `dir` could match
    /// (false only when no such path can).
    pub fn could_match_below(&self, dir: &str) -> bool {
        let input = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let s: Vec<char> = input.chars().collect();
        let n = s.len();
        let mut cur = vec![false; n + 1];
        cur[0] = true;
        for tok in &self.toks {
            if cur[n] {
                // The whole directory prefix is consumed and pattern remains: a longer path
                // may match the rest.
                return true;
            }
            cur = step(tok, &s, &cur);
        }
        // All tokens consumed exactly at the end of "dir/": the pattern ends in `/` or `**`
        // style, matching at least the directory's descendants' parent; treat as possible.
        cur[n]
    }
}

fn step(tok: &Tok, s: &[char], cur: &[bool]) -> Vec<bool> {
    let n = s.len();
    let mut next = vec![false; n + 1];
    match tok {
        Tok::Lit(c) => {
            for i in 0..n {
                next[i + 1] = cur[i] && s[i] == *c;
            }
        }
        Tok::Quest => {
            for i in 0..n {
                next[i + 1] = cur[i] && s[i] != '/';
            }
        }
        Tok::Class { negated, ranges } => {
            for i in 0..n {
                if cur[i] && s[i] != '/' {
                    let hit = ranges.iter().any(|&(lo, hi)| lo <= s[i] && s[i] <= hi);
                    next[i + 1] = hit != *negated;
                }
            }
        }
        Tok::Star => {
            next[0] = cur[0];
            for i in 1..=n {
                next[i] = cur[i] || (next[i - 1] && s[i - 1] != '/');
            }
        }
        Tok::Any => {
            let mut seen = false;
            for i in 0..=n {
                seen |= cur[i];
                next[i] = seen;
            }
        }
        Tok::AnyDirs => {
            // (.*/)? : stay, or consume anything that ends with '/'.
            let mut seen = false;
            for i in 0..=n {
                next[i] = cur[i] || (i > 0 && s[i - 1] == '/' && seen);
                seen |= cur[i];
            }
        }
    }
    next
}

fn compile(text: &str, globstar: bool) -> Result<Vec<Tok>> {
    let chars: Vec<char> = text.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' if globstar && chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i == chars.len() {
                    toks.push(Tok::Any);
                } else {
                    toks.push(Tok::AnyDirs);
                }
            }
            '*' => toks.push(Tok::Star),
            '?' => toks.push(Tok::Quest),
            '\\' => match chars.get(i) {
                Some(&e) => {
                    toks.push(Tok::Lit(e));
                    i += 1;
                }
                None => bail!("syntax error in pattern {text:?}: trailing backslash"),
            },
            '[' => {
                let mut negated = false;
                if chars.get(i) == Some(&'^') {
                    negated = true;
                    i += 1;
                }
                let mut ranges = Vec::new();
                let mut first = true;
                loop {
                    let Some(&c) = chars.get(i) else {
                        bail!("syntax error in pattern {text:?}: unterminated character class");
                    };
                    if c == ']' && !first {
                        i += 1;
                        break;
                    }
                    first = false;
                    let lo = class_char(&chars, &mut i, text)?;
                    let hi = if chars.get(i) == Some(&'-') && chars.get(i + 1) != Some(&']') {
                        i += 1;
                        class_char(&chars, &mut i, text)?
                    } else {
                        lo
                    };
                    if lo > hi {
                        bail!("syntax error in pattern {text:?}: bad range {lo}-{hi}");
                    }
                    ranges.push((lo, hi));
                }
                toks.push(Tok::Class { negated, ranges });
            }
            c => toks.push(Tok::Lit(c)),
        }
    }
    Ok(toks)
}

fn class_char(chars: &[char], i: &mut usize, text: &str) -> Result<char> {
    let Some(&c) = chars.get(*i) else {
        bail!("syntax error in pattern {text:?}: unterminated character class");
    };
    *i += 1;
    if c == '\\' {
        let Some(&e) = chars.get(*i) else {
            bail!("syntax error in pattern {text:?}: trailing backslash");
        };
        *i += 1;
        return Ok(e);
    }
    Ok(c)
}

/// Whether a path component contains glob metacharacters (`*`, `?`, `[`).
pub fn has_meta(component: &str) -> bool {
    component.contains(['*', '?', '['])
}

/// Lexically cleans a path like Go's `filepath.Clean`: collapses `//`, drops `.`, resolves
/// `..` against earlier components. A leading `/` is kept (as `/`), an empty result is `.`.
pub use wbuild_parser::paths::clean_path as clean;

/// Cleans `path` as if rooted at the context root (Docker's `filepath.Join("/", p)`): `..` can
/// never climb above the root. Returns the relative form, `""` for the root itself.
pub fn clamp_to_root(path: &str) -> String {
    clean(&format!("/{path}"))
        .trim_start_matches('/')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, path: &str) -> bool {
        Pattern::new(p).unwrap().matches(path)
    }

    #[test]
    fn star_and_question_stay_in_component() {
        assert!(m("*.md", "README.md"));
        assert!(!m("*.md", "docs/README.md"));
        assert!(m("docs/*.md", "docs/a.md"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "a/c"));
        assert!(!m("a?c", "ac"));
        assert!(m("*", "anything"));
        assert!(!m("*", "a/b"));
    }

    #[test]
    fn globstar_start_middle_end() {
        // start
        assert!(m("**/*.go", "main.go"));
        assert!(m("**/*.go", "a/b/c/main.go"));
        assert!(!m("**/*.go", "main.rs"));
        // middle
        assert!(m("a/**/b", "a/b"));
        assert!(m("a/**/b", "a/x/b"));
        assert!(m("a/**/b", "a/x/y/b"));
        assert!(!m("a/**/b", "a/x/yb"));
        assert!(!m("a/**/b", "ab"));
        // end
        assert!(m("a/**", "a/x"));
        assert!(m("a/**", "a/x/y"));
        assert!(!m("a/**", "b/x"));
        assert!(m("**", "x/y/z"));
    }

    #[test]
    fn classes_and_escapes() {
        assert!(m("file[0-9].txt", "file7.txt"));
        assert!(!m("file[0-9].txt", "filex.txt"));
        assert!(m("file[^0-9].txt", "filex.txt"));
        assert!(!m("file[^0-9].txt", "file1.txt"));
        assert!(m("[ab]", "b"));
        assert!(!m("a[/]b", "a/b"));
        assert!(m("\\*", "*"));
        assert!(!m("\\*", "x"));
        assert!(m("[]a]", "]"));
        assert!(Pattern::new("[abc").is_err());
        assert!(Pattern::new("abc\\").is_err());
    }

    #[test]
    fn component_glob_has_no_globstar() {
        let p = Pattern::component("**.txt").unwrap();
        assert!(p.matches("a.txt"));
        assert!(!p.matches("a/b.txt"));
    }

    #[test]
    fn below() {
        let p = Pattern::new("dir/keep").unwrap();
        assert!(p.could_match_below("dir"));
        assert!(!p.could_match_below("other"));
        assert!(!p.could_match_below("dir/keep"));
        assert!(Pattern::new("**/keep").unwrap().could_match_below("x/y"));
        assert!(Pattern::new("d*/x").unwrap().could_match_below("dd"));
        assert!(!Pattern::new("d*").unwrap().could_match_below("dd"));
    }

    #[test]
    fn cleaning() {
        assert_eq!(clean("a//b/./c/"), "a/b/c");
        assert_eq!(clean("a/../../b"), "../b");
        assert_eq!(clean("/../x"), "/x");
        assert_eq!(clean(""), ".");
        assert_eq!(clamp_to_root("../../etc/passwd"), "etc/passwd");
        assert_eq!(clamp_to_root("/a/../.."), "");
        assert_eq!(clamp_to_root("."), "");
    }
}
