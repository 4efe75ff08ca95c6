//! `--allowed-uids` ranges and their checks: the user that runs assemble must be numeric and
//! inside the ranges, wherever it comes from.

use s2i_engine::ImageInfo;

use crate::config::UidRange;
use crate::error::{BuildError, Result};
use crate::labels;

/// The uid of `user`: a number, or a name found in the image's /etc/passwd.
pub fn uid_of(user: &str, passwd: Option<&str>) -> Option<u32> {
    if let Ok(uid) = user.parse::<u32>() {
        return Some(uid);
    }
    passwd?.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == user).then_some(())?;
        fields.nth(1)?.parse().ok()
    })
}

fn allowed(ranges: &[UidRange], user: &str, passwd: Option<&str>) -> bool {
    uid_of(user, passwd).is_some_and(|uid| ranges.iter().any(|r| r.contains(uid)))
}

/// Check the uid a build really runs as, when the engine cannot switch users (the in-place
/// engine runs every script as the process's own uid).
pub fn check_fixed_uid(ranges: &[UidRange], uid: u32) -> Result<()> {
    if ranges.is_empty() || ranges.iter().any(|r| r.contains(uid)) {
        return Ok(());
    }
    Err(BuildError::UserNotAllowed {
        what: format!("uid {uid}, which the engine runs every script as (the process's own)"),
        reason: format!("it is outside the allowed ranges {}", describe(ranges)),
    })
}

/// Check one user (`user[:group]`) against the ranges; `what` says where it came from.
pub fn check_user(ranges: &[UidRange], what: impl Into<String>, user: &str, passwd: Option<&str>) -> Result<()> {
    if ranges.is_empty() || allowed(ranges, user_part(user), passwd) {
        return Ok(());
    }
    let shown = if user.is_empty() { "(none, so root)" } else { user };
    Err(BuildError::UserNotAllowed {
        what: what.into(),
        reason: format!("{shown:?} must be a numeric uid within the allowed ranges {}", describe(ranges)),
    })
}

/// The numeric owner (`uid`, `gid`) of `user[:group]`: no user is root; a name is looked up in
/// `passwd`; the group is 0 unless given as a number. `None` for a name that cannot be resolved.
pub fn numeric_owner(user: Option<&str>, passwd: Option<&str>) -> Option<(u64, u64)> {
    let user = user.unwrap_or("");
    let (name, group) = match user.split_once(':') {
        Some((u, g)) => (u, g.parse::<u64>().ok()),
        None => (user, None),
    };
    let uid = match name {
        "" | "root" => 0,
        n => uid_of(n, passwd)?,
    };
    Some((u64::from(uid), group.unwrap_or(0)))
}

/// Whether `user[:group]` is a name that only the image's /etc/passwd turns into a number (no
/// user, root and numbers need no look-up).
pub fn is_named(user: Option<&str>) -> bool {
    let name = user_part(user.unwrap_or(""));
    !name.is_empty() && name != "root" && name.parse::<u32>().is_err()
}

/// Whether judging the users of `image` needs its /etc/passwd (some user is a name, not a number).
pub fn needs_passwd(ranges: &[UidRange], image: &ImageInfo, flag_user: Option<&str>, label: &str) -> bool {
    if ranges.is_empty() {
        return false;
    }
    let named = |u: &str| {
        let u = user_part(u);
        !u.is_empty() && u.parse::<u32>().is_err()
    };
    let onbuild_users = image.on_build.iter().filter_map(|l| {
        let mut w = l.split_whitespace();
        w.next().filter(|k| k.eq_ignore_ascii_case("USER")).and(w.next())
    });
    flag_user.is_some_and(named) || image.label(label).is_some_and(named) || named(&image.user) || onbuild_users.into_iter().any(named)
}

