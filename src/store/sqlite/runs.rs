//! The SQL of actors' state and the run records (tables `actors`, `runs`, `act_outputs`):
//! a run's start, acts and end are written behind (joining the next group commit, not waited
//! for), a run's end together with its actor's new state.

use super::{Sqlite, from_ms, ms};
use crate::actor_state::{ActorState, Circuit, RunOutcome};
use crate::store::{RunRecord, StoreError};
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};

impl Sqlite {
    pub(in crate::store) fn actor_states(&self) -> Result<Vec<ActorState>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached("SELECT * FROM actors ORDER BY name")?
                .query_map([], actor_from_row)?
                .collect()
        })
    }

    pub(in crate::store) fn actor_state(
        &self,
        name: &str,
    ) -> Result<Option<ActorState>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached("SELECT * FROM actors WHERE name = ?1")?
                .query_row([name], actor_from_row)
                .optional()
        })
    }

    pub(in crate::store) async fn save_actor_state(
        &self,
        state: &ActorState,
    ) -> Result<(), StoreError> {
        self.write(|conn| save_actor(conn, state)).await
    }

    #[tracing::instrument(name = "store.start_run", level = "info", skip_all, fields(db.system = "sqlite", db.operation.name = "insert"))]
    pub(in crate::store) async fn start_run(
        &self,
        state: &ActorState,
        narrative: Option<&str>,
        started_at: DateTime<Utc>,
        scheduled_at: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        // One statement, not waited for; the actor's row is written when the run ends. A run
        // that never ends (crash) is folded into its actor's `last_run_at` by `recover` at the
        // next start.
        let (id, _) = self.write_behind(|conn| {
            conn.prepare_cached(
                "INSERT INTO runs (actor, narrative, started_at, scheduled_at, outcome) VALUES (?1, ?2, ?3, ?4, 'running')",
            )?
            .execute(params![&state.name, narrative, ms(started_at), ms(scheduled_at)])?;
            Ok(conn.last_insert_rowid())
        })?;
        Ok(id)
    }

    pub(in crate::store) fn record_acts(
        &self,
        run_id: i64,
        outputs: &[crate::narrative::ActOutput],
    ) -> Result<(), StoreError> {
        if outputs.is_empty() {
            return Ok(());
        }
        self.write_behind(|conn| {
            let mut insert = conn.prepare_cached(
                "INSERT INTO act_outputs (run_id, position, act, provider, model, output, input_tokens, output_tokens, duration_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for (position, o) in outputs.iter().enumerate() {
                insert.execute(params![
                    run_id,
                    position as i64,
                    o.act,
                    o.provider,
                    o.model,
                    o.text,
                    o.input_tokens as i64,
                    o.output_tokens as i64,
                    o.duration.as_millis() as i64,
                ])?;
            }
            Ok(())
        })?;
        Ok(())
    }

    #[tracing::instrument(name = "store.finish_run", level = "info", skip_all, fields(db.system = "sqlite", db.operation.name = "update"))]
    pub(in crate::store) async fn finish_run(
        &self,
        run_id: i64,
        outcome: RunOutcome,
        error: Option<&str>,
        finished_at: DateTime<Utc>,
        state: &ActorState,
    ) -> Result<(), StoreError> {
        self.write_behind(|conn| {
            conn.prepare_cached(
                "UPDATE runs SET outcome = ?1, error = ?2, finished_at = ?3 WHERE id = ?4",
            )?
            .execute(params![outcome.as_str(), error, ms(finished_at), run_id])?;
            save_actor(conn, state)
        })?;
        Ok(())
    }

    pub(in crate::store) fn recent_runs(
        &self,
        actor: Option<&str>,
        limit: u32,
    ) -> Result<Vec<RunRecord>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT * FROM runs WHERE (?1 IS NULL OR actor = ?1) ORDER BY id DESC LIMIT ?2",
            )?
            .query_map(params![actor, i64::from(limit)], |r| {
                Ok(RunRecord {
                    id: r.get("id")?,
                    actor: r.get("actor")?,
                    narrative: r.get("narrative")?,
                    started_at: from_ms(r.get("started_at")?).unwrap_or_default(),
                    scheduled_at: from_ms(r.get("scheduled_at")?),
                    finished_at: from_ms(r.get("finished_at")?),
                    outcome: RunOutcome::parse(&r.get::<_, String>("outcome")?),
                    error: r.get("error")?,
                })
            })?
            .collect()
        })
    }

    pub(in crate::store) fn act_outputs(
        &self,
        run_id: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT act, output FROM act_outputs WHERE run_id = ?1 ORDER BY position",
            )?
            .query_map([run_id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
        })
    }

    #[tracing::instrument(name = "store.prune_runs", level = "info", skip_all, fields(db.system = "sqlite", db.operation.name = "delete"))]
    pub(in crate::store) async fn prune_runs(
        &self,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut deleted = 0;
        loop {
            let n = self.write(|conn| {
                let tx = conn.savepoint()?;
                let ids = "SELECT id FROM runs WHERE outcome <> 'running' AND started_at < ?1 ORDER BY started_at LIMIT 1000";
                tx.execute(
                    &format!("DELETE FROM act_outputs WHERE run_id IN ({ids})"),
                    [ms(before)],
                )?;
                let n = tx.execute(&format!("DELETE FROM runs WHERE id IN ({ids})"), [ms(before)])?;
                tx.commit()?;
                Ok(n as u64)
            })
            .await?;
            deleted += n;
            if n < 1000 {
                return Ok(deleted);
            }
            tokio::task::yield_now().await;
        }
    }

    pub(in crate::store) fn run_count(&self) -> Result<u64, StoreError> {
        self.read(|conn| conn.query_row("SELECT COUNT(*) FROM runs", [], |r| r.get::<_, i64>(0)))
            .map(|n| n as u64)
    }
}

