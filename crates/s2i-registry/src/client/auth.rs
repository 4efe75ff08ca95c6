//! Registry auth challenges (`WWW-Authenticate`) and the token service's answer.

use serde::Deserialize;

/// How a registry wants requests authenticated, from its answer to `GET /v2/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    /// No authentication at all.
    None,
    /// HTTP Basic with the user and password on every request.
    Basic,
    /// A token from `realm` (the distribution token protocol).
    Bearer { realm: String, service: Option<String> },
}

/// A parsed `WWW-Authenticate` header: the scheme and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuthHeader {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl AuthHeader {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn challenge(&self) -> Option<Challenge> {
        if self.scheme.eq_ignore_ascii_case("basic") {
            Some(Challenge::Basic)
        } else if self.scheme.eq_ignore_ascii_case("bearer") {
            let realm = self.param("realm")?.to_string();
            Some(Challenge::Bearer { realm, service: self.param("service").map(str::to_string) })
        } else {
            None
        }
    }
}

/// Parse `Bearer realm="https://auth",service="reg",scope="repository:a/b:pull,push"`: a scheme,
/// then `key=value` pairs separated by commas, values quoted (with `\` escapes) or bare tokens.
pub(crate) fn parse_www_authenticate(header: &str) -> Option<AuthHeader> {
    let header = header.trim();
    let (scheme, mut rest) = match header.find(char::is_whitespace) {
        Some(i) => (&header[..i], header[i..].trim_start()),
        None => (header, ""),
    };
    if scheme.is_empty() {
        return None;
    }
    let mut params = Vec::new();
    while !rest.is_empty() {
        let eq = rest.find('=')?;
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_string();
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => v.push(c),
                }
            }
            let end = end?;
            value = v;
            rest = &quoted[end + 1..];
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        rest = rest.trim_start().trim_start_matches(',').trim_start();
        if !key.is_empty() {
            params.push((key, value));
        }
    }
    Some(AuthHeader { scheme: scheme.to_string(), params })
}

/// What the token service answers (Docker's `token`, OAuth's `access_token`).
#[derive(Deserialize)]
pub(crate) struct TokenAnswer {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
}

impl TokenAnswer {
    pub fn into_token(self) -> Option<String> {
        self.token.filter(|t| !t.is_empty()).or(self.access_token.filter(|t| !t.is_empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let h = parse_www_authenticate(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push",error="insufficient_scope""#,
        )
        .unwrap();
        assert_eq!(h.param("scope"), Some("repository:library/busybox:pull,push"));
        assert_eq!(h.param("error"), Some("insufficient_scope"));
        assert_eq!(
            h.challenge(),
            Some(Challenge::Bearer { realm: "https://auth.docker.io/token".into(), service: Some("registry.docker.io".into()) })
        );
        let h = parse_www_authenticate(r#"Basic realm="s2i \"test\"""#).unwrap();
        assert_eq!((h.challenge(), h.param("realm")), (Some(Challenge::Basic), Some("s2i \"test\"")));
        let h = parse_www_authenticate("Bearer realm=http://t/token, service=reg").unwrap();
        assert_eq!(h.challenge(), Some(Challenge::Bearer { realm: "http://t/token".into(), service: Some("reg".into()) }));
        assert_eq!(parse_www_authenticate("Bearer service=x").unwrap().challenge(), None);
        assert_eq!(parse_www_authenticate("Negotiate").unwrap().challenge(), None);
        assert!(parse_www_authenticate(r#"Bearer realm="unterminated"#).is_none());
    }
}
