//! Pacing of Discord requests from Discord's documented rate-limit headers.
//!
//! Discord sends `X-RateLimit-Limit`, `-Remaining`, `-Reset-After` and `-Bucket` on every
//! answer of a limited route, and `X-RateLimit-Scope` only on a 429
//! (<https://discord.com/developers/docs/topics/rate-limits>). A client that learns a bucket's
//! state only from 429s (as twilight-http 0.18 does, because it reads the bucket headers only
//! when the scope header is present) draws a 429 in every window, and 10,000 invalid requests in
//! 10 minutes get the bot's IP banned for an hour. So this module is written by hand: no crate
//! paces from the documented headers and honours header-less (Cloudflare) 429s.
//!
//! - Each bucket (a channel's or a webhook's message route) is a lane: one request in flight at
//!   a time, taken in arrival order (tokio's fair mutex), so the bucket's `Remaining` is exact
//!   and posts to one channel go out in order. With `Remaining` 0 the lane waits until the reset.
//! - The global limit (50 requests per second per bot) is a GCRA pacer, and a global 429 (scope
//!   `global`, or a 429 without Discord's headers, as Cloudflare sends) pauses every lane of the
//!   client for its `Retry-After`.
//!
//! Times are tokio instants, so tests move through windows on the paused clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};
use tokio::time::Instant;

/// Discord's global limit: requests per second per bot token.
pub const GLOBAL_PER_SECOND: u32 = 50;

/// What a response said about its bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BucketHeaders {
    /// `X-RateLimit-Remaining`.
    pub remaining: Option<u32>,
    /// `X-RateLimit-Reset-After`, in seconds.
    pub reset_after: Option<f64>,
}

impl BucketHeaders {
    /// Reads the documented headers (absent or malformed ones are `None`).
    pub fn from_headers(headers: &reqwest::header::HeaderMap) -> Self {
        let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        Self {
            remaining: get("x-ratelimit-remaining").and_then(|v| v.parse().ok()),
            reset_after: get("x-ratelimit-reset-after")
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0),
        }
    }
}

/// The rate-limit state of one client (the bot, or all webhooks).
#[derive(Debug, Default)]
pub struct RateLimiter {
    lanes: Mutex<HashMap<String, Arc<AsyncMutex<Lane>>>>,
    global: Mutex<Global>,
    /// Global requests per second; 0 disables the pacer (webhooks have no per-bot limit).
    per_second: u32,
}

#[derive(Debug, Default)]
struct Global {
    /// GCRA theoretical arrival time of the next request.
    tat: Option<Instant>,
    /// No request before this (a global 429).
    paused_until: Option<Instant>,
}

/// A bucket's known state.
#[derive(Debug, Default)]
pub struct Lane {
    remaining: Option<u32>,
    reset_at: Option<Instant>,
}

/// The turn of one request in its bucket: held until its answer is recorded.
pub struct Turn {
    lane: OwnedMutexGuard<Lane>,
}

impl RateLimiter {
    /// A limiter with the global pacer at `per_second` requests per second (0: none).
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second,
            ..Self::default()
        }
    }

    /// Waits until a request to `bucket` may go out: its turn in the bucket, the bucket's
    /// reset when it is exhausted, a global pause, and the global pacer.
    pub async fn acquire(&self, bucket: &str) -> Turn {
        let lane = {
            let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
            lanes.entry(bucket.to_owned()).or_default().clone()
        };
        let mut lane = lane.lock_owned().await;
        if lane.remaining == Some(0)
            && let Some(reset_at) = lane.reset_at
        {
            tokio::time::sleep_until(reset_at).await;
        }
        if lane.reset_at.is_some_and(|at| at <= Instant::now()) {
            // The window has reset: the next answer tells the new state.
            lane.remaining = None;
            lane.reset_at = None;
        }
        self.wait_global().await;
        if let Some(remaining) = lane.remaining.as_mut() {
            *remaining = remaining.saturating_sub(1);
        }
        Turn { lane }
    }

    async fn wait_global(&self) {
        loop {
            let wait_until = {
                let mut global = self.global.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                match global.paused_until {
                    Some(until) if until > now => Some(until),
                    _ if self.per_second == 0 => None,
                    _ => {
                        // GCRA: one request per interval, bursts of up to `per_second`.
                        let interval = Duration::from_secs(1) / self.per_second;
                        let tolerance = interval * (self.per_second - 1);
                        let tat = global.tat.unwrap_or(now).max(now);
                        let earliest = tat.checked_sub(tolerance).unwrap_or(now);
                        if earliest > now {
                            Some(earliest)
                        } else {
                            global.tat = Some(tat + interval);
                            None
                        }
                    }
                }
            };
            match wait_until {
                Some(at) => tokio::time::sleep_until(at).await,
                None => return,
            }
        }
    }

    /// A global 429: no request of this client goes out for `retry_after`.
    pub fn pause_all(&self, retry_after: Duration) {
        let until = Instant::now() + retry_after;
        let mut global = self.global.lock().unwrap_or_else(|e| e.into_inner());
        global.paused_until = Some(global.paused_until.map_or(until, |u| u.max(until)));
    }

    /// How long every request of this client is paused for, if it is.
    pub fn paused_for(&self) -> Option<Duration> {
        let global = self.global.lock().unwrap_or_else(|e| e.into_inner());
        global
            .paused_until
            .and_then(|u| u.checked_duration_since(Instant::now()))
    }
}

