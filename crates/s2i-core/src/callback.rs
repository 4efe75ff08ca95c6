//! `--callback-url`: POST the outcome of a build as JSON, `{"success":bool,"labels":{…}}`.

use std::collections::BTreeMap;
use std::time::Duration;

use tracing::debug;

use crate::error::{BuildError, Result};

/// The callback's body: `labels` is left out when there are none (a build that failed before
/// committing). Newline-terminated, as the reference sends it.
pub fn body(success: bool, labels: &BTreeMap<String, String>) -> String {
    let mut doc = serde_json::json!({ "success": success });
    if !labels.is_empty() {
        doc["labels"] = serde_json::json!(labels);
    }
    format!("{doc}\n")
}

/// Send the callback. Transport failures are retried per `s2i_registry::retry` (up to 3 tries,
/// after 1 s then 2 s, each with the full body);
/// an answer with a status of 300 or more is a failure, not retried, and so is a redirect (it is
/// never followed: the outcome of a build goes only where the user said).
pub async fn send(url: &str, success: bool, labels: &BTreeMap<String, String>) -> Result<()> {
    let failed = |reason: String| BuildError::Callback { url: crate::redact::url(url), reason: crate::redact::text(&reason) };
    let client = reqwest::Client::builder()
        .dns_resolver(s2i_registry::dns::resolver())
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| failed(e.to_string()))?;
    let body = body(success, labels);
    // A server that cannot be reached is tried again, per the one retry policy of s2i; one that
    // answers, whatever it answers, is not.
    let shown = crate::redact::url(url);
    let what = format!("sending the callback to {shown}");
    let answer = s2i_registry::retry::retrying(
        &what,
        |e: &reqwest::Error| Some(crate::redact::text(&e.to_string())),
        || client.post(url).header("Content-Type", "application/json").body(body.clone()).send(),
    )
    .await
    .map_err(|e| failed(format!("{} attempts failed, the last with: {e}", s2i_registry::retry::TRIES)))?;
    if answer.status().as_u16() >= 300 {
        return Err(failed(format!("the server answered {}", answer.status())));
    }
    debug!("callback to {shown} answered {}", answer.status());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_leaves_out_empty_labels() {
        assert_eq!(body(false, &BTreeMap::new()), "{\"success\":false}\n");
        let labels = BTreeMap::from([("a".to_string(), "1".to_string())]);
        assert_eq!(body(true, &labels), "{\"labels\":{\"a\":\"1\"},\"success\":true}\n");
    }
}

#[cfg(test)]
mod send_tests {
    use super::*;
    use s2i_testkit::{Answer, HttpServer};

    #[tokio::test]
    async fn a_redirect_is_a_failure_and_is_not_followed() {
        let elsewhere = HttpServer::recorder();
        let to = format!("{}/steal", elsewhere.url());
        let server = HttpServer::scripted(move |_| Answer::redirect(&to));
        let err = send(&format!("{}/cb", server.url()), true, &BTreeMap::new()).await.unwrap_err();
        assert!(err.to_string().contains("302"), "{err}");
        assert!(elsewhere.requests().is_empty(), "the body went only where the user said");
    }

    #[tokio::test]
    async fn credentials_in_the_callback_url_never_show() {
        let err = send("http://user:s3cr3t@127.0.0.1:1/cb?token=t0k", false, &BTreeMap::new()).await.unwrap_err();
        let shown = err.to_string();
        assert!(!shown.contains("s3cr3t") && !shown.contains("t0k"), "{shown}");
    }
}
