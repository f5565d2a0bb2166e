//! The server in-process against the fakes: the content pipeline, posting, restarts, the
//! circuit breaker and failed sends.

use crate::support::*;
use bot_server::actor_state::{Circuit, RunOutcome};
use bot_server::fakes::discord::Fail;
use bot_server::fakes::llm::Reply;
use bot_server::store::PostStatus;
use std::time::Duration;

const SECS: Duration = Duration::from_secs(60);

/// Generator → curator → poster: approved posts reach Discord once each, in order; the
/// one it did not approve is rejected ("not approved by curator ...") and the near-duplicate
/// is never queued.
#[tokio::test(start_paused = true)]
async fn three_actor_pipeline_posts_approved_posts_to_discord() {
    let env = TestEnv::new().await;
    env.llm.set_responder(pipeline_responder);
    env.write("gen.toml", GENERATOR);
    env.write("cur.toml", CURATOR);
    let config = env.config(
        "",
        r#"
[[actors]]
name = "generator"
narrative = "gen.toml"
action = "generate"
target = "chan"
[actors.schedule]
type = "Immediate"

[[actors]]
name = "curator"
narrative = "cur.toml"
action = "curate"
target = "chan"
[actors.schedule]
type = "Interval"
seconds = 5

[[actors]]
name = "poster"
action = "publish"
target = "chan"
[actors.schedule]
type = "Interval"
seconds = 10
"#,
    );
    let running = Serving::start(env.app(&config).await).await;
    eventually("two posts on Discord", SECS, || async {
        env.discord.messages_in(CHANNEL).len() >= 2
    })
    .await;
    let store = running.stop().await;

    let sent: Vec<String> = env
        .discord
        .messages_in(CHANNEL)
        .into_iter()
        .map(|m| m.content)
        .collect();
    assert_eq!(sent, ["Post one about rust", "Post three about rust"]);
    let posted = store
        .posts(Some(PostStatus::Posted), None, 10)
        .await
        .unwrap();
    assert_eq!(posted.len(), 2);
    assert!(
        posted.iter().all(|p| p.message_ids.len() == 1),
        "{posted:?}"
    );
    // Shown to the curator once and not approved: rejected with the reason, not shown again.
    assert!(
        store
            .posts(Some(PostStatus::Pending), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let rejected = store
        .posts(Some(PostStatus::Rejected), None, 10)
        .await
        .unwrap();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].content, "A bad post");
    assert_eq!(
        rejected[0].last_error.as_deref(),
        Some("not approved by curator `curator`")
    );
    // The generator's 4th post normalizes to the 1st: queued once.
    assert_eq!(store.posts(None, None, 10).await.unwrap().len(), 3);
    let gen_runs = store.recent_runs(Some("generator"), 10).await.unwrap();
    assert_eq!(gen_runs.len(), 1, "Immediate fires once: {gen_runs:?}");
    assert_eq!(gen_runs[0].outcome, RunOutcome::Success);
}

/// A curator that approves nothing is shown each pending post once: every run sees the next
/// ones (batch of 2), and what it did not approve is rejected with the reason. Before, it was
/// shown the same oldest posts on every run, and the queue behind them was never reached.
#[tokio::test(start_paused = true)]
async fn the_curator_sees_each_pending_post_once() {
    let env = TestEnv::new().await;
    env.llm.set_responder(|_| "[]".to_owned());
    env.write("cur.toml", CURATOR);
    let config = env.config(
        "",
        "[[actors]]\nname = \"curator\"\nnarrative = \"cur.toml\"\naction = \"curate\"\ntarget = \"chan\"\nbatch_size = 2\n[actors.schedule]\ntype = \"interval\"\nseconds = 10\n",
    );
    let app = env.app(&config).await;
    let target = format!("discord:{CHANNEL}");
    for n in 1..=5 {
        app.store
            .enqueue(
                &target,
                &format!("candidate {n}"),
                PostStatus::Pending,
                None,
                app.clock.now(),
            )
            .await
            .unwrap();
    }
    let running = Serving::start(app.clone()).await;
    eventually("three curator runs", SECS, || async {
        env.llm.request_count() >= 3
    })
    .await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    let shown: Vec<Vec<String>> = env
        .llm
        .requests()
        .iter()
        .map(|r| {
            (1..=5)
                .filter(|n| r.prompt.contains(&format!("candidate {n}\"")))
                .map(|n| n.to_string())
                .collect()
        })
        .collect();
    assert_eq!(
        shown[..3],
        [vec!["1", "2"], vec!["3", "4"], vec!["5"]],
        "{shown:?}"
    );
    let store = running.stop().await;
    let rejected = store
        .posts(Some(PostStatus::Rejected), None, 10)
        .await
        .unwrap();
    assert_eq!(rejected.len(), 5);
    assert!(
        rejected
            .iter()
            .all(|p| p.last_error.as_deref() == Some("not approved by curator `curator`"))
    );
}

