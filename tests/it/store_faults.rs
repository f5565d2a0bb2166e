//! Faults of the state store outside delivery: a full disk and damaged pages, under which every
//! write fails while `SELECT 1` still answers (`/readyz` must say so); a database emptied
//! after a store existed (refused, not silently replaced); a second server reaching the
//! database through a symbolic link (refused by the one-server lock).

use crate::support::*;
use bot_server::store::{DB_FILE, Store};
use std::io::{Seek, SeekFrom, Write};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

/// An actor running `one.toml` every second, logging its post (no Discord needed).
const EVERY_SECOND: &str = "[[actors]]\nname = \"busy\"\nnarrative = \"one.toml\"\ntarget = \"console\"\n[actors.schedule]\ntype = \"Interval\"\nseconds = 1\n";

/// `GET base/readyz`: the status and the store check's text.
async fn readyz(base: &str) -> (u16, String) {
    let r = reqwest::get(format!("{base}/readyz")).await.unwrap();
    let status = r.status().as_u16();
    let body: serde_json::Value = r.json().await.unwrap();
    (status, body["checks"]["store"].as_str().unwrap().to_owned())
}

/// The value of the sample `series` in a Prometheus text exposition.
async fn metric(base: &str, series: &str) -> Option<f64> {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// With the disk full (SQLite's `SQLITE_FULL`, as `PRAGMA max_page_count` makes it), the
/// server's writes fail while the store still answers `SELECT 1`: `/readyz` answers 503 naming
/// the failure, the metrics count the failed writes, and once the disk has room again and a
/// minute passed without a failure, `/readyz` is 200 again.
#[tokio::test(start_paused = true)]
async fn readyz_is_503_while_the_disk_is_full() {
    let env = TestEnv::new().await;
    // Each run writes a different 3 KB answer: most writes need a new page.
    let n = std::sync::atomic::AtomicUsize::new(0);
    env.llm.set_responder(move |_| {
        let n = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("answer {n} {}", "x".repeat(3000))
    });
    env.write("one.toml", ONE_ACT);
    let config = env.config("", EVERY_SECOND);
    let app = env.app(&config).await;
    let serving = Serving::start(app.clone()).await;
    let base = serving.base.clone();
    eventually("ready", LIMIT, || async { readyz(&base).await.0 == 200 }).await;

    app.store.fake_full_disk(true).unwrap();
    eventually("not ready", LIMIT, || async {
        readyz(&base).await.0 == 503
    })
    .await;
    let (_, store) = readyz(&base).await;
    assert!(
        store.starts_with("not ready: ") && store.contains("database or disk is full"),
        "{store}"
    );
    assert!(
        metric(&base, "botticelli_store_write_failures_total")
            .await
            .unwrap()
            >= 1.0
    );

    app.store.fake_full_disk(false).unwrap();
    // Ready a minute after the last failure: polled every 5 s (paused time passes only
    // between polls, each a real HTTP request).
    let mut waited = Duration::ZERO;
    while readyz(&base).await.0 != 200 {
        assert!(
            waited < Duration::from_secs(180),
            "not ready again after {waited:?}"
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
        waited += Duration::from_secs(5);
    }
    assert_eq!(
        metric(&base, "botticelli_store_writes_failing").await,
        Some(0.0)
    );
    serving.stop().await;
}

/// Damaged pages in the middle of the database (the table of the acts' outputs, which every
/// run writes): the server starts, `SELECT 1` answers, and the runs' writes fail; `/readyz`
/// answers 503 naming the damage instead of 200.
#[tokio::test]
async fn readyz_is_503_while_writes_hit_damaged_pages() {
    let env = TestEnv::new().await;
    env.write("one.toml", ONE_ACT);
    let config = env.config("", EVERY_SECOND);
    // A store with some history, then the root page of `act_outputs` overwritten.
    let state = env.path("state");
    let store = Store::open(&state, None).await.unwrap();
    let actor = bot_server::actor_state::ActorState {
        name: "old".into(),
        ..Default::default()
    };
    for _ in 0..50 {
        let now = chrono::Utc::now();
        store.start_run(&actor, None, now, now).await.unwrap();
    }
    store.close().await;
    let db = state.join(DB_FILE);
    let (page_size, root) = {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let page_size: i64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap();
        let root: i64 = conn
            .query_row(
                "SELECT rootpage FROM sqlite_master WHERE name = 'act_outputs'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        (page_size as u64, root as u64)
    };
    let pages = std::fs::metadata(&db).unwrap().len() / page_size;
    assert!(root > 1 && root < pages, "page {root} of {pages}");
    let mut file = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    file.seek(SeekFrom::Start((root - 1) * page_size)).unwrap();
    file.write_all(&vec![0xA5; page_size as usize]).unwrap();
    drop(file);

    let app = env.app(&config).await;
    let serving = Serving::start(app.clone()).await;
    let base = serving.base.clone();
    // Once a second run started, the first one has tried to write its outputs.
    eventually("two runs started", LIMIT, || async {
        app.store.recent_runs(Some("busy"), 5).await.unwrap().len() >= 2
    })
    .await;
    let (status, store) = readyz(&base).await;
    assert_eq!(status, 503, "{store}");
    assert!(
        store.contains("database disk image is malformed"),
        "{store}"
    );
    serving.stop().await;
}

/// A database emptied (0 bytes) after a store was kept in it is refused at start: `serve`
/// exits 1 naming the file and the restore procedure, and leaves the file as it is, instead
/// of starting a new store without the history, deduplication and nonce salt.
#[tokio::test]
async fn serve_refuses_a_database_emptied_after_a_store_existed() {
    let env = TestEnv::new().await;
    env.write("one.toml", ONE_ACT);
    env.config("", ONCE_ACTOR);
    let state = env.path("state");
    Store::open(&state, None).await.unwrap().close().await;
    let db = state.join(DB_FILE);
    std::fs::File::create(&db).unwrap();

    let second = tokio::time::timeout(LIMIT, env.command(&["serve"]).output())
        .await
        .expect("the server stops by itself")
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    let real = std::fs::canonicalize(&db).unwrap();
    for needle in [
        "is empty (0 bytes)".to_owned(),
        format!("{}.created", real.display()),
        "restore".to_owned(),
        format!("delete both {}", real.display()),
    ] {
        assert!(stderr.contains(&needle), "{needle:?} not in: {stderr}");
    }
    assert_eq!(std::fs::metadata(&db).unwrap().len(), 0, "left as it was");
    assert!(env.discord.messages_in(CHANNEL).is_empty(), "nothing ran");
}

/// A second `serve` whose `DATABASE_URL` names a symbolic link to the first server's
/// database is refused at start, as one on the same path is, and leaves the first running.
#[tokio::test]
async fn a_second_server_through_a_symbolic_link_is_refused() {
    let env = TestEnv::new().await;
    env.write("one.toml", ONE_ACT);
    env.config("", ONCE_ACTOR);
    let mut first = env.spawn_serve();
    eventually("the first server posted", LIMIT, || async {
        env.discord.messages_in(CHANNEL).len() == 1
    })
    .await;
    let link = env.path("link.db");
    std::os::unix::fs::symlink(env.path("state").join(DB_FILE), &link).unwrap();
    let second = tokio::time::timeout(
        LIMIT,
        env.command(&["serve"])
            .env("DATABASE_URL", format!("sqlite://{}", link.display()))
            .output(),
    )
    .await
    .expect("the second server stops by itself")
    .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "is in use by another `bot-server serve` (pid {})",
            first.id().unwrap()
        )),
        "{stderr}"
    );
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first server still runs"
    );
    signal(first.id().unwrap(), "-TERM");
    assert!(first.wait().await.unwrap().success());
    assert_eq!(env.discord.messages_in(CHANNEL).len(), 1);
}
