//! How the state store's writes are going: [`WriteHealth`], which the backend tells of every
//! write it could not make (a full disk, an I/O error, a damaged page, a lock held too long)
//! and of every commit that succeeded, and which `/readyz`, the metrics and the log read.
//!
//! A store that answers `SELECT 1` can still fail every write: with the disk full, or with
//! damaged pages in the middle of the database, the server used to run, lose every run record
//! and post state it tried to keep, and answer `/readyz` with 200. Now:
//!
//! - `/readyz` is 503 while the last write failed, and for [`FAILURE_HOLD`] after the last
//!   failure: a store that fails one write in two (a damaged table among sound ones, a disk
//!   with a few free pages left) is not healthy, and readiness should not flap with each
//!   write. The body names when the failures began, how many there were, and the last cause.
//! - `botticelli_store_write_failures_total` counts every failed write and
//!   `botticelli_store_writes_failing` is 1 while the last write failed (see
//!   [`WriteHealth::observe`]).
//! - The log has one line when writes start failing, then at most one a minute with the
//!   count of failures since (`repeated`), and one when the spell is over; not one per failed
//!   write (the disk full, that was hundreds a minute).
//!
//! Errors that say nothing about the store's health (a constraint a caller's write broke, a
//! post in the wrong status) are not reported here: the backend reports only failures of the
//! storage itself.

use crate::clock::Clock;
use crate::telemetry::LOG_REPEAT_INTERVAL;
use chrono::{DateTime, SecondsFormat, Utc};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use tokio::time::Instant;

/// How long after its last failed write the store still counts as failing (see the module
/// doc).
pub const FAILURE_HOLD: Duration = Duration::from_secs(60);

/// The store's write outcomes (see the module doc). Shared by the store's clones.
pub struct WriteHealth {
    /// Where the store lives, for the log.
    location: String,
    /// Whether the last write failed.
    last_failed: AtomicBool,
    /// Whether `spell` holds a spell of failures; read without the lock on every commit.
    in_spell: AtomicBool,
    spell: Mutex<Option<Spell>>,
    clock: Clock,
    /// Told of each failed write (`false`) and of each success after a failure (`true`).
    observer: OnceLock<Box<dyn Fn(bool) + Send + Sync>>,
}

impl std::fmt::Debug for WriteHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteHealth")
            .field("location", &self.location)
            .field("last_failed", &self.last_failed)
            .field("spell", &self.spell)
            .finish_non_exhaustive()
    }
}

/// A spell of failures: from the first failed write after a healthy spell until a write
/// succeeds [`FAILURE_HOLD`] or more after the last failure.
#[derive(Debug, Clone)]
struct Spell {
    since: DateTime<Utc>,
    failed: u64,
    last_at: Instant,
    last_cause: String,
    /// When a failure was last logged, and how many were not logged since.
    logged_at: Instant,
    held_back: u64,
}

impl Spell {
    /// Whether the spell is over at `now`, given whether the last write failed.
    fn over(&self, last_failed: bool, now: Instant) -> bool {
        !last_failed && now.duration_since(self.last_at) >= FAILURE_HOLD
    }

    fn since(&self) -> String {
        self.since.to_rfc3339_opts(SecondsFormat::Secs, true)
    }
}

impl WriteHealth {
    /// The health of the store at `location` (for the log), which has not failed yet.
    pub(crate) fn new(location: &str) -> Self {
        Self {
            location: location.to_owned(),
            last_failed: AtomicBool::new(false),
            in_spell: AtomicBool::new(false),
            spell: Mutex::new(None),
            clock: Clock::system(),
            observer: OnceLock::new(),
        }
    }

    /// Calls `f` with `false` for each failed write and with `true` for each write that
    /// succeeds after a failed one (the metrics). Only the first observer set is kept.
    pub fn observe(&self, f: impl Fn(bool) + Send + Sync + 'static) {
        let _ = self.observer.set(Box::new(f));
    }

    fn spell(&self) -> std::sync::MutexGuard<'_, Option<Spell>> {
        // Held for a few assignments; a poisoned value is still a valid one.
        self.spell
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A write the storage could not make, and why.
    pub(crate) fn failed(&self, cause: &str) {
        let now = Instant::now();
        let was_failing = self.last_failed.swap(true, Ordering::Relaxed);
        if let Some(observer) = self.observer.get() {
            observer(false);
        }
        let mut spell = self.spell();
        if let Some(s) = spell.as_mut()
            && !s.over(was_failing, now)
        {
            s.failed += 1;
            s.last_at = now;
            s.last_cause = cause.to_owned();
            if now.duration_since(s.logged_at) < LOG_REPEAT_INTERVAL {
                s.held_back += 1;
                return;
            }
            let repeated = std::mem::take(&mut s.held_back);
            s.logged_at = now;
            tracing::error!(store = %self.location, cause, since = %s.since(), failed = s.failed, repeated, "state store: writes still failing");
            return;
        }
        if let Some(ended) = spell.take() {
            // It ended while no write came to say so.
            ended.log_end(&self.location);
        }
        let started = Spell {
            since: self.clock.now(),
            failed: 1,
            last_at: now,
            last_cause: cause.to_owned(),
            logged_at: now,
            held_back: 0,
        };
        tracing::error!(store = %self.location, cause, since = %started.since(), "state store: a write failed; what it carried (a run's record, a post's state) is lost, and so is each write's until they succeed again");
        *spell = Some(started);
        self.in_spell.store(true, Ordering::Relaxed);
    }

