//! Micro-benchmarks of the bot-server's hot paths (`cargo bench --bench hot_paths`).
//!
//! Everything runs in-process: no network, no real LLM. Async code runs on a current-thread
//! tokio runtime created once per benchmark, outside the measured closure.

use bot_server::actor_state::ActorState;
use bot_server::llm::LlmClients;
use bot_server::metrics::Metrics;
use bot_server::narrative::{Narrative, RunOptions};
use bot_server::scheduler::DueQueue;
use bot_server::store::{Enqueued, PostStatus, Store, normalize};
use chrono::{DateTime, Duration, TimeZone, Utc};
use divan::Bencher;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

fn main() {
    divan::main();
    // Set-up facts, printed after the table so that they do not break it up.
    for note in NOTES.lock().expect("notes").iter() {
        println!("{note}");
    }
}

static NOTES: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn note(text: String) {
    NOTES.lock().expect("notes").push(text);
}

/// A 3-act narrative shaped like `narratives/daily_tip.toml`, plus a narrative-wide system
/// prompt (so each act compiles and renders two templates) and a filter and a condition.
const TEXT: &str = r#"
[narrative]
name = "bench"
description = "Three acts: draft, critique, final"
system = "You write for a Discord community about {{ topic }}. Be brief and friendly."

[toc]
order = ["draft", "critique", "final"]

[vars]
topic = "Rust"

[acts]
draft = "Write three short tips about {{ topic }}."
critique = """
Critique these tips for accuracy:
{{ draft | trim }}
{% if topic == "Rust" %}Check that the code compiles on stable.{% endif %}
"""

[acts.final]
prompt = "Rewrite the best tip as one Discord post under 300 characters: {{ critique }}"
temperature = 0.3
max_tokens = 400
"#;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
}

mod narrative {
    use super::*;

    /// Loading a 3-act narrative from text: TOML parse, validation, and compiling its six
    /// templates (prompt + system per act).
    #[divan::bench]
    fn load_3_acts() -> Narrative {
        Narrative::parse(Path::new("bench.toml"), divan::black_box(TEXT)).expect("valid narrative")
    }

    /// 3-act narrative run with the offline provider (templates + offline model +
    /// bookkeeping): rendering each act's prompt and system templates, the offline model's
    /// deterministic answer (SHA-256 seeded), tracing spans (no subscriber installed) and the
    /// per-act outputs. No network, no rate limit.
    #[divan::bench]
    fn run_3_acts_offline(bencher: Bencher) {
        let rt = runtime();
        let narrative = Narrative::parse(Path::new("bench.toml"), TEXT).expect("valid narrative");
        let llm = LlmClients::new(&BTreeMap::new()).expect("built-in providers");
        let options = RunOptions {
            default_provider: "offline".into(),
            vars: BTreeMap::from([("topic".to_owned(), "Rust".to_owned())]),
            ..Default::default()
        };
        let cancel = CancellationToken::new();
        bencher.bench_local(|| {
            rt.block_on(narrative.run(&llm, &options, &cancel, |_| {}))
                .expect("offline run")
        });
    }
}

mod scheduler {
    use super::*;

    const ACTORS: &[usize] = &[100, 1_000, 10_000, 100_000];

    /// A queue of `n` actors due 1 ms apart, all due at the returned `now`.
    fn queue(n: usize) -> (DueQueue, DateTime<Utc>) {
        let mut q = DueQueue::with_capacity(n);
        for i in 0..n {
            q.push(t0() + Duration::milliseconds(i as i64), i);
        }
        // Far enough ahead that every entry stays due however often it is re-queued.
        (q, DateTime::<Utc>::MAX_UTC)
    }

    /// One steady-state cycle with `n` actors queued: pop the earliest due actor
    /// (`pop_due(now)`), then re-queue it at its next fire time (`push`), one period later,
    /// i.e. behind every other actor (as when all actors share a period). O(log n).
    #[divan::bench(args = ACTORS)]
    fn pop_due_and_push(bencher: Bencher, n: usize) {
        let (mut q, now) = queue(n);
        let period = Duration::milliseconds(n as i64);
        bencher.bench_local(|| {
            let (due, i) = q.pop_due(now).expect("an actor is due");
            q.push(due + period, i);
        });
    }

    /// `next_due()` with `n` actors queued: the loop's "when do I wake up" (a heap peek).
    #[divan::bench(args = ACTORS)]
    fn next_due(bencher: Bencher, n: usize) {
        let (q, _) = queue(n);
        bencher.bench_local(|| divan::black_box(&q).next_due());
    }
}

mod store {
    use super::*;

    const TARGET: &str = "discord:123456789";

