//! The state store: actors' schedule state, every run, and the post queue.
//!
//! Embedded SQLite in the state directory (`bot-server.db`, WAL journal), created and migrated
//! on open. Times are stored as Unix milliseconds and the SQL sticks to what PostgreSQL also
//! accepts, so a PostgreSQL backend needs its own migrations and connection, not new queries.
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

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// File name of the database inside the state directory.
pub const DB_FILE: &str = "bot-server.db";

/// How long a statement waits for a lock held by another process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The schema, in order. The database's `user_version` is the number of migrations applied.
const MIGRATIONS: &[(&str, &str)] = &[
    ("init", include_str!("../migrations/sqlite/0001_init.sql")),
    (
        "run scheduled_at",
        include_str!("../migrations/sqlite/0002_run_scheduled_at.sql"),
    ),
    (
        "run indexes",
        include_str!("../migrations/sqlite/0003_run_indexes.sql"),
    ),
    (
        "posts by source",
        include_str!("../migrations/sqlite/0004_unsent_posts_index.sql"),
    ),
    (
        "post counts",
        include_str!("../migrations/sqlite/0005_post_counts.sql"),
    ),
];

/// A target's approved posts, oldest first (see [`Store::next_approved`]). The rows come in the
/// index's order (target, status, id), and the caller stops reading after a few: with
/// `ORDER BY id LIMIT n` SQLite re-prepared the statement on every call (a parameter-dependent
/// plan; it cost 8 % of the server's CPU at 1,000 runs/s).
const NEXT_APPROVED: &str =
    "SELECT * FROM posts INDEXED BY posts_by_status WHERE target = ?1 AND status = 'approved'";

/// A state store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state directory {path}: cannot create it or write to it")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state store {location}: cannot open")]
    Open {
        location: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("state store {location}: migration {version} ({name}) failed")]
    Migrate {
        location: String,
        version: usize,
        name: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "state store {location} has schema version {found}, newer than this bot-server knows ({known}): it was written by a newer release; run that release, or restore a backup taken before the upgrade"
    )]
    NewerSchema {
        location: String,
        found: i64,
        known: usize,
    },
    #[error("state store query failed")]
    Query(#[from] rusqlite::Error),
    #[error("state store is closed")]
    Closed,
    #[error(
        "state store {location} is in use by another `bot-server serve`{pid} (it holds {lock}); run one server per state directory, or stop the other one first"
    )]
    InUse {
        location: String,
        lock: String,
        /// ` (pid N)` when the other process wrote it.
        pid: String,
    },
    #[error("state store: commit failed: {0}")]
    Commit(String),
    #[error(
        "DATABASE_URL `{0}` is not supported: use `sqlite://PATH` (PostgreSQL is planned, not implemented yet)"
    )]
    UnsupportedUrl(String),
    #[error("post {0} does not exist")]
    NoSuchPost(i64),
    #[error("post {id} is {status}; only {allowed} posts can be {verb}")]
    WrongStatus {
        id: i64,
        status: String,
        allowed: String,
        verb: String,
    },
}

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

    fn parse(s: &str) -> Self {
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

    fn parse(s: &str) -> Self {
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

/// One recorded run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub id: i64,
    pub actor: String,
    pub narrative: Option<String>,
    pub started_at: DateTime<Utc>,
    /// When the run was due (absent on runs recorded before this was kept).
    pub scheduled_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: RunOutcome,
    pub error: Option<String>,
}

/// A post's place in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostStatus {
    Pending,
    Approved,
    Rejected,
    /// A send started; on restart it is sent again with the same nonce.
    Sending,
    Posted,
    /// Discord refused it for good (400, 403, 404, 413): kept with the reason, never sent again
    /// unless an operator retries it (`bot-server posts retry`).
    Failed,
}

impl PostStatus {
    pub const ALL: [PostStatus; 6] = [
        Self::Pending,
        Self::Approved,
        Self::Rejected,
        Self::Sending,
        Self::Posted,
        Self::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Sending => "sending",
            Self::Posted => "posted",
            Self::Failed => "failed",
        }
    }
}

impl FromStr for PostStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown post status `{s}` (expected pending, approved, rejected, sending, posted or failed)"))
    }
}

/// A queued post.
#[derive(Debug, Clone, PartialEq)]
pub struct Post {
    pub id: i64,
    pub target: String,
    pub content: String,
    pub status: PostStatus,
    pub source_actor: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The last change: queued, an attempt, a decision.
    pub updated_at: DateTime<Utc>,
    pub posted_at: Option<DateTime<Utc>>,
    pub message_ids: Vec<String>,
    pub parts_sent: u32,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// Result of queueing a post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    New(i64),
    /// The same normalized text was already queued (or posted) for this target.
    Duplicate(i64),
}

