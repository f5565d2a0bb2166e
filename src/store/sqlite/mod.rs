//! The SQLite backend's handle and its group commit: one connection behind a mutex, queries
//! run on the calling thread, and writes joining one open transaction that a committer task
//! commits once the tasks ready to run have added theirs. Opening it (connection, migrations,
//! serving lock, crash recovery) is `schema.rs`'s; the SQL of the subjects is in `runs.rs`
//! and `posts.rs`.
//!
//! Embedded SQLite in the state directory (`bot-server.db`, WAL journal), created and migrated
//! on open. Times are stored as Unix milliseconds.
//!
//! Every state change that must survive a crash is one transaction: a run and its actor's
//! state are written together, and a post moves `approved → sending → posted` with the
//! Discord message id stored before `posted`.
//!
//! Writes are group-committed: a write joins the open transaction (or opens one) and the
//! transaction is committed as soon as the tasks that were ready to run have had their turn,
//! so under load one commit carries the writes of many runs (measured: 1,000 runs/s made six
//! commits per run one by one, writing ~50 MB/s of WAL). A write that must be durable before
//! the server goes on (a post entering the queue, a Discord message id) waits for that
//! commit; run bookkeeping (a run's start, its acts' outputs, its end) does not, so a crash
//! can lose the record of runs of the last millisecond or so, never a post or a message id.
//! Reads see every write of this process, committed or not.
//!
//! Queries run on the calling thread (rusqlite), on one connection behind a mutex. A store
//! call is a few prepared statements on a local file, tens of microseconds with the WAL
//! journal (no fsync per commit), so it is cheaper to run it where it is called than to hand
//! it to a database thread and back: with sqlx-sqlite, which does that for every statement,
//! the thread hand-offs cost more CPU than the queries (0.6 ms per 3-act run, about half of
//! all the server's work at 1,000 runs/s; see docs/PERFORMANCE.md). The connection waits up
//! to 10 s for a write lock another process holds (`bot-server posts approve` while the
//! server runs); such commands hold it for milliseconds.

use super::StoreError;
use super::health::WriteHealth;
use chrono::{DateTime, TimeZone, Utc};
use rusqlite::Connection;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use tokio::sync::{Notify, watch};

mod posts;
mod runs;
mod schema;

/// The SQLite backend. Cheap to clone: clones share one connection.
#[derive(Debug, Clone)]
pub(crate) struct Sqlite {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    conn: Mutex<Conn>,
    location: String,
    /// Wakes the task that commits the open transaction.
    wake: Arc<Notify>,
    /// Whether that task runs; without it (no tokio runtime at open), durable writes commit
    /// themselves.
    committer: bool,
    /// The outcome of the writes (the same as the connection's).
    health: Arc<WriteHealth>,
}

/// How a group commit ended: `None` while open, then `Ok` or the error's text.
type Outcome = Option<Result<(), String>>;

#[derive(Debug)]
struct Conn {
    /// `None` once closed.
    db: Option<Connection>,
    /// The open transaction, if any, and where its outcome is announced.
    batch: Option<watch::Sender<Outcome>>,
    /// The serving lock ([`Store::open_for_serving`]), held until the store is closed or
    /// dropped.
    lock: Option<std::fs::File>,
    /// Told of every write the storage could not make and of every commit.
    health: Arc<WriteHealth>,
}

/// Whether `err` is a failure of the storage itself (a full disk, an I/O error, a damaged
/// page, a lock another process held too long), as opposed to a write its caller got wrong
/// (a constraint it broke), which says nothing about the store's health.
fn storage_failure(err: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::*;
    matches!(
        err.sqlite_error_code(),
        Some(
            DiskFull
                | SystemIoFailure
                | DatabaseCorrupt
                | NotADatabase
                | ReadOnly
                | CannotOpen
                | PermissionDenied
                | DatabaseBusy
                | DatabaseLocked
                | OutOfMemory
                | FileLockingProtocolFailed
                | NoLargeFileSupport
                | InternalMalfunction
        )
    )
}

impl Conn {
    /// Commits the open transaction, if any, and tells the writers waiting for it.
    fn commit(&mut self) -> Result<(), String> {
        let (Some(db), Some(batch)) = (self.db.as_mut(), self.batch.take()) else {
            return Ok(());
        };
        let result = if db.is_autocommit() {
            // SQLite rolled the transaction back itself (an I/O error, disk full); the
            // statement that failed told the health already.
            Err("the transaction was rolled back after an error".to_owned())
        } else {
            match db
                .prepare_cached("COMMIT")
                .and_then(|mut commit| commit.execute([]))
            {
                Ok(_) => {
                    self.health.succeeded();
                    Ok(())
                }
                Err(err) => {
                    let _ = db.execute_batch("ROLLBACK");
                    self.health.failed(&err.to_string());
                    Err(crate::error_chain(&err))
                }
            }
        };
        batch.send_replace(Some(result.clone()));
        result
    }
}

