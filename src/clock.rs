//! Wall-clock time that follows tokio's clock.
//!
//! Schedules are computed in UTC, but waiting is done with tokio timers. Deriving "now" from
//! `tokio::time::Instant` keeps the two in step, and lets tests pause tokio's clock and still
//! see UTC time advance as the scheduler sleeps.

use chrono::{DateTime, Utc};
use std::time::Duration;
use tokio::time::Instant;

/// A UTC clock anchored to a tokio instant.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    utc_at_start: DateTime<Utc>,
    instant_at_start: Instant,
}

impl Clock {
    /// The system clock, read once now and advanced by tokio's clock from then on.
    pub fn system() -> Self {
        Self::starting_at(Utc::now())
    }

    /// A clock reading `utc` now; used by tests to start at a chosen instant.
    pub fn starting_at(utc: DateTime<Utc>) -> Self {
        Self {
            utc_at_start: utc,
            instant_at_start: Instant::now(),
        }
    }

    /// The current UTC time.
    pub fn now(&self) -> DateTime<Utc> {
        let elapsed = Instant::now().saturating_duration_since(self.instant_at_start);
        self.utc_at_start + chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::MAX)
    }

    /// The tokio instant at which `at` will be reached (now, if it has passed).
    pub fn instant_of(&self, at: DateTime<Utc>) -> Instant {
        let now = self.now();
        let wait = (at - now).to_std().unwrap_or(Duration::ZERO);
        Instant::now() + wait
    }
}
