//! What is kept about an actor between runs and restarts ([`ActorState`]), how a run ended
//! ([`RunOutcome`]), and the circuit breaker's rules ([`Circuit`], [`BreakerSettings`]): after
//! `max_consecutive_failures` failed runs in a row an actor's circuit opens and the actor is
//! paused for `circuit_cooldown_seconds`; the next run is a trial (half-open) that closes the
//! circuit on success and opens it again on failure. The scheduler applies these rules, the
//! store keeps the result.

use chrono::{DateTime, Utc};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    Running,
    Success,
    Failure,
    Timeout,
    /// The server stopped during the run (SIGTERM past the grace period).
    Cancelled,
    /// Found still running at start-up: the process died during it.
    Interrupted,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Timeout => "timeout",
            Self::Cancelled => "cancelled",
            Self::Interrupted => "interrupted",
        }
    }

    /// The outcome [`RunOutcome::as_str`] names (`running` for anything unknown).
    pub(crate) fn parse(s: &str) -> Self {
        match s {
            "success" => Self::Success,
            "failure" => Self::Failure,
            "timeout" => Self::Timeout,
            "cancelled" => Self::Cancelled,
            "interrupted" => Self::Interrupted,
            _ => Self::Running,
        }
    }
}

/// Circuit breaker state of an actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Circuit {
    #[default]
    Closed,
    Open,
    HalfOpen,
}

impl Circuit {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }

    /// The state [`Circuit::as_str`] names (`closed` for anything unknown).
    pub(crate) fn parse(s: &str) -> Self {
        match s {
            "open" => Self::Open,
            "half_open" => Self::HalfOpen,
            _ => Self::Closed,
        }
    }
}

/// What is kept about one actor between runs and restarts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ActorState {
    pub name: String,
    pub last_run_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_outcome: Option<RunOutcome>,
    pub next_run_at: Option<DateTime<Utc>>,
    pub consecutive_failures: u32,
    pub circuit: Circuit,
    pub circuit_open_until: Option<DateTime<Utc>>,
    pub ever_succeeded: bool,
}

/// The circuit breaker's settings (`server.max_consecutive_failures`,
/// `server.circuit_cooldown_seconds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Failed runs in a row that open the circuit.
    pub max_consecutive_failures: u32,
    /// How long an open circuit pauses the actor before a trial run.
    pub cooldown: chrono::Duration,
}

impl BreakerSettings {
    /// The settings of the server config.
    pub fn of(server: &crate::config::ServerSettings) -> Self {
        Self {
            max_consecutive_failures: server.max_consecutive_failures,
            // Beyond chrono's range (only a config that skipped validation): for ever.
            cooldown: i64::try_from(server.circuit_cooldown_seconds)
                .ok()
                .and_then(chrono::Duration::try_seconds)
                .unwrap_or(chrono::Duration::MAX),
        }
    }
}

impl ActorState {
    /// Until when the breaker holds the actor back: the end of an open circuit's cool-down
    /// (the scheduler starts no run before it), `None` unless the circuit is open.
    pub fn held_until(&self) -> Option<DateTime<Utc>> {
        match self.circuit {
            Circuit::Open => self.circuit_open_until,
            _ => None,
        }
    }

    /// A run starts (the scheduler starts an open actor's run only once its cool-down is
    /// over, see [`ActorState::held_until`]): an open circuit lets it through as a trial and
    /// becomes half-open. Returns whether it did.
    pub fn begin_run(&mut self) -> bool {
        let trial = self.circuit == Circuit::Open;
        if trial {
            self.circuit = Circuit::HalfOpen;
        }
        trial
    }

    /// Applies the breaker's rules to a run that ended at `now` with `outcome` and returns the
    /// circuit's new state: a success closes it and clears the failure count; a failure or
    /// timeout counts, and opens it (for `cooldown` from `now`) when it was a half-open trial
    /// or the count reached `max_consecutive_failures`; a cancelled run (shutdown, not the
    /// actor's fault) changes nothing but the last outcome.
    pub fn record_outcome(
        &mut self,
        outcome: RunOutcome,
        now: DateTime<Utc>,
        settings: &BreakerSettings,
    ) -> Circuit {
        match outcome {
            RunOutcome::Success => {
                self.consecutive_failures = 0;
                self.circuit = Circuit::Closed;
                self.circuit_open_until = None;
                self.last_success_at = Some(now);
                self.ever_succeeded = true;
            }
            RunOutcome::Cancelled => {}
            _ => {
                self.consecutive_failures += 1;
                if self.circuit == Circuit::HalfOpen
                    || self.consecutive_failures >= settings.max_consecutive_failures
                {
                    self.circuit = Circuit::Open;
                    // Past the last representable date the circuit stays open for good,
                    // rather than closing early.
                    self.circuit_open_until = Some(
                        now.checked_add_signed(settings.cooldown)
                            .unwrap_or(DateTime::<Utc>::MAX_UTC),
                    );
                }
            }
        }
        self.last_outcome = Some(outcome);
        self.circuit
    }

