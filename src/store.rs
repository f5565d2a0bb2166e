//! The state store: actors' schedule state, every run, and the post queue.
//!
//! Embedded SQLite in the state directory (`bot-server.db`, WAL journal), created and migrated
//! on open. Times are stored as Unix milliseconds and the SQL sticks to what PostgreSQL also
//! accepts, so a PostgreSQL backend needs its own migrations and pool, not new queries.
//!
//! Every state change that must survive a crash is one transaction: a run and its actor's
//! state are written together, and a post moves `approved → sending → posted` with the
//! Discord message id stored before `posted`.

use chrono::{DateTime, TimeZone, Utc};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlSafeStr, SqlitePool};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// Connections to the database. One: SQLite runs one writer at a time anyway, and every
/// sqlx-sqlite connection is a thread that each query wakes; with four, threads waking each
/// other cost more than the queries (measured: 1.66 ms CPU per 3-act run with 4
/// connections, 0.87 ms with 1; see docs/PERFORMANCE.md).
const POOL_CONNECTIONS: u32 = 1;

/// How long a query waits for a free connection before failing.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

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
        source: sqlx::Error,
    },
    #[error("state store: migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("state store query failed")]
    Query(#[from] sqlx::Error),
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
}

impl PostStatus {
    pub const ALL: [PostStatus; 5] = [
        Self::Pending,
        Self::Approved,
        Self::Rejected,
        Self::Sending,
        Self::Posted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Sending => "sending",
            Self::Posted => "posted",
        }
    }
}

impl FromStr for PostStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown post status `{s}` (expected pending, approved, rejected, sending or posted)"))
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

/// The store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    location: String,
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

fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            "init".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0001_init.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            2,
            "run scheduled_at".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0002_run_scheduled_at.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            3,
            "run indexes".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0003_run_indexes.sql").into_sql_str(),
            false,
        ),
    ])
}

impl Store {
    /// Opens (creating and migrating) the store in `state_dir`, or at `database_url` when given
    /// (`DATABASE_URL`, `sqlite://PATH`). Runs found still `running` are marked `interrupted`.
    ///
    /// # Errors
    ///
    /// When the directory cannot be created or written, the database cannot be opened or
    /// migrated, or the URL is not a SQLite one.
    pub async fn open(state_dir: &Path, database_url: Option<&str>) -> Result<Self, StoreError> {
        Self::open_with(state_dir, database_url, DEFAULT_ACQUIRE_TIMEOUT).await
    }