/// A `post` actor runs its three acts in order, each seeing the previous output, and posts
/// the last one; every act's output is recorded with the run.
#[tokio::test(start_paused = true)]
async fn post_actor_runs_every_act_and_posts_the_final_output() {
    let env = TestEnv::new().await;
    env.llm.set_responder(pipeline_responder);
    env.write("tip.toml", TIP);
    let config = env.config(
        "",
        r#"
[[actors]]
name = "tip"
narrative = "tip.toml"
target = "chan"
vars = { topic = "lifetimes" }
[actors.schedule]
type = "Immediate"
"#,
    );
    let running = Serving::start(env.app(&config).await).await;
    eventually("one post", SECS, || async {
        env.discord.messages_in(CHANNEL).len() == 1
    })
    .await;
    assert!(
        running
            .status
            .last_tick_ms
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0,
        "the loop records its ticks"
    );
    let store = running.stop().await;
    let prompts: Vec<String> = env.llm.requests().into_iter().map(|r| r.prompt).collect();
    assert_eq!(prompts[0], "Draft a tip about lifetimes.");
    assert_eq!(
        prompts[1],
        "Critique: reply to [Draft a tip about lifetimes.]"
    );
    assert!(
        prompts[2].starts_with("Final post from: reply to [Critique: reply to [Draft"),
        "{}",
        prompts[2]
    );
    let message = &env.discord.messages_in(CHANNEL)[0];
    assert!(
        message.content.starts_with("reply to [Final post from:"),
        "{}",
        message.content
    );
    let run = &store.recent_runs(Some("tip"), 1).await.unwrap()[0];
    assert_eq!(run.outcome, RunOutcome::Success);
    let acts = store.act_outputs(run.id).await.unwrap();
    assert_eq!(
        acts.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(),
        ["draft", "critique", "final"]
    );
    assert_eq!(acts[2].1, message.content);
}

/// An interval actor that ran before a restart continues from its recorded last run instead
/// of firing again at start-up.
#[tokio::test(start_paused = true)]
async fn restart_continues_interval_from_last_run() {
    let env = TestEnv::new().await;
    env.write("tip.toml", TIP);
    let config = env.config(
        "",
        r#"
[[actors]]
name = "hourly"
narrative = "tip.toml"
target = "console"
vars = { topic = "x" }
[actors.schedule]
type = "Interval"
seconds = 3600
"#,
    );
    let running = Serving::start(env.app(&config).await).await;
    let store = running.app.store.clone();
    eventually("first run", SECS, || async {
        store.recent_runs(Some("hourly"), 5).await.unwrap().len() == 1
    })
    .await;
    eventually("first run finished", SECS, || async {
        store.recent_runs(Some("hourly"), 5).await.unwrap()[0].outcome == RunOutcome::Success
    })
    .await;
    let store = running.stop().await;
    let first = store.actor_state("hourly").await.unwrap().unwrap();
    store.close().await;

    let running = Serving::start(env.app(&config).await).await;
    tokio::time::sleep(Duration::from_secs(120)).await;
    let store = running.stop().await;
    let runs = store.recent_runs(Some("hourly"), 5).await.unwrap();
    assert_eq!(runs.len(), 1, "restart must not re-run: {runs:?}");
    let state = store.actor_state("hourly").await.unwrap().unwrap();
    assert_eq!(state.last_run_at, first.last_run_at);
    let next = state.next_run_at.expect("next run recorded");
    assert_eq!((next - first.last_run_at.unwrap()).num_seconds(), 3600);
}

