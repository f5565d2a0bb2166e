//! Repeated log lines, at most once per interval: [`LogThrottle`].
//!
//! A fault that outlasts a few seconds (a full disk, a damaged database, Discord down) makes
//! the loops that retry report the same error again and again: the re-send loop once a second
//! per unsent post. Logged every time, that was ~650 lines a minute that said nothing new and
//! buried the line that did. A throttled line is logged the first time, then at most once per
//! interval, carrying `repeated`: how many identical lines were held back since the last one
//! logged. Metrics count every occurrence; the log says that it keeps happening, and how often.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// How often a repeated line is logged, by default.
pub const LOG_REPEAT_INTERVAL: Duration = Duration::from_secs(60);

/// Distinct lines remembered before the ones quiet for a whole interval are forgotten (a cause
/// can name a post id, so the set of keys is not bounded by itself).
const MAX_KEYS: usize = 256;

/// Decides which of a repeated log line's occurrences are logged: the first, then one per
/// interval (see the module doc). Keys are the caller's: what makes two lines "the same"
/// (the place and the cause, say; not a post id that differs each time).
#[derive(Debug)]
pub struct LogThrottle {
    every: Duration,
    seen: Mutex<HashMap<String, Seen>>,
}

#[derive(Debug)]
struct Seen {
    logged_at: Instant,
    held_back: u64,
}

impl Default for LogThrottle {
    fn default() -> Self {
        Self::new(LOG_REPEAT_INTERVAL)
    }
}

impl LogThrottle {
    /// A throttle logging each line at most once per `every`.
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the line `key` is logged now: `Some(n)` with the number of identical lines
    /// held back since it was last logged (`Some(0)` the first time), or `None` (it was
    /// logged less than an interval ago; this one is counted in the next line's `n`).
    pub fn admit(&self, key: &str) -> Option<u64> {
        let now = Instant::now();
        // Held for a map look-up only; nothing here can panic and poison it, and a poisoned
        // map is still a valid map.
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(entry) = seen.get_mut(key) {
            if now.duration_since(entry.logged_at) < self.every {
                entry.held_back += 1;
                return None;
            }
            let held_back = entry.held_back;
            *entry = Seen {
                logged_at: now,
                held_back: 0,
            };
            return Some(held_back);
        }
        if seen.len() >= MAX_KEYS {
            // Lines quiet for an interval are forgotten; what they held back is lost, which
            // only the log loses (the metrics count every occurrence).
            let every = self.every;
            seen.retain(|_, e| now.duration_since(e.logged_at) < every);
        }
        if seen.len() < MAX_KEYS {
            seen.insert(
                key.to_owned(),
                Seen {
                    logged_at: now,
                    held_back: 0,
                },
            );
        }
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first line is logged, the next ones within the minute are held back, and the
    /// first one after the minute is logged with the count of those held back.
    #[tokio::test(start_paused = true)]
    async fn a_repeated_line_is_logged_once_a_minute_with_its_count() {
        let throttle = LogThrottle::default();
        assert_eq!(throttle.admit("commit: disk full"), Some(0));
        let mut logged = 0;
        // One occurrence a second for three minutes, as the re-send loop made them.
        for _ in 0..180 {
            tokio::time::advance(Duration::from_secs(1)).await;
            if let Some(held_back) = throttle.admit("commit: disk full") {
                assert_eq!(held_back, 59, "each line counts the minute before it");
                logged += 1;
            }
        }
        assert_eq!(logged, 3, "one line a minute");
    }

    /// Different lines do not hold each other back.
    #[tokio::test(start_paused = true)]
    async fn different_lines_are_counted_apart() {
        let throttle = LogThrottle::new(Duration::from_secs(10));
        assert_eq!(throttle.admit("a"), Some(0));
        assert_eq!(throttle.admit("b"), Some(0));
        assert_eq!(throttle.admit("a"), None);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(throttle.admit("b"), Some(0));
        assert_eq!(throttle.admit("a"), Some(1));
    }

    /// A line that stops and comes back after a quiet interval is logged at once, with
    /// nothing held back.
    #[tokio::test(start_paused = true)]
    async fn a_line_that_comes_back_is_logged_at_once() {
        let throttle = LogThrottle::new(Duration::from_secs(60));
        assert_eq!(throttle.admit("x"), Some(0));
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(throttle.admit("x"), Some(0));
    }

    /// Keys that differ every time (a post id in the cause) do not make the map grow
    /// without bound.
    #[tokio::test(start_paused = true)]
    async fn distinct_keys_are_bounded() {
        let throttle = LogThrottle::new(Duration::from_secs(60));
        for i in 0..10 * MAX_KEYS {
            tokio::time::advance(Duration::from_secs(1)).await;
            assert_eq!(throttle.admit(&format!("post {i}")), Some(0));
        }
        assert!(throttle.seen.lock().unwrap().len() <= MAX_KEYS);
    }
}
