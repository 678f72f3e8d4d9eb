//! Slash-path helpers with Go's semantics, shared by the frontends and the host so both clean
//! paths the same way BuildKit does.

/// Go's `path.Clean`: collapses `//`, drops `.`, resolves `..` against earlier components.
/// A rooted path stays rooted (`/..` is `/`); an empty result is `.`.
pub fn clean_path(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// `WORKDIR` semantics: a relative path continues from `current` (`/` when empty); the result
/// is absolute and clean.
pub fn join_workdir(current: &str, next: &str) -> String {
    if next.starts_with('/') {
        clean_path(next)
    } else {
        let base = if current.is_empty() { "/" } else { current };
        clean_path(&format!("/{base}/{next}"))
    }
}

#[cfg(test)]
mod tests {
    use super::clean_path;

    #[test]
    fn cleans_like_go() {
        for (input, want) in [
            ("", "."),
            ("/", "/"),
            ("a//b/./c/", "a/b/c"),
            ("/a/../../b", "/b"),
            ("../a/..", ".."),
            ("a/../..", ".."),
            ("./", "."),
            ("/..", "/"),
        ] {
            assert_eq!(clean_path(input), want, "{input:?}");
        }
    }

    #[test]
    fn workdir_joins() {
        use super::join_workdir as j;
        assert_eq!(j("", "app"), "/app");
        assert_eq!(j("/src", "../lib/./x/"), "/lib/x");
        assert_eq!(j("/src", "/abs//p"), "/abs/p");
        assert_eq!(j("rel", "x"), "/rel/x");
    }
}
