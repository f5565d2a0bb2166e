//! The scheduler: fires due actors, keeps their state, opens and closes circuits, and stops
//! cleanly.
//!
//! The loop sleeps until the earliest next fire time (at most `check_interval_seconds`), a run
//! finishing, or shutdown. Each due actor runs in its own task (a slow narrative does not delay
//! the others), bounded by `run_timeout_seconds` and `max_concurrent_runs`; an actor never runs
//! twice at once. Next fire times come from the stored history, so a restart continues where
//! the last process stopped instead of firing everything at once. Due times are wall-clock
//! times and the loop reads the clock afresh on every wake-up, so a step of the system clock
//! (NTP, suspend) is acted on within one check interval even while it sleeps towards a due
//! time computed before the step. A step back is seen by comparing the wall clock with
//! monotonic time between wake-ups: logged once, counted, and every actor's next time is
//! computed again from now (a last run "in the future" never delays the next one).
//!
//! Shutdown, within the budget of [`crate::shutdown`]: the loop stops starting runs, waits up
//! to `shutdown_grace_seconds` for runs in flight, then cancels what is left between acts and
//! records those runs as `cancelled`; a Discord send that has started gets a few seconds more
//! to complete and be recorded, then is cut.

use crate::actor_state::{ActorState, BreakerSettings, Circuit, RunOutcome};
use crate::app::App;
use crate::config::Actor;
use crate::runner::{RunSummary, run_actor};
use crate::schedule::{History, seconds_after};
use crate::shutdown::{Deadlines, ShutdownBudget};
use crate::store::StoreError;
use chrono::{DateTime, Utc};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// Shared, lock-free facts about the scheduler, read by health checks.
#[derive(Debug, Default)]
pub struct SchedulerStatus {
    /// Unix milliseconds of the last loop iteration (0 before the first).
    pub last_tick_ms: AtomicI64,
    /// Runs in flight.
    pub running: AtomicI64,
}

/// Actors' due times, earliest first: picking the due actors costs O(k log n) for k due
/// out of n, so a tick stays cheap with thousands of actors. An actor has at most one entry:
/// it is pushed when loaded and again when its run ends.
#[derive(Debug, Default)]
pub struct DueQueue {
    heap: BinaryHeap<Reverse<(DateTime<Utc>, usize)>>,
}

impl DueQueue {
    /// An empty queue with room for `n` actors.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            heap: BinaryHeap::with_capacity(n),
        }
    }

    /// Schedules actor `index` at `due`.
    pub fn push(&mut self, due: DateTime<Utc>, index: usize) {
        self.heap.push(Reverse((due, index)));
    }

    /// Removes and returns the earliest entry if it is due at `now`.
    pub fn pop_due(&mut self, now: DateTime<Utc>) -> Option<(DateTime<Utc>, usize)> {
        let &Reverse((due, index)) = self.heap.peek()?;
        (due <= now).then(|| {
            self.heap.pop();
            (due, index)
        })
    }

    /// The earliest due time.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        self.heap.peek().map(|Reverse((due, _))| *due)
    }

    /// Number of scheduled actors.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no actor is scheduled.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// How a finished run is reported back to the loop.
struct Finished {
    actor: usize,
    state: ActorState,
    next: Option<DateTime<Utc>>,
}

