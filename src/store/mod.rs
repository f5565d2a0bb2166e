//! The state store: what the server keeps between runs and restarts — every actor's schedule
//! and circuit state, every run with its acts' outputs, and the post queue — behind one
//! handle, [`Store`], whose methods are the whole API the scheduler, the runner, the outbox
//! and the CLI use. This file holds that handle, its errors ([`StoreError`]) and the data
//! types callers see; the subjects live in their own files:
//!
//! - `runs.rs`: actors' stored state and the run records (start, acts, end, history, pruning).
//! - `posts.rs`: the post queue (queueing with dedup, review, sending, posted, pruning texts).
//! - `health.rs`: how the writes are going ([`WriteHealth`]), for `/readyz`, the metrics and
//!   the log.
//! - `sqlite/mod.rs`: the SQLite backend's handle and group commit (the committer task,
//!   durable writes waiting for their commit).
//! - `sqlite/schema.rs`: opening a SQLite store: the connection, migrations
//!   (`migrations/sqlite/*.sql`), the serving lock, the marker that tells a lost database
//!   from a new one, crash recovery.
//! - `sqlite/runs.rs`, `sqlite/posts.rs`: the SQL of the two subjects.
//!
//! The actor state itself and the circuit breaker's rules are [`crate::actor_state`]'s; the
//! store only keeps them.
//!
//! # Backends
//!
//! [`Store`] holds a [`Backend`], an enum with one variant per database; today only
//! [`Backend::Sqlite`] (embedded SQLite in the state directory, see [`sqlite`]). Every public
//! method of `Store` is a `backend!` dispatch to the method of the same name on the backend,
//! so the scheduler, runner and commands never see which database they use, and all SQL,
//! SQLite's own (`INDEXED BY`, `PRAGMA`, `BEGIN IMMEDIATE`, savepoints) and the rest, stays in
//! the backend's files. Rules that hold for any database (dedup's normalization and hash, the
//! allowed status changes of a post, counting every status) stay on this side.
//!
//! An enum rather than a `dyn` trait: the methods are `async fn`s, which a trait object can
//! only carry boxed (`async-trait` or hand-written `Pin<Box<dyn Future>>`, one allocation per
//! store call on the hot path), while an enum dispatches with a `match`, keeps the futures
//! unboxed and `Send` as they are, and makes the compiler list every method a new backend
//! still lacks. The set of backends is closed (chosen by `DATABASE_URL`), so the openness a
//! trait gives is not needed.
//!
//! A PostgreSQL backend (for several replicas sharing one database) plugs in as:
//!
//! 1. `src/store/postgres/` with a `Postgres` handle offering the same methods as
//!    `sqlite::Sqlite` (same names, arguments and results), its own migrations under
//!    `migrations/postgres/`, and a connection pool instead of the single connection.
//! 2. A `Backend::Postgres(postgres::Postgres)` variant, an arm in `backend!`, and in
//!    [`Store::open_with`] a `postgres://` URL opening it instead of being refused.
//! 3. What a single process gets from SQLite's serving lock and group commit it gets from the
//!    database instead: no serving lock (replicas run side by side); each replica claims due
//!    actors and approved posts with leases (`UPDATE ... SET lease_owner, lease_until ...
//!    WHERE lease_until < now() ... FOR UPDATE SKIP LOCKED`) so no run or send happens twice,
//!    and crash recovery becomes "a lease ran out" rather than "found `running` at start-up".
//!    Those claims would be new `Store` methods, implemented (trivially, one process) by
//!    SQLite too.

use crate::actor_state::RunOutcome;
use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};
use std::str::FromStr;

mod health;
mod posts;
mod runs;
mod sqlite;

pub use health::{FAILURE_HOLD, WriteHealth};
pub use posts::normalize;

/// File name of the database inside the state directory.
pub const DB_FILE: &str = "bot-server.db";

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
    #[error(
        "state store {location} is damaged (SQLite finds no database in it, or damaged pages): restore it from a backup (docs/TROUBLESHOOTING.md, \"Backing up and restoring the state store\")"
    )]
    Damaged {
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
    #[error(
        "state store {location} is {state}, but {marker} says a store was created there: the database was lost (a truncated copy, a failed restore, a full disk), and a new one would lose the run history, the posts' deduplication and the nonce salt; restore {db} from a backup (docs/TROUBLESHOOTING.md, \"Backing up and restoring the state store\"), or, to start a new, empty store on purpose, delete both {db} and {marker}"
    )]
    Lost {
        location: String,
        /// `empty (0 bytes)` or `missing`.
        state: &'static str,
        /// The database's real path (links resolved).
        db: String,
        marker: String,
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
/// The store. Cheap to clone: clones share one connection (pool, for a server backend).
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
}