/// After `max_consecutive_failures` failed runs the circuit opens and pauses the actor for
/// the cool-down; the half-open trial run succeeds and closes it.
#[tokio::test(start_paused = true)]
async fn circuit_opens_then_half_open_success_closes_it() {
    let env = TestEnv::new().await;
    env.write("tip.toml", ONE_ACT);
    // A 400 is not retried: each run fails at once.
    for _ in 0..2 {
        env.llm.push(Reply::Raw {
            status: 400,
            headers: vec![],
            body: r#"{"error":{"code":400,"message":"bad","status":"INVALID_ARGUMENT"}}"#.into(),
        });
    }
    let config = env.config(
        "max_consecutive_failures = 2\ncircuit_cooldown_seconds = 120",
        r#"
[[actors]]
name = "flaky"
narrative = "tip.toml"
target = "console"
[actors.schedule]
type = "Interval"
seconds = 10
"#,
    );
    let running = Serving::start(env.app(&config).await).await;
    let store = running.app.store.clone();
    eventually("circuit open", SECS, || async {
        store
            .actor_state("flaky")
            .await
            .unwrap()
            .is_some_and(|s| s.circuit == Circuit::Open)
    })
    .await;
    let open = store.actor_state("flaky").await.unwrap().unwrap();
    assert_eq!(open.consecutive_failures, 2);
    eventually("circuit closed again", Duration::from_secs(600), || async {
        store
            .actor_state("flaky")
            .await
            .unwrap()
            .is_some_and(|s| s.circuit == Circuit::Closed && s.ever_succeeded)
    })
    .await;
    let store = running.stop().await;
    let mut runs = store.recent_runs(Some("flaky"), 10).await.unwrap();
    runs.reverse();
    let outcomes: Vec<_> = runs.iter().map(|r| r.outcome).collect();
    assert_eq!(
        &outcomes[..3],
        [
            RunOutcome::Failure,
            RunOutcome::Failure,
            RunOutcome::Success
        ]
    );
    let paused = runs[2].started_at - runs[1].finished_at.unwrap();
    assert!(paused.num_seconds() >= 120, "paused only {paused}");
    assert!(
        runs[0]
            .error
            .as_deref()
            .unwrap()
            .contains("rejected the request (HTTP 400)"),
        "{:?}",
        runs[0].error
    );
}

/// Discord answering 401 fails the run with a message naming DISCORD_TOKEN, the post stays
/// queued, and the next run delivers it exactly once.
#[tokio::test(start_paused = true)]
async fn failed_send_fails_the_run_and_is_retried_once() {
    let env = TestEnv::new().await;
    env.write("tip.toml", ONE_ACT);
    env.discord.push_failure(Fail::Unauthorized);
    let config = env.config(
        "",
        r#"
[[actors]]
name = "poster"
narrative = "tip.toml"
target = "chan"
[actors.schedule]
type = "Interval"
seconds = 30
"#,
    );
    let running = Serving::start(env.app(&config).await).await;
    let store = running.app.store.clone();
    eventually(
        "a second run that succeeds",
        Duration::from_secs(300),
        || async {
            store
                .recent_runs(Some("poster"), 5)
                .await
                .unwrap()
                .first()
                .is_some_and(|r| r.outcome == RunOutcome::Success)
        },
    )
    .await;
    let store = running.stop().await;
    let mut runs = store.recent_runs(Some("poster"), 5).await.unwrap();
    runs.reverse();
    assert_eq!(runs[0].outcome, RunOutcome::Failure);
    let error = runs[0].error.clone().unwrap();
    assert!(
        error.contains("Discord rejected the bot token (401 Unauthorized): check DISCORD_TOKEN"),
        "{error}"
    );
    assert!(!error.contains(DISCORD_TOKEN), "{error}");
    let messages = env.discord.messages_in(CHANNEL);
    assert_eq!(messages.len(), 1, "{messages:?}");
    // The second run re-sent the first run's post; its own identical text is a duplicate.
    let posts = store.posts(None, None, 10).await.unwrap();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].status, PostStatus::Posted);
    assert_eq!(posts[0].message_ids, vec![messages[0].id.to_string()]);
    assert_eq!(posts[0].attempts, 2);
}