    /// [`Store::open`] with a chosen wait for a free connection. Tests on tokio's paused
    /// clock pass a long one: there, time jumps ahead while the SQLite worker thread works,
    /// and a 30 s timeout could expire before a query that takes a millisecond.
    ///
    /// # Errors
    ///
    /// See [`Store::open`].
    pub async fn open_with(
        state_dir: &Path,
        database_url: Option<&str>,
        acquire_timeout: Duration,
    ) -> Result<Self, StoreError> {
        let (options, location) = match database_url.filter(|u| !u.trim().is_empty()) {
            Some(url) if url.starts_with("sqlite:") => {
                let options =
                    SqliteConnectOptions::from_str(url).map_err(|source| StoreError::Open {
                        location: "DATABASE_URL".into(),
                        source,
                    })?;
                (options, "DATABASE_URL".to_owned())
            }
            Some(url) => {
                let scheme = url.split(':').next().unwrap_or_default();
                return Err(StoreError::UnsupportedUrl(format!("{scheme}:...")));
            }
            None => {
                std::fs::create_dir_all(state_dir).map_err(|source| StoreError::Dir {
                    path: state_dir.to_owned(),
                    source,
                })?;
                let path = state_dir.join(DB_FILE);
                (
                    SqliteConnectOptions::new().filename(&path),
                    path.display().to_string(),
                )
            }
        };
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL survives a process crash (kill -9) without losing committed
            // transactions; only a power loss can drop the last ones.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            // After a checkpoint, truncate the WAL file back to at most 64 MiB.
            .pragma("journal_size_limit", "67108864");
        let pool = SqlitePoolOptions::new()
            .max_connections(POOL_CONNECTIONS)
            .acquire_timeout(acquire_timeout)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                location: location.clone(),
                source,
            })?;
        migrator().run(&pool).await.map_err(StoreError::Migrate)?;
        let store = Self { pool, location };
        store.recover().await?;
        Ok(store)
    }

    /// Where the store lives, for messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    async fn recover(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        // A run the process died in still counts as the actor's last run, so an interval
        // actor continues from it instead of firing again at once.
        sqlx::query(
            "INSERT INTO actors (name, last_run_at) SELECT actor, MAX(started_at) FROM runs WHERE outcome = 'running' GROUP BY actor \
             ON CONFLICT (name) DO UPDATE SET last_run_at = MAX(COALESCE(actors.last_run_at, 0), excluded.last_run_at)",
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE runs SET outcome = 'interrupted', error = 'the server stopped during this run' WHERE outcome = 'running'")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Checks the store answers (for `/readyz`).
    ///
    /// # Errors
    ///
    /// When the database does not answer.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool (checkpointing the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
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
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('nonce_salt', $1) ON CONFLICT (key) DO NOTHING",
        )
        .bind(&fresh)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT value FROM meta WHERE key = 'nonce_salt'")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("value")?)
    }

    // --- actors -------------------------------------------------------------------------

    /// The stored state of every actor.
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn actor_states(&self) -> Result<Vec<ActorState>, StoreError> {
        let rows = sqlx::query("SELECT * FROM actors ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(actor_from_row).collect()
    }

    /// The stored state of one actor.
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn actor_state(&self, name: &str) -> Result<Option<ActorState>, StoreError> {
        let row = sqlx::query("SELECT * FROM actors WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(actor_from_row).transpose()
    }

    /// Saves an actor's state.
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn save_actor_state(&self, state: &ActorState) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        save_actor(&mut conn, state).await
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
        // One statement: the actor's row is written when the run ends. A run that never ends
        // (crash) is folded into its actor's `last_run_at` by `recover` at the next start.
        let row = sqlx::query(
            "INSERT INTO runs (actor, narrative, started_at, scheduled_at, outcome) VALUES ($1, $2, $3, $4, 'running') RETURNING id",
        )
        .bind(&state.name)
        .bind(narrative)
        .bind(ms(started_at))
        .bind(ms(scheduled_at))
        // `fetch_all`, not `fetch_one`: the statement must be stepped to its end, or SQLite
        // never runs its automatic WAL checkpoint and the log grows without bound.
        .fetch_all(&self.pool)
        .await?;
        let row = row.first().ok_or(sqlx::Error::RowNotFound)?;
        Ok(row.try_get("id")?)
    }

    /// Records the outputs of a run's acts, in order, in one statement.
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
        let mut builder = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO act_outputs (run_id, position, act, provider, model, output, input_tokens, output_tokens, duration_ms) ",
        );
        builder.push_values(outputs.iter().enumerate(), |mut row, (position, output)| {
            row.push_bind(run_id)
                .push_bind(position as i64)
                .push_bind(&output.act)
                .push_bind(&output.provider)
                .push_bind(&output.model)
                .push_bind(&output.text)
                .push_bind(output.input_tokens as i64)
                .push_bind(output.output_tokens as i64)
                .push_bind(output.duration.as_millis() as i64);
        });
        builder.build().execute(&self.pool).await?;
        Ok(())
    }

    /// Records the end of a run and the actor's new state, together.
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
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE runs SET outcome = $1, error = $2, finished_at = $3 WHERE id = $4")
            .bind(outcome.as_str())
            .bind(error)
            .bind(ms(finished_at))
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
        save_actor(&mut tx, state).await?;
        tx.commit().await?;
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
        let rows = sqlx::query(
            "SELECT * FROM runs WHERE ($1 IS NULL OR actor = $1) ORDER BY id DESC LIMIT $2",
        )
        .bind(actor)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RunRecord {
                    id: r.try_get("id")?,
                    actor: r.try_get("actor")?,
                    narrative: r.try_get("narrative")?,
                    started_at: from_ms(r.try_get("started_at")?).unwrap_or_default(),
                    scheduled_at: from_ms(r.try_get("scheduled_at")?),
                    finished_at: from_ms(r.try_get("finished_at")?),
                    outcome: RunOutcome::parse(&r.try_get::<String, _>("outcome")?),
                    error: r.try_get("error")?,
                })
            })
            .collect()
    }

    /// Outputs of a run's acts, in order: `(act, output)`.
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn act_outputs(&self, run_id: i64) -> Result<Vec<(String, String)>, StoreError> {
        let rows =
            sqlx::query("SELECT act, output FROM act_outputs WHERE run_id = $1 ORDER BY position")
                .bind(run_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("act")?, r.try_get("output")?)))
            .collect()
    }

    /// Deletes finished runs (and their act outputs) that started before `before`.
    ///
    /// # Errors
    ///
    /// On a database error.
    #[tracing::instrument(name = "store.prune_runs", level = "info", skip_all, fields(db.system = "sqlite", db.operation.name = "delete"))]
    pub async fn prune_runs(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM act_outputs WHERE run_id IN (SELECT id FROM runs WHERE outcome <> 'running' AND started_at < $1)")
            .bind(ms(before))
            .execute(&mut *tx)
            .await?;
        let deleted =
            sqlx::query("DELETE FROM runs WHERE outcome <> 'running' AND started_at < $1")
                .bind(ms(before))
                .execute(&mut *tx)
                .await?
                .rows_affected();
        tx.commit().await?;
        Ok(deleted)
    }

    /// Number of run records kept.
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn run_count(&self) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM runs")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("n")? as u64)
    }

    // --- posts --------------------------------------------------------------------------

    /// Queues a post for `target` unless the same normalized text is already there.
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
        let inserted = sqlx::query(
            "INSERT INTO posts (target, content, content_hash, status, source_actor, source_run, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (target, content_hash) DO NOTHING RETURNING id",
        )
        .bind(target)
        .bind(content)
        .bind(&hash)
        .bind(status.as_str())
        .bind(source.map(|s| s.0))
        .bind(source.map(|s| s.1))
        .bind(ms(now))
        // Stepped to its end (see `start_run`).
        .fetch_all(&self.pool)
        .await?;
        if let Some(row) = inserted.first() {
            return Ok(Enqueued::New(row.try_get("id")?));
        }
        let row = sqlx::query("SELECT id FROM posts WHERE target = $1 AND content_hash = $2")
            .bind(target)
            .bind(&hash)
            .fetch_one(&self.pool)
            .await?;
        Ok(Enqueued::Duplicate(row.try_get("id")?))
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
        let rows = sqlx::query(
            "SELECT * FROM posts WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR target = $2) ORDER BY id LIMIT $3",
        )
        .bind(status.map(PostStatus::as_str))
        .bind(target)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(post_from_row).collect()
    }

    /// One post.
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn post(&self, id: i64) -> Result<Option<Post>, StoreError> {
        let row = sqlx::query("SELECT * FROM posts WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(post_from_row).transpose()
    }

    /// Number of posts per status.
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn post_counts(&self) -> Result<Vec<(PostStatus, u64)>, StoreError> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM posts GROUP BY status")
            .fetch_all(&self.pool)
            .await?;
        let mut out: Vec<(PostStatus, u64)> = PostStatus::ALL.iter().map(|s| (*s, 0)).collect();
        for r in rows {
            let status: String = r.try_get("status")?;
            let n: i64 = r.try_get("n")?;
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
        sqlx::query("UPDATE posts SET status = $1, updated_at = $2 WHERE id = $3 AND status = $4")
            .bind(to.as_str())
            .bind(ms(now))
            .bind(id)
            .bind(post.status.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The next post to publish for `target`: a post left `sending` by a crash first, then the
    /// oldest approved one. With `source_actor`, only that actor's posts.
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn next_to_publish(
        &self,
        target: &str,
        source_actor: Option<&str>,
    ) -> Result<Option<Post>, StoreError> {
        let row = sqlx::query(
            "SELECT * FROM posts WHERE target = $1 AND status IN ('sending', 'approved') AND ($2 IS NULL OR source_actor = $2) \
             ORDER BY CASE status WHEN 'sending' THEN 0 ELSE 1 END, updated_at, id LIMIT 1",
        )
        .bind(target)
        .bind(source_actor)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(post_from_row).transpose()
    }

    /// Marks a post as being sent, before the request goes out.
    ///
    /// # Errors
    ///
    /// On a database error.
    #[tracing::instrument(name = "store.mark_sending", level = "info", skip_all, fields(db.system = "sqlite", db.operation.name = "update"))]
    pub async fn mark_sending(&self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query("UPDATE posts SET status = 'sending', attempts = attempts + 1, updated_at = $1 WHERE id = $2")
            .bind(ms(now))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
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
            "UPDATE posts SET parts_sent = $1, message_ids = $2, status = 'posted', posted_at = $3, updated_at = $3, last_error = NULL WHERE id = $4"
        } else {
            "UPDATE posts SET parts_sent = $1, message_ids = $2, updated_at = $3 WHERE id = $4"
        };
        sqlx::query(sql)
            .bind(i64::from(parts_sent))
            .bind(message_ids.join(","))
            .bind(ms(now))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Marks a post as posted (every part accepted).
    ///
    /// # Errors
    ///
    /// On a database error.
    #[tracing::instrument(name = "store.mark_posted", level = "info", skip_all, fields(db.system = "sqlite", db.operation.name = "update"))]
    pub async fn mark_posted(&self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query("UPDATE posts SET status = 'posted', posted_at = $1, updated_at = $1, last_error = NULL WHERE id = $2")
            .bind(ms(now))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
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
        sqlx::query("UPDATE posts SET last_error = $1, updated_at = $2 WHERE id = $3")
            .bind(error)
            .bind(ms(now))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

async fn save_actor(conn: &mut sqlx::SqliteConnection, s: &ActorState) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO actors (name, last_run_at, last_success_at, last_outcome, next_run_at, consecutive_failures, circuit, circuit_open_until, ever_succeeded) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (name) DO UPDATE SET last_run_at = $2, last_success_at = $3, last_outcome = $4, next_run_at = $5, \
         consecutive_failures = $6, circuit = $7, circuit_open_until = $8, ever_succeeded = $9",
    )
    .bind(&s.name)
    .bind(s.last_run_at.map(ms))
    .bind(s.last_success_at.map(ms))
    .bind(s.last_outcome.map(RunOutcome::as_str))
    .bind(s.next_run_at.map(ms))
    .bind(i64::from(s.consecutive_failures))
    .bind(s.circuit.as_str())
    .bind(s.circuit_open_until.map(ms))
    .bind(s.ever_succeeded)
    .execute(conn)
    .await?;
    Ok(())
}

fn actor_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<ActorState, StoreError> {
    Ok(ActorState {
        name: r.try_get("name")?,
        last_run_at: from_ms(r.try_get("last_run_at")?),
        last_success_at: from_ms(r.try_get("last_success_at")?),
        last_outcome: r
            .try_get::<Option<String>, _>("last_outcome")?
            .map(|s| RunOutcome::parse(&s)),
        next_run_at: from_ms(r.try_get("next_run_at")?),
        consecutive_failures: r.try_get::<i64, _>("consecutive_failures")? as u32,
        circuit: Circuit::parse(&r.try_get::<String, _>("circuit")?),
        circuit_open_until: from_ms(r.try_get("circuit_open_until")?),
        ever_succeeded: r.try_get("ever_succeeded")?,
    })
}

fn post_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<Post, StoreError> {
    let status: String = r.try_get("status")?;
    let ids: String = r.try_get("message_ids")?;
    Ok(Post {
        id: r.try_get("id")?,
        target: r.try_get("target")?,
        content: r.try_get("content")?,
        status: status.parse().unwrap_or(PostStatus::Pending),
        source_actor: r.try_get("source_actor")?,
        created_at: from_ms(r.try_get("created_at")?).unwrap_or_default(),
        posted_at: from_ms(r.try_get("posted_at")?),
        message_ids: ids
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        parts_sent: r.try_get::<i64, _>("parts_sent")? as u32,
        attempts: r.try_get::<i64, _>("attempts")? as u32,
        last_error: r.try_get("last_error")?,
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
        let store = Store::open(dir.path(), None).await.unwrap();
        let state = ActorState {
            name: "a".into(),
            ..Default::default()
        };
        let id = store
            .start_run(&state, None, Utc::now(), Utc::now())
            .await
            .unwrap();
        store.close().await;
        let store = Store::open(dir.path(), None).await.unwrap();
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
    async fn old_runs_are_pruned_with_their_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), None).await.unwrap();
        let state = ActorState {
            name: "a".into(),
            ..Default::default()
        };
        let old = Utc::now() - chrono::Duration::days(40);
        let id = store.start_run(&state, None, old, old).await.unwrap();
        let out = crate::narrative::ActOutput {
            act: "x".into(),
            text: "t".into(),
            json: None,
            provider: "offline".into(),
            request_model: "m".into(),
            model: "m".into(),
            input_tokens: 1,
            output_tokens: 1,
            retries: 0,
            rate_limit_wait: Duration::ZERO,
            duration: Duration::ZERO,
        };
        store.record_acts(id, &[out]).await.unwrap();
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
