//! Credentials in URLs never leave the process: `https://user:token@host/repo` and secret-looking
//! query parameters (`token=`, `access_token=`, `sig=`, …) are stripped wherever a URL is stored
//! (labels, `.s2ifile`), sent (the callback) or shown (logs, errors).

/// Query parameters whose value is a secret, compared without case.
const SECRET_PARAMS: &[&str] = &[
    "token",
    "access_token",
    "private_token",
    "id_token",
    "refresh_token",
    "auth",
    "authorization",
    "password",
    "passwd",
    "secret",
    "client_secret",
    "api_key",
    "apikey",
    "key",
    "sig",
    "signature",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "x-goog-signature",
    "x-goog-credential",
];

/// What stands in for a removed secret.
pub const REDACTED: &str = "redacted";

/// `url` without user info and with the values of secret query parameters replaced. Text that is
/// not a URL (a path, an scp-like `git@host:repo`) comes back unchanged.
pub fn url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else { return url.to_string() };
    let scheme = &url[..scheme_end];
    if scheme.is_empty() || !scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) {
        return url.to_string();
    }
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host = match authority.rfind('@') {
        Some(at) => &authority[at + 1..],
        None => authority,
    };
    format!("{scheme}://{host}{}", redact_query(tail))
}

/// The query of `tail` (`/path?a=1&token=x#frag`) with secret values replaced.
fn redact_query(tail: &str) -> String {
    let Some(q) = tail.find('?') else { return tail.to_string() };
    let (path, rest) = tail.split_at(q);
    let (query, fragment) = match rest[1..].find('#') {
        Some(h) => (&rest[1..1 + h], &rest[1 + h..]),
        None => (&rest[1..], ""),
    };
    let params: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if is_secret(k) => format!("{k}={REDACTED}"),
            _ => p.to_string(),
        })
        .collect();
    format!("{path}?{}{fragment}", params.join("&"))
}

fn is_secret(key: &str) -> bool {
    SECRET_PARAMS.iter().any(|s| s.eq_ignore_ascii_case(key))
}

/// Every URL inside free text (a git error, a log line) redacted.
pub fn text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        // The scheme starts after the last character that cannot be part of one.
        let start = rest[..i].rfind(|c: char| !(c.is_ascii_alphanumeric() || "+-.".contains(c))).map_or(0, |p| p + 1);
        let end = rest[i..].find(|c: char| c.is_whitespace() || "'\"<>`".contains(c)).map_or(rest.len(), |p| i + p);
        out.push_str(&rest[..start]);
        out.push_str(&url(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_and_secret_parameters_go() {
        assert_eq!(url("https://user:tok3n@git.example.com/org/repo.git#main"), "https://git.example.com/org/repo.git#main");
        assert_eq!(url("https://oauth2@h/r"), "https://h/r");
        assert_eq!(
            url("https://h/app.tgz?X-Amz-Signature=abc&X-Amz-Date=1&token=t#x"),
            "https://h/app.tgz?X-Amz-Signature=redacted&X-Amz-Date=1&token=redacted#x"
        );
        assert_eq!(url("https://h/a?access_token=s3cr3t"), "https://h/a?access_token=redacted");
        assert_eq!(url("https://h:8443/a?sig=zz&v=1"), "https://h:8443/a?sig=redacted&v=1");
    }

    #[test]
    fn what_is_not_a_url_is_left_alone() {
        for s in ["/src/app", "git@github.com:org/repo.git", "app.tar", "file:///abs/path", "https://h/plain"] {
            assert_eq!(url(s), s);
        }
    }

    #[test]
    fn urls_inside_text_are_redacted() {
        let msg = "fatal: unable to access 'https://u:p4ss@h/r.git/': The requested URL returned error: 403";
        assert_eq!(text(msg), "fatal: unable to access 'https://h/r.git/': The requested URL returned error: 403");
        assert_eq!(text("GET http://h/x?token=a failed; retry"), "GET http://h/x?token=redacted failed; retry");
        assert_eq!(text("no url here"), "no url here");
    }
}
