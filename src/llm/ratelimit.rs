//! [`RateLimits`]: the local requests-per-minute and tokens-per-minute budgets of one provider,
//! shared by every caller of the process's `LlmClients`.
//!
//! The limiters are `governor` GCRA limiters driven by [`TokioClock`], a clock that reads
//! `tokio::time::Instant`, and waiting is done with `tokio::time::sleep`: on a paused tokio
//! clock (tests) the waits are skipped instantly instead of spinning or taking real time.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::time::Instant;

/// A `governor` clock following tokio's clock (which tests can pause and advance).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokioClock {
    origin: Instant,
}

impl TokioClock {
    fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    // Nanoseconds since the clock was created: `Nanos` already implements governor's
    // `Reference`, so no instant type of our own is needed.
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(Instant::now().saturating_duration_since(self.origin))
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Nanos>>;

/// The local budgets of one provider; without limits, [`RateLimits::acquire`] never waits.
pub(crate) struct RateLimits {
    clock: TokioClock,
    requests: Option<Limiter>,
    /// The token limiter and its burst (a minute's budget), which caps one charge.
    tokens: Option<(Limiter, NonZeroU32)>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("requests_per_minute", &self.requests.is_some())
            .field("tokens_per_minute", &self.tokens.is_some())
            .finish()
    }
}

impl RateLimits {
    /// Budgets replenished evenly over a minute, with a whole minute's worth as burst: with
    /// `requests_per_minute = 2`, two calls pass at once and the third waits 30s.
    pub fn new(
        requests_per_minute: Option<NonZeroU32>,
        tokens_per_minute: Option<NonZeroU32>,
    ) -> Self {
        let clock = TokioClock::new();
        let limiter =
            |per_minute| RateLimiter::direct_with_clock(Quota::per_minute(per_minute), clock);
        Self {
            clock,
            requests: requests_per_minute.map(limiter),
            tokens: tokens_per_minute.map(|per_minute| (limiter(per_minute), per_minute)),
        }
    }

    /// Waits until one request of about `tokens` tokens fits both budgets, and takes it from
    /// them. Returns how long it waited.
    ///
    /// A request larger than a whole minute's token budget is charged the whole budget (it
    /// waits for a full bucket) rather than refused: the provider may still accept it.
    pub async fn acquire(&self, tokens: u32) -> Duration {
        let start = Instant::now();
        let mut waited = false;
        if let Some(requests) = &self.requests {
            waited |= self.wait_for(requests, NonZeroU32::MIN).await;
        }
        if let Some((limiter, burst)) = &self.tokens {
            let cells = NonZeroU32::new(tokens)
                .unwrap_or(NonZeroU32::MIN)
                .min(*burst);
            waited |= self.wait_for(limiter, cells).await;
        }
        // Report exactly zero when nothing was waited for, not the nanoseconds the checks took.
        if waited {
            Instant::now().saturating_duration_since(start)
        } else {
            Duration::ZERO
        }
    }

    /// Takes `cells` from `limiter`, sleeping until they are available; whether it slept.
    async fn wait_for(&self, limiter: &Limiter, cells: NonZeroU32) -> bool {
        let mut slept = false;
        loop {
            match limiter.check_n(cells) {
                Ok(Ok(())) => return slept,
                Ok(Err(not_until)) => {
                    // Tokio timers have millisecond resolution; never sleep zero so that a
                    // rounding remainder cannot turn this into a busy loop.
                    let wait = not_until
                        .wait_time_from(self.clock.now())
                        .max(Duration::from_millis(1));
                    tokio::time::sleep(wait).await;
                    slept = true;
                }
                // Cannot happen: `cells` is capped at the burst size above. Letting the
                // request through is the safe fallback.
                Err(_) => return slept,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn third_request_waits_for_the_refill() {
        let limits = RateLimits::new(NonZeroU32::new(2), None);
        assert_eq!(limits.acquire(1).await, Duration::ZERO);
        assert_eq!(limits.acquire(1).await, Duration::ZERO);
        let waited = limits.acquire(1).await;
        assert!(waited >= Duration::from_secs(29), "{waited:?}");
        assert!(waited <= Duration::from_secs(31), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn token_budget_caps_oversized_requests() {
        let limits = RateLimits::new(None, NonZeroU32::new(1000));
        // Larger than the whole budget: charged the full minute, not refused.
        assert_eq!(limits.acquire(5000).await, Duration::ZERO);
        let waited = limits.acquire(500).await;
        assert!(waited >= Duration::from_secs(29), "{waited:?}");
        assert!(waited <= Duration::from_secs(31), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_never_waits() {
        let limits = RateLimits::new(None, None);
        for _ in 0..100 {
            assert_eq!(limits.acquire(1_000_000).await, Duration::ZERO);
        }
    }
}