impl Inner {
    fn conn(&self) -> MutexGuard<'_, Conn> {
        // A panic while holding the lock cannot leave SQLite half-written (a statement is
        // atomic and an unfinished transaction rolls back), so a poisoned lock is safe to
        // take over.
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let conn = self
            .conn
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(err) = conn.commit() {
            tracing::error!(cause = %err, "state store: last writes not committed at exit");
        }
        self.wake.notify_one();
    }
}

/// Commits the open transaction once the tasks ready to run have had their turn (they add
/// their writes to it). Ends when the store is closed or dropped.
async fn committer(inner: Weak<Inner>, wake: Arc<Notify>) {
    loop {
        wake.notified().await;
        tokio::task::yield_now().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let mut conn = inner.conn();
        if conn.db.is_none() {
            return;
        }
        // A failure is the health's to log (once a minute, however many batches fail) and
        // the waiting writers' to report.
        let _ = conn.commit();
    }
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: Option<i64>) -> Option<DateTime<Utc>> {
    v.and_then(|v| Utc.timestamp_millis_opt(v).single())
}

impl Sqlite {
    /// Where the store lives, for messages.
    pub(super) fn location(&self) -> &str {
        &self.inner.location
    }

    fn lock(&self) -> MutexGuard<'_, Conn> {
        self.inner.conn()
    }

    /// Runs `f`, which only reads, on the connection.
    fn read<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut guard = self.lock();
        let conn = guard.db.as_mut().ok_or(StoreError::Closed)?;
        Ok(f(conn)?)
    }

    /// Runs `f` in the open transaction (opening one), without waiting for the commit, and
    /// returns where the commit's outcome will be announced.
    fn write_behind<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<(T, watch::Receiver<Outcome>), StoreError> {
        let mut guard = self.lock();
        let Conn {
            db, batch, health, ..
        } = &mut *guard;
        let conn = db.as_mut().ok_or(StoreError::Closed)?;
        let batch = match batch {
            Some(batch) => batch,
            None => {
                if let Err(err) = conn
                    .prepare_cached("BEGIN IMMEDIATE")
                    .and_then(|mut begin| begin.execute([]))
                {
                    if storage_failure(&err) {
                        health.failed(&err.to_string());
                    }
                    return Err(err.into());
                }
                self.inner.wake.notify_one();
                batch.insert(watch::channel(None).0)
            }
        };
        let outcome = batch.subscribe();
        let result = f(conn);
        if let Err(err) = &result
            && storage_failure(err)
        {
            health.failed(&err.to_string());
        }
        if conn.is_autocommit() {
            // An error made SQLite roll the whole transaction back: say so to its writers.
            let _ = guard.commit();
        }
        Ok((result?, outcome))
    }

    /// Runs `f` in the open transaction (opening one) and returns once that is committed.
    async fn write<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let (value, mut outcome) = self.write_behind(f)?;
        if !self.inner.committer {
            self.lock().commit().map_err(StoreError::Commit)?;
            return Ok(value);
        }
        let outcome = outcome
            .wait_for(Option::is_some)
            .await
            .map_err(|_| StoreError::Closed)?
            .clone();
        match outcome {
            Some(Err(err)) => Err(StoreError::Commit(err)),
            _ => Ok(value),
        }
    }

    /// One statement, durable when this returns.
    async fn execute(
        &self,
        sql: &str,
        params: impl rusqlite::Params + Send,
    ) -> Result<(), StoreError> {
        self.write(|conn| conn.prepare_cached(sql)?.execute(params).map(drop))
            .await
    }

    /// How the writes are going.
    pub(super) fn health(&self) -> &WriteHealth {
        &self.inner.health
    }

    /// Lets no write make the database grow (`PRAGMA max_page_count` at its current size),
    /// or lifts that limit: SQLite then fails writes with `SQLITE_FULL` exactly as on a full
    /// disk.
    #[cfg(any(test, feature = "fakes"))]
    pub(super) fn fill_disk(&self, full: bool) -> Result<(), StoreError> {
        self.read(|conn| {
            let pages: i64 = if full {
                conn.query_row("PRAGMA page_count", [], |r| r.get(0))?
            } else {
                // SQLite's own maximum.
                4_294_967_294
            };
            conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))
        })
    }

    /// Checks the database answers.
    pub(super) fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())))
    }

    /// Commits the open transaction and closes the connection (checkpointing the WAL into
    /// the database) and releases the serving lock. Later calls fail with
    /// [`StoreError::Closed`].
    pub(super) fn close(&self) {
        let (conn, lock) = {
            let mut guard = self.lock();
            if let Err(err) = guard.commit() {
                tracing::error!(cause = %err, "state store: last writes not committed at close");
            }
            (guard.db.take(), guard.lock.take())
        };
        self.inner.wake.notify_one();
        if let Some(conn) = conn
            && let Err((_, err)) = conn.close()
        {
            tracing::warn!(cause = %err, "state store did not close cleanly");
        }
        // Released once the database is closed.
        drop(lock);
    }

    /// The store's nonce salt, set to `fresh` if it has none yet.
    pub(super) async fn nonce_salt(&self, fresh: String) -> Result<String, StoreError> {
        self.write(|conn| {
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('nonce_salt', ?1) ON CONFLICT (key) DO NOTHING",
                [&fresh],
            )?;
            conn.query_row("SELECT value FROM meta WHERE key = 'nonce_salt'", [], |r| {
                r.get(0)
            })
        })
            .await
    }
}