/// A text longer than a Discord message is sent as several messages, split on line
/// boundaries, each part recorded.
#[tokio::test(start_paused = true)]
async fn long_post_is_split_into_messages() {
    let env = TestEnv::new().await;
    let line = "🦀 ".repeat(30);
    let long: String = (0..100).map(|i| format!("{i}: {line}\n")).collect();
    let long_clone = long.clone();
    env.llm.set_responder(move |_| long_clone.clone());
    env.write("tip.toml", ONE_ACT);
    let config = env.config(
        "",
        "[[actors]]\nname = \"long\"\nnarrative = \"tip.toml\"\ntarget = \"chan\"\n[actors.schedule]\ntype = \"Immediate\"\n",
    );
    let running = Serving::start(env.app(&config).await).await;
    let store = running.app.store.clone();
    eventually("posted", SECS, || async {
        store
            .posts(Some(PostStatus::Posted), None, 1)
            .await
            .unwrap()
            .len()
            == 1
    })
    .await;
    let store = running.stop().await;
    let messages = env.discord.messages_in(CHANNEL);
    assert!(messages.len() >= 4, "{}", messages.len());
    assert!(messages.iter().all(|m| m.content.chars().count() <= 2000));
    // Parts end on line boundaries: every line arrives whole, in order.
    let lines: Vec<&str> = messages
        .iter()
        .flat_map(|m| m.content.lines())
        .map(str::trim_end)
        .collect();
    let expected: Vec<&str> = long.lines().map(str::trim_end).collect();
    assert!(
        lines == expected,
        "lines differ: {} vs {}",
        lines.len(),
        expected.len()
    );
    let post = &store
        .posts(Some(PostStatus::Posted), None, 1)
        .await
        .unwrap()[0];
    assert_eq!(post.message_ids.len(), messages.len());
}