impl Turn {
    /// Records what the answer said about the bucket.
    pub fn record(&mut self, headers: BucketHeaders) {
        let now = Instant::now();
        if let Some(remaining) = headers.remaining {
            self.lane.remaining = Some(remaining);
        }
        if let Some(after) = headers.reset_after {
            self.lane.reset_at = Some(now + Duration::from_secs_f64(after));
        }
    }

    /// A 429 for this bucket: nothing goes out on it for `retry_after`.
    pub fn exhausted_for(&mut self, retry_after: Duration) {
        let until = Instant::now() + retry_after;
        self.lane.remaining = Some(0);
        self.lane.reset_at = Some(self.lane.reset_at.map_or(until, |r| r.max(until)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(remaining: u32, reset_after: f64) -> BucketHeaders {
        BucketHeaders {
            remaining: Some(remaining),
            reset_after: Some(reset_after),
        }
    }

    /// An exhausted bucket waits for its reset; other buckets do not.
    #[tokio::test(start_paused = true)]
    async fn exhausted_bucket_waits_for_reset() {
        let limiter = RateLimiter::new(GLOBAL_PER_SECOND);
        let start = Instant::now();
        limiter.acquire("a").await.record(headers(0, 2.5));
        limiter.acquire("b").await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        limiter.acquire("a").await;
        assert_eq!(start.elapsed(), Duration::from_millis(2500));
    }

    /// Remaining counts down as requests go out, so the sixth of five waits even before the
    /// answer of the fifth was read.
    #[tokio::test(start_paused = true)]
    async fn remaining_counts_down() {
        let limiter = RateLimiter::new(0);
        let start = Instant::now();
        limiter.acquire("a").await.record(headers(4, 5.0));
        for _ in 0..4 {
            drop(limiter.acquire("a").await);
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        limiter.acquire("a").await;
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }

    /// A global pause holds every bucket; the pacer spaces a burst beyond 50 per second.
    #[tokio::test(start_paused = true)]
    async fn global_pause_and_pacer() {
        let limiter = RateLimiter::new(GLOBAL_PER_SECOND);
        let start = Instant::now();
        limiter.pause_all(Duration::from_secs(5));
        assert_eq!(limiter.paused_for(), Some(Duration::from_secs(5)));
        limiter.acquire("x").await;
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        let start = Instant::now();
        for i in 0..100 {
            drop(limiter.acquire(&format!("b{i}")).await);
        }
        // 49 more after the first are within the burst; the other 50 are 20 ms apart.
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(1000) && took <= Duration::from_millis(1020),
            "{took:?}"
        );
    }

    /// A bucket 429 holds that bucket for its retry-after.
    #[tokio::test(start_paused = true)]
    async fn bucket_429_holds_the_bucket() {
        let limiter = RateLimiter::new(0);
        let start = Instant::now();
        limiter
            .acquire("a")
            .await
            .exhausted_for(Duration::from_secs(3));
        limiter.acquire("a").await;
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }
}
