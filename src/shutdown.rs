//! The shutdown budget: how long `serve` may take from SIGTERM (or SIGINT) to exit, computed
//! once from the config, and the moment each part of the stop must be done by. Every part
//! keeps to it, whatever Discord, the LLM providers or admin clients do:
//!
//! | from SIGTERM | what happens |
//! |---|---|
//! | 0 | no new runs; the re-send loop stops taking posts; runs in flight go on |
//! | grace (`shutdown_grace_seconds`) | runs stop between two steps (an LLM call is dropped); a send waiting for a rate limit gives up |
//! | grace + 3 s | a Discord request still in flight is cut: a channel post stays `sending` (re-sent with its nonce at the next start), a webhook post is set aside as `failed` (it may have been posted) |
//! | grace + 5 s | the scheduler stops waiting for runs to record their end |
//! | then, at most 1 s | the admin server's connections are closed (a client that never finishes its headers does not hold the stop) |
//! | grace + 10 s ([`ShutdownBudget::total`]) | traces flushed (at most 5 s, never past this), exit 0 |
//!
//! The container's stop timeout must be longer than the total: with the default grace (15 s)
//! the process exits within 25 s, under the 30 s that `containers/containers.conf` and the
//! compose file's `stop_grace_period` give it (`scripts/check-stack-config.py` checks that the
//! image's configs fit).

use crate::config::ServerSettings;
use std::time::Duration;
use tokio::time::Instant;

/// What the budget adds to the runs' grace: cutting sends, recording, closing, flushing traces.
pub const TAIL: Duration = Duration::from_secs(10);

/// How long after the grace a Discord request in flight may still complete before it is cut:
/// Discord answers in well under a second, so a send that started just before the grace ended
/// is normally recorded, not cut.
pub const SEND_TAIL: Duration = Duration::from_secs(3);

/// How long after the sends are cut the runs get to record their end (a few store writes).
pub const RECORD_TAIL: Duration = Duration::from_secs(2);

/// How long the admin server's open connections get to finish once the scheduler stopped.
pub const ADMIN_DRAIN: Duration = Duration::from_secs(1);

/// The longest the trace flush at exit may take (it also ends at the budget's end).
pub const TRACE_FLUSH: Duration = crate::telemetry::SHUTDOWN_TIMEOUT;

/// The budget of one server, from its `[server]` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownBudget {
    grace: Duration,
}

impl ShutdownBudget {
    /// The budget of `server`: its `shutdown_grace_seconds` plus [`TAIL`].
    pub fn of(server: &ServerSettings) -> Self {
        // Loading bounds the grace to a day; the clamp keeps `Instant + grace` from
        // overflowing anyway.
        let grace = server
            .shutdown_grace_seconds
            .min(crate::limits::SHUTDOWN_GRACE_SECONDS.max);
        Self {
            grace: Duration::from_secs(grace),
        }
    }

    /// How long runs in flight get to finish.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// The longest time from SIGTERM to exit.
    pub fn total(&self) -> Duration {
        self.grace + TAIL
    }

    /// The deadlines of a stop that starts at `start`.
    pub fn start(&self, start: Instant) -> Deadlines {
        let runs = start + self.grace;
        let sends = runs + SEND_TAIL;
        Deadlines {
            start,
            runs,
            sends,
            records: sends + RECORD_TAIL,
            exit: start + self.total(),
        }
    }
}

/// The moments of one stop (tokio time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// The stop was asked for.
    pub start: Instant,
    /// Runs in flight stop between steps; sends waiting for a rate limit give up.
    pub runs: Instant,
    /// Discord requests still in flight are cut.
    pub sends: Instant,
    /// The scheduler stops waiting for runs to record their end.
    pub records: Instant,
    /// The process has exited.
    pub exit: Instant,
}

impl Deadlines {
    /// How long the trace flush at exit may take from now: at most [`TRACE_FLUSH`], and never
    /// past [`Deadlines::exit`].
    pub fn flush_bound(&self) -> Duration {
        TRACE_FLUSH.min(self.exit.saturating_duration_since(Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The phases follow each other inside the budget, and the trace flush ends with it.
    #[test]
    fn the_phases_fit_the_budget() {
        let budget = ShutdownBudget::of(&ServerSettings {
            shutdown_grace_seconds: 7,
            ..Default::default()
        });
        assert_eq!(budget.total(), Duration::from_secs(17));
        let start = Instant::now();
        let d = budget.start(start);
        assert_eq!(d.runs - start, Duration::from_secs(7));
        assert!(d.runs < d.sends && d.sends < d.records && d.records < d.exit);
        // Room left after the records and the admin drain for the trace flush.
        assert!(d.records + ADMIN_DRAIN < d.exit);
        assert_eq!(d.exit - start, budget.total());
    }

    /// With the default config the process exits within 25 s of SIGTERM: 5 s under the 30 s
    /// stop timeout of `containers/containers.conf` and the compose file.
    #[test]
    fn the_default_budget_fits_the_container_stop_timeout() {
        let budget = ShutdownBudget::of(&ServerSettings::default());
        assert_eq!(budget.total(), Duration::from_secs(25));
    }

    /// `scripts/check-stack-config.py` computes the budget of the image's configs with the same
    /// tail and default grace.
    #[test]
    fn the_stack_check_uses_the_same_budget() {
        let script = include_str!("../scripts/check-stack-config.py");
        let tail = format!("SHUTDOWN_TAIL_SECONDS = {}\n", TAIL.as_secs());
        let grace = format!(
            "DEFAULT_SHUTDOWN_GRACE_SECONDS = {}\n",
            ServerSettings::default().shutdown_grace_seconds
        );
        assert!(script.contains(&tail), "the script lacks {tail:?}");
        assert!(script.contains(&grace), "the script lacks {grace:?}");
    }

    /// The flush gets what is left of the budget, at most its own bound.
    #[tokio::test(start_paused = true)]
    async fn the_flush_never_runs_past_the_budget() {
        let budget = ShutdownBudget::of(&ServerSettings {
            shutdown_grace_seconds: 1,
            ..Default::default()
        });
        let d = budget.start(Instant::now());
        assert_eq!(d.flush_bound(), TRACE_FLUSH);
        tokio::time::sleep(Duration::from_secs(8)).await;
        assert_eq!(d.flush_bound(), Duration::from_secs(3));
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(d.flush_bound(), Duration::ZERO);
    }
}
