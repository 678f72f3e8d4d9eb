//! Subordinate ID ranges: the lines of `/etc/subuid` and `/etc/subgid` (`NAME:START:COUNT` or
//! `UID:START:COUNT`, as `useradd` and `usermod --add-subuids` write them) that belong to a user.

use std::path::Path;

/// One subordinate range: `count` IDs from `start` on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: u32,
    pub count: u32,
}

/// The ranges of the user `name` (uid `id`) in the text of a subuid/subgid file, in file order.
/// Comments, blank lines, malformed lines and empty ranges are skipped, as shadow-utils does.
pub fn parse(text: &str, name: &str, id: u32) -> Vec<Range> {
    let id = id.to_string();
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.starts_with('#') {
                return None;
            }
            let mut f = line.split(':');
            let (owner, start, count) = (f.next()?, f.next()?, f.next()?);
            if f.next().is_some() || (owner != name && owner != id) {
                return None;
            }
            let start: u32 = start.parse().ok()?;
            let count: u32 = count.parse().ok()?;
            (count > 0 && start.checked_add(count).is_some()).then_some(Range { start, count })
        })
        .collect()
}

/// The ranges of the user in the file at `path`; none when it is missing or unreadable.
pub fn read(path: &Path, name: &str, id: u32) -> Vec<Range> {
    std::fs::read_to_string(path)
        .map(|t| parse(&t, name, id))
        .unwrap_or_default()
}

/// The `newuidmap`/`newgidmap` arguments after the pid: ID 0 inside is the user's own `id`,
/// IDs 1.. inside are the ranges one after the other.
pub fn map_args(id: u32, ranges: &[Range]) -> Vec<String> {
    let mut args = vec!["0".to_string(), id.to_string(), "1".to_string()];
    let mut inside: u64 = 1;
    for r in ranges {
        args.extend([inside.to_string(), r.start.to_string(), r.count.to_string()]);
        inside += u64::from(r.count);
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_found_by_name_or_uid() {
        let text = "# comment\nalice:100000:65536\nbob:165536:65536\n1001:231072:10\n\
                    alice:bad:1\nalice:5:0\nalice:1:2:3\n";
        assert_eq!(
            parse(text, "alice", 1000),
            vec![Range {
                start: 100000,
                count: 65536
            }]
        );
        assert_eq!(
            parse(text, "carol", 1001),
            vec![Range {
                start: 231072,
                count: 10
            }]
        );
        assert!(parse(text, "dave", 1002).is_empty());
    }

    #[test]
    fn map_args_put_the_user_at_zero_and_ranges_after() {
        let r = [
            Range {
                start: 100000,
                count: 65536,
            },
            Range {
                start: 300000,
                count: 10,
            },
        ];
        assert_eq!(
            map_args(1000, &r),
            [
                "0", "1000", "1", "1", "100000", "65536", "65537", "300000", "10"
            ]
        );
        assert_eq!(map_args(7, &[]), ["0", "7", "1"]);
    }
}
