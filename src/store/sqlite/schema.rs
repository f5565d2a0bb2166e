//! Opening a SQLite store: where the database is (`DATABASE_URL` or the state directory), the
//! connection and its settings (WAL journal, busy timeout, statement cache), the migrations
//! (`migrations/sqlite/*.sql`, counted by `user_version`, adopting stores of the sqlx
//! releases), the serving lock that keeps a second server off the same store (taken on the
//! database's real path, so a symbolic link to it is the same store), the marker that tells a
//! lost database from a new one, and crash recovery (runs a dead process left `running`
//! become `interrupted`).

use super::{Conn, Inner, Sqlite};
use crate::store::health::WriteHealth;
use crate::store::{DB_FILE, StoreError};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// How long a statement waits for a lock held by another process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The schema, in order. The database's `user_version` is the number of migrations applied.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "init",
        include_str!("../../../migrations/sqlite/0001_init.sql"),
    ),
    (
        "run scheduled_at",
        include_str!("../../../migrations/sqlite/0002_run_scheduled_at.sql"),
    ),
    (
        "run indexes",
        include_str!("../../../migrations/sqlite/0003_run_indexes.sql"),
    ),
    (
        "posts by source",
        include_str!("../../../migrations/sqlite/0004_unsent_posts_index.sql"),
    ),
    (
        "post counts",
        include_str!("../../../migrations/sqlite/0005_post_counts.sql"),
    ),
];

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

/// An error opening the store at `location`: [`StoreError::Damaged`] when SQLite finds the
/// file is no database or its pages are damaged (the fix is a backup), else
/// [`StoreError::Open`].
fn open_error(location: &str, source: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
    let location = location.to_owned();
    match source.sqlite_error_code() {
        Some(NotADatabase | DatabaseCorrupt) => StoreError::Damaged { location, source },
        _ => StoreError::Open { location, source },
    }
}

pub(super) fn connect(path: &Path, location: &str) -> Result<Connection, StoreError> {
    let open_err = |source| open_error(location, source);
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
    let open_err = |source| open_error(location, source);
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

/// The file `path` names, with every symbolic link resolved (in its directories and the file
/// itself): two paths to the same database give the same real path. For a file not created
/// yet, its directory's real path and its name (the target's, for a link to a file to come).
fn real_path(path: &Path) -> std::io::Result<PathBuf> {
    match std::fs::canonicalize(path) {
        Ok(real) => Ok(real),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let dir = |p: &Path| match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
                _ => PathBuf::from("."),
            };
            let target = match std::fs::read_link(path) {
                Ok(target) => dir(path).join(target),
                Err(_) => path.to_owned(),
            };
            let name = target.file_name().ok_or(err)?.to_owned();
            Ok(std::fs::canonicalize(dir(&target))?.join(name))
        }
        Err(err) => Err(err),
    }
}