#[cfg(test)]
impl super::Store {
    /// Runs `f`, which only reads, on the SQLite connection (tests look at the database).
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        super::backend!(self, db => db.read(f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actor_state::{ActorState, RunOutcome};
    use crate::store::{DB_FILE, PostStatus, Store};
    use schema::connect;
    use std::path::Path;
    use std::time::Duration;

    #[tokio::test]
    async fn a_closed_store_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), None).await.unwrap();
        store.close().await;
        assert!(matches!(store.ping().await, Err(StoreError::Closed)));
        // Closing checkpointed the WAL into the database and removed it.
        assert!(!dir.path().join(format!("{DB_FILE}-wal")).exists());
    }

    /// Runs as another process sees them: committed only.
    fn committed_runs(dir: &Path) -> i64 {
        let conn = Connection::open(dir.join(DB_FILE)).unwrap();
        conn.query_row("SELECT COUNT(*) FROM runs", [], |r| r.get(0))
            .unwrap()
    }

    pub(super) fn act(text: &str) -> crate::narrative::ActOutput {
        crate::narrative::ActOutput {
            act: "x".into(),
            text: text.into(),
            json: None,
            provider: "offline".into(),
            request_model: "m".into(),
            model: "m".into(),
            input_tokens: 1,
            output_tokens: 1,
            retries: 0,
            rate_limit_wait: Duration::ZERO,
            duration: Duration::ZERO,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn run_records_are_committed_by_the_next_group_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), None).await.unwrap();
        let state = ActorState {
            name: "a".into(),
            ..Default::default()
        };
        let id = store
            .start_run(&state, None, Utc::now(), Utc::now())
            .await
            .unwrap();
        assert_eq!(
            committed_runs(dir.path()),
            0,
            "not committed by the call itself"
        );
        // This process reads its own records at once.
        assert_eq!(store.recent_runs(Some("a"), 1).await.unwrap()[0].id, id);
        let id2 = store
            .start_run(&state, None, Utc::now(), Utc::now())
            .await
            .unwrap();
        assert_eq!(id2, id + 1);
        // Once the other ready tasks (the committer) have run: one commit for both.
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(committed_runs(dir.path()), 2);
    }

    #[tokio::test]
    async fn a_queued_post_is_committed_with_the_run_records_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), None).await.unwrap();
        let state = ActorState {
            name: "a".into(),
            ..Default::default()
        };
        let id = store
            .start_run(&state, None, Utc::now(), Utc::now())
            .await
            .unwrap();
        store.record_acts(id, &[act("draft")]).await.unwrap();
        store
            .enqueue(
                "log",
                "hello",
                PostStatus::Sending,
                Some(("a", id)),
                Utc::now(),
            )
            .await
            .unwrap();
        // Without waiting: the post's commit carried the run and its act.
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        let (runs, acts, attempts): (i64, i64, i64) = conn
            .query_row(
                "SELECT (SELECT COUNT(*) FROM runs), (SELECT COUNT(*) FROM act_outputs), (SELECT attempts FROM posts)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((runs, acts, attempts), (1, 1, 1));
    }

    #[tokio::test]
    async fn dropping_the_store_commits_run_records() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), None).await.unwrap();
        let state = ActorState {
            name: "a".into(),
            ..Default::default()
        };
        store
            .start_run(&state, None, Utc::now(), Utc::now())
            .await
            .unwrap();
        drop(store);
        assert_eq!(committed_runs(dir.path()), 1);
    }

    #[tokio::test]
    async fn a_write_that_fails_does_not_take_the_others_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), None).await.unwrap();
        let state = ActorState {
            name: "a".into(),
            ..Default::default()
        };
        let id = store
            .start_run(&state, None, Utc::now(), Utc::now())
            .await
            .unwrap();
        // Outputs of a run that does not exist: refused by the foreign key, in the same
        // transaction as the run before and the outputs after.
        let orphan = store.record_acts(9999, &[act("orphan")]).await;
        assert!(orphan.is_err(), "{orphan:?}");
        store.record_acts(id, &[act("kept")]).await.unwrap();
        store.close().await;
        let store = Store::open(dir.path(), None).await.unwrap();
        assert_eq!(store.run_count().await.unwrap(), 1);
        assert!(store.act_outputs(9999).await.unwrap().is_empty());
        assert_eq!(
            store.act_outputs(id).await.unwrap(),
            vec![("x".to_owned(), "kept".to_owned())]
        );
    }

    /// A write that fails for want of space (the disk full) makes the store's health say
    /// so; a write its caller got wrong (a foreign key) does not; a commit that goes through
    /// again clears the last failure.
    #[tokio::test]
    async fn the_health_follows_failures_of_the_storage_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), None).await.unwrap();
        let state = ActorState {
            name: "a".into(),
            ..Default::default()
        };
        let id = store
            .start_run(&state, None, Utc::now(), Utc::now())
            .await
            .unwrap();
        assert!(store.record_acts(9999, &[act("orphan")]).await.is_err());
        // Committed (a durable write waits for the commit of the run before it).
        store.nonce_salt().await.unwrap();
        assert_eq!(store.write_health().problem(), None);

        store.fake_full_disk(true).unwrap();
        let big = "x".repeat(64 * 1024);
        let e = store.record_acts(id, &[act(&big)]).await.unwrap_err();
        assert!(
            crate::error_chain(&e).contains("database or disk is full"),
            "{e}"
        );
        assert!(store.write_health().last_failed());
        let problem = store.write_health().problem().unwrap();
        assert!(problem.contains("database or disk is full"), "{problem}");

        store.fake_full_disk(false).unwrap();
        let id = store
            .start_run(&state, None, Utc::now(), Utc::now())
            .await
            .unwrap();
        store.record_acts(id, &[act(&big)]).await.unwrap();
        assert!(store.write_health().last_failed(), "not committed yet");
        store.nonce_salt().await.unwrap();
        assert!(!store.write_health().last_failed());
    }

    /// `bot-server posts approve` while the server writes without pause: the server's open
    /// transactions must leave the other process a way in.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn another_process_can_write_while_the_server_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), None).await.unwrap();
        let busy = CancellationFlag::default();
        // Runs finished so far: the other process writes only once the server is busy (on a
        // loaded machine the writers may not have started when it would otherwise write).
        let finished = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let (store, busy, finished) = (store.clone(), busy.clone(), finished.clone());
                tokio::spawn(async move {
                    let state = ActorState {
                        name: format!("a{w}"),
                        ..Default::default()
                    };
                    let mut i = 0;
                    while !busy.is_set() {
                        let id = store
                            .start_run(&state, None, Utc::now(), Utc::now())
                            .await
                            .unwrap();
                        store
                            .enqueue(
                                "log",
                                &format!("{w} {i}"),
                                PostStatus::Sending,
                                None,
                                Utc::now(),
                            )
                            .await
                            .unwrap();
                        store
                            .finish_run(id, RunOutcome::Success, None, Utc::now(), &state)
                            .await
                            .unwrap();
                        finished.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        i += 1;
                    }
                    i
                })
            })
            .collect();
        while finished.load(std::sync::atomic::Ordering::Relaxed) < 8 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let path = dir.path().join(DB_FILE);
        let other = tokio::task::spawn_blocking(move || {
            let conn = connect(&path, "other").unwrap();
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('other', 'process')",
                [],
            )
        })
        .await
        .unwrap();
        busy.set();
        let mut runs = 0;
        for w in writers {
            runs += w.await.unwrap();
        }
        assert_eq!(other.map_err(|e| e.to_string()), Ok(1), "after {runs} runs");
        assert!(runs > 0);
    }

    #[derive(Clone, Default)]
    struct CancellationFlag(Arc<std::sync::atomic::AtomicBool>);

    impl CancellationFlag {
        fn set(&self) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        fn is_set(&self) -> bool {
            self.0.load(std::sync::atomic::Ordering::Relaxed)
        }
    }
}
