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
//! - Each bucket (a channel's or a webhook's message route) is a lane: one send at a time,
//!   taken in arrival order (tokio's fair mutex), so the bucket's `Remaining` is exact and posts
//!   to one channel go out in order. A send keeps its lane through its retries ([`Turn`] and
//!   [`RateLimiter::ready`]): a post answered 429 is sent again before the posts behind it.
//!   With `Remaining` 0 the lane waits until the reset.
//! - The global limit (50 requests per second per bot) is a rolling window: no second holds
//!   more than 50 requests, however they fall, and a pause does not reset the count. A global
//!   429 (scope `global`, or a 429 without Discord's headers, as Cloudflare sends) pauses every
//!   lane of the client for its whole `Retry-After`; a 429 with no hint at all pauses for 1 s,
//!   doubling with each such answer in a row up to [`MAX_HINTLESS_PAUSE`].
//!
//! Times are tokio instants, so tests move through windows on the paused clock.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};
use tokio::time::Instant;

/// Discord's global limit: requests per second per bot token.
pub const GLOBAL_PER_SECOND: u32 = 50;

/// The longest pause after 429s that say nothing of how long to wait.
pub const MAX_HINTLESS_PAUSE: Duration = Duration::from_secs(60);

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
    /// When the last `per_second` requests went out, oldest first.
    sent: VecDeque<Instant>,
    /// No request before this (a global 429).
    paused_until: Option<Instant>,
    /// 429s in a row that gave no wait (see [`RateLimiter::hintless_pause`]).
    hintless: u32,
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

    /// Waits for the turn of a send in `bucket` (arrival order), which it keeps through its
    /// retries; each request of it waits for [`RateLimiter::ready`] first.
    pub async fn lane(&self, bucket: &str) -> Turn {
        let lane = {
            let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
            lanes.entry(bucket.to_owned()).or_default().clone()
        };
        Turn {
            lane: lane.lock_owned().await,
        }
    }

    /// Waits until the next request of `turn` may go out: the bucket's reset when it is
    /// exhausted, a global pause, and the global window; then counts the request.
    pub async fn ready(&self, turn: &mut Turn) {
        let lane = &mut turn.lane;
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
                        // A rolling window: the request may go once the one sent
                        // `per_second` requests ago is a second old.
                        let full = global.sent.len() >= self.per_second as usize;
                        match global.sent.front() {
                            Some(&oldest) if full && oldest + Duration::from_secs(1) > now => {
                                Some(oldest + Duration::from_secs(1))
                            }
                            _ => {
                                if full {
                                    global.sent.pop_front();
                                }
                                global.sent.push_back(now);
                                None
                            }
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

    /// A 429 that says nothing of how long to wait (no body, no `Retry-After`, no bucket
    /// headers): every request of this client pauses for 1 s, doubling with each such answer
    /// in a row, up to [`MAX_HINTLESS_PAUSE`]. Returns the pause.
    pub fn hintless_pause(&self) -> Duration {
        let pause = {
            let mut global = self.global.lock().unwrap_or_else(|e| e.into_inner());
            let pause = Duration::from_secs(1u64 << global.hintless.min(6)).min(MAX_HINTLESS_PAUSE);
            global.hintless = global.hintless.saturating_add(1);
            pause
        };
        self.pause_all(pause);
        pause
    }

    /// An answer that was not a 429: the next hintless 429 starts again from 1 s.
    pub fn answered(&self) {
        let mut global = self.global.lock().unwrap_or_else(|e| e.into_inner());
        global.hintless = 0;
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

    impl RateLimiter {
        /// A send of one request: its turn in `bucket`, then [`RateLimiter::ready`].
        async fn acquire(&self, bucket: &str) -> Turn {
            let mut turn = self.lane(bucket).await;
            self.ready(&mut turn).await;
            turn
        }
    }

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
        // With `x`: 50 at once, 50 a second later, the last one a second after that; never
        // more than 50 in any second.
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    /// The global window is rolling: requests spread over time, then a burst, never put more
    /// than 50 in any one-second window (the pacer this replaced let about 99 through in one
    /// second: a burst of 50 on top of 50 per second); a pause does not empty it.
    #[tokio::test(start_paused = true)]
    async fn global_window_never_holds_more_than_the_limit() {
        let limiter = RateLimiter::new(GLOBAL_PER_SECOND);
        let start = Instant::now();
        let mut sent = Vec::new();
        for i in 0..300 {
            if i % 3 == 0 {
                tokio::time::sleep(Duration::from_millis(7)).await;
            }
            if i == 150 {
                limiter.pause_all(Duration::from_millis(300));
            }
            drop(limiter.acquire(&format!("b{i}")).await);
            sent.push(Instant::now());
        }
        let busiest = sent
            .iter()
            .map(|&from| {
                sent.iter()
                    .filter(|&&t| t >= from && t < from + Duration::from_secs(1))
                    .count()
            })
            .max()
            .unwrap();
        assert_eq!(busiest, 50, "{:?}", start.elapsed());
    }

    /// 429s without any hint pause everything for 1, 2, 4 ... up to 60 s; an answer resets it.
    #[tokio::test(start_paused = true)]
    async fn hintless_429s_back_off_exponentially() {
        let limiter = RateLimiter::new(GLOBAL_PER_SECOND);
        let pauses: Vec<u64> = (0..9).map(|_| limiter.hintless_pause().as_secs()).collect();
        assert_eq!(pauses, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(limiter.paused_for(), Some(Duration::from_secs(60)));
        limiter.answered();
        assert_eq!(limiter.hintless_pause(), Duration::from_secs(1));
    }

    /// A send keeps its lane between its requests: the one behind it waits for the whole send.
    #[tokio::test(start_paused = true)]
    async fn a_send_keeps_its_lane_through_retries() {
        let limiter = Arc::new(RateLimiter::new(0));
        let mut first = limiter.lane("a").await;
        limiter.ready(&mut first).await;
        first.exhausted_for(Duration::from_secs(2));
        let behind = tokio::spawn({
            let limiter = limiter.clone();
            async move {
                limiter.acquire("a").await;
                Instant::now()
            }
        });
        tokio::task::yield_now().await;
        let start = Instant::now();
        limiter.ready(&mut first).await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(first);
        assert!(behind.await.unwrap() >= start + Duration::from_secs(3));
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