/// `db` with `suffix` appended to its file name (`bot-server.db.lock`).
fn beside(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The marker beside a database once it holds a store: while it exists, a database missing or
/// empty is a store lost, not a store to create (see [`refuse_lost`]).
pub(in crate::store) const MARKER_SUFFIX: &str = ".created";

/// Refuses to open `db` (its real path) when it is missing or empty (0 bytes) but its marker
/// says a store was created there: SQLite would silently start a new, empty store, and the
/// run history, the posts' deduplication and the nonce salt would be gone. Opening nothing,
/// it changes nothing.
fn refuse_lost(db: &Path, location: &str) -> Result<(), StoreError> {
    let marker = beside(db, MARKER_SUFFIX);
    if !marker.exists() {
        return Ok(());
    }
    let state = match std::fs::metadata(db) {
        Ok(meta) if meta.len() == 0 => "empty (0 bytes)",
        Ok(_) => return Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => "missing",
        // Unreadable: opening it reports why.
        Err(_) => return Ok(()),
    };
    Err(StoreError::Lost {
        location: location.to_owned(),
        state,
        db: db.display().to_string(),
        marker: marker.display().to_string(),
    })
}

/// Writes the marker beside `db` (its real path) if it is not there yet: from now on, the
/// database missing or emptied is refused instead of replaced. A marker that cannot be
/// written is logged, not fatal (the store itself works).
fn mark(db: &Path) {
    let marker = beside(db, MARKER_SUFFIX);
    if marker.exists() {
        return;
    }
    let name = db
        .file_name()
        .map_or_else(|| DB_FILE.into(), |n| n.to_string_lossy());
    let text = format!(
        "bot-server: {name} in this directory holds a bot-server state store (marked {now}).\n\
         While this file exists, bot-server refuses to start when {name} is missing or empty\n\
         (0 bytes) instead of creating a new store in its place, which would lose the run\n\
         history, the deduplication of posts and the nonce salt of Discord messages.\n\
         Restore {name} from a backup (docs/TROUBLESHOOTING.md, \"Backing up and restoring the\n\
         state store\"); to start a new, empty store on purpose, delete both {name} and this file.\n",
        now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    if let Err(err) = std::fs::write(&marker, text) {
        tracing::warn!(marker = %marker.display(), cause = %err, "cannot write the state store's marker; a database emptied later would be replaced by a new store instead of refused");
    }
}

/// Takes the serving lock of the database at `db` (its real path): an exclusive lock on
/// `DB.lock`, with this process's id written in it for the message another server gets.
fn lock(db: &Path, location: &str) -> Result<std::fs::File, StoreError> {
    use std::io::{Read, Seek, Write};
    let path = beside(db, ".lock");
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

impl Sqlite {
    /// Opens (creating and migrating) the database `database_url` names (`sqlite://PATH`),
    /// or `bot-server.db` in `state_dir`, unless its marker says it held a store and it is now
    /// missing or empty. When `serving`, takes the serving lock and recovers from a crash
    /// first. Blocks (files, SQLite): called off the async threads.
    pub(in crate::store) fn open(
        state_dir: &Path,
        database_url: Option<&str>,
        serving: bool,
    ) -> Result<Self, StoreError> {
        let (path, location) = match database_url {
            Some(url) => (sqlite_path(url)?, "DATABASE_URL".to_owned()),
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
        // An in-memory database has no file, no marker and nothing to lock.
        let real = if path == Path::new(":memory:") {
            None
        } else {
            let real = real_path(&path).map_err(|source| StoreError::Dir {
                path: path.clone(),
                source,
            })?;
            refuse_lost(&real, &location)?;
            Some(real)
        };
        let lock = match &real {
            Some(real) if serving => Some(lock(real, &location)?),
            _ => None,
        };
        let mut conn = connect(&path, &location)?;
        migrate(&mut conn, &location)?;
        if serving {
            recover(&mut conn).map_err(|source| open_error(&location, source))?;
        }
        if let Some(real) = &real {
            mark(real);
        }
        let health = Arc::new(WriteHealth::new(&location));
        let wake = Arc::new(Notify::new());
        let runtime = tokio::runtime::Handle::try_current().ok();
        let inner = Arc::new(Inner {
            conn: Mutex::new(Conn {
                db: Some(conn),
                batch: None,
                lock,
                health: health.clone(),
            }),
            location,
            wake: wake.clone(),
            committer: runtime.is_some(),
            health,
        });
        if let Some(runtime) = runtime {
            runtime.spawn(super::committer(Arc::downgrade(&inner), wake));
        }
        Ok(Self { inner })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actor_state::{ActorState, RunOutcome};
    use crate::store::{PostStatus, Store};
    use chrono::Utc;
    use rusqlite::params;

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

    /// Two servers on one database through a symbolic link (a second state directory whose
    /// `bot-server.db` links to the first's, or a `DATABASE_URL` naming the link): the second
    /// is refused, as on the same path.
    #[tokio::test]
    async fn a_second_server_through_a_symbolic_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (first_dir, second_dir) = (dir.path().join("first"), dir.path().join("second"));
        let first = Store::open_for_serving(&first_dir, None).await.unwrap();
        std::fs::create_dir(&second_dir).unwrap();
        std::os::unix::fs::symlink(first_dir.join(DB_FILE), second_dir.join(DB_FILE)).unwrap();
        let e = Store::open_for_serving(&second_dir, None)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("in use by another `bot-server serve`"), "{e}");
        let real = std::fs::canonicalize(first_dir.join(DB_FILE)).unwrap();
        assert!(e.contains(&format!("{}.lock", real.display())), "{e}");
        let url = format!("sqlite://{}", second_dir.join(DB_FILE).display());
        let e = Store::open_for_serving(&second_dir, Some(&url))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("in use by another `bot-server serve`"), "{e}");
        // A link to a directory: the same.
        std::os::unix::fs::symlink(&first_dir, dir.path().join("linked")).unwrap();
        assert!(matches!(
            Store::open_for_serving(&dir.path().join("linked"), None).await,
            Err(StoreError::InUse { .. })
        ));
        first.close().await;
        Store::open_for_serving(&second_dir, None)
            .await
            .expect("free once the first server closed its store");
    }

    /// A database emptied (0 bytes) or deleted after a store was created in its place is
    /// refused, naming the file, its marker and what to do, and left as it is; deleting both,
    /// as the message says, starts a new store.
    #[tokio::test]
    async fn a_lost_database_is_refused_while_its_marker_says_a_store_existed() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join(DB_FILE);
        let marker = dir.path().join(format!("{DB_FILE}{MARKER_SUFFIX}"));
        let store = Store::open(dir.path(), None).await.unwrap();
        let salt = store.nonce_salt().await.unwrap();
        store.close().await;
        assert!(marker.exists(), "the marker is written with the store");

        std::fs::File::create(&db).unwrap();
        for serving in [false, true] {
            let e = if serving {
                Store::open_for_serving(dir.path(), None).await
            } else {
                Store::open(dir.path(), None).await
            }
            .unwrap_err();
            assert!(matches!(e, StoreError::Lost { .. }), "{e:?}");
            let e = e.to_string();
            for needle in [
                format!("{} is empty (0 bytes)", db.display()),
                format!("but {} says a store was created there", marker.display()),
                "restore".to_owned(),
                "Backing up and restoring the state store".to_owned(),
                format!("delete both {} and {}", db.display(), marker.display()),
            ] {
                assert!(e.contains(&needle), "{needle:?} not in: {e}");
            }
            assert_eq!(std::fs::metadata(&db).unwrap().len(), 0, "left untouched");
        }

        std::fs::remove_file(&db).unwrap();
        let e = Store::open(dir.path(), None).await.unwrap_err().to_string();
        assert!(e.contains(&format!("{} is missing", db.display())), "{e}");
        assert!(!db.exists(), "not created");

        std::fs::remove_file(&marker).unwrap();
        let store = Store::open(dir.path(), None).await.unwrap();
        assert_ne!(store.nonce_salt().await.unwrap(), salt, "a new store");
        assert!(marker.exists());
    }

    /// A database whose header is damaged or cut short is refused, naming the file and the
    /// restore procedure, and left as it is.
    #[tokio::test]
    async fn a_database_with_a_damaged_header_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join(DB_FILE);
        Store::open(dir.path(), None).await.unwrap().close().await;
        let whole = std::fs::read(&db).unwrap();
        for broken in [
            b"not a database at all, really".to_vec(),
            whole[..50].to_vec(),
        ] {
            std::fs::write(&db, &broken).unwrap();
            let e = Store::open_for_serving(dir.path(), None).await.unwrap_err();
            assert!(matches!(e, StoreError::Damaged { .. }), "{e:?}");
            let e = crate::error_chain(&e);
            assert!(e.contains(&format!("{} is damaged", db.display())), "{e}");
            assert!(e.contains("restore it from a backup"), "{e}");
            assert_eq!(std::fs::read(&db).unwrap(), broken, "left as it was");
        }
    }

    /// A new state directory, or an empty database file with no marker beside it (a store
    /// of a release before the marker, or a file created by hand), gets a new store.
    #[tokio::test]
    async fn an_empty_database_without_a_marker_becomes_a_new_store() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::File::create(dir.path().join(DB_FILE)).unwrap();
        let store = Store::open_for_serving(dir.path(), None).await.unwrap();
        store.nonce_salt().await.unwrap();
        store.close().await;
        assert!(
            dir.path()
                .join(format!("{DB_FILE}{MARKER_SUFFIX}"))
                .exists()
        );
        let fresh = dir.path().join("new");
        Store::open(&fresh, None).await.unwrap().close().await;
        assert!(fresh.join(DB_FILE).metadata().unwrap().len() > 0);
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
