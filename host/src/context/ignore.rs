//! `.dockerignore` rules (and `COPY --exclude` lists, which use the same matcher): parsing as
//! Docker does, the last-matching-rule-wins decision with parent-directory matching, and the
//! question a walker asks: may this excluded directory be skipped without descending?

use std::path::Path;

use anyhow::{Context as _, Result, bail};

use super::pattern::{Pattern, clean};
use super::resolve;

/// One rule: a pattern that excludes, or (written with a leading `!`) re-includes.
#[derive(Debug, Clone)]
struct Rule {
    pattern: Pattern,
    exclude: bool,
}

/// An ordered list of Docker ignore rules. Empty rules exclude nothing.
#[derive(Debug, Clone, Default)]
pub struct IgnoreRules {
    rules: Vec<Rule>,
}

impl IgnoreRules {
    /// Parses `.dockerignore` text: one pattern per line, lines starting with `#` are comments,
    /// surrounding whitespace is trimmed, blank lines are skipped, a leading `!` re-includes,
    /// patterns are cleaned and a leading `/` is ignored (paths are relative to the root).
    pub fn parse(text: &str) -> Result<IgnoreRules> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut lines = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.starts_with('#') {
                continue;
            }
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            lines.push((n + 1, line));
        }
        let mut rules = Vec::with_capacity(lines.len());
        for (n, line) in lines {
            rules.push(parse_rule(line).with_context(|| format!(".dockerignore line {n}"))?);
        }
        Ok(IgnoreRules { rules })
    }

    /// Builds rules from a list of patterns (e.g. `COPY --exclude=` values), same syntax as
    /// `.dockerignore` lines but without comments.
    pub fn from_patterns<S: AsRef<str>>(patterns: &[S]) -> Result<IgnoreRules> {
        let mut rules = Vec::with_capacity(patterns.len());
        for p in patterns {
            let p = p.as_ref().trim();
            if p.is_empty() {
                continue;
            }
            rules.push(parse_rule(p)?);
        }
        Ok(IgnoreRules { rules })
    }

    /// Loads `<context_root>/.dockerignore`; an absent file means no rules. The file is read
    /// with in-root resolution, so a symlinked `.dockerignore` cannot read outside the root.
    pub fn load(context_root: &Path) -> Result<IgnoreRules> {
        Self::load_file(context_root, ".dockerignore")
    }

    /// Loads the Dockerfile-specific ignore file `<dockerfile>.dockerignore` if present (as
    /// BuildKit does), else `.dockerignore`. `dockerfile` is relative to the context root.
    #[cfg(test)]
    pub fn load_for_dockerfile(context_root: &Path, dockerfile: &str) -> Result<IgnoreRules> {
        let specific = format!("{dockerfile}.dockerignore");
        if resolve::read_in_root(context_root, &specific)?.is_some() {
            return Self::load_file(context_root, &specific);
        }
        Self::load(context_root)
    }

    fn load_file(root: &Path, name: &str) -> Result<IgnoreRules> {
        match resolve::read_in_root(root, name)? {
            None => Ok(IgnoreRules::default()),
            Some(bytes) => {
                let text =
                    String::from_utf8(bytes).with_context(|| format!("{name} is not UTF-8"))?;
                IgnoreRules::parse(&text)
                    .with_context(|| format!("in {}", root.join(name).display()))
            }
        }
    }

    /// True when there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The patterns, `!`-prefixed for re-includes, in order.
    #[cfg(test)]
    pub fn patterns(&self) -> Vec<String> {
        self.rules
            .iter()
            .map(|r| format!("{}{}", if r.exclude { "" } else { "!" }, r.pattern.as_str()))
            .collect()
    }

    /// Whether `rel_path` (relative to the root, `/`-separated) is excluded: the last rule that
    /// matches the path or one of its parent directories decides. Docker's patterns do not
    /// distinguish files from directories (`dir/` is cleaned to `dir`), so `is_dir` does not
    /// change the answer; it is part of the signature for callers walking a tree.
    pub fn is_excluded(&self, rel_path: &str, is_dir: bool) -> bool {
        let _ = is_dir;
        self.deciding_rule(rel_path)
            .is_some_and(|i| self.rules[i].exclude)
    }

    /// Whether a walker may skip directory `rel_dir` entirely: it is excluded and no `!` rule
    /// after the one that excluded it could re-include anything inside it.
    pub fn can_skip_dir(&self, rel_dir: &str) -> bool {
        let path = normalize(rel_dir);
        let Some(k) = self.deciding_rule_norm(&path) else {
            return false;
        };
        if !self.rules[k].exclude {
            return false;
        }
        !self.rules[k + 1..]
            .iter()
            .any(|r| !r.exclude && r.pattern.could_match_below(&path))
    }

    fn deciding_rule(&self, rel_path: &str) -> Option<usize> {
        if self.rules.is_empty() {
            return None;
        }
        self.deciding_rule_norm(&normalize(rel_path))
    }

    fn deciding_rule_norm(&self, path: &str) -> Option<usize> {
        if path.is_empty() {
            return None;
        }
        let parents: Vec<&str> = path.match_indices('/').map(|(i, _)| &path[..i]).collect();
        let mut decided = None;
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.pattern.matches(path) || parents.iter().any(|p| rule.pattern.matches(p)) {
                decided = Some(i);
            }
        }
        decided
    }
}

fn normalize(rel: &str) -> String {
    let c = clean(rel);
    let c = c.trim_start_matches('/');
    if c == "." {
        String::new()
    } else {
        c.to_string()
    }
}