/// One tick of each schedule type on a paused clock: Interval fires at start and after its
/// period, Cron at its next local time, Once at its instant, Immediate once.
#[tokio::test(start_paused = true)]
async fn each_schedule_type_fires_on_time() {
    use bot_server::app::{App, AppOptions};
    use bot_server::clock::Clock;
    use bot_server::config::Config;
    use bot_server::secret::Secret;

    let env = TestEnv::new().await;
    env.write(
        "one.toml",
        "[narrative]\nname = \"one\"\n[acts]\nonly = \"hi {{ actor }}\"\n",
    );
    let config = env.config(
        "check_interval_seconds = 3600",
        r#"
[[actors]]
name = "interval"
narrative = "one.toml"
target = "console"
[actors.schedule]
type = "Interval"
seconds = 600

[[actors]]
name = "cron"
narrative = "one.toml"
target = "console"
[actors.schedule]
type = "Cron"
expression = "30 9 * * *"
timezone = "Europe/Paris"

[[actors]]
name = "once"
narrative = "one.toml"
target = "console"
[actors.schedule]
type = "Once"
at = "2026-03-02T09:00:00Z"

[[actors]]
name = "immediate"
narrative = "one.toml"
target = "console"
[actors.schedule]
type = "Immediate"
"#,
    );
    // 2026-03-02T08:00:00Z is 09:00 in Paris (UTC+1): the cron fires at 08:30Z.
    let start = chrono::DateTime::parse_from_rfc3339("2026-03-02T08:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let loaded = Config::load(&config).unwrap();
    let llm = env.llm_clients(&loaded);
    let options = AppOptions {
        clock: Some(Clock::starting_at(start)),
        discord_token: Some(Secret::new(DISCORD_TOKEN)),
        llm: Some(llm),
        ..Default::default()
    };
    let running = Serving::start(std::sync::Arc::new(
        App::build(loaded, options).await.unwrap(),
    ))
    .await;
    // Stop between two ticks (10:55), not on one.
    tokio::time::sleep(std::time::Duration::from_secs(3 * 3600 - 300)).await;
    let store = running.stop().await;
    let starts = |runs: Vec<bot_server::store::RunRecord>| -> Vec<String> {
        let mut v: Vec<String> = runs
            .iter()
            .map(|r| r.started_at.format("%H:%M").to_string())
            .collect();
        v.reverse();
        v
    };
    let interval = starts(store.recent_runs(Some("interval"), 100).await.unwrap());
    assert_eq!(
        interval.len(),
        18,
        "every 10 minutes for 3 hours: {interval:?}"
    );
    assert_eq!(&interval[..3], ["08:00", "08:10", "08:20"]);
    assert_eq!(
        starts(store.recent_runs(Some("cron"), 10).await.unwrap()),
        ["08:30"]
    );
    assert_eq!(
        starts(store.recent_runs(Some("once"), 10).await.unwrap()),
        ["09:00"]
    );
    assert_eq!(
        starts(store.recent_runs(Some("immediate"), 10).await.unwrap()),
        ["08:00"]
    );
    assert!(
        store
            .recent_runs(None, 100)
            .await
            .unwrap()
            .iter()
            .all(|r| r.outcome == RunOutcome::Success)
    );
}

/// The server on the system clock plus a step that the test sets, as NTP would.
async fn serve_with_a_steppable_clock(
    env: &TestEnv,
    config: &std::path::Path,
) -> (Serving, std::sync::Arc<std::sync::Mutex<chrono::TimeDelta>>) {
    use bot_server::app::{App, AppOptions};
    use bot_server::clock::Clock;
    use bot_server::config::Config;
    use bot_server::secret::Secret;
    use std::sync::{Arc, Mutex};
    let step = Arc::new(Mutex::new(chrono::TimeDelta::zero()));
    let clock = Clock::with_source({
        let step = step.clone();
        move || chrono::Utc::now() + *step.lock().unwrap()
    });
    let loaded = Config::load(config).unwrap();
    let options = AppOptions {
        clock: Some(clock),
        discord_token: Some(Secret::new(DISCORD_TOKEN)),
        llm: Some(env.llm_clients(&loaded)),
        ..Default::default()
    };
    let running = Serving::start(Arc::new(App::build(loaded, options).await.unwrap())).await;
    (running, step)
}

/// A run due in 1 h starts within one check interval once the system clock is stepped
/// forward 1 h: the scheduler re-reads the wall clock after each wake-up.
#[tokio::test(start_paused = true)]
async fn stepping_the_wall_clock_forward_makes_a_run_due() {
    use chrono::{SecondsFormat, TimeDelta, Utc};

    let env = TestEnv::new().await;
    env.write("one.toml", ONE_ACT);
    let due = Utc::now() + TimeDelta::hours(1);
    let config = env.config(
        "check_interval_seconds = 60",
        &format!(
            "[[actors]]\nname = \"once\"\nnarrative = \"one.toml\"\ntarget = \"console\"\n\
             [actors.schedule]\ntype = \"Once\"\nat = \"{}\"\n",
            due.to_rfc3339_opts(SecondsFormat::Secs, true)
        ),
    );
    let (running, step) = serve_with_a_steppable_clock(&env, &config).await;
    let runs = || async {
        running
            .app
            .store
            .recent_runs(Some("once"), 10)
            .await
            .unwrap()
    };
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(runs().await.is_empty(), "not due yet");

    *step.lock().unwrap() = TimeDelta::hours(1);
    let stepped = running.app.clock.now();
    eventually(
        "the run after the step",
        Duration::from_secs(70),
        || async {
            runs()
                .await
                .first()
                .is_some_and(|r| r.finished_at.is_some())
        },
    )
    .await;
    let run = &runs().await[0];
    assert!(
        run.started_at >= due && run.started_at <= stepped + TimeDelta::seconds(60),
        "started within a check interval of the step: {run:?}"
    );
    assert_eq!(run.outcome, RunOutcome::Success);
    running.stop().await;
}

/// The system clock stepped back one hour (NTP correcting a VM after resume) stops nothing:
/// an interval actor (5 s) and a cron actor (every 5 s) go on running in the minute after the
/// step, and a post waiting to be sent again goes out within its backoff, not an hour later.
/// Before, both actors made 0 runs in that minute (their next times came from a last run now
/// in the future) and the post was held until the wall clock caught up.
#[tokio::test(start_paused = true)]
async fn stepping_the_wall_clock_back_delays_nothing() {
    use chrono::TimeDelta;

    let env = TestEnv::new().await;
    env.write("one.toml", ONE_ACT);
    env.write(
        "news.toml",
        "[narrative]\nname = \"news\"\n[acts]\nonly = \"news at {{ now }}\"\n",
    );
    // The poster's first post fails its send and the first re-send (5 attempts each), so it
    // waits in `sending` for its next attempt.
    for _ in 0..10 {
        env.discord.push_failure(Fail::Status(500));
    }
    let config = env.config(
        "check_interval_seconds = 10",
        "[[actors]]\nname = \"interval\"\nnarrative = \"one.toml\"\ntarget = \"console\"\n\
         [actors.schedule]\ntype = \"interval\"\nseconds = 5\n\
         [[actors]]\nname = \"cron\"\nnarrative = \"one.toml\"\ntarget = \"console\"\n\
         [actors.schedule]\ntype = \"cron\"\nexpression = \"*/5 * * * * *\"\n\
         [[actors]]\nname = \"poster\"\nnarrative = \"news.toml\"\ntarget = \"chan\"\n\
         [actors.schedule]\ntype = \"interval\"\nseconds = 3600\n",
    );
    let (running, step) = serve_with_a_steppable_clock(&env, &config).await;
    let app = running.app.clone();
    // Step when the post's first re-send has failed (its failure recorded after the send
    // began): it now waits for its backoff, timed from a last attempt that will be an hour
    // in the future.
    let post = || async {
        let posts = app.store.posts(None, None, 1000).await.unwrap();
        posts
            .into_iter()
            .find(|p| p.source_actor.as_deref() == Some("poster"))
    };
    eventually("the first re-send began", SECS, || async {
        post().await.is_some_and(|p| p.attempts == 2)
    })
    .await;
    let began = post().await.unwrap().updated_at;
    eventually("the first re-send failed", SECS, || async {
        post().await.is_some_and(|p| p.updated_at != began)
    })
    .await;
    assert_eq!(post().await.unwrap().status, PostStatus::Sending);
    let runs = |actor: &'static str| {
        let app = app.clone();
        async move {
            app.store
                .recent_runs(Some(actor), 1000)
                .await
                .unwrap()
                .len()
        }
    };
    let before = (runs("interval").await, runs("cron").await);
    *step.lock().unwrap() = -TimeDelta::hours(1);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let after = (runs("interval").await, runs("cron").await);
    assert!(
        after.0 - before.0 >= 10 && after.1 - before.1 >= 10,
        "runs in the minute after the step (interval, cron): {:?}",
        (after.0 - before.0, after.1 - before.1)
    );
    assert_eq!(
        post().await.unwrap().status,
        PostStatus::Posted,
        "the waiting post went out within its backoff"
    );
    assert_eq!(env.discord.messages_in(CHANNEL).len(), 1);
    assert_eq!(
        app.metrics.clock_steps_back.get(),
        1,
        "the step is counted once"
    );
    running.stop().await;
}