    /// A run that failed for a reason that says nothing about the actor's health (a post
    /// Discord refused for its content, see
    /// [`RunError::counts_against_circuit`](crate::runner::RunError::counts_against_circuit)):
    /// recorded as its last outcome, but it neither counts nor opens, closes or clears the
    /// circuit (a half-open actor's next run is the trial again).
    pub fn record_uncounted_failure(&mut self) -> Circuit {
        self.last_outcome = Some(RunOutcome::Failure);
        self.circuit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: BreakerSettings = BreakerSettings {
        max_consecutive_failures: 3,
        cooldown: chrono::Duration::seconds(300),
    };

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(s, 0).unwrap()
    }

    fn actor() -> ActorState {
        ActorState {
            name: "a".into(),
            ..Default::default()
        }
    }

    /// A failure that does not count leaves the count and the circuit as they were, closed or
    /// half-open, and is the last outcome.
    #[test]
    fn uncounted_failures_leave_the_circuit_alone() {
        let mut state = actor();
        state.record_outcome(RunOutcome::Failure, t(0), &SETTINGS);
        for _ in 0..10 {
            assert_eq!(state.record_uncounted_failure(), Circuit::Closed);
        }
        assert_eq!(state.consecutive_failures, 1);
        assert_eq!(state.last_outcome, Some(RunOutcome::Failure));
        state.circuit = Circuit::HalfOpen;
        assert_eq!(state.record_uncounted_failure(), Circuit::HalfOpen);
        assert_eq!(state.circuit_open_until, None);
    }

    /// Closed -> open after `max_consecutive_failures` failed runs, paused for the cool-down.
    #[test]
    fn closed_opens_after_max_consecutive_failures() {
        let mut state = actor();
        for (i, outcome) in [RunOutcome::Failure, RunOutcome::Timeout]
            .into_iter()
            .enumerate()
        {
            assert!(!state.begin_run());
            assert_eq!(
                state.record_outcome(outcome, t(i as i64), &SETTINGS),
                Circuit::Closed
            );
            assert_eq!(state.held_until(), None);
        }
        assert_eq!(state.consecutive_failures, 2);
        assert_eq!(
            state.record_outcome(RunOutcome::Failure, t(10), &SETTINGS),
            Circuit::Open
        );
        assert_eq!(state.consecutive_failures, 3);
        assert_eq!(state.circuit_open_until, Some(t(310)));
        assert_eq!(state.held_until(), Some(t(310)));
        assert_eq!(state.last_outcome, Some(RunOutcome::Failure));
    }

    /// Open -> half-open when the run after the cool-down starts: it is a trial.
    #[test]
    fn open_becomes_half_open_after_the_cool_down() {
        let mut state = actor();
        for i in 0..3 {
            state.record_outcome(RunOutcome::Failure, t(i), &SETTINGS);
        }
        let until = state.held_until().expect("open");
        assert_eq!(until, t(2) + SETTINGS.cooldown);
        assert!(state.begin_run(), "the run at {until} is a trial");
        assert_eq!(state.circuit, Circuit::HalfOpen);
        assert_eq!(state.held_until(), None);
    }

    /// Half-open -> closed on a successful trial: the failure count starts again.
    #[test]
    fn half_open_closes_on_success() {
        let mut state = ActorState {
            consecutive_failures: 3,
            circuit: Circuit::HalfOpen,
            circuit_open_until: Some(t(300)),
            ..actor()
        };
        assert_eq!(
            state.record_outcome(RunOutcome::Success, t(400), &SETTINGS),
            Circuit::Closed
        );
        assert_eq!(state.consecutive_failures, 0);
        assert_eq!(state.circuit_open_until, None);
        assert_eq!(state.last_success_at, Some(t(400)));
        assert!(state.ever_succeeded);
        assert_eq!(state.last_outcome, Some(RunOutcome::Success));
    }

    /// Half-open -> open on a failed trial, whatever the failure count, for another cool-down.
    #[test]
    fn half_open_reopens_on_failure() {
        let mut state = ActorState {
            consecutive_failures: 0,
            circuit: Circuit::HalfOpen,
            ..actor()
        };
        assert_eq!(
            state.record_outcome(RunOutcome::Timeout, t(400), &SETTINGS),
            Circuit::Open
        );
        assert_eq!(state.consecutive_failures, 1);
        assert_eq!(state.held_until(), Some(t(700)));
    }

    /// A cancelled run (shutdown) neither counts as a failure nor changes the circuit.
    #[test]
    fn a_cancelled_run_leaves_the_breaker_alone() {
        let mut state = ActorState {
            consecutive_failures: 2,
            circuit: Circuit::HalfOpen,
            ..actor()
        };
        assert_eq!(
            state.record_outcome(RunOutcome::Cancelled, t(5), &SETTINGS),
            Circuit::HalfOpen
        );
        assert_eq!(state.consecutive_failures, 2);
        assert_eq!(state.last_outcome, Some(RunOutcome::Cancelled));
    }
}