    /// A commit went through.
    pub(crate) fn succeeded(&self) {
        if self.last_failed.load(Ordering::Relaxed)
            && self.last_failed.swap(false, Ordering::Relaxed)
            && let Some(observer) = self.observer.get()
        {
            observer(true);
        }
        if !self.in_spell.load(Ordering::Relaxed) {
            return;
        }
        let mut spell = self.spell();
        if spell
            .as_ref()
            .is_some_and(|s| s.over(self.last_failed(), Instant::now()))
            && let Some(ended) = spell.take()
        {
            self.in_spell.store(false, Ordering::Relaxed);
            ended.log_end(&self.location);
        }
    }

    /// Whether the last write failed.
    pub fn last_failed(&self) -> bool {
        self.last_failed.load(Ordering::Relaxed)
    }

    /// What is wrong with the store's writes, for `/readyz`: `None` when the last write
    /// succeeded and none failed in the last [`FAILURE_HOLD`].
    pub fn problem(&self) -> Option<String> {
        let last_failed = self.last_failed();
        let s = self.spell().clone()?;
        let now = Instant::now();
        if s.over(last_failed, now) {
            return None;
        }
        Some(if last_failed {
            format!(
                "writes failing since {} ({} failed, none succeeded since): {}",
                s.since(),
                s.failed,
                s.last_cause
            )
        } else {
            format!(
                "{} writes failed since {}, the last {}s ago: {}; ready again {}s after the last failure",
                s.failed,
                s.since(),
                now.duration_since(s.last_at).as_secs(),
                s.last_cause,
                FAILURE_HOLD.as_secs()
            )
        })
    }
}

impl Spell {
    fn log_end(&self, location: &str) {
        tracing::warn!(store = %location, failed = self.failed, since = %self.since(), last_cause = %self.last_cause, "state store: writes succeed again");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ready until a write fails; not ready while writes fail and for a minute after the
    /// last failure, even when writes succeed in between; ready again after that.
    #[tokio::test(start_paused = true)]
    async fn failing_writes_are_reported_until_a_minute_after_the_last() {
        let health = WriteHealth::new("test.db");
        health.succeeded();
        assert_eq!(health.problem(), None);
        health.failed("database or disk is full");
        tokio::time::advance(Duration::from_secs(5)).await;
        health.failed("database or disk is full");
        let p = health.problem().unwrap();
        assert!(
            p.starts_with("writes failing since ")
                && p.ends_with("(2 failed, none succeeded since): database or disk is full"),
            "{p}"
        );
        health.succeeded();
        tokio::time::advance(Duration::from_secs(30)).await;
        let p = health.problem().unwrap();
        assert!(
            p.starts_with("2 writes failed since ")
                && p.contains("the last 30s ago: database or disk is full"),
            "{p}"
        );
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(health.problem(), None);
        // A new failure starts a new count.
        health.failed("disk I/O error");
        assert!(
            health
                .problem()
                .unwrap()
                .contains("(1 failed, none succeeded since): disk I/O error")
        );
    }

    /// A write failing a minute after another still fails: the last write's outcome counts,
    /// however long ago it was.
    #[tokio::test(start_paused = true)]
    async fn a_store_whose_last_write_failed_stays_failing() {
        let health = WriteHealth::new("test.db");
        health.failed("database disk image is malformed");
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(health.problem().is_some());
        health.succeeded();
        assert!(
            health.problem().is_none(),
            "the last failure is an hour old"
        );
    }

    /// The observer hears every failure and the first success after them, not every
    /// success.
    #[tokio::test(start_paused = true)]
    async fn the_observer_hears_failures_and_the_recovery() {
        let health = WriteHealth::new("test.db");
        let heard = std::sync::Arc::new(Mutex::new(Vec::new()));
        health.observe({
            let heard = heard.clone();
            move |ok| heard.lock().unwrap().push(ok)
        });
        health.succeeded();
        health.failed("x");
        health.failed("x");
        health.succeeded();
        health.succeeded();
        assert_eq!(*heard.lock().unwrap(), vec![false, false, true]);
    }
}