fn save_actor(conn: &Connection, s: &ActorState) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO actors (name, last_run_at, last_success_at, last_outcome, next_run_at, consecutive_failures, circuit, circuit_open_until, ever_succeeded) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
         ON CONFLICT (name) DO UPDATE SET last_run_at = ?2, last_success_at = ?3, last_outcome = ?4, next_run_at = ?5, \
         consecutive_failures = ?6, circuit = ?7, circuit_open_until = ?8, ever_succeeded = ?9",
    )?
    .execute(params![
        &s.name,
        s.last_run_at.map(ms),
        s.last_success_at.map(ms),
        s.last_outcome.map(RunOutcome::as_str),
        s.next_run_at.map(ms),
        i64::from(s.consecutive_failures),
        s.circuit.as_str(),
        s.circuit_open_until.map(ms),
        s.ever_succeeded,
    ])?;
    Ok(())
}

fn actor_from_row(r: &Row<'_>) -> rusqlite::Result<ActorState> {
    Ok(ActorState {
        name: r.get("name")?,
        last_run_at: from_ms(r.get("last_run_at")?),
        last_success_at: from_ms(r.get("last_success_at")?),
        last_outcome: r
            .get::<_, Option<String>>("last_outcome")?
            .map(|s| RunOutcome::parse(&s)),
        next_run_at: from_ms(r.get("next_run_at")?),
        consecutive_failures: r.get::<_, i64>("consecutive_failures")? as u32,
        circuit: Circuit::parse(&r.get::<_, String>("circuit")?),
        circuit_open_until: from_ms(r.get("circuit_open_until")?),
        ever_succeeded: r.get("ever_succeeded")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::sqlite::tests::act;

    #[tokio::test]
    async fn old_runs_are_pruned_with_their_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), None).await.unwrap();
        let state = ActorState {
            name: "a".into(),
            ..Default::default()
        };
        let old = Utc::now() - chrono::Duration::days(40);
        let id = store.start_run(&state, None, old, old).await.unwrap();
        store.record_acts(id, &[act("t")]).await.unwrap();
        store
            .finish_run(id, RunOutcome::Success, None, old, &state)
            .await
            .unwrap();
        let recent = store
            .start_run(&state, None, Utc::now(), Utc::now())
            .await
            .unwrap();
        assert_eq!(
            store
                .prune_runs(Utc::now() - chrono::Duration::days(30))
                .await
                .unwrap(),
            1
        );
        assert_eq!(store.run_count().await.unwrap(), 1);
        assert!(store.act_outputs(id).await.unwrap().is_empty());
        assert_eq!(store.recent_runs(None, 5).await.unwrap()[0].id, recent);
    }

    #[tokio::test]
    async fn run_ids_continue_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let state = ActorState {
            name: "a".into(),
            ..Default::default()
        };
        let store = Store::open(dir.path(), None).await.unwrap();
        let first = store
            .start_run(&state, None, Utc::now(), Utc::now())
            .await
            .unwrap();
        store.close().await;
        let store = Store::open(dir.path(), None).await.unwrap();
        let second = store
            .start_run(&state, None, Utc::now(), Utc::now())
            .await
            .unwrap();
        assert_eq!(second, first + 1);
    }
}
