//! Numeric config keys and their ranges ([`bot_server::limits`]): any value for any of them
//! either loads or is refused naming the key, and a config that loads computes its fire
//! times (what `check` prints) and runs a scheduler tick without panicking. Also, the
//! scheduler survives huge values that bypass loading (its second line of defence).

use bot_server::actor_state::{ActorState, Circuit, RunOutcome};
use bot_server::app::{App, AppOptions};
use bot_server::commands;
use bot_server::config::Config;
use bot_server::limits::{self, Range};
use bot_server::schedule::Schedule;
use bot_server::scheduler::{self, SchedulerStatus};
use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Every numeric key the generated configs set, as errors name it, with its range.
const KEYS: [(&str, Range); 15] = [
    (
        "server.check_interval_seconds",
        limits::CHECK_INTERVAL_SECONDS,
    ),
    (
        "server.max_consecutive_failures",
        limits::MAX_CONSECUTIVE_FAILURES,
    ),
    (
        "server.circuit_cooldown_seconds",
        limits::CIRCUIT_COOLDOWN_SECONDS,
    ),
    (
        "server.shutdown_grace_seconds",
        limits::SHUTDOWN_GRACE_SECONDS,
    ),
    ("server.run_timeout_seconds", limits::RUN_TIMEOUT_SECONDS),
    ("server.max_concurrent_runs", limits::MAX_CONCURRENT_RUNS),
    ("server.run_retention_days", limits::RUN_RETENTION_DAYS),
    ("server.max_parts_per_post", limits::MAX_PARTS_PER_POST),
    ("discord.timeout_seconds", limits::DISCORD_TIMEOUT_SECONDS),
    (
        "providers.offline.timeout_seconds",
        limits::PROVIDER_TIMEOUT_SECONDS,
    ),
    (
        "providers.offline.max_backoff_seconds",
        limits::MAX_BACKOFF_SECONDS,
    ),
    ("actors[0].schedule.seconds", limits::INTERVAL_SECONDS),
    ("actors[0].schedule.jitter_seconds", limits::JITTER_SECONDS),
    ("actors[0].run_timeout_seconds", limits::RUN_TIMEOUT_SECONDS),
    ("actors[1].batch_size", limits::BATCH_SIZE),
];

/// A one-act narrative answering in text: posted by `poster`, and not the JSON list a
/// generator must output, so every run of `failing` fails.
const TEXT_ACT: &str = "[narrative]\nname = \"one\"\n[acts]\nonly = \"hello\"\n";

const CURATOR: &str = r#"
[narrative]
name = "cur"
[acts.review]
prompt = """
{% for p in pending_posts %}{"id": {{ p.id }}}
{% endfor %}Answer with a JSON array of approved ids."""
output = "json"
"#;

/// The value of each key, by its name in [`KEYS`].
type Values = BTreeMap<&'static str, i64>;

/// A config setting every key of [`KEYS`] to its value, with three actors on the offline
/// provider and a log target: `poster` (interval, succeeds), `curator` (immediate, uses
/// `batch_size`) and `failing` (immediate, fails: exercises the retry and circuit times).
fn config_text(v: &Values) -> String {
    format!(
        r#"
[server]
state_dir = "state"
admin_listen = "127.0.0.1:0"
default_provider = "offline"
check_interval_seconds = {}
max_consecutive_failures = {}
circuit_cooldown_seconds = {}
shutdown_grace_seconds = {}
run_timeout_seconds = {}
max_concurrent_runs = {}
run_retention_days = {}
max_parts_per_post = {}

[discord]
timeout_seconds = {}

[providers.offline]
timeout_seconds = {}
max_backoff_seconds = {}

[targets.console]
type = "log"

[[actors]]
name = "poster"
narrative = "one.toml"
target = "console"
run_timeout_seconds = {}
[actors.schedule]
type = "Interval"
seconds = {}
jitter_seconds = {}

[[actors]]
name = "curator"
narrative = "cur.toml"
action = "curate"
target = "console"
batch_size = {}
[actors.schedule]
type = "Immediate"

[[actors]]
name = "failing"
narrative = "one.toml"
action = "generate"
target = "console"
[actors.schedule]
type = "Immediate"
"#,
        v["server.check_interval_seconds"],
        v["server.max_consecutive_failures"],
        v["server.circuit_cooldown_seconds"],
        v["server.shutdown_grace_seconds"],
        v["server.run_timeout_seconds"],
        v["server.max_concurrent_runs"],
        v["server.run_retention_days"],
        v["server.max_parts_per_post"],
        v["discord.timeout_seconds"],
        v["providers.offline.timeout_seconds"],
        v["providers.offline.max_backoff_seconds"],
        v["actors[0].run_timeout_seconds"],
        v["actors[0].schedule.seconds"],
        v["actors[0].schedule.jitter_seconds"],
        v["actors[1].batch_size"],
    )
}