fn parse_rule(line: &str) -> Result<Rule> {
    let (exclude, pat) = match line.strip_prefix('!') {
        Some(rest) => (false, rest.trim()),
        None => (true, line),
    };
    if pat.is_empty() {
        bail!("illegal exclusion pattern: {line:?}");
    }
    let cleaned = clean(pat);
    let cleaned = if cleaned.len() > 1 {
        cleaned.trim_start_matches('/').to_string()
    } else {
        cleaned
    };
    Ok(Rule {
        pattern: Pattern::new(&cleaned).with_context(|| format!("pattern {line:?}"))?,
        exclude,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> IgnoreRules {
        IgnoreRules::parse(text).unwrap()
    }

    #[test]
    fn markdown_and_reinclude() {
        let r = rules("*.md\n!README.md\n");
        assert!(r.is_excluded("CHANGES.md", false));
        assert!(!r.is_excluded("README.md", false));
        // `*` does not cross `/`
        assert!(!r.is_excluded("docs/guide.md", false));
        assert!(!r.is_excluded("main.rs", false));
    }

    #[test]
    fn globstar_go_files() {
        let r = rules("**/*.go");
        assert!(r.is_excluded("main.go", false));
        assert!(r.is_excluded("cmd/x/main.go", false));
        assert!(!r.is_excluded("cmd/x/main.rs", false));
    }

    #[test]
    fn dir_with_and_without_slash() {
        for text in ["build", "build/", "/build", "./build"] {
            let r = rules(text);
            assert!(r.is_excluded("build", true), "{text}");
            assert!(r.is_excluded("build/a/b.o", false), "{text}");
            assert!(!r.is_excluded("src/build", true), "{text}");
            assert!(!r.is_excluded("builder", true), "{text}");
            // Docker cleans `build/` to `build`: a file of that name is excluded too.
            assert!(r.is_excluded("build", false), "{text}");
        }
    }

    #[test]
    fn last_rule_wins() {
        let r = rules("!a.txt\n*.txt\n");
        assert!(r.is_excluded("a.txt", false));
        let r = rules("*.txt\n!a.txt\n");
        assert!(!r.is_excluded("a.txt", false));
        let r = rules("*.txt\n!a.txt\na.txt\n");
        assert!(r.is_excluded("a.txt", false));
    }

    #[test]
    fn excluded_dir_with_reincluded_child() {
        let r = rules("dir\n!dir/keep\n");
        assert!(r.is_excluded("dir", true));
        assert!(r.is_excluded("dir/other", false));
        assert!(!r.is_excluded("dir/keep", false));
        assert!(!r.is_excluded("dir/keep/deep", false));
        assert!(!r.can_skip_dir("dir"));
        let r = rules("dir\n!other/keep\n");
        assert!(r.can_skip_dir("dir"));
        // a re-include *before* the exclusion cannot bring anything back
        let r = rules("!dir/keep\ndir\n");
        assert!(r.can_skip_dir("dir"));
        assert!(r.is_excluded("dir/keep", false));
        // `**` re-includes could match anywhere below
        let r = rules("vendor\n!**/*.go\n");
        assert!(!r.can_skip_dir("vendor"));
        assert!(!r.is_excluded("vendor/x/a.go", false));
        // not excluded: nothing to skip
        assert!(!rules("a").can_skip_dir("b"));
    }

    #[test]
    fn globstar_positions() {
        let r = rules("**/node_modules");
        assert!(r.is_excluded("node_modules", true));
        assert!(r.is_excluded("a/b/node_modules/x.js", false));
        let r = rules("src/**/*.o");
        assert!(r.is_excluded("src/a.o", false));
        assert!(r.is_excluded("src/x/y/a.o", false));
        assert!(!r.is_excluded("a.o", false));
        let r = rules("logs/**");
        assert!(r.is_excluded("logs/a/b", false));
        assert!(!r.is_excluded("logsx", false));
        let r = rules("**");
        assert!(r.is_excluded("anything/at/all", false));
    }

    #[test]
    fn question_and_classes() {
        let r = rules("file?.txt\nlog[0-9]\n");
        assert!(r.is_excluded("file1.txt", false));
        assert!(!r.is_excluded("file12.txt", false));
        assert!(r.is_excluded("log7", false));
        assert!(!r.is_excluded("logx", false));
    }

    #[test]
    fn comments_blank_lines_and_errors() {
        let r = rules("# comment\n\n   \n  *.tmp  \n#*.md\n");
        assert_eq!(r.patterns(), vec!["*.tmp".to_string()]);
        assert!(r.is_excluded("a.tmp", false));
        assert!(!r.is_excluded("a.md", false));
        assert!(IgnoreRules::parse("!\n").is_err());
        assert!(IgnoreRules::parse("[x\n").is_err());
    }

    #[test]
    fn dockerignore_and_dockerfile_can_be_excluded() {
        let r = rules(".dockerignore\nDockerfile\n");
        assert!(r.is_excluded(".dockerignore", false));
        assert!(r.is_excluded("Dockerfile", false));
    }

    #[test]
    fn load_absent_and_present() {
        let dir = tempfile::tempdir().unwrap();
        assert!(IgnoreRules::load(dir.path()).unwrap().is_empty());
        std::fs::write(dir.path().join(".dockerignore"), "*.log\n").unwrap();
        let r = IgnoreRules::load(dir.path()).unwrap();
        assert!(r.is_excluded("x.log", false));
        std::fs::write(dir.path().join("Dockerfile.dockerignore"), "*.txt\n").unwrap();
        let r = IgnoreRules::load_for_dockerfile(dir.path(), "Dockerfile").unwrap();
        assert!(r.is_excluded("x.txt", false));
        assert!(!r.is_excluded("x.log", false));
    }
}
