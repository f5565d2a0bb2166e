//! The values each numeric config key accepts.
//!
//! Keys are read as `u64` (or `u32`, `usize`), but the server turns them into `chrono`
//! durations added to dates, `std::time::Duration`s added to instants, and semaphore sizes, all
//! of which have smaller ranges and panic on overflow. So every such key has a maximum, checked
//! when the config is loaded (`bot-server check` refuses the file, naming the key and its
//! range). The maxima are far above any useful setting and far below where the arithmetic
//! breaks: ten years of seconds is about 3·10⁸, and chrono reaches about 8·10¹² seconds from
//! now. The code that does the arithmetic is checked as well, as a second line of defence.
//!
//! `actor_server.example.toml` documents each range next to its key.

/// Seconds in a day.
pub const DAY: u64 = 86_400;
/// Seconds in a (365-day) year.
pub const YEAR: u64 = 365 * DAY;

/// An inclusive range of values a key accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub min: u64,
    pub max: u64,
    /// The maximum in words (`10 years`), shown next to it in errors; empty for a count.
    pub max_in_words: &'static str,
}

impl Range {
    const fn new(min: u64, max: u64, max_in_words: &'static str) -> Self {
        Self {
            min,
            max,
            max_in_words,
        }
    }

    /// Whether `value` is allowed.
    pub fn contains(&self, value: u64) -> bool {
        (self.min..=self.max).contains(&value)
    }

    /// `value` if allowed; else the message for the key's error, naming the range and the
    /// value: `must be between 1 and 86400 (a day), not 0`. Takes any integer type, negative
    /// ones included, as keys are read as `u32`, `u64`, `usize` or `i64`.
    ///
    /// # Errors
    ///
    /// When `value` is outside the range.
    pub fn check<T>(&self, value: T) -> Result<u64, String>
    where
        T: TryInto<u64> + std::fmt::Display + Copy,
    {
        match value.try_into() {
            Ok(v) if self.contains(v) => Ok(v),
            _ => {
                let words = match self.max_in_words {
                    "" => String::new(),
                    words => format!(" ({words})"),
                };
                Err(format!(
                    "must be between {} and {}{words}, not {value}",
                    self.min, self.max
                ))
            }
        }
    }

    /// The range with its maximum lowered to `max` (described as `max_in_words`) when that is
    /// lower: the jitter of an interval is bounded by the interval itself.
    pub fn at_most(self, max: u64, max_in_words: &'static str) -> Self {
        if max < self.max {
            Self::new(self.min, max, max_in_words)
        } else {
            self
        }
    }
}

/// `[server] check_interval_seconds`: the scheduler's longest sleep. More than a day would
/// leave a step of the system clock unnoticed for that long and `/readyz` blind as long.
pub const CHECK_INTERVAL_SECONDS: Range = Range::new(1, DAY, "a day");
/// `[server] max_consecutive_failures`: failures in a row before the circuit opens.
pub const MAX_CONSECUTIVE_FAILURES: Range = Range::new(1, 1_000, "");
/// `[server] circuit_cooldown_seconds`.
pub const CIRCUIT_COOLDOWN_SECONDS: Range = Range::new(0, 10 * YEAR, "10 years");
/// `[server] shutdown_grace_seconds`.
pub const SHUTDOWN_GRACE_SECONDS: Range = Range::new(0, DAY, "a day");
/// `run_timeout_seconds`, of `[server]` and of an actor.
pub const RUN_TIMEOUT_SECONDS: Range = Range::new(1, DAY, "a day");
/// `[server] max_concurrent_runs`: each run is a task holding store connections and LLM
/// requests; tokio's semaphore itself stops at `usize::MAX >> 3`.
pub const MAX_CONCURRENT_RUNS: Range = Range::new(1, 1_000, "");
/// `[server] run_retention_days`; 0 keeps every run.
pub const RUN_RETENTION_DAYS: Range = Range::new(0, 36_500, "100 years");
/// `[server] post_retention_days`: 0 keeps every post's text.
pub const POST_RETENTION_DAYS: Range = Range::new(0, 36_500, "100 years");
/// `[server] max_parts_per_post`: Discord messages of 2,000 characters.
pub const MAX_PARTS_PER_POST: Range = Range::new(1, 100, "");
/// `[discord] timeout_seconds`.
pub const DISCORD_TIMEOUT_SECONDS: Range = Range::new(1, DAY, "a day");
/// `[providers.NAME] timeout_seconds`.
pub const PROVIDER_TIMEOUT_SECONDS: Range = Range::new(1, DAY, "a day");
/// `[providers.NAME] max_backoff_seconds`.
pub const MAX_BACKOFF_SECONDS: Range = Range::new(0, DAY, "a day");
/// An actor's `batch_size` (pending posts shown to a curator in one prompt).
pub const BATCH_SIZE: Range = Range::new(1, 1_000, "");
/// An interval schedule's `seconds`.
pub const INTERVAL_SECONDS: Range = Range::new(1, 10 * YEAR, "10 years");
/// An interval schedule's `jitter_seconds`; also at most the interval's `seconds`: a random
/// delay longer than the period it spreads out is more likely a mistake than a wish.
pub const JITTER_SECONDS: Range = Range::new(0, YEAR, "a year");

#[cfg(test)]
mod tests {
    use super::*;

    /// A range accepts its bounds, and its message names both bounds, the maximum in words
    /// and the refused value; `at_most` only ever lowers the maximum.
    #[test]
    fn range_message_names_bounds_and_value() {
        assert_eq!(INTERVAL_SECONDS.check(1_u32), Ok(1));
        assert_eq!(INTERVAL_SECONDS.check(10 * YEAR), Ok(10 * YEAR));
        assert_eq!(
            INTERVAL_SECONDS.check(0),
            Err("must be between 1 and 315360000 (10 years), not 0".to_owned())
        );
        assert_eq!(
            INTERVAL_SECONDS.check(-1_i64),
            Err("must be between 1 and 315360000 (10 years), not -1".to_owned())
        );
        assert_eq!(
            JITTER_SECONDS.at_most(60, "the interval").check(61),
            Err("must be between 0 and 60 (the interval), not 61".to_owned())
        );
        assert_eq!(JITTER_SECONDS.at_most(10 * YEAR, "x"), JITTER_SECONDS);
        assert_eq!(
            BATCH_SIZE.check(1001_usize),
            Err("must be between 1 and 1000, not 1001".to_owned())
        );
    }
}