/// A webhook target posts through Discord's execute-webhook route (wait=true) and records
/// the message id; a wrong webhook token fails the run without the token in the error.
#[tokio::test(start_paused = true)]
async fn webhook_target_posts_and_hides_its_token() {
    let env = TestEnv::new().await;
    env.write(
        "one.toml",
        "[narrative]\nname = \"one\"\n[acts]\nonly = \"hello {{ actor }}\"\n",
    );
    let good = env.discord.add_webhook(77, "hook-token-SECRET");
    let bad = good.replace("hook-token-SECRET", "wrong-token-SECRET");
    let config = env.config(
        "",
        &format!(
            r#"
[targets.hook]
type = "webhook"
url = "{good}"

[targets.badhook]
type = "webhook"
url = "{bad}"

[[actors]]
name = "good"
narrative = "one.toml"
target = "hook"
[actors.schedule]
type = "Immediate"

[[actors]]
name = "bad"
narrative = "one.toml"
target = "badhook"
[actors.schedule]
type = "Immediate"
"#
        ),
    );
    let running = Serving::start(env.app(&config).await).await;
    let store = running.app.store.clone();
    eventually("both actors ran", SECS, || async {
        let runs = store.recent_runs(None, 10).await.unwrap();
        runs.len() >= 2 && runs.iter().all(|r| r.outcome != RunOutcome::Running)
    })
    .await;
    let store = running.stop().await;
    let messages = env.discord.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(messages[0].via_webhook);
    assert_eq!(messages[0].content, "fake reply to: hello good");
    let good_run = &store.recent_runs(Some("good"), 1).await.unwrap()[0];
    assert_eq!(good_run.outcome, RunOutcome::Success);
    let bad_run = &store.recent_runs(Some("bad"), 1).await.unwrap()[0];
    assert_eq!(bad_run.outcome, RunOutcome::Failure);
    let error = bad_run.error.clone().unwrap();
    assert!(
        error.contains("Discord rejected the webhook (401)"),
        "{error}"
    );
    assert!(!error.contains("SECRET"), "{error}");
    let posted = store
        .posts(Some(PostStatus::Posted), None, 10)
        .await
        .unwrap();
    assert_eq!(posted[0].message_ids, vec![messages[0].id.to_string()]);
    assert_eq!(posted[0].target, "webhook:77");
}

