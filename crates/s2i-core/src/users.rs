//! `--allowed-uids` ranges and the checks of §10: the user that runs assemble must be numeric and
//! inside the ranges, wherever it comes from.

use std::fmt;

use s2i_engine::ImageInfo;

use crate::error::{BuildError, Result};
use crate::labels;

/// An inclusive uid range; `None` ends are open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UidRange {
    pub low: Option<u32>,
    pub high: Option<u32>,
}

impl UidRange {
    pub fn contains(&self, uid: u32) -> bool {
        self.low.is_none_or(|l| uid >= l) && self.high.is_none_or(|h| uid <= h)
    }
}

impl fmt::Display for UidRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.low, self.high) {
            (Some(l), Some(h)) if l == h => write!(f, "{l}"),
            (Some(l), Some(h)) => write!(f, "{l}-{h}"),
            (Some(l), None) => write!(f, "{l}-"),
            (None, Some(h)) => write!(f, "-{h}"),
            (None, None) => write!(f, "-"),
        }
    }
}

/// Parse `N`, `N-`, `-N`, `N-M` items separated by commas.
pub fn parse_ranges(text: &str) -> Result<Vec<UidRange>> {
    let invalid = |reason: &str| BuildError::InvalidValue {
        what: "--allowed-uids",
        value: text.to_string(),
        reason: reason.to_string(),
    };
    let num = |s: &str| s.trim().parse::<u32>().map_err(|_| invalid("a range must be N, N-, -N or N-M with non-negative whole numbers"));
    let mut ranges = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let range = match item.split_once('-') {
            None => {
                let n = num(item)?;
                UidRange { low: Some(n), high: Some(n) }
            }
            Some(("", "")) => return Err(invalid("a range needs at least one end")),
            Some((l, "")) => UidRange { low: Some(num(l)?), high: None },
            Some(("", h)) => UidRange { low: None, high: Some(num(h)?) },
            Some((l, h)) => {
                let (l, h) = (num(l)?, num(h)?);
                if h < l {
                    return Err(invalid("the end of a range must not be below its start"));
                }
                UidRange { low: Some(l), high: Some(h) }
            }
        };
        ranges.push(range);
    }
    Ok(ranges)
}

fn allowed(ranges: &[UidRange], user: &str) -> bool {
    user.parse::<u32>().is_ok_and(|uid| ranges.iter().any(|r| r.contains(uid)))
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
pub fn check_builder(ranges: &[UidRange], image: &ImageInfo, image_name: &str, flag_user: Option<&str>) -> Result<()> {
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
            if !allowed(ranges, user_part(user)) {
                return Err(refuse(format!("the ONBUILD USER of image {image_name}"), user));
            }
        }
    }
    if let Some(user) = flag_user.filter(|u| !u.is_empty()) {
        if !allowed(ranges, user_part(user)) {
            return Err(refuse("--assemble-user".into(), user));
        }
        return Ok(());
    }
    if let Some(user) = image.label(labels::ASSEMBLE_USER) {
        if !allowed(ranges, user_part(user)) {
            return Err(refuse(format!("the {} label of image {image_name}", labels::ASSEMBLE_USER), user));
        }
        return Ok(());
    }
    if !allowed(ranges, user_part(&image.user)) {
        let user = if image.user.is_empty() { "(none, so root)" } else { image.user.as_str() };
        return Err(refuse(format!("the USER of image {image_name}"), user));
    }
    Ok(())
}

/// Check the runtime image's assemble-runtime user: the flag, else the image's
/// assemble-runtime-user label, else its USER. (The reference computes this and ignores it.)
pub fn check_runtime(ranges: &[UidRange], image: &ImageInfo, image_name: &str, flag_user: Option<&str>) -> Result<()> {
    if ranges.is_empty() {
        return Ok(());
    }
    let (what, user) = match (flag_user.filter(|u| !u.is_empty()), image.label(labels::ASSEMBLE_RUNTIME_USER)) {
        (Some(u), _) => ("--assemble-runtime-user".to_string(), u),
        (None, Some(u)) => (format!("the {} label of runtime image {image_name}", labels::ASSEMBLE_RUNTIME_USER), u),
        (None, None) => (format!("the USER of runtime image {image_name}"), image.user.as_str()),
    };
    if !allowed(ranges, user_part(user)) {
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

    #[test]
    fn ranges_parse() {
        let r = parse_ranges("1001, 2000-3000,5000-,-10").unwrap();
        assert_eq!(r.len(), 4);
        assert!(r[0].contains(1001) && !r[0].contains(1002));
        assert!(r[1].contains(2500) && !r[1].contains(3001));
        assert!(r[2].contains(u32::MAX));
        assert!(r[3].contains(0) && !r[3].contains(11));
        assert_eq!(r.iter().map(|r| r.to_string()).collect::<Vec<_>>(), vec!["1001", "2000-3000", "5000-", "-10"]);
        assert!(parse_ranges("-").is_err());
        assert!(parse_ranges("a-b").is_err());
        assert!(parse_ranges("10-5").is_err());
        assert!(parse_ranges("-5-").is_err());
        assert!(parse_ranges("").unwrap().is_empty());
    }

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
        assert!(check_builder(&r, &image("431", None), "b", None).is_ok());
        assert!(check_builder(&r, &image("431:0", None), "b", None).is_ok());
        assert!(check_builder(&r, &image("fakeuser", None), "b", None).is_err());
        assert!(check_builder(&r, &image("", None), "b", None).is_err());
        assert!(check_builder(&r, &image("431", Some("0")), "b", None).is_err());
        assert!(check_builder(&r, &image("0", Some("431")), "b", None).is_ok());
        assert!(check_builder(&r, &image("0", None), "b", Some("1001")).is_ok());
        let err = check_builder(&r, &image("1001", None), "b", Some("0")).unwrap_err();
        assert_eq!(err.exit_code(), 15);
        assert!(err.to_string().contains("1-"), "{err}");
        assert!(check_builder(&[], &image("root", None), "b", None).is_ok());
    }

    #[test]
    fn runtime_users_are_checked_too() {
        let r = parse_ranges("1000-").unwrap();
        assert!(check_runtime(&r, &image("1001", None), "rt", None).is_ok());
        assert!(check_runtime(&r, &image("", None), "rt", None).is_err());
        assert!(check_runtime(&r, &image("1001", None), "rt", Some("0")).is_err());
        let mut labelled = image("0", None);
        labelled.labels.insert(labels::ASSEMBLE_RUNTIME_USER.into(), "1002".into());
        assert!(check_runtime(&r, &labelled, "rt", None).is_ok());
    }

    #[test]
    fn onbuild_user_lines_are_checked() {
        let r = parse_ranges("1-").unwrap();
        let mut i = image("1001", None);
        i.on_build = vec!["user 0".into()];
        assert!(check_builder(&r, &i, "b", None).is_err());
        i.on_build = vec!["USER 1001".into(), "RUN x".into()];
        assert!(check_builder(&r, &i, "b", None).is_ok());
    }
}
