//! The one retry policy of s2i, for every request that may fail for a moment (a registry's
//! manifest, config, layer or pushed blob; a `--callback-url` POST): at most 3 tries, the
//! second after 1 s, the third after 2 s more, no jitter; only a failure the caller calls
//! transient is tried again, each time with a warning. A CI job should not fail because a
//! server blinked once, nor wait long on one that is down.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use tracing::warn;

/// Tries of one request at most.
pub const TRIES: usize = 3;
/// The pause before the second try, doubled before each further one.
pub const FIRST_PAUSE: Duration = Duration::from_secs(1);

/// Runs `attempt` until it succeeds, fails for good, or has failed transiently [`TRIES`] times.
/// `transient` gives the reason of a failure worth another try (logged as a warning with what
/// was being done, `what`); `None` ends the tries with that error.
pub async fn retrying<T, E, Fut>(what: &str, transient: impl Fn(&E) -> Option<String>, attempt: impl FnMut() -> Fut) -> Result<T, E>
where
    Fut: Future<Output = Result<T, E>>,
{
    let policy = ExponentialBuilder::new().with_min_delay(FIRST_PAUSE).with_factor(2.0).with_max_times(TRIES - 1);
    let mut tried = 1;
    attempt
        .retry(policy)
        .when(|e| transient(e).is_some())
        .notify(|e, pause| {
            tried += 1;
            let reason = transient(e).unwrap_or_default();
            warn!("{what}: {reason}; trying again in {} s (try {tried} of {TRIES})", pause.as_secs());
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// On tokio's paused clock: the pauses are the policy's, not the machine's speed.
    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_tried_three_times_after_one_then_two_seconds() {
        let calls = Cell::new(0);
        let started = tokio::time::Instant::now();
        let failing = || {
            calls.set(calls.get() + 1);
            async { Err::<(), _>("blip") }
        };
        assert_eq!(retrying("x", |e: &&str| Some(e.to_string()), failing).await, Err("blip"));
        assert_eq!((calls.get(), started.elapsed()), (3, Duration::from_secs(3)));

        calls.set(0);
        let final_error = || {
            calls.set(calls.get() + 1);
            async { Err::<(), _>("refused") }
        };
        assert_eq!(retrying("x", |_: &&str| None, final_error).await, Err("refused"));
        assert_eq!(calls.get(), 1, "a failure that is not transient is not tried again");

        calls.set(0);
        let second_works = || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move { if n == 1 { Err("blip") } else { Ok(n) } }
        };
        assert_eq!(retrying("x", |e: &&str| Some(e.to_string()), second_works).await, Ok(2));
    }
}