/// Runs the scheduler until `shutdown` resolves, then drains runs in flight within the
/// shutdown budget; returns the budget's deadlines, for the rest of the stop.
///
/// # Errors
///
/// When the state store fails at start-up (reading actor states). Failures of single runs
/// are recorded and logged, never returned.
pub async fn run(
    app: Arc<App>,
    status: Arc<SchedulerStatus>,
    shutdown: impl Future<Output = ()>,
) -> Result<Deadlines, StoreError> {
    let config = app.config.clone();
    let actors: Vec<Actor> = config
        .actors
        .iter()
        .filter(|a| a.enabled)
        .cloned()
        .collect();
    let stored: HashMap<String, ActorState> = app
        .store
        .actor_states()
        .await?
        .into_iter()
        .map(|s| (s.name.clone(), s))
        .collect();
    let now = app.clock.now();
    let mut states: Vec<ActorState> = Vec::with_capacity(actors.len());
    let mut next: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(actors.len());
    for actor in &actors {
        let state = stored
            .get(&actor.name)
            .cloned()
            .unwrap_or_else(|| ActorState {
                name: actor.name.clone(),
                ..Default::default()
            });
        let due = next_due(&app, actor, &state, now);
        tracing::info!(actor = %actor.name, schedule = %actor.schedule.describe(), next = ?due.map(|t| t.to_rfc3339()), circuit = state.circuit.as_str(), "actor loaded");
        app.metrics.actor_state(&ActorState {
            next_run_at: due,
            ..state.clone()
        });
        states.push(state);
        next.push(due);
    }
    let mut running = vec![false; actors.len()];
    let mut queue = DueQueue::with_capacity(actors.len());
    for (i, due) in next.iter().enumerate() {
        if let Some(due) = due {
            queue.push(*due, i);
        }
    }
    let hard = CancellationToken::new();
    let tracker = TaskTracker::new();
    // Posts left `sending` are re-sent by their own loop, at once and then with backoff.
    let stop_resending = CancellationToken::new();
    tracker.spawn(crate::outbox::run(
        app.clone(),
        stop_resending.clone(),
        hard.clone(),
    ));
    // Loading bounds it far lower; tokio's semaphore panics above its own maximum.
    let permits = Arc::new(Semaphore::new(
        config
            .server
            .max_concurrent_runs
            .min(Semaphore::MAX_PERMITS),
    ));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Finished>();
    // Loading bounds it; the clamp keeps `Instant + check` below from overflowing anyway.
    let check = Duration::from_secs(
        config
            .server
            .check_interval_seconds
            .min(crate::limits::CHECK_INTERVAL_SECONDS.max),
    );
    tokio::pin!(shutdown);
    let retention_days = config.server.run_retention_days;
    let post_retention_days = config.server.post_retention_days;
    // Hourly, and once at start: keeps the store bounded however long the server runs.
    let mut prune = tokio::time::interval(Duration::from_secs(3600));
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let mut watch = StepWatch::new(app.clock.now());
    loop {
        let now = app.clock.now();
        if let Some(back) = watch.stepped_back(now) {
            tracing::warn!(
                back_seconds = back.num_seconds(),
                "the system clock went back; computing every actor's next time from now"
            );
            app.metrics.clock_steps_back.inc();
            queue = DueQueue::with_capacity(actors.len());
            for (i, actor) in actors.iter().enumerate() {
                if !running[i]
                    && let Some(due) = next_due(&app, actor, &states[i], now)
                {
                    queue.push(due, i);
                }
            }
        }
        status
            .last_tick_ms
            .store(now.timestamp_millis(), Ordering::Relaxed);
        app.metrics
            .scheduler_last_tick
            .set(now.timestamp_millis() as f64 / 1000.0);
        // A run starts only with a free slot: at most `max_concurrent_runs` tasks exist, and
        // an actor that has to wait stays in the queue (its lateness is then measured honestly
        // when it starts) instead of piling up as a parked task.
        loop {
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                break;
            };
            let Some((due, i)) = queue.pop_due(now) else {
                break;
            };
            if running[i] {
                drop(permit);
                continue;
            }
            running[i] = true;
            status.running.fetch_add(1, Ordering::Relaxed);
            app.metrics.runs_in_flight.inc();
            let task = RunTask {
                app: app.clone(),
                actor: actors[i].clone(),
                state: states[i].clone(),
                scheduled: due,
                hard: hard.clone(),
                permit,
            };
            let done_tx = done_tx.clone();
            let status = status.clone();
            let task_app = app.clone();
            tracker.spawn(async move {
                let (state, next) = task.execute().await;
                status.running.fetch_sub(1, Ordering::Relaxed);
                task_app.metrics.runs_in_flight.dec();
                let _ = done_tx.send(Finished {
                    actor: i,
                    state,
                    next,
                });
            });
        }
        let deadline = tokio::time::Instant::now() + check;
        // With every slot taken, the next wake-up is a run ending, not the queue's head
        // (which may already be due: sleeping until it would spin).
        let wake = match queue.next_due() {
            Some(t) if permits.available_permits() > 0 => app.clock.instant_of(t).min(deadline),
            _ => deadline,
        };
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep_until(wake) => {}
            _ = prune.tick(), if retention_days > 0 || post_retention_days > 0 => {
                let now = app.clock.now();
                // No cut-off before the first representable date: nothing is that old.
                let cutoff = |days: u64| {
                    i64::try_from(days)
                        .ok()
                        .and_then(chrono::TimeDelta::try_days)
                        .and_then(|age| now.checked_sub_signed(age))
                };
                if retention_days > 0 && let Some(before) = cutoff(retention_days) {
                    match app.store.prune_runs(before).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(deleted = n, retention_days, "old run records pruned"),
                        Err(err) => tracing::warn!(cause = %err, "pruning old run records failed"),
                    }
                }
                if post_retention_days > 0 && let Some(before) = cutoff(post_retention_days) {
                    match app.store.prune_posted_texts(before).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(pruned = n, post_retention_days, "texts of old posts pruned"),
                        Err(err) => tracing::warn!(cause = %err, "pruning old post texts failed"),
                    }
                }
            }
            Some(done) = done_rx.recv() => {
                // Take every run that has ended since, not one per wake-up.
                let mut done = Some(done);
                while let Some(Finished { actor, state, next }) = done.take().or_else(|| done_rx.try_recv().ok()) {
                    running[actor] = false;
                    states[actor] = state;
                    if let Some(due) = next {
                        queue.push(due, actor);
                    }
                }
            }
        }
    }

    let budget = ShutdownBudget::of(&config.server);
    let deadlines = budget.start(tokio::time::Instant::now());
    stop_resending.cancel();
    tracing::info!(
        runs_in_flight = status.running.load(Ordering::Relaxed),
        grace_seconds = budget.grace().as_secs(),
        exit_within_seconds = budget.total().as_secs(),
        "shutting down: no new runs"
    );
    tracker.close();
    if tokio::time::timeout_at(deadlines.runs, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            tasks = tracker.len(),
            "grace period over: cancelling runs in flight between steps"
        );
        hard.cancel();
        if tokio::time::timeout_at(deadlines.sends, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                tasks = tracker.len(),
                "shutdown budget: cutting the Discord requests still in flight"
            );
            app.delivery.cut_in_flight();
            if tokio::time::timeout_at(deadlines.records, tracker.wait())
                .await
                .is_err()
            {
                tracing::error!(
                    tasks = tracker.len(),
                    "shutdown budget: runs did not record their end in time; stopping without them"
                );
            }
        }
    }
    tracing::info!("scheduler stopped");
    Ok(deadlines)
}