/// The keys whose value is outside its range: the jitter is also bounded by its interval.
fn out_of_range(v: &Values) -> Vec<&'static str> {
    KEYS.iter()
        .filter(|(key, range)| {
            let range = if *key == "actors[0].schedule.jitter_seconds" {
                let seconds = u64::try_from(v["actors[0].schedule.seconds"]).unwrap_or(0);
                range.at_most(seconds, "the interval")
            } else {
                *range
            };
            !u64::try_from(v[key]).is_ok_and(|value| range.contains(value))
        })
        .map(|(key, _)| *key)
        .collect()
}

/// Values in `range`, its bounds often.
fn within(range: Range) -> BoxedStrategy<i64> {
    let (min, max) = (range.min as i64, range.max as i64);
    prop_oneof![Just(min), Just(max), min..=max].boxed()
}

/// Any value TOML can hold, weighted towards the edges: zero, just outside the range, the
/// largest integers, and negatives.
fn anything(range: Range) -> BoxedStrategy<i64> {
    let (min, max) = (range.min as i64, range.max as i64);
    prop_oneof![
        3 => within(range),
        1 => Just(0),
        1 => Just(min - 1),
        1 => Just(max + 1),
        1 => (max + 1)..=i64::MAX,
        1 => Just(i64::MAX),
        1 => Just(i64::from(u32::MAX) + 1),
        1 => any::<i64>(),
    ]
    .boxed()
}

/// A quarter of the configs have every key in range, so that loading and the scheduler (the
/// slow part, some 0.1 s a case) are exercised often; the others have any values.
fn values() -> impl Strategy<Value = Values> {
    let all = |pick: fn(Range) -> BoxedStrategy<i64>| {
        KEYS.iter()
            .map(|&(_, range)| pick(range))
            .collect::<Vec<_>>()
    };
    let to_map =
        |values: Vec<i64>| -> Values { KEYS.iter().map(|(k, _)| *k).zip(values).collect() };
    prop_oneof![
        1 => all(within).prop_map(move |values| {
            let mut v = to_map(values);
            let seconds = v["actors[0].schedule.seconds"];
            v.entry("actors[0].schedule.jitter_seconds")
                .and_modify(|jitter| *jitter = (*jitter).min(seconds));
            v
        }),
        3 => all(anything).prop_map(to_map),
    ]
}

/// Writes the narratives and `text` as `actor_server.toml` in a new directory.
fn write_config(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("one.toml"), TEXT_ACT).unwrap();
    std::fs::write(dir.path().join("cur.toml"), CURATOR).unwrap();
    let path = dir.path().join("actor_server.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// Runs the scheduler of `config` on a paused tokio clock for half a second of its time (every
/// actor due at start runs once; nothing is due again sooner), shuts it down and returns the
/// actors' stored states, by name.
fn tick(config: Config) -> BTreeMap<String, ActorState> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let app = Arc::new(App::build(config, AppOptions::default()).await.unwrap());
        let status = Arc::new(SchedulerStatus::default());
        let stop = tokio::time::sleep(Duration::from_millis(500));
        scheduler::run(app.clone(), status, stop).await.unwrap();
        let states = app.store.actor_states().await.unwrap();
        states.into_iter().map(|s| (s.name.clone(), s)).collect()
    })
}

