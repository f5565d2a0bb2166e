//! The retry policy of one provider ([`RetryPolicy`]) and the parsing of the delays providers
//! ask for: the `Retry-After` header (seconds or HTTP-date), OpenAI's `retry-after-ms`, and
//! Google's protobuf-JSON durations (`"12s"` in a `RetryInfo` error detail).
//!
//! The policy only computes delays; the loop that sleeps lives in `LlmClients::complete`, and it
//! sleeps with `tokio::time::sleep` so that tests on a paused tokio clock run instantly.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use chrono::{DateTime, Utc};
use reqwest::header::HeaderMap;

use super::LlmError;

/// The first backoff delay; it doubles on each retry up to the provider's `max_backoff`.
const MIN_DELAY: Duration = Duration::from_millis(500);

/// How often and how long to retry a retryable error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Cap of one wait, including waits the provider asked for.
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// A fresh backoff sequence for one call: exponential (factor 2, from 500ms) with jitter,
    /// ending after `max_retries` delays.
    pub fn backoff(&self) -> ExponentialBackoff {
        ExponentialBuilder::new()
            .with_jitter()
            .with_factor(2.0)
            .with_min_delay(MIN_DELAY.min(self.max_backoff))
            .with_max_delay(self.max_backoff)
            .with_max_times(usize::try_from(self.max_retries).unwrap_or(usize::MAX))
            .build()
    }

    /// The wait before the next attempt: what the provider asked for if it said, else the
    /// backoff's delay; capped at `max_backoff` either way (backon's jitter is added on top of
    /// its own cap, and a provider may ask for hours).
    pub fn delay_for(&self, error: &LlmError, backoff_delay: Duration) -> Duration {
        error
            .retry_after()
            .unwrap_or(backoff_delay)
            .min(self.max_backoff)
    }
}

/// The delay asked for by the response headers: `retry-after-ms` (OpenAI, milliseconds) first
/// since it is the more precise, then `Retry-After` (seconds or HTTP-date).
pub(crate) fn retry_after_from_headers(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    text("retry-after-ms")
        .and_then(parse_retry_after_ms)
        .or_else(|| text("retry-after").and_then(|value| parse_retry_after(value, Utc::now())))
}

/// Parses a `Retry-After` value: delta-seconds (`"12"`; fractions tolerated) or an HTTP-date
/// (`"Wed, 21 Oct 2015 07:28:00 GMT"`), relative to `now`. A date in the past means "now".
pub(crate) fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).ok();
    }
    let when = DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (when.with_timezone(&Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// Parses OpenAI's `retry-after-ms` header (milliseconds, possibly fractional).
pub(crate) fn parse_retry_after_ms(value: &str) -> Option<Duration> {
    let millis = value.trim().parse::<f64>().ok()?;
    Duration::try_from_secs_f64(millis / 1000.0).ok()
}

/// Parses a protobuf-JSON duration as Google sends it in `RetryInfo.retryDelay`: seconds with
/// an `s` suffix, possibly fractional (`"12s"`, `"0.5s"`, `"1.500s"`).
pub(crate) fn parse_google_duration(value: &str) -> Option<Duration> {
    let seconds = value.trim().strip_suffix('s')?.parse::<f64>().ok()?;
    Duration::try_from_secs_f64(seconds).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2015, 10, 21, 7, 28, 0)
            .single()
            .expect("valid date")
    }

    #[test]
    fn retry_after_seconds() {
        assert_eq!(
            parse_retry_after("12", now()),
            Some(Duration::from_secs(12))
        );
        assert_eq!(
            parse_retry_after(" 0 ", now()),
            Some(Duration::from_secs(0))
        );
        assert_eq!(
            parse_retry_after("1.5", now()),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_retry_after("-3", now()), None);
        assert_eq!(parse_retry_after("soon", now()), None);
    }

    #[test]
    fn retry_after_http_date() {
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now()),
            Some(Duration::from_secs(30))
        );
        // A date already past means: retry now.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now()),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_ms() {
        assert_eq!(
            parse_retry_after_ms("1500"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_retry_after_ms("x"), None);
    }

    #[test]
    fn headers_prefer_milliseconds() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "3".parse().expect("header value"));
        assert_eq!(
            retry_after_from_headers(&headers),
            Some(Duration::from_secs(3))
        );
        headers.insert("retry-after-ms", "250".parse().expect("header value"));
        assert_eq!(
            retry_after_from_headers(&headers),
            Some(Duration::from_millis(250))
        );
    }

    #[test]
    fn google_retry_delay() {
        assert_eq!(parse_google_duration("12s"), Some(Duration::from_secs(12)));
        assert_eq!(
            parse_google_duration("0.5s"),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            parse_google_duration("1.500s"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_google_duration("12"), None);
    }

    #[test]
    fn backoff_is_bounded_and_counted() {
        let policy = RetryPolicy {
            max_retries: 3,
            max_backoff: Duration::from_secs(2),
        };
        let delays: Vec<Duration> = policy.backoff().collect();
        assert_eq!(delays.len(), 3);
        assert!(delays[0] >= Duration::from_millis(500));
        let rate_limited = LlmError::RateLimited {
            provider: "p".into(),
            retry_after: Some(Duration::from_secs(3600)),
            message: String::new(),
        };
        // Both the jittered backoff and the provider's demand are capped.
        for delay in delays {
            assert!(policy.delay_for(&rate_limited, delay) <= Duration::from_secs(2));
        }
        let server = LlmError::Server {
            provider: "p".into(),
            status: 503,
            message: String::new(),
        };
        assert_eq!(
            policy.delay_for(&server, Duration::from_secs(9)),
            Duration::from_secs(2)
        );
    }
}