/// Sees the wall clock go back: between two readings it should advance as monotonic time
/// does; a reading more than [`StepWatch::TOLERANCE`] behind that is a step back.
struct StepWatch {
    wall: DateTime<Utc>,
    at: tokio::time::Instant,
}

impl StepWatch {
    /// Smaller differences are the two clocks' drift and reading jitter, not a step.
    const TOLERANCE: chrono::TimeDelta = chrono::TimeDelta::seconds(1);

    fn new(wall: DateTime<Utc>) -> Self {
        Self {
            wall,
            at: tokio::time::Instant::now(),
        }
    }

    /// How far the clock went back since the last reading, if it did; remembers `now`.
    fn stepped_back(&mut self, now: DateTime<Utc>) -> Option<chrono::TimeDelta> {
        let at = tokio::time::Instant::now();
        let elapsed = chrono::TimeDelta::from_std(at.saturating_duration_since(self.at))
            .unwrap_or(chrono::TimeDelta::MAX);
        let expected = self.wall.checked_add_signed(elapsed).unwrap_or(now);
        self.wall = now;
        self.at = at;
        let back = expected - now;
        (back > Self::TOLERANCE).then_some(back)
    }
}

/// When `actor` is next due, from its stored history, circuit and schedule.
fn next_due(
    app: &App,
    actor: &Actor,
    state: &ActorState,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    // A last run in the future means the clock went back since (NTP, a VM resumed): the next
    // time is computed from now, not from a time that has not come yet.
    let last_run = state.last_run_at.map(|last| last.min(now));
    let history = History {
        last_run,
        ever_succeeded: state.ever_succeeded,
    };
    let jitter: f64 = rand::random();
    let mut due = actor.schedule.next_due(history, now, jitter)?;
    let failed = matches!(
        state.last_outcome,
        Some(RunOutcome::Failure | RunOutcome::Timeout)
    );
    if failed && let Some(last) = last_run {
        // A failed one-shot (Immediate, Once) is retried, but not in a tight loop.
        let retry = seconds_after(last, app.config.server.check_interval_seconds)?;
        due = due.max(retry);
    }
    if let Some(until) = state.held_until() {
        // Never held longer than one cool-down from now, whatever the clock did since the
        // circuit opened.
        let cooldown = BreakerSettings::of(&app.config.server).cooldown;
        due = due.max(until.min(now.checked_add_signed(cooldown).unwrap_or(until)));
    }
    Some(due)
}