/// The failing actor's state after one failed run, given the server's failure threshold and
/// cool-down: its circuit is open for the cool-down when one failure is enough.
fn assert_failed_once(state: &ActorState, max_failures: i64, cooldown: Option<TimeDelta>) {
    assert_eq!(state.last_outcome, Some(RunOutcome::Failure), "{state:?}");
    assert_eq!(state.consecutive_failures, 1, "{state:?}");
    if max_failures == 1 {
        assert_eq!(state.circuit, Circuit::Open, "{state:?}");
        let opened = state.last_run_at.unwrap();
        let until = state.circuit_open_until.unwrap();
        match cooldown {
            // Run start and end are the same instant of paused time, give or take the
            // real time between two clock reads.
            Some(cooldown) => assert!(
                (until - opened - cooldown).abs() < TimeDelta::seconds(1),
                "{state:?}"
            ),
            // The store keeps milliseconds.
            None => assert!(
                DateTime::<Utc>::MAX_UTC - until < TimeDelta::seconds(1),
                "{state:?}"
            ),
        }
    } else {
        assert_eq!(state.circuit, Circuit::Closed, "{state:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        ..ProptestConfig::default()
    })]

    /// Any values of the numeric keys: `check` refuses the config naming a key out of range and
    /// its value, or (all in range) accepts it and prints fire times; then the scheduler runs
    /// each actor once without panicking and opens the circuit for the configured cool-down.
    #[test]
    fn numeric_keys_are_refused_by_name_or_run(v in values()) {
        let (_dir, path) = write_config(&config_text(&v));
        let bad = out_of_range(&v);
        let mut printed = Vec::new();
        match commands::check(
            &path,
            commands::CheckOptions { discord_token_set: true, offline: false },
            &mut printed,
        ) {
            Err(err) => {
                let message = format!("{err:#}");
                prop_assert!(!bad.is_empty(), "refused though every key is in range: {message}");
                prop_assert!(
                    bad.iter().any(|key| message.contains(&format!("`{key}`: "))
                        && message.contains(&v[key].to_string())),
                    "the error names none of {bad:?} with its value: {message}"
                );
            }
            Ok(()) => {
                prop_assert!(bad.is_empty(), "accepted with {bad:?} out of range");
                let printed = String::from_utf8(printed).unwrap();
                prop_assert_eq!(printed.matches("\n  next: ").count(), 5 + 1 + 1, "{}", printed);
                let states = tick(Config::load(&path).unwrap());
                for name in ["poster", "curator"] {
                    prop_assert_eq!(states[name].last_outcome, Some(RunOutcome::Success));
                }
                let cooldown = TimeDelta::seconds(v["server.circuit_cooldown_seconds"]);
                assert_failed_once(
                    &states["failing"],
                    v["server.max_consecutive_failures"],
                    Some(cooldown),
                );
            }
        }
    }
}

/// Values past every limit, set after loading (as a bug or a future caller might): the
/// scheduler runs its tick without panicking; an interval past the end of time never fires
/// again and a circuit with an endless cool-down stays open.
#[test]
fn scheduler_survives_unchecked_huge_values() {
    let mut v: Values = KEYS
        .iter()
        .map(|&(key, range)| (key, range.min as i64))
        .collect();
    v.insert("actors[1].batch_size", 20);
    let (_dir, path) = write_config(&config_text(&v));
    let mut config = Config::load(&path).unwrap();
    let server = &mut config.server;
    server.check_interval_seconds = u64::MAX;
    server.circuit_cooldown_seconds = u64::MAX;
    server.shutdown_grace_seconds = u64::MAX;
    server.run_timeout_seconds = u64::MAX;
    server.run_retention_days = u64::MAX;
    server.max_concurrent_runs = usize::MAX;
    server.max_parts_per_post = usize::MAX;
    config.discord.timeout_seconds = u64::MAX;
    for actor in &mut config.actors {
        actor.run_timeout_seconds = u64::MAX;
        actor.batch_size = u32::MAX;
    }
    config.actors[0].schedule = Schedule::Interval {
        seconds: u64::MAX,
        jitter_seconds: u64::MAX,
    };

    let states = tick(config);
    assert_eq!(states["poster"].last_outcome, Some(RunOutcome::Success));
    assert_eq!(states["poster"].next_run_at, None, "{:?}", states["poster"]);
    assert_eq!(states["curator"].last_outcome, Some(RunOutcome::Success));
    assert_failed_once(&states["failing"], 1, None);
}