/// `max_concurrent_runs` bounds the runs in flight: with one slot, a second due actor waits
/// for the first run to end, and its recorded lateness shows the wait.
#[tokio::test(start_paused = true)]
async fn concurrency_limit_queues_due_actors() {
    let env = TestEnv::new().await;
    env.write("one.toml", ONE_ACT);
    env.llm.push(Reply::Delay(Duration::from_secs(3)));
    let config = env.config(
        "max_concurrent_runs = 1",
        r#"
[[actors]]
name = "a"
narrative = "one.toml"
target = "console"
[actors.schedule]
type = "Immediate"

[[actors]]
name = "b"
narrative = "one.toml"
target = "console"
[actors.schedule]
type = "Immediate"
"#,
    );
    let running = Serving::start(env.app(&config).await).await;
    let store = running.app.store.clone();
    eventually("both ran", SECS, || async {
        let runs = store.recent_runs(None, 10).await.unwrap();
        runs.len() == 2 && runs.iter().all(|r| r.outcome == RunOutcome::Success)
    })
    .await;
    let store = running.stop().await;
    let mut runs = store.recent_runs(None, 10).await.unwrap();
    runs.reverse();
    let (first, second) = (&runs[0], &runs[1]);
    assert!(
        second.started_at >= first.finished_at.unwrap(),
        "runs overlapped: {runs:?}"
    );
    let waited = second.started_at - second.scheduled_at.unwrap();
    assert!(
        waited.num_seconds() >= 3,
        "lateness {waited} does not show the wait"
    );
}