struct RunTask {
    app: Arc<App>,
    actor: Actor,
    state: ActorState,
    scheduled: DateTime<Utc>,
    hard: CancellationToken,
    permit: tokio::sync::OwnedSemaphorePermit,
}

impl RunTask {
    /// Runs once and records it; returns the actor's new state and next fire time.
    async fn execute(self) -> (ActorState, Option<DateTime<Utc>>) {
        let Self {
            app,
            actor,
            state,
            scheduled,
            hard,
            permit: _permit,
        } = self;
        let span = tracing::info_span!(
            parent: None,
            "actor.run",
            actor = %actor.name,
            action = actor.action.as_str(),
            run.id = tracing::field::Empty,
            outcome = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            error.message = tracing::field::Empty,
        );
        crate::telemetry::record_trace_id(&span);
        Self::run_once(app, actor, state, scheduled, hard)
            .instrument(span)
            .await
    }

    async fn run_once(
        app: Arc<App>,
        actor: Actor,
        mut state: ActorState,
        scheduled: DateTime<Utc>,
        hard: CancellationToken,
    ) -> (ActorState, Option<DateTime<Utc>>) {
        let span = tracing::Span::current();
        let started = app.clock.now();
        let previous_last_run = state.last_run_at;
        if state.begin_run() {
            tracing::info!(actor = %actor.name, "circuit half-open: trial run");
        }
        state.last_run_at = Some(started);
        state.next_run_at = None;
        let narrative = app.narrative_of(&actor).map(|n| n.name.clone());
        let run_id = match app
            .store
            .start_run(&state, narrative.as_deref(), started, scheduled)
            .await
        {
            Ok(id) => id,
            Err(err) => {
                // Every check interval while the store fails: once a minute, with the count.
                let cause = crate::error_chain(&err);
                if let Some(repeated) = app
                    .log_throttle
                    .admit(&format!("run start\0{}\0{cause}", actor.name))
                {
                    tracing::error!(actor = %actor.name, cause, repeated, "cannot record run start; skipping this run");
                }
                state.last_run_at = previous_last_run;
                let retry = seconds_after(started, app.config.server.check_interval_seconds);
                return (state, retry);
            }
        };
        span.record("run.id", run_id);
        let lateness_ms = (started - scheduled).num_milliseconds();
        app.metrics
            .schedule_lateness
            .get_or_create(&crate::metrics::ActorLabels {
                actor: actor.name.clone(),
            })
            .observe(lateness_ms.max(0) as f64 / 1000.0);
        tracing::info!(actor = %actor.name, run = run_id, action = actor.action.as_str(), lateness_ms, "run started");
        let limit = Duration::from_secs(actor.run_timeout_seconds);
        let result = tokio::time::timeout(limit, run_actor(&app, &actor, run_id, &hard)).await;
        let finished = app.clock.now();
        let (outcome, error): (RunOutcome, Option<String>) = match &result {
            Ok(Ok(summary)) => {
                log_success(&actor, run_id, summary, finished - started);
                (RunOutcome::Success, None)
            }
            Ok(Err(err)) if err.is_cancelled() => {
                (RunOutcome::Cancelled, Some(crate::error_chain(err)))
            }
            Ok(Err(err)) => (RunOutcome::Failure, Some(crate::error_chain(err))),
            Err(_) => (
                RunOutcome::Timeout,
                Some(format!(
                    "run took longer than run_timeout_seconds = {}",
                    actor.run_timeout_seconds
                )),
            ),
        };
        let was = state.circuit;
        let counts = match &result {
            Ok(Err(err)) => err.counts_against_circuit(),
            _ => true,
        };
        let circuit = if counts {
            state.record_outcome(outcome, finished, &BreakerSettings::of(&app.config.server))
        } else {
            state.record_uncounted_failure()
        };
        match outcome {
            RunOutcome::Success => {
                if was != Circuit::Closed {
                    tracing::info!(actor = %actor.name, "circuit closed: run succeeded");
                }
            }
            RunOutcome::Cancelled => {
                // Not the actor's fault: run it again promptly after the restart.
                state.last_run_at = previous_last_run;
                tracing::warn!(actor = %actor.name, run = run_id, "run cancelled by shutdown");
            }
            _ if !counts => {
                let cause = error.as_deref().unwrap_or_default();
                tracing::warn!(actor = %actor.name, run = run_id, outcome = outcome.as_str(), cause, "run failed on a refused post; not counted against the circuit");
            }
            _ => {
                let cause = error.as_deref().unwrap_or_default();
                if let (Circuit::Open, Some(until)) = (circuit, state.circuit_open_until) {
                    tracing::error!(actor = %actor.name, run = run_id, outcome = outcome.as_str(), failures = state.consecutive_failures, cause, until = %until.to_rfc3339(), "run failed; circuit open, actor paused");
                } else {
                    tracing::error!(actor = %actor.name, run = run_id, outcome = outcome.as_str(), failures = state.consecutive_failures, cause, "run failed");
                }
            }
        }
        span.record("outcome", outcome.as_str());
        if let Some(error) = &error
            && outcome != RunOutcome::Success
        {
            span.record("otel.status_code", "ERROR");
            span.record("error.message", error.as_str());
        }
        app.metrics.run_finished(
            &actor.name,
            outcome.as_str(),
            (finished - started).num_milliseconds().max(0) as f64 / 1000.0,
        );
        let next = if outcome == RunOutcome::Cancelled {
            None
        } else {
            next_due(&app, &actor, &state, finished)
        };
        state.next_run_at = next;
        if let Err(err) = app
            .store
            .finish_run(run_id, outcome, error.as_deref(), finished, &state)
            .await
        {
            let cause = crate::error_chain(&err);
            if let Some(repeated) = app
                .log_throttle
                .admit(&format!("run end\0{}\0{cause}", actor.name))
            {
                tracing::error!(actor = %actor.name, run = run_id, cause, repeated, "cannot record run end");
            }
        }
        app.metrics.actor_state(&state);
        (state, next)
    }
}

fn log_success(actor: &Actor, run_id: i64, s: &RunSummary, took: chrono::Duration) {
    tracing::info!(
        actor = %actor.name,
        run = run_id,
        acts = s.acts,
        enqueued = s.enqueued,
        duplicates = s.duplicates,
        approved = s.approved,
        declined = s.declined,
        published = s.published.len(),
        duration_ms = took.num_milliseconds(),
        "run succeeded"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_queue_yields_due_actors_earliest_first() {
        let t = |s: i64| DateTime::<Utc>::from_timestamp(s, 0).unwrap();
        let mut q = DueQueue::with_capacity(3);
        q.push(t(30), 2);
        q.push(t(10), 0);
        q.push(t(20), 1);
        assert_eq!(q.next_due(), Some(t(10)));
        assert_eq!(q.pop_due(t(25)), Some((t(10), 0)));
        assert_eq!(q.pop_due(t(25)), Some((t(20), 1)));
        assert_eq!(q.pop_due(t(25)), None, "not due yet");
        assert_eq!(q.len(), 1);
    }
}