fn describe(ranges: &[UidRange]) -> String {
    ranges.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

/// The user part of `user[:group]`.
fn user_part(s: &str) -> &str {
    s.split(':').next().unwrap_or_default()
}

/// Check the builder's assemble user against the ranges (no-op when there are none):
/// the `--assemble-user` flag, else the image's assemble-user label, else its USER.
/// Named users are looked up in `passwd` (the image's /etc/passwd, when it has one).
pub fn check_builder(ranges: &[UidRange], image: &ImageInfo, image_name: &str, flag_user: Option<&str>, passwd: Option<&str>) -> Result<()> {
    if ranges.is_empty() {
        return Ok(());
    }
    let allowed_list = describe(ranges);
    let refuse = |what: String, user: &str| BuildError::UserNotAllowed {
        what,
        reason: format!("{user:?} must be a numeric uid within the allowed ranges {allowed_list}"),
    };
    for line in &image.on_build {
        let mut words = line.split_whitespace();
        if words.next().is_some_and(|w| w.eq_ignore_ascii_case("USER")) {
            let user = words.next().unwrap_or_default();
            if !allowed(ranges, user_part(user), passwd) {
                return Err(refuse(format!("the ONBUILD USER of image {image_name}"), user));
            }
        }
    }
    if let Some(user) = flag_user.filter(|u| !u.is_empty()) {
        if !allowed(ranges, user_part(user), passwd) {
            return Err(refuse("--assemble-user".into(), user));
        }
        return Ok(());
    }
    if let Some(user) = image.label(labels::ASSEMBLE_USER) {
        if !allowed(ranges, user_part(user), passwd) {
            return Err(refuse(format!("the {} label of image {image_name}", labels::ASSEMBLE_USER), user));
        }
        return Ok(());
    }
    if !allowed(ranges, user_part(&image.user), passwd) {
        let user = if image.user.is_empty() { "(none, so root)" } else { image.user.as_str() };
        return Err(refuse(format!("the USER of image {image_name}"), user));
    }
    Ok(())
}

/// Check the runtime image's assemble-runtime user: the flag, else the image's
/// assemble-runtime-user label, else its USER. (The reference computes this and ignores it.)
pub fn check_runtime(ranges: &[UidRange], image: &ImageInfo, image_name: &str, flag_user: Option<&str>, passwd: Option<&str>) -> Result<()> {
    if ranges.is_empty() {
        return Ok(());
    }
    let (what, user) = match (flag_user.filter(|u| !u.is_empty()), image.label(labels::ASSEMBLE_RUNTIME_USER)) {
        (Some(u), _) => ("--assemble-runtime-user".to_string(), u),
        (None, Some(u)) => (format!("the {} label of runtime image {image_name}", labels::ASSEMBLE_RUNTIME_USER), u),
        (None, None) => (format!("the USER of runtime image {image_name}"), image.user.as_str()),
    };
    if !allowed(ranges, user_part(user), passwd) {
        let shown = if user.is_empty() { "(none, so root)" } else { user };
        return Err(BuildError::UserNotAllowed {
            what,
            reason: format!("{shown:?} must be a numeric uid within the allowed ranges {}", describe(ranges)),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_ranges;

    fn image(user: &str, label: Option<&str>) -> ImageInfo {
        let mut i = ImageInfo { user: user.into(), ..Default::default() };
        if let Some(l) = label {
            i.labels.insert(labels::ASSEMBLE_USER.into(), l.into());
        }
        i
    }

    #[test]
    fn checks_follow_flag_then_label_then_user() {
        let r = parse_ranges("1-").unwrap();
        assert!(check_builder(&r, &image("431", None), "b", None, None).is_ok());
        assert!(check_builder(&r, &image("431:0", None), "b", None, None).is_ok());
        assert!(check_builder(&r, &image("fakeuser", None), "b", None, None).is_err());
        assert!(check_builder(&r, &image("", None), "b", None, None).is_err());
        assert!(check_builder(&r, &image("431", Some("0")), "b", None, None).is_err());
        assert!(check_builder(&r, &image("0", Some("431")), "b", None, None).is_ok());
        assert!(check_builder(&r, &image("0", None), "b", Some("1001"), None).is_ok());
        let err = check_builder(&r, &image("1001", None), "b", Some("0"), None).unwrap_err();
        assert_eq!(err.exit_code(), 15);
        assert!(err.to_string().contains("1-"), "{err}");
        assert!(check_builder(&[], &image("root", None), "b", None, None).is_ok());
    }

    #[test]
    fn named_users_are_resolved_through_passwd() {
        let r = parse_ranges("400-500").unwrap();
        let passwd = "root:x:0:0:root:/root:/bin/sh\nfakeuser:x:431:0::/home/fakeuser:/bin/sh\n";
        assert_eq!(uid_of("fakeuser", Some(passwd)), Some(431));
        assert_eq!(uid_of("ghost", Some(passwd)), None);
        assert!(check_builder(&r, &image("fakeuser", None), "b", None, Some(passwd)).is_ok());
        assert!(check_builder(&r, &image("fakeuser:0", None), "b", None, Some(passwd)).is_ok());
        assert!(check_builder(&r, &image("fakeuser", None), "b", None, None).is_err());
        assert!(check_builder(&r, &image("root", None), "b", None, Some(passwd)).is_err());
        assert!(needs_passwd(&r, &image("fakeuser", None), None, labels::ASSEMBLE_USER));
        assert!(!needs_passwd(&r, &image("431", None), Some("1001"), labels::ASSEMBLE_USER));
        assert!(!needs_passwd(&[], &image("fakeuser", None), None, labels::ASSEMBLE_USER));
    }

    #[test]
    fn owners_are_numeric() {
        let passwd = "root:x:0:0::/root:/bin/sh\nweb:x:1001:0::/home/web:/bin/sh\n";
        assert_eq!(numeric_owner(None, None), Some((0, 0)));
        assert_eq!(numeric_owner(Some("1001"), None), Some((1001, 0)));
        assert_eq!(numeric_owner(Some("1001:5"), None), Some((1001, 5)));
        assert_eq!(numeric_owner(Some("web"), Some(passwd)), Some((1001, 0)));
        assert_eq!(numeric_owner(Some("web"), None), None);
        assert!(is_named(Some("web")) && is_named(Some("web:0")));
        assert!(!is_named(None) && !is_named(Some("")) && !is_named(Some("root")) && !is_named(Some("1001:5")));
        assert!(check_user(&parse_ranges("1000-").unwrap(), "the save-artifacts user", "0", None).is_err());
        assert!(check_user(&[], "x", "0", None).is_ok());
    }

    #[test]
    fn runtime_users_are_checked_too() {
        let r = parse_ranges("1000-").unwrap();
        assert!(check_runtime(&r, &image("1001", None), "rt", None, None).is_ok());
        assert!(check_runtime(&r, &image("", None), "rt", None, None).is_err());
        assert!(check_runtime(&r, &image("1001", None), "rt", Some("0"), None).is_err());
        let mut labelled = image("0", None);
        labelled.labels.insert(labels::ASSEMBLE_RUNTIME_USER.into(), "1002".into());
        assert!(check_runtime(&r, &labelled, "rt", None, None).is_ok());
    }

    #[test]
    fn onbuild_user_lines_are_checked() {
        let r = parse_ranges("1-").unwrap();
        let mut i = image("1001", None);
        i.on_build = vec!["user 0".into()];
        assert!(check_builder(&r, &i, "b", None, None).is_err());
        i.on_build = vec!["USER 1001".into(), "RUN x".into()];
        assert!(check_builder(&r, &i, "b", None, None).is_ok());
    }
}
