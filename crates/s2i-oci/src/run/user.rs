//! `--user` / the image's `User` resolved the way Docker resolves it, in the image's own
//! `/etc/passwd` and `/etc/group` (read inside the root file system, never the host's).

use std::path::Path;

use super::error::{Result, RunError};
use crate::fsroot::RootDir;

/// Larger account files than this are not read (a hostile image could ship a huge one).
const ACCOUNT_FILE_LIMIT: u64 = 4 << 20;

/// Who the container's process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// Groups that list the user as a member (Docker adds them too).
    pub additional_gids: Vec<u32>,
    /// The user's home from passwd, for `HOME` when the image does not set it.
    pub home: String,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines().filter(|l| !l.starts_with('#')).filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 {
            return None;
        }
        Some(PasswdEntry { name: f[0], uid: f[2].parse().ok()?, gid: f[3].parse().ok()?, home: f[5] })
    })
}

fn group_entries(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    text.lines().filter(|l| !l.starts_with('#')).filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 {
            return None;
        }
        let members = f[3].split(',').map(str::trim).filter(|m| !m.is_empty()).collect();
        Some(GroupEntry { name: f[0], gid: f[2].parse().ok()?, members })
    })
}

/// An id as Docker accepts it: a decimal number in 0..2^31.
fn numeric_id(s: &str) -> Option<std::result::Result<u32, ()>> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse::<u32>().ok().filter(|n| *n <= i32::MAX as u32).ok_or(()))
}

/// Resolve `user` (`""`, `name`, `uid`, each optionally `:group` or `:gid`) against the account
/// files' text (`None` when the image has no such file).
pub fn resolve_user(user: &str, passwd: Option<&str>, group: Option<&str>) -> Result<ResolvedUser> {
    let bad = |reason: &str| RunError::BadUser { user: user.to_string(), reason: reason.to_string() };
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let passwd = passwd.unwrap_or("");
    let group = group.unwrap_or("");

    let (uid, mut gid, name, home) = match numeric_id(user_part) {
        Some(Err(())) => return Err(bad("uids must be below 2147483648")),
        Some(Ok(uid)) => match passwd_entries(passwd).find(|e| e.uid == uid) {
            Some(e) => (uid, e.gid, Some(e.name.to_string()), e.home.to_string()),
            None => (uid, 0, None, "/".to_string()),
        },
        None => match passwd_entries(passwd).find(|e| e.name == user_part) {
            Some(e) => (e.uid, e.gid, Some(e.name.to_string()), e.home.to_string()),
            None => return Err(RunError::UnknownUser { user: user_part.to_string() }),
        },
    };
    if let Some(g) = group_part {
        if g.is_empty() {
            return Err(bad("the group after ':' is empty"));
        }
        gid = match numeric_id(g) {
            Some(Err(())) => return Err(bad("gids must be below 2147483648")),
            Some(Ok(gid)) => gid,
            None => match group_entries(group).find(|e| e.name == g) {
                Some(e) => e.gid,
                None => return Err(RunError::UnknownGroup { group: g.to_string() }),
            },
        };
    }
    let mut additional_gids: Vec<u32> = match &name {
        Some(name) => group_entries(group)
            .filter(|e| e.members.iter().any(|m| m == name))
            .map(|e| e.gid)
            .filter(|g| *g != gid)
            .collect(),
        None => Vec::new(),
    };
    additional_gids.sort_unstable();
    additional_gids.dedup();
    let home = if home.is_empty() { "/".to_string() } else { home };
    Ok(ResolvedUser { uid, gid, additional_gids, home })
}

/// Resolve `user` in the image mounted at `root`.
pub(crate) fn resolve_in_root(user: &str, root: &RootDir) -> Result<ResolvedUser> {
    let read = |p: &str| -> Result<Option<String>> {
        Ok(root
            .read_file(Path::new(p), ACCOUNT_FILE_LIMIT)?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    };
    let passwd = read("/etc/passwd")?;
    let group = read("/etc/group")?;
    resolve_user(user, passwd.as_deref(), group.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        default:x:1001:0::/home/default:/bin/sh\n\
        # a comment\n\
        broken line\n\
        app:x:2000:2000:App:/srv/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:app,default\napp:x:2000:\nextra:x:3000: app \n";

    fn r(user: &str) -> Result<ResolvedUser> {
        resolve_user(user, Some(PASSWD), Some(GROUP))
    }

    #[test]
    fn names_and_ids_resolve_like_docker() {
        assert_eq!(r("").unwrap(), ResolvedUser { uid: 0, gid: 0, additional_gids: vec![], home: "/root".into() });
        let app = r("app").unwrap();
        assert_eq!((app.uid, app.gid, app.additional_gids, app.home.as_str()), (2000, 2000, vec![10, 3000], "/srv/app"));
        assert_eq!(r("1001").unwrap().home, "/home/default");
        assert_eq!(r("1001").unwrap().additional_gids, vec![10]);
        // A uid the image does not know runs with gid 0 and home /.
        let unknown = r("4242").unwrap();
        assert_eq!((unknown.uid, unknown.gid, unknown.home.as_str()), (4242, 0, "/"));
        assert_eq!(r("app:wheel").unwrap().gid, 10);
        assert_eq!(r("1001:55").unwrap().gid, 55);
        assert_eq!(r("app:app").unwrap().additional_gids, vec![10, 3000]);
        assert_eq!(resolve_user("5", None, None).unwrap().gid, 0);
    }

    #[test]
    fn unknown_names_and_bad_ids_are_errors() {
        assert!(matches!(r("nobody"), Err(RunError::UnknownUser { user }) if user == "nobody"));
        assert!(matches!(r("app:nogroup"), Err(RunError::UnknownGroup { group }) if group == "nogroup"));
        assert!(matches!(r("4294967296"), Err(RunError::BadUser { .. })));
        assert!(matches!(r("2147483648"), Err(RunError::BadUser { .. })));
        assert!(matches!(r("app:"), Err(RunError::BadUser { .. })));
        // "broken line" is not a user called "broken line".
        assert!(matches!(r("broken line"), Err(RunError::UnknownUser { .. })));
    }
}