/// The database behind a [`Store`] (see the module doc, "Backends").
#[derive(Debug, Clone)]
enum Backend {
    /// Embedded SQLite in the state directory (`bot-server.db`).
    Sqlite(sqlite::Sqlite),
}

/// Runs `$body` with `$db` bound to the store's backend, whichever it is.
macro_rules! backend {
    ($store:expr, $db:ident => $body:expr) => {
        match &$store.backend {
            crate::store::Backend::Sqlite($db) => $body,
        }
    };
}
use backend;

impl Store {
    /// Opens (creating and migrating) the store in `state_dir`, or at `database_url` when given
    /// (`DATABASE_URL`, `sqlite://PATH`), for commands that work next to a running server
    /// (`bot-server posts`): runs are left as they are.
    ///
    /// # Errors
    ///
    /// When the directory cannot be created or written, the database cannot be opened or
    /// migrated, is damaged ([`StoreError::Damaged`]) or was lost ([`StoreError::Lost`]: it is
    /// missing or empty while its marker says a store was created there), or the URL is not a
    /// SQLite one.
    pub async fn open(state_dir: &Path, database_url: Option<&str>) -> Result<Self, StoreError> {
        Self::open_with(state_dir, database_url, false).await
    }

    /// [`Store::open`] for the server: takes the store's lock file (`bot-server.db.lock`, held
    /// until the store is dropped, released by the OS if the process dies) so that a second
    /// server on the same store fails at start instead of running every actor twice, then
    /// marks runs found still `running` (their process died) as `interrupted`.
    ///
    /// # Errors
    ///
    /// As [`Store::open`], and [`StoreError::InUse`] when another server holds the lock
    /// (whatever path, through symbolic links, each names the database by).
    pub async fn open_for_serving(
        state_dir: &Path,
        database_url: Option<&str>,
    ) -> Result<Self, StoreError> {
        Self::open_with(state_dir, database_url, true).await
    }

    /// Opens the backend `database_url` names (SQLite in `state_dir` without one).
    async fn open_with(
        state_dir: &Path,
        database_url: Option<&str>,
        serving: bool,
    ) -> Result<Self, StoreError> {
        let state_dir = state_dir.to_owned();
        let url = database_url
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned);
        // Opening reads and writes files (the database, its lock and marker, the migrations):
        // on the blocking pool, not on an async worker thread.
        let opened = tokio::task::spawn_blocking(move || {
            // SQLite refuses any other scheme (`StoreError::UnsupportedUrl`); a PostgreSQL
            // backend would be opened here for `postgres://` URLs.
            sqlite::Sqlite::open(&state_dir, url.as_deref(), serving)
        })
        .await
        .unwrap_or_else(|err| std::panic::resume_unwind(err.into_panic()))?;
        Ok(Self {
            backend: Backend::Sqlite(opened),
        })
    }

    /// Where the store lives, for messages.
    pub fn location(&self) -> &str {
        backend!(self, db => db.location())
    }

    /// How the store's writes are going (for `/readyz` and the metrics): see [`WriteHealth`].
    pub fn write_health(&self) -> &WriteHealth {
        backend!(self, db => db.health())
    }

    /// Fakes a full disk (`full`), or frees it: writes that need the database to grow fail
    /// as they do when the disk is full (SQLite's `SQLITE_FULL`). For tests.
    ///
    /// # Errors
    ///
    /// When the database does not answer.
    #[cfg(any(test, feature = "fakes"))]
    pub fn fake_full_disk(&self, full: bool) -> Result<(), StoreError> {
        backend!(self, db => db.fill_disk(full))
    }

    /// Checks the store answers (for `/readyz`).
    ///
    /// # Errors
    ///
    /// When the database does not answer.
    pub async fn ping(&self) -> Result<(), StoreError> {
        backend!(self, db => db.ping())
    }

    /// Commits the open transaction and closes the connection (checkpointing the WAL into
    /// the database). Later calls fail with [`StoreError::Closed`].
    pub async fn close(&self) {
        backend!(self, db => db.close())
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
        backend!(self, db => db.nonce_salt(fresh).await)
    }
}