/// The store. Cheap to clone: clones share one connection.
#[derive(Debug, Clone)]
pub struct Store {
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
}

impl Conn {
    /// Commits the open transaction, if any, and tells the writers waiting for it.
    fn commit(&mut self) -> Result<(), String> {
        let (Some(db), Some(batch)) = (self.db.as_mut(), self.batch.take()) else {
            return Ok(());
        };
        let result = if db.is_autocommit() {
            // SQLite rolled the transaction back itself (an I/O error, disk full).
            Err("the transaction was rolled back after an error".to_owned())
        } else {
            db.prepare_cached("COMMIT")
                .and_then(|mut commit| commit.execute([]))
                .map(drop)
                .map_err(|err| {
                    let _ = db.execute_batch("ROLLBACK");
                    crate::error_chain(&err)
                })
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
        if let Err(err) = conn.commit() {
            tracing::error!(cause = %err, "state store: commit failed; the writes of this batch are lost and their runs fail");
        }
    }
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: Option<i64>) -> Option<DateTime<Utc>> {
    v.and_then(|v| Utc.timestamp_millis_opt(v).single())
}

/// Lowercased, whitespace-collapsed text: what "the same post" means for dedup.
pub fn normalize(text: &str) -> String {
    text.split_whitespace()
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

fn content_hash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(normalize(text).as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The database file a `DATABASE_URL` names: `sqlite://PATH`, `sqlite:PATH` or
/// `sqlite::memory:`.
fn sqlite_path(url: &str) -> Result<PathBuf, StoreError> {
    let Some(rest) = url.strip_prefix("sqlite:") else {
        let scheme = url.split(':').next().unwrap_or_default();
        return Err(StoreError::UnsupportedUrl(format!("{scheme}:...")));
    };
    let path = rest.strip_prefix("//").unwrap_or(rest);
    if path.is_empty() || path.contains('?') {
        return Err(StoreError::UnsupportedUrl(
            "sqlite:... with options or without a path".into(),
        ));
    }
    Ok(PathBuf::from(path))
}

fn connect(path: &Path, location: &str) -> Result<Connection, StoreError> {
    let open_err = |source| StoreError::Open {
        location: location.to_owned(),
        source,
    };
    let conn = Connection::open(path).map_err(open_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
    conn.execute_batch(
        // WAL + NORMAL survives a process crash (kill -9) without losing committed
        // transactions; only a power loss can drop the last ones. After a checkpoint, the WAL
        // file is truncated back to at most 64 MiB.
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
         PRAGMA journal_size_limit = 67108864;",
    )
    .map_err(open_err)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Applies the migrations `user_version` says are missing, each in its own transaction.
/// A store created by releases that used sqlx records its migrations in `_sqlx_migrations`
/// instead; those count as applied.
fn migrate(conn: &mut Connection, location: &str) -> Result<(), StoreError> {
    let open_err = |source| StoreError::Open {
        location: location.to_owned(),
        source,
    };
    let mut version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(open_err)?;
    if version == 0 {
        let sqlx: bool = conn
            .query_row(
                "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
                [],
                |r| r.get(0),
            )
            .map_err(open_err)?;
        if sqlx {
            version = conn
                .query_row(
                    "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success",
                    [],
                    |r| r.get(0),
                )
                .map_err(open_err)?;
        }
    }
    if version > MIGRATIONS.len() as i64 {
        return Err(StoreError::NewerSchema {
            location: location.to_owned(),
            found: version,
            known: MIGRATIONS.len(),
        });
    }
    for (index, (name, sql)) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let number = index + 1;
        let tx = conn.transaction().map_err(open_err)?;
        tx.execute_batch(sql)
            .and_then(|()| tx.pragma_update(None, "user_version", number as i64))
            .and_then(|()| tx.commit())
            .map_err(|source| StoreError::Migrate {
                location: location.to_owned(),
                version: number,
                name,
                source,
            })?;
    }
    Ok(())
}

/// Takes the serving lock of the database at `db`: an exclusive lock on `DB.lock`, with this
/// process's id written in it for the message another server gets.
fn lock(db: &Path, location: &str) -> Result<std::fs::File, StoreError> {
    use std::io::{Read, Seek, Write};
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    let dir_err = |source| StoreError::Dir {
        path: path.clone(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(dir_err)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            return Err(StoreError::InUse {
                location: location.to_owned(),
                lock: path.display().to_string(),
                pid: if pid.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {pid})")
                },
            });
        }
        Err(std::fs::TryLockError::Error(source)) => return Err(dir_err(source)),
    }
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .map_err(dir_err)?;
    Ok(file)
}

/// Marks runs left `running` by a process that died as `interrupted`.
fn recover(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    // A run the process died in still counts as the actor's last run, so an interval actor
    // continues from it instead of firing again at once.
    tx.execute(
        "INSERT INTO actors (name, last_run_at) SELECT actor, MAX(started_at) FROM runs WHERE outcome = 'running' GROUP BY actor \
         ON CONFLICT (name) DO UPDATE SET last_run_at = MAX(COALESCE(actors.last_run_at, 0), excluded.last_run_at)",
        [],
    )?;
    tx.execute(
        "UPDATE runs SET outcome = 'interrupted', error = 'the server stopped during this run' WHERE outcome = 'running'",
        [],
    )?;
    tx.commit()
}

impl Store {
    /// Opens (creating and migrating) the store in `state_dir`, or at `database_url` when given
    /// (`DATABASE_URL`, `sqlite://PATH`), for commands that work next to a running server
    /// (`bot-server posts`): runs are left as they are.
    ///
    /// # Errors
    ///
    /// When the directory cannot be created or written, the database cannot be opened or
    /// migrated, or the URL is not a SQLite one.
    pub async fn open(state_dir: &Path, database_url: Option<&str>) -> Result<Self, StoreError> {
        Self::open_with(state_dir, database_url, false)
    }

    /// [`Store::open`] for the server: takes the store's lock file (`bot-server.db.lock`, held
    /// until the store is dropped, released by the OS if the process dies) so that a second
    /// server on the same store fails at start instead of running every actor twice, then
    /// marks runs found still `running` (their process died) as `interrupted`.
    ///
    /// # Errors
    ///
    /// As [`Store::open`], and [`StoreError::InUse`] when another server holds the lock.
    pub async fn open_for_serving(
        state_dir: &Path,
        database_url: Option<&str>,
    ) -> Result<Self, StoreError> {
        Self::open_with(state_dir, database_url, true)
    }

    fn open_with(
        state_dir: &Path,
        database_url: Option<&str>,
        serving: bool,
    ) -> Result<Self, StoreError> {
        let (path, location) = match database_url.filter(|u| !u.trim().is_empty()) {
            Some(url) => (sqlite_path(url.trim())?, "DATABASE_URL".to_owned()),
            None => {
                std::fs::create_dir_all(state_dir).map_err(|source| StoreError::Dir {
                    path: state_dir.to_owned(),
                    source,
                })?;
                let path = state_dir.join(DB_FILE);
                let location = path.display().to_string();
                (path, location)
            }
        };
        let lock = if serving {
            Some(lock(&path, &location)?)
        } else {
            None
        };
        let mut conn = connect(&path, &location)?;
        migrate(&mut conn, &location)?;
        if serving {
            recover(&mut conn).map_err(|source| StoreError::Open {
                location: location.clone(),
                source,
            })?;
        }
        let wake = Arc::new(Notify::new());
        let runtime = tokio::runtime::Handle::try_current().ok();
        let inner = Arc::new(Inner {
            conn: Mutex::new(Conn {
                db: Some(conn),
                batch: None,
                lock,
            }),
            location,
            wake: wake.clone(),
            committer: runtime.is_some(),
        });
        if let Some(runtime) = runtime {
            runtime.spawn(committer(Arc::downgrade(&inner), wake));
        }
        Ok(Self { inner })
    }

    /// Where the store lives, for messages.
    pub fn location(&self) -> &str {
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
        let Conn { db, batch, .. } = &mut *guard;
        let conn = db.as_mut().ok_or(StoreError::Closed)?;
        let batch = match batch {
            Some(batch) => batch,
            None => {
                conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
                self.inner.wake.notify_one();
                batch.insert(watch::channel(None).0)
            }
        };
        let outcome = batch.subscribe();
        let result = f(conn);
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

    /// Checks the store answers (for `/readyz`).
    ///
    /// # Errors
    ///
    /// When the database does not answer.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())))
    }

    /// Commits the open transaction and closes the connection (checkpointing the WAL into
    /// the database). Later calls fail with [`StoreError::Closed`].
    pub async fn close(&self) {
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

    /// A random value fixed for this store, mixed into Discord nonces so that a new store
    /// never reuses an old store's nonces.
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn nonce_salt(&self) -> Result<String, StoreError> {
        let fresh: String = {
            use rand::Rng;
            let mut rng = rand::rng();
            (0..6)
                .map(|_| {
                    char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)])
                })
                .collect()
        };
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

    // --- actors -------------------------------------------------------------------------

    /// The stored state of every actor.
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn actor_states(&self) -> Result<Vec<ActorState>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached("SELECT * FROM actors ORDER BY name")?
                .query_map([], actor_from_row)?
                .collect()
        })
    }

    /// The stored state of one actor.
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn actor_state(&self, name: &str) -> Result<Option<ActorState>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached("SELECT * FROM actors WHERE name = ?1")?
                .query_row([name], actor_from_row)
                .optional()
        })
    }

    /// Saves an actor's state.
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn save_actor_state(&self, state: &ActorState) -> Result<(), StoreError> {
        self.write(|conn| save_actor(conn, state)).await
    }

    // --- runs ---------------------------------------------------------------------------

    /// Records the start of a run.
    ///
    /// # Errors
    ///
    /// On a database error.
    #[tracing::instrument(name = "store.start_run", level = "info", skip_all, fields(db.system = "sqlite", db.operation.name = "insert"))]
    pub async fn start_run(
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

    /// Records the end of a run and the actor's new state, together (not waited for).
    ///
    /// # Errors
    ///
    /// On a database error.
    #[tracing::instrument(name = "store.finish_run", level = "info", skip_all, fields(db.system = "sqlite", db.operation.name = "update"))]
    pub async fn finish_run(
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

    /// Outputs of a run's acts, in order: `(act, output)`.
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn act_outputs(&self, run_id: i64) -> Result<Vec<(String, String)>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT act, output FROM act_outputs WHERE run_id = ?1 ORDER BY position",
            )?
            .query_map([run_id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
        })
    }

    /// Deletes finished runs (and their act outputs) that started before `before`, a
    /// thousand runs per transaction so other store calls are never held up for long.
    ///
    /// # Errors
    ///
    /// On a database error.
    #[tracing::instrument(name = "store.prune_runs", level = "info", skip_all, fields(db.system = "sqlite", db.operation.name = "delete"))]
    pub async fn prune_runs(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
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

    /// Drops the text of posts posted before `before`, keeping each row (target, content hash,
    /// message ids, dates) so duplicate detection still sees everything ever posted. Works in
    /// batches of 1,000, so the store is never held for long. Returns how many were pruned.
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn prune_posted_texts(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        // Batches by id range (the primary key): each holds the store for about a millisecond,
        // and none re-reads rows an earlier batch already passed.
        let max_id: i64 = self.read(|conn| {
            conn.query_row("SELECT COALESCE(MAX(id), 0) FROM posts", [], |r| r.get(0))
        })?;
        let mut pruned = 0;
        let mut from = 0;
        while from < max_id {
            let to = from + 1000;
            pruned += self
                .write(|conn| {
                    Ok(conn.execute(
                        "UPDATE posts SET content = '' WHERE id > ?1 AND id <= ?2 \
                         AND status = 'posted' AND posted_at < ?3 AND content <> ''",
                        params![from, to, ms(before)],
                    )? as u64)
                })
                .await?;
            from = to;
            tokio::task::yield_now().await;
        }
        Ok(pruned)
    }

    /// Number of run records kept.
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn run_count(&self) -> Result<u64, StoreError> {
        self.read(|conn| conn.query_row("SELECT COUNT(*) FROM runs", [], |r| r.get::<_, i64>(0)))
            .map(|n| n as u64)
    }

    // --- posts --------------------------------------------------------------------------

    /// Queues a post for `target` unless the same normalized text is already there. A post
    /// queued as [`PostStatus::Sending`] (about to be sent) counts its first attempt.
    ///
    /// # Errors
    ///
    /// On a database error.
    #[tracing::instrument(name = "store.enqueue", level = "info", skip_all, fields(db.system = "sqlite", db.operation.name = "insert"))]
    pub async fn enqueue(
        &self,
        target: &str,
        content: &str,
        status: PostStatus,
        source: Option<(&str, i64)>,
        now: DateTime<Utc>,
    ) -> Result<Enqueued, StoreError> {
        let hash = content_hash(content);
        self.write(|conn| {
            let inserted = conn
                .prepare_cached(
                "INSERT INTO posts (target, content, content_hash, status, source_actor, source_run, created_at, updated_at, attempts) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, CASE ?4 WHEN 'sending' THEN 1 ELSE 0 END) ON CONFLICT (target, content_hash) DO NOTHING RETURNING id",
                )?
                .query_row(
                params![
                    target,
                    content,
                    &hash,
                    status.as_str(),
                    source.map(|s| s.0),
                    source.map(|s| s.1),
                    ms(now)
                ],
                |r| r.get(0),
            )
                .optional()?;
            if let Some(id) = inserted {
                return Ok(Enqueued::New(id));
            }
            conn.prepare_cached("SELECT id FROM posts WHERE target = ?1 AND content_hash = ?2")?
                .query_row(params![target, &hash], |r| r.get(0))
                .map(Enqueued::Duplicate)
        })
            .await
    }

    /// Posts with `status`, oldest first, optionally for one target.
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn posts(
        &self,
        status: Option<PostStatus>,
        target: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Post>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT * FROM posts WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR target = ?2) ORDER BY id LIMIT ?3",
            )?
            .query_map(
                params![status.map(PostStatus::as_str), target, i64::from(limit)],
                post_from_row,
            )?
            .collect()
        })
    }

    /// One post.
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn post(&self, id: i64) -> Result<Option<Post>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached("SELECT * FROM posts WHERE id = ?1")?
                .query_row([id], post_from_row)
                .optional()
        })
    }

    /// Number of posts per status.
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn post_counts(&self) -> Result<Vec<(PostStatus, u64)>, StoreError> {
        let rows: Vec<(String, i64)> = self.read(|conn| {
            // Kept by triggers (migration 5): a few rows, however many posts were ever queued.
            conn.prepare_cached("SELECT status, n FROM post_counts")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })?;
        let mut out: Vec<(PostStatus, u64)> = PostStatus::ALL.iter().map(|s| (*s, 0)).collect();
        for (status, n) in rows {
            if let Some(slot) = out.iter_mut().find(|(s, _)| s.as_str() == status) {
                slot.1 = n as u64;
            }
        }
        Ok(out)
    }

    /// Moves a post from one of `from` to `to` (approve, reject).
    ///
    /// # Errors
    ///
    /// When the post does not exist or is in another status.
    pub async fn transition(
        &self,
        id: i64,
        from: &[PostStatus],
        to: PostStatus,
        verb: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let post = self.post(id).await?.ok_or(StoreError::NoSuchPost(id))?;
        if !from.contains(&post.status) {
            return Err(StoreError::WrongStatus {
                id,
                status: post.status.as_str().into(),
                allowed: from
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" or "),
                verb: verb.into(),
            });
        }
        self.execute(
            "UPDATE posts SET status = ?1, updated_at = ?2 WHERE id = ?3 AND status = ?4",
            (to.as_str(), ms(now), id, post.status.as_str()),
        )
        .await
    }

    /// The 8 oldest approved posts of `target`, for a publisher to pick the first one no other
    /// sender has claimed (a post left `sending` is the re-send loop's, not a publisher's).
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn next_approved(&self, target: &str) -> Result<Vec<Post>, StoreError> {
        self.read(|conn| {
            let mut posts: Vec<Post> = conn
                .prepare_cached(NEXT_APPROVED)?
                .query_map(params![target], post_from_row)?
                .take(8)
                .collect::<rusqlite::Result<_>>()?;
            posts.sort_by_key(|p| p.id);
            Ok(posts)
        })
    }

    /// Marks a post as being sent, before the request goes out.
    ///
    /// # Errors
    ///
    /// On a database error.
    #[tracing::instrument(name = "store.mark_sending", level = "info", skip_all, fields(db.system = "sqlite", db.operation.name = "update"))]
    pub async fn mark_sending(&self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.execute(
            "UPDATE posts SET status = 'sending', attempts = attempts + 1, updated_at = ?1 WHERE id = ?2",
            (ms(now), id),
        )
        .await
    }

    /// Records that part `parts_sent - 1` of a post was accepted, with its message id.
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn record_part(
        &self,
        id: i64,
        parts_sent: u32,
        message_ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.update_parts(id, parts_sent, message_ids, false, now)
            .await
    }

    /// Records the last part of a post as accepted and the post as posted, in one statement.
    ///
    /// # Errors
    ///
    /// On a database error.
    #[tracing::instrument(name = "store.mark_posted", level = "info", skip_all, fields(db.system = "sqlite", db.operation.name = "update"))]
    pub async fn record_last_part(
        &self,
        id: i64,
        parts_sent: u32,
        message_ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.update_parts(id, parts_sent, message_ids, true, now)
            .await
    }

    /// Marks a post as posted (every part accepted).
    ///
    /// # Errors
    ///
    /// On a database error.
    #[tracing::instrument(name = "store.mark_posted", level = "info", skip_all, fields(db.system = "sqlite", db.operation.name = "update"))]
    pub async fn mark_posted(&self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.execute(
            "UPDATE posts SET status = 'posted', posted_at = ?1, updated_at = ?1, last_error = NULL WHERE id = ?2",
            (ms(now), id),
        )
        .await
    }

    /// Records a failed send; the post stays in the queue (`sending`) and is retried, with the
    /// same nonces, on the next attempt.
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn mark_send_failed(
        &self,
        id: i64,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE posts SET last_error = ?1, updated_at = ?2 WHERE id = ?3",
            (error, ms(now), id),
        )
        .await
    }

    /// Marks a post `failed` with the reason Discord gave: it is not sent again unless an
    /// operator retries it, and later posts of its actor and target are not held up by it.
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn mark_failed(
        &self,
        id: i64,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE posts SET status = 'failed', last_error = ?1, updated_at = ?2 WHERE id = ?3",
            (error, ms(now), id),
        )
        .await
    }

    /// The write behind [`Store::record_part`] and [`Store::record_last_part`].
    async fn update_parts(
        &self,
        id: i64,
        parts_sent: u32,
        message_ids: &[String],
        posted: bool,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let sql = if posted {
            "UPDATE posts SET parts_sent = ?1, message_ids = ?2, status = 'posted', posted_at = ?3, updated_at = ?3, last_error = NULL WHERE id = ?4"
        } else {
            "UPDATE posts SET parts_sent = ?1, message_ids = ?2, updated_at = ?3 WHERE id = ?4"
        };
        self.execute(
            sql,
            (i64::from(parts_sent), message_ids.join(","), ms(now), id),
        )
        .await
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

fn post_from_row(r: &Row<'_>) -> rusqlite::Result<Post> {
    let status: String = r.get("status")?;
    let ids: String = r.get("message_ids")?;
    Ok(Post {
        id: r.get("id")?,
        target: r.get("target")?,
        content: r.get("content")?,
        status: status.parse().unwrap_or(PostStatus::Pending),
        source_actor: r.get("source_actor")?,
        created_at: from_ms(r.get("created_at")?).unwrap_or_default(),
        updated_at: from_ms(r.get("updated_at")?).unwrap_or_default(),
        posted_at: from_ms(r.get("posted_at")?),
        message_ids: ids
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        parts_sent: r.get::<_, i64>("parts_sent")? as u32,
        attempts: r.get::<_, i64>("attempts")? as u32,
        last_error: r.get("last_error")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn duplicate_content_is_detected_after_normalization() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), None).await.unwrap();
        let now = Utc::now();
        let a = store
            .enqueue("log", "Hello  World", PostStatus::Pending, None, now)
            .await
            .unwrap();
        let b = store
            .enqueue("log", " hello world\n", PostStatus::Pending, None, now)
            .await
            .unwrap();
        let c = store
            .enqueue("discord:1", "hello world", PostStatus::Pending, None, now)
            .await
            .unwrap();
        let Enqueued::New(id) = a else {
            panic!("{a:?}")
        };
        assert_eq!(b, Enqueued::Duplicate(id));
        assert!(matches!(c, Enqueued::New(_)));
    }

    #[tokio::test]
    async fn the_wal_is_checkpointed_while_writing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), None).await.unwrap();
        let state = ActorState {
            name: "a".into(),
            ..Default::default()
        };
        for i in 0..3000 {
            store
                .start_run(&state, None, Utc::now(), Utc::now())
                .await
                .unwrap();
            store
                .enqueue(
                    "log",
                    &format!("post {i}"),
                    PostStatus::Pending,
                    None,
                    Utc::now(),
                )
                .await
                .unwrap();
        }
        // SQLite checkpoints every 1000 pages: the WAL stays around 4 MB, whatever the count.
        let wal = std::fs::metadata(dir.path().join(format!("{DB_FILE}-wal")))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(wal < 8 * 1024 * 1024, "WAL grew to {wal} bytes");
        let db = std::fs::metadata(dir.path().join(DB_FILE)).unwrap().len();
        assert!(
            db > 100 * 1024,
            "nothing was checkpointed into the database ({db} bytes)"
        );
    }

    #[tokio::test]
    async fn running_runs_are_interrupted_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_for_serving(dir.path(), None).await.unwrap();
        let state = ActorState {
            name: "a".into(),
            ..Default::default()
        };
        let id = store
            .start_run(&state, None, Utc::now(), Utc::now())
            .await
            .unwrap();
        // A command next to the running server leaves the run alone.
        let cli = Store::open(dir.path(), None).await.unwrap();
        store.close().await;
        assert_eq!(
            cli.recent_runs(Some("a"), 10).await.unwrap()[0].outcome,
            RunOutcome::Running
        );
        cli.close().await;
        let store = Store::open_for_serving(dir.path(), None).await.unwrap();
        let runs = store.recent_runs(Some("a"), 10).await.unwrap();
        assert_eq!(runs[0].id, id);
        assert_eq!(runs[0].outcome, RunOutcome::Interrupted);
        // The interrupted run is the actor's last run: an interval continues from it.
        let state = store.actor_state("a").await.unwrap().unwrap();
        assert_eq!(
            state.last_run_at.map(|t| t.timestamp_millis()),
            Some(runs[0].started_at.timestamp_millis())
        );
    }

    #[tokio::test]
    async fn a_second_server_on_the_same_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open_for_serving(dir.path(), None).await.unwrap();
        let e = Store::open_for_serving(dir.path(), None)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!(
                "in use by another `bot-server serve` (pid {})",
                std::process::id()
            )),
            "{e}"
        );
        assert!(e.contains("bot-server.db.lock"), "{e}");
        // Commands that work next to a server still open it.
        Store::open(dir.path(), None).await.unwrap().close().await;
        first.close().await;
        Store::open_for_serving(dir.path(), None)
            .await
            .expect("free once the first server closed its store");
    }

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

    /// A store written by the releases that used sqlx: migrations 1 and 2 recorded in
    /// `_sqlx_migrations` (as sqlx creates it), a run and a post.
    fn sqlx_era_store(dir: &Path) {
        let conn = Connection::open(dir.join(DB_FILE)).unwrap();
        conn.execute_batch(
            "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
             installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL, \
             checksum BLOB NOT NULL, execution_time BIGINT NOT NULL);",
        )
        .unwrap();
        for (version, (name, sql)) in MIGRATIONS.iter().enumerate().take(2) {
            conn.execute_batch(sql).unwrap();
            conn.execute(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (?1, ?2, 1, x'00', 1)",
                params![version as i64 + 1, name],
            )
            .unwrap();
        }
        conn.execute_batch(
            "INSERT INTO runs (actor, started_at, scheduled_at, outcome) VALUES ('a', 1000, 1000, 'success'); \
             INSERT INTO posts (target, content, content_hash, status, created_at, updated_at) VALUES ('log', 'kept', 'h', 'approved', 1, 1);",
        )
        .unwrap();
    }

    #[tokio::test]
    async fn a_store_from_the_sqlx_releases_is_adopted_and_migrated() {
        let dir = tempfile::tempdir().unwrap();
        sqlx_era_store(dir.path());
        let store = Store::open(dir.path(), None).await.unwrap();
        assert_eq!(store.run_count().await.unwrap(), 1);
        let posts = store.posts(None, None, 10).await.unwrap();
        assert_eq!(posts[0].content, "kept");
        // Migration 3 (indexes) was applied on top, and is recorded.
        let (indexes, version): (i64, i64) = store
            .read(|c| {
                Ok((
                    c.query_row(
                        "SELECT COUNT(*) FROM sqlite_master WHERE name = 'runs_by_start'",
                        [],
                        |r| r.get(0),
                    )?,
                    c.query_row("PRAGMA user_version", [], |r| r.get(0))?,
                ))
            })
            .unwrap();
        assert_eq!((indexes, version), (1, MIGRATIONS.len() as i64));
        store.close().await;
        // Opening again applies nothing twice.
        Store::open(dir.path(), None).await.unwrap();
    }

    #[tokio::test]
    async fn a_store_from_a_newer_release_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        Store::open(dir.path(), None).await.unwrap().close().await;
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let e = crate::error_chain(&Store::open(dir.path(), None).await.unwrap_err());
        assert!(e.contains("schema version 99"), "{e}");
        let known = format!("newer than this bot-server knows ({})", MIGRATIONS.len());
        assert!(e.contains(&known), "{e}");
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 99);
    }

    #[tokio::test]
    async fn a_closed_store_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), None).await.unwrap();
        store.close().await;
        assert!(matches!(store.ping().await, Err(StoreError::Closed)));
        // Closing checkpointed the WAL into the database and removed it.
        assert!(!dir.path().join(format!("{DB_FILE}-wal")).exists());
    }

    #[tokio::test]
    async fn sqlite_urls_name_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("elsewhere.db");
        let url = format!("sqlite://{}", file.display());
        Store::open(&dir.path().join("unused"), Some(&url))
            .await
            .unwrap()
            .close()
            .await;
        assert!(file.exists());
        assert!(!dir.path().join("unused").exists());
        let e = Store::open(dir.path(), Some("sqlite://x.db?mode=ro"))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("use `sqlite://PATH`"), "{e}");
    }

    /// Runs as another process sees them: committed only.
    fn committed_runs(dir: &Path) -> i64 {
        let conn = Connection::open(dir.join(DB_FILE)).unwrap();
        conn.query_row("SELECT COUNT(*) FROM runs", [], |r| r.get(0))
            .unwrap()
    }

    fn act(text: &str) -> crate::narrative::ActOutput {
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

    /// `bot-server posts approve` while the server writes without pause: the server's open
    /// transactions must leave the other process a way in.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn another_process_can_write_while_the_server_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), None).await.unwrap();
        let busy = CancellationFlag::default();
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let (store, busy) = (store.clone(), busy.clone());
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
                        i += 1;
                    }
                    i
                })
            })
            .collect();
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

    /// A run's statements are prepared once, not re-planned on every run (it cost 8 % of the
    /// server's CPU when the publisher's query was).
    #[tokio::test]
    async fn the_statements_of_a_run_are_not_re_prepared() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), None).await.unwrap();
        for i in 0..20 {
            let state = ActorState {
                name: format!("a{}", i % 3),
                ..Default::default()
            };
            let id = store
                .start_run(&state, None, Utc::now(), Utc::now())
                .await
                .unwrap();
            store.next_approved("log").await.unwrap();
            store.record_acts(id, &[act("draft")]).await.unwrap();
            let post = match store
                .enqueue(
                    "log",
                    &format!("post {i}"),
                    PostStatus::Sending,
                    Some((&state.name, id)),
                    Utc::now(),
                )
                .await
                .unwrap()
            {
                Enqueued::New(post) => post,
                other => panic!("{other:?}"),
            };
            store
                .record_last_part(post, 1, &[format!("m{i}")], Utc::now())
                .await
                .unwrap();
            store
                .finish_run(id, RunOutcome::Success, None, Utc::now(), &state)
                .await
                .unwrap();
        }
        let reprepared: i32 = store
            .read(|conn| {
                Ok(conn
                    .prepare_cached(NEXT_APPROVED)?
                    .get_status(rusqlite::StatementStatus::RePrepare))
            })
            .unwrap();
        assert_eq!(reprepared, 0);
    }

    /// Pruning drops the text of old posted posts only, and a pruned post still makes the same
    /// text a duplicate.
    #[tokio::test]
    async fn pruned_posts_keep_deduplicating() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), None).await.unwrap();
        let old = Utc::now() - chrono::Duration::days(100);
        let mut ids = Vec::new();
        for text in ["old and posted", "old but pending", "new and posted"] {
            match store
                .enqueue("log", text, PostStatus::Sending, None, old)
                .await
                .unwrap()
            {
                Enqueued::New(id) => ids.push(id),
                other => panic!("{other:?}"),
            }
        }
        store
            .record_last_part(ids[0], 1, &["m0".into()], old)
            .await
            .unwrap();
        store
            .transition(
                ids[1],
                &[PostStatus::Sending],
                PostStatus::Pending,
                "pending",
                old,
            )
            .await
            .unwrap();
        store
            .record_last_part(ids[2], 1, &["m2".into()], Utc::now())
            .await
            .unwrap();
        let before = Utc::now() - chrono::Duration::days(90);
        assert_eq!(store.prune_posted_texts(before).await.unwrap(), 1);
        assert_eq!(store.prune_posted_texts(before).await.unwrap(), 0);
        let texts: Vec<String> = store
            .posts(None, None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.content)
            .collect();
        assert_eq!(texts, vec!["", "old but pending", "new and posted"]);
        assert_eq!(
            store
                .enqueue(
                    "log",
                    "Old and  POSTED",
                    PostStatus::Pending,
                    None,
                    Utc::now()
                )
                .await
                .unwrap(),
            Enqueued::Duplicate(ids[0])
        );
    }

    /// The queue gauges read counts kept by triggers: after queueing, every kind of status
    /// change and a write from a second handle (as `bot-server posts` makes), they equal a full
    /// count of the posts.
    #[tokio::test]
    async fn post_counts_stay_exact_without_counting_posts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), None).await.unwrap();
        let now = Utc::now();
        let mut ids = Vec::new();
        for i in 0..6 {
            match store
                .enqueue("log", &format!("post {i}"), PostStatus::Pending, None, now)
                .await
                .unwrap()
            {
                Enqueued::New(id) => ids.push(id),
                other => panic!("{other:?}"),
            }
        }
        store
            .enqueue("log", "post 0", PostStatus::Pending, None, now)
            .await
            .unwrap();
        store
            .transition(
                ids[0],
                &[PostStatus::Pending],
                PostStatus::Approved,
                "approved",
                now,
            )
            .await
            .unwrap();
        store.mark_sending(ids[1], now).await.unwrap();
        store
            .record_last_part(ids[1], 1, &["m1".into()], now)
            .await
            .unwrap();
        store.mark_sending(ids[2], now).await.unwrap();
        store.mark_failed(ids[2], "refused", now).await.unwrap();
        store.mark_sending(ids[3], now).await.unwrap();
        let other = Store::open(dir.path(), None).await.unwrap();
        other
            .transition(
                ids[4],
                &[PostStatus::Pending],
                PostStatus::Rejected,
                "rejected",
                now,
            )
            .await
            .unwrap();
        other.close().await;
        let counted: Vec<(String, i64)> = store
            .read(|conn| {
                conn.prepare("SELECT status, COUNT(*) FROM posts GROUP BY status")?
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .unwrap();
        let kept = store.post_counts().await.unwrap();
        for status in PostStatus::ALL {
            let want = counted
                .iter()
                .find(|(s, _)| s == status.as_str())
                .map_or(0, |(_, n)| *n as u64);
            let got = kept.iter().find(|(s, _)| *s == status).unwrap().1;
            assert_eq!(got, want, "{}", status.as_str());
        }
        assert_eq!(kept.iter().map(|(_, n)| n).sum::<u64>(), 6);
    }

    #[tokio::test]
    async fn postgres_url_is_refused_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let e = Store::open(dir.path(), Some("postgres://user:secret@db/bot"))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("postgres:..."), "{e}");
        assert!(!e.contains("secret"), "{e}");
    }
}