    /// Text of the `i`th queued post (distinct normalized texts).
    fn post(i: usize) -> String {
        format!(
            "Tip #{i}: prefer `&str` over `&String` in function arguments; it accepts more callers."
        )
    }

    /// `Store::enqueue` of a text that is already queued (the dedup path: normalize + SHA-256,
    /// one `INSERT .. ON CONFLICT DO NOTHING RETURNING` that inserts nothing, then one
    /// `SELECT id`), on a SQLite store in a temp dir holding `n` posts for the same target.
    #[divan::bench(args = [1_000, 100_000], sample_count = 50)]
    fn enqueue_duplicate(bencher: Bencher, n: usize) {
        let rt = runtime();
        let dir = tempfile::tempdir().expect("temp dir");
        let store = rt
            .block_on(Store::open(dir.path(), None))
            .expect("store opens");
        let started = Instant::now();
        rt.block_on(async {
            for i in 0..n {
                store
                    .enqueue(TARGET, &post(i), PostStatus::Pending, None, t0())
                    .await
                    .expect("enqueue");
            }
        });
        let populated = started.elapsed();
        let text = post(n / 2);
        // The first calls after the bulk load are much slower than the steady state; keep
        // them out of the samples, but report them.
        let size = |file: &str| std::fs::metadata(dir.path().join(file)).map_or(0, |m| m.len());
        let (db_before, wal_before) = (size("bot-server.db"), size("bot-server.db-wal"));
        let warm_up: Vec<String> = (0..4)
            .map(|_| {
                let started = Instant::now();
                rt.block_on(store.enqueue(TARGET, &text, PostStatus::Pending, None, t0()))
                    .expect("enqueue");
                format!("{:.1?}", started.elapsed())
            })
            .collect();
        note(format!(
            "store/enqueue_duplicate/{n}: populated in {populated:.1?}; first duplicates took {}; db {db_before} -> {} bytes, WAL {wal_before} -> {} bytes",
            warm_up.join(", "),
            size("bot-server.db"),
            size("bot-server.db-wal")
        ));
        bencher.bench_local(|| {
            let r = rt
                .block_on(store.enqueue(TARGET, &text, PostStatus::Pending, None, t0()))
                .expect("enqueue");
            assert!(matches!(r, Enqueued::Duplicate(_)));
        });
        rt.block_on(store.close());
    }

    /// A ~100-character post with mixed case and extra whitespace.
    const POST: &str =
        "  Tip:   prefer `&str` over `&String`\n in function ARGUMENTS;  it accepts more callers. ";

    /// `store::normalize` alone (lowercase, collapse whitespace) of a ~100-character post.
    #[divan::bench]
    fn normalize_post() -> String {
        normalize(divan::black_box(POST))
    }

    /// The dedup key as `Store::enqueue` computes it (private `content_hash`, copied here):
    /// normalize, SHA-256, hex via one `format!` per byte.
    #[divan::bench]
    fn content_hash(bencher: Bencher) {
        use sha2::{Digest, Sha256};
        bencher.bench(|| {
            let digest = Sha256::digest(normalize(divan::black_box(POST)).as_bytes());
            digest
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        });
    }
}

mod metrics {
    use super::*;

    /// A registry holding 1,000 actors' series: one finished run (counter + histogram) and a
    /// full state (failures, three circuit gauges, next run and last success) per actor.
    fn thousand_actors() -> Metrics {
        let metrics = Metrics::new("bench");
        for i in 0..1_000 {
            let name = format!("actor-{i:04}");
            metrics.run_finished(&name, "success", 0.1);
            metrics.actor_state(&ActorState {
                name,
                last_run_at: Some(t0()),
                last_success_at: Some(t0()),
                next_run_at: Some(t0() + Duration::hours(1)),
                ..Default::default()
            });
        }
        metrics
    }

    /// One `/metrics` scrape in the classic Prometheus text format with 1,000 actors' series
    /// (`encode_prometheus_text`: process figures from /proc, OpenMetrics encoding, then the
    /// conversion to the text format).
    #[divan::bench(sample_count = 50)]
    fn scrape_1000_actors(bencher: Bencher) {
        let metrics = thousand_actors();
        let text = metrics.encode_prometheus_text();
        note(format!(
            "metrics/scrape_1000_actors: exposition is {} bytes, {} lines",
            text.len(),
            text.lines().count()
        ));
        bencher.bench_local(|| metrics.encode_prometheus_text());
    }

    /// The OpenMetrics part of the scrape above (`Metrics::encode`, same 1,000 actors):
    /// subtract it from the scrape to get the cost of the conversion to the text format.
    #[divan::bench(sample_count = 50)]
    fn encode_openmetrics_1000_actors(bencher: Bencher) {
        let metrics = thousand_actors();
        bencher.bench_local(|| metrics.encode());
    }
}
