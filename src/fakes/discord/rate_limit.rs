//! Discord's rate limits as the fake enforces and reports them: the per-channel or per-webhook
//! buckets ([`RATE_LIMIT`] per [`RATE_LIMIT_WINDOW`]), the global per-token limit
//! ([`GLOBAL_LIMIT`] per second), the `X-RateLimit-*` headers every answer carries and the 429
//! Discord sends when a request is over a limit.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::json;
use tokio::time::Instant;

use super::{GLOBAL_LIMIT, Inner, RATE_LIMIT, RATE_LIMIT_WINDOW};

/// Bucket hashes as Discord sends them: opaque, one per route, not including the major parameter.
const CHANNEL_MESSAGES_BUCKET: &str = "80c17d2f203122d936070c88c8d10f33";
const WEBHOOK_BUCKET: &str = "5d8c7a0e1f6b4c2a9e3d7b1f0a6c4e2d";

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum BucketKey {
    /// Raw path segment, so malformed ids are counted too, as Discord does.
    Channel(String),
    Webhook(String),
}

impl BucketKey {
    fn hash(&self) -> &'static str {
        match self {
            BucketKey::Channel(_) => CHANNEL_MESSAGES_BUCKET,
            BucketKey::Webhook(_) => WEBHOOK_BUCKET,
        }
    }
}

pub(super) struct Window {
    started: Instant,
    used: u32,
}

/// Rate-limit state to report on one response.
pub(super) struct BucketReport {
    pub(super) hash: &'static str,
    pub(super) remaining: u32,
    pub(super) reset_after: Duration,
    /// The request is over a limit: 429 with this scope.
    pub(super) over: Option<Scope>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Scope {
    User,
    Global,
}

impl Inner {
    /// Counts a request against its bucket and, for the bot's routes, the global limit, and
    /// says whether it is over either. A request over a limit does not
    /// use the window up further, as with Discord.
    pub(super) fn touch_bucket(&mut self, key: BucketKey) -> BucketReport {
        let now = Instant::now();
        self.arrivals.push(now);
        let hash = key.hash();
        let global_over = matches!(key, BucketKey::Channel(_)) && {
            let global = self.global.get_or_insert(Window {
                started: now,
                used: 0,
            });
            if now >= global.started + Duration::from_secs(1) {
                global.started = now;
                global.used = 0;
            }
            global.used += 1;
            global.used > GLOBAL_LIMIT
        };
        let window = self.buckets.entry(key).or_insert(Window {
            started: now,
            used: 0,
        });
        if now >= window.started + RATE_LIMIT_WINDOW {
            window.started = now;
            window.used = 0;
        }
        let reset_after = (window.started + RATE_LIMIT_WINDOW).saturating_duration_since(now);
        let over = if global_over {
            Some(Scope::Global)
        } else if window.used >= RATE_LIMIT {
            Some(Scope::User)
        } else {
            window.used += 1;
            None
        };
        BucketReport {
            hash,
            remaining: RATE_LIMIT.saturating_sub(window.used),
            reset_after,
            over,
        }
    }
}

pub(super) fn rate_limited(retry_after: f64, global: bool, bucket: &'static str) -> Response {
    let retry_after = (retry_after.max(0.0) * 1000.0).ceil() / 1000.0;
    let body = json!({
        "message": "You are being rate limited.",
        "retry_after": retry_after,
        "global": global,
    });
    let mut response = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    set_header(headers, "x-ratelimit-limit", RATE_LIMIT.to_string());
    set_header(headers, "x-ratelimit-remaining", "0".to_owned());
    set_header(
        headers,
        "x-ratelimit-reset",
        unix_seconds_after(retry_after),
    );
    set_header(
        headers,
        "x-ratelimit-reset-after",
        seconds_ceil_ms(retry_after),
    );
    set_header(headers, "x-ratelimit-bucket", bucket.to_owned());
    // Retry-After is whole seconds, rounded up so a client that honours it is never early.
    set_header(headers, "retry-after", format!("{}", retry_after.ceil()));
    // Discord sends the scope only on 429s.
    set_header(
        headers,
        "x-ratelimit-scope",
        if global { "global" } else { "user" }.to_owned(),
    );
    if global {
        set_header(headers, "x-ratelimit-global", "true".to_owned());
    }
    response
}

/// Adds the bucket headers to a response that does not have them yet (429s carry their own).
pub(super) fn with_bucket(mut response: Response, bucket: &BucketReport) -> Response {
    let headers = response.headers_mut();
    if headers.contains_key("x-ratelimit-bucket") || headers.contains_key("cf-ray") {
        return response;
    }
    let reset_after = bucket.reset_after.as_secs_f64();
    set_header(headers, "x-ratelimit-limit", RATE_LIMIT.to_string());
    set_header(
        headers,
        "x-ratelimit-remaining",
        bucket.remaining.to_string(),
    );
    set_header(
        headers,
        "x-ratelimit-reset",
        unix_seconds_after(reset_after),
    );
    set_header(
        headers,
        "x-ratelimit-reset-after",
        seconds_ceil_ms(reset_after),
    );
    set_header(headers, "x-ratelimit-bucket", bucket.hash.to_owned());
    response
}

pub(super) fn set_header(headers: &mut HeaderMap, name: &'static str, value: String) {
    if let Ok(value) = HeaderValue::try_from(value) {
        headers.insert(HeaderName::from_static(name), value);
    }
}

/// Seconds with 3 decimals, rounded up, so a client that waits that long is never early.
fn seconds_ceil_ms(seconds: f64) -> String {
    format!("{:.3}", (seconds * 1000.0).ceil() / 1000.0)
}

/// Unix time `seconds` from now, as Discord writes `X-RateLimit-Reset` (seconds, 3 decimals).
fn unix_seconds_after(seconds: f64) -> String {
    let after = chrono::Duration::from_std(Duration::from_secs_f64(seconds.clamp(0.0, 1e9)))
        .unwrap_or_default();
    let millis = (Utc::now() + after).timestamp_millis();
    format!("{}.{:03}", millis / 1000, millis % 1000)
}
