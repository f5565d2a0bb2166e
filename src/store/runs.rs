//! Actors' stored state and the run records: a run's start, its acts' outputs, its end
//! (written with the actor's new state), the run history, and pruning old runs. These are
//! the public [`Store`] methods; the SQL is the backend's (`sqlite/runs.rs`).

use super::{RunRecord, Store, StoreError, backend};
use crate::actor_state::{ActorState, RunOutcome};
use chrono::{DateTime, Utc};

impl Store {
    /// The stored state of every actor.
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn actor_states(&self) -> Result<Vec<ActorState>, StoreError> {
        backend!(self, db => db.actor_states())
    }

    /// The stored state of one actor.
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn actor_state(&self, name: &str) -> Result<Option<ActorState>, StoreError> {
        backend!(self, db => db.actor_state(name))
    }

    /// Saves an actor's state.
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn save_actor_state(&self, state: &ActorState) -> Result<(), StoreError> {
        backend!(self, db => db.save_actor_state(state).await)
    }

    /// Records the start of a run (not waited for); returns the run's id.
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn start_run(
        &self,
        state: &ActorState,
        narrative: Option<&str>,
        started_at: DateTime<Utc>,
        scheduled_at: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        backend!(self, db => db.start_run(state, narrative, started_at, scheduled_at).await)
    }

    /// Records the outputs of a run's acts, in order (not waited for).
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn record_acts(
        &self,
        run_id: i64,
        outputs: &[crate::narrative::ActOutput],
    ) -> Result<(), StoreError> {
        backend!(self, db => db.record_acts(run_id, outputs))
    }

    /// Records the end of a run and the actor's new state, together (not waited for).
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn finish_run(
        &self,
        run_id: i64,
        outcome: RunOutcome,
        error: Option<&str>,
        finished_at: DateTime<Utc>,
        state: &ActorState,
    ) -> Result<(), StoreError> {
        backend!(self, db => db.finish_run(run_id, outcome, error, finished_at, state).await)
    }

    /// The latest runs, newest first, optionally of one actor.
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn recent_runs(
        &self,
        actor: Option<&str>,
        limit: u32,
    ) -> Result<Vec<RunRecord>, StoreError> {
        backend!(self, db => db.recent_runs(actor, limit))
    }

    /// Outputs of a run's acts, in order: `(act, output)`.
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn act_outputs(&self, run_id: i64) -> Result<Vec<(String, String)>, StoreError> {
        backend!(self, db => db.act_outputs(run_id))
    }

    /// Deletes finished runs (and their act outputs) that started before `before`, a
    /// thousand runs per transaction so other store calls are never held up for long.
    /// Returns how many runs were deleted.
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn prune_runs(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        backend!(self, db => db.prune_runs(before).await)
    }

    /// Number of run records kept.
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn run_count(&self) -> Result<u64, StoreError> {
        backend!(self, db => db.run_count())
    }
}
