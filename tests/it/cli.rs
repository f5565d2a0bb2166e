//! The real binary: `check`, `run`, `posts`, bad input, SIGTERM during a run, and `kill -9`
//! between "Discord accepted" and "recorded as posted".

use crate::support::*;
use bot_server::actor_state::RunOutcome;
use bot_server::fakes::discord::Fail;
use bot_server::fakes::llm::Reply;
use bot_server::store::{PostStatus, Store};
use std::process::Output;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

async fn output(env: &TestEnv, args: &[&str]) -> Output {
    env.command(args).output().await.unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn assert_fails_with(o: &Output, needle: &str) {
    assert!(
        !o.status.success(),
        "expected failure, got success; stdout: {}",
        stdout(o)
    );
    assert!(
        stderr(o).contains(needle),
        "stderr does not contain {needle:?}:\n{}",
        stderr(o)
    );
}

const ONE_ACTOR: &str = r#"
[[actors]]
name = "tip"
narrative = "tip.toml"
target = "chan"
vars = { topic = "x" }
[actors.schedule]
type = "Cron"
expression = "0 9 * * *"
timezone = "Europe/Paris"
"#;

/// `check` on a valid config exits 0 and prints each actor's next five fire times in UTC
/// and in the actor's time zone, and how long a stop may take (the shutdown budget).
#[tokio::test]
async fn check_prints_next_fire_times() {
    let env = TestEnv::new().await;
    env.write("tip.toml", TIP);
    env.config("", ONE_ACTOR);
    let o = output(&env, &["check"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("actor_server.toml: valid, 1 actor(s), 1 narrative(s)"),
        "{out}"
    );
    assert!(
        out.contains("schedule: cron \"0 9 * * *\" in Europe/Paris"),
        "{out}"
    );
    assert!(
        out.contains("on SIGTERM: exits within 25 s (shutdown_grace_seconds 15 + 10 s)"),
        "{out}"
    );
    let nexts: Vec<&str> = out
        .lines()
        .filter(|l| l.trim_start().starts_with("next:"))
        .collect();
    assert_eq!(nexts.len(), 5, "{out}");
    assert!(
        nexts
            .iter()
            .all(|l| l.contains(" 09:00:00 C") && l.contains("Europe/Paris")),
        "{out}"
    );
}

/// Every kind of bad config input fails `check` with a message naming the file, the key
/// and what to do.
#[tokio::test]
async fn bad_config_inputs_are_named() {
    let env = TestEnv::new().await;
    env.write("tip.toml", TIP);

    let o = output(&env, &["check", "--config", "missing.toml"]).await;
    assert_fails_with(
        &o,
        "missing.toml: cannot read the file: No such file or directory",
    );

    env.config(
        "",
        &ONE_ACTOR.replace("[actors.schedule]", "shedule = 1\n[actors.schedule]"),
    );
    let o = output(&env, &["check"]).await;
    assert_fails_with(&o, "actor_server.toml:");
    assert_fails_with(&o, "`actors[0].shedule`: unknown field `shedule`");

    env.config("", &ONE_ACTOR.replace("0 9 * * *", "0 25 * * *"));
    let o = output(&env, &["check"]).await;
    assert_fails_with(
        &o,
        "`actors[0].schedule`: invalid cron expression `0 25 * * *`",
    );

    env.config("", &ONE_ACTOR.replace("Europe/Paris", "Europe/Pariss"));
    let o = output(&env, &["check"]).await;
    assert_fails_with(
        &o,
        "unknown time zone `Europe/Pariss` (expected an IANA name",
    );

    env.config(
        "",
        &ONE_ACTOR.replace("target = \"chan\"", "channel_id = \"${NOT_SET_ANYWHERE}\""),
    );
    let o = output(&env, &["check"]).await;
    assert_fails_with(&o, "environment variable NOT_SET_ANYWHERE is not set");

    env.config(
        "",
        &ONE_ACTOR.replace("target = \"chan\"", "target = \"nowhere\""),
    );
    let o = output(&env, &["check"]).await;
    assert_fails_with(
        &o,
        "`actors[0].target`: no target named `nowhere` (defined: [chan, console])",
    );
}

const INTERVAL_ACTOR: &str = r#"
[[actors]]
name = "tick"
narrative = "tip.toml"
target = "chan"
vars = { topic = "x" }
[actors.schedule]
type = "Interval"
seconds = 60
"#;

/// `check` refuses an interval of i64::MAX seconds, naming the key and the allowed range,
/// instead of panicking while it computes the fire times.
#[tokio::test]
async fn check_refuses_a_huge_interval() {
    let env = TestEnv::new().await;
    env.write("tip.toml", TIP);
    env.config(
        "",
        &INTERVAL_ACTOR.replace("seconds = 60", "seconds = 9223372036854775807"),
    );
    let o = output(&env, &["check"]).await;
    assert_fails_with(
        &o,
        "actor_server.toml: `actors[0].schedule.seconds`: must be between 1 and 315360000 (10 years), not 9223372036854775807",
    );
}

/// `check` refuses huge durations that it never turns into dates itself but the server
/// would (cool-down, check interval, jitter, timeouts), naming each key and its range.
#[tokio::test]
async fn check_refuses_huge_durations_the_server_would_use() {
    let env = TestEnv::new().await;
    env.write("tip.toml", TIP);
    let huge = "9223372036854775807";
    for (server, actors, needle) in [
        (
            format!("circuit_cooldown_seconds = {huge}"),
            INTERVAL_ACTOR.to_owned(),
            format!(
                "`server.circuit_cooldown_seconds`: must be between 0 and 315360000 (10 years), not {huge}"
            ),
        ),
        (
            format!("check_interval_seconds = {huge}"),
            INTERVAL_ACTOR.to_owned(),
            format!(
                "`server.check_interval_seconds`: must be between 1 and 86400 (a day), not {huge}"
            ),
        ),
        (
            String::new(),
            INTERVAL_ACTOR.replace(
                "seconds = 60",
                &format!("seconds = 60\njitter_seconds = {huge}"),
            ),
            format!(
                "`actors[0].schedule.jitter_seconds`: must be between 0 and 60 (the interval `seconds`), not {huge}"
            ),
        ),
        (
            String::new(),
            INTERVAL_ACTOR.replace("vars =", &format!("run_timeout_seconds = {huge}\nvars =")),
            format!(
                "`actors[0].run_timeout_seconds`: must be between 1 and 86400 (a day), not {huge}"
            ),
        ),
    ] {
        env.config(&server, &actors);
        let o = output(&env, &["check"]).await;
        assert_fails_with(&o, &needle);
    }
}

/// Bad narratives: an act referring to a later act, a `[toc]` naming a missing act, and a
/// variable nobody supplies, each named with the file and act.
#[tokio::test]
async fn bad_narratives_are_named() {
    let env = TestEnv::new().await;
    env.config("", ONE_ACTOR);

    env.write(
        "tip.toml",
        &TIP.replace("Draft a tip about {{ topic }}.", "Draft {{ final }}"),
    );
    let o = output(&env, &["check"]).await;
    assert_fails_with(
        &o,
        "tip.toml: `acts.draft.prompt`: refers to act `final`, which runs later",
    );

    env.write("tip.toml", &TIP.replace("\"final\"]", "\"finale\"]"));
    let o = output(&env, &["check"]).await;
    assert_fails_with(
        &o,
        "tip.toml: `toc.order[2]`: names act `finale`, which has no [acts] entry",
    );

    env.write("tip.toml", &TIP.replace("{{ topic }}", "{{ subject }}"));
    let o = output(&env, &["check"]).await;
    assert_fails_with(
        &o,
        "act `draft` uses `{{ subject }}`, which is neither an earlier act nor a given variable",
    );
}

/// `run` prints every act with provider, model, timing and tokens; `--var` fills the
/// template; `--provider`/`--model` override the file.
#[tokio::test]
async fn run_prints_each_act() {
    let env = TestEnv::new().await;
    env.write("tip.toml", TIP);
    env.config("", "");
    let o = output(
        &env,
        &[
            "run",
            "tip.toml",
            "--var",
            "topic=borrowing",
            "--model",
            "gemini-test",
        ],
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for act in ["draft", "critique", "final"] {
        assert!(
            out.contains(&format!("── act {act} · gemini/gemini-test · ")),
            "{out}"
        );
    }
    assert!(
        out.contains("fake reply to: Draft a tip about borrowing."),
        "{out}"
    );
    assert_eq!(env.llm.requests()[0].model.as_deref(), Some("gemini-test"));

    let o = output(
        &env,
        &[
            "run",
            "tip.toml",
            "--provider",
            "offline",
            "--var",
            "topic=x",
        ],
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("── act draft · offline/"),
        "{}",
        stdout(&o)
    );
    assert_eq!(env.llm.request_count(), 3, "offline must not call the fake");
}

/// A model answer that is not JSON, for an act that asked for JSON, fails the run with the
/// offending text in the error.
#[tokio::test]
async fn invalid_json_from_the_model_fails_with_the_text() {
    let env = TestEnv::new().await;
    env.write("gen.toml", GENERATOR);
    env.config("", "");
    env.llm.push(Reply::Text(
        "Sure! Here are posts: [\"one\", \"two\"".into(),
    ));
    let o = output(&env, &["run", "gen.toml"]).await;
    assert_fails_with(
        &o,
        "act `posts` asked for JSON output but the model's answer is not valid JSON",
    );
    assert_fails_with(&o, "Sure! Here are posts: [\\\"one\\\", \\\"two\\\"");
}

/// `serve` refuses to start when a Discord target has no token, saying what to set.
#[tokio::test]
async fn serve_without_token_names_discord_token() {
    let env = TestEnv::new().await;
    env.write("tip.toml", TIP);
    env.config("", ONE_ACTOR);
    let o = env
        .command(&["serve"])
        .env_remove("DISCORD_TOKEN")
        .output()
        .await
        .unwrap();
    assert_fails_with(
        &o,
        "actor `tip`: posts to Discord channel target `chan` and needs a bot token: set DISCORD_TOKEN",
    );
    // With the key missing too, `serve` names both problems, as `check` does.
    let o = env
        .command(&["serve"])
        .env_remove("DISCORD_TOKEN")
        .env_remove("GEMINI_API_KEY")
        .output()
        .await
        .unwrap();
    assert_fails_with(&o, "2 problems stop the server:");
    assert_fails_with(&o, "needs a bot token: set DISCORD_TOKEN");
    assert_fails_with(&o, "provider `gemini` needs an API key: set GEMINI_API_KEY");
}

/// `posts list|approve|reject` curate the queue by hand; approving a posted post is refused.
#[tokio::test]
async fn posts_commands_curate_the_queue() {
    let env = TestEnv::new().await;
    env.config("", "");
    let store = Store::open(&env.path("state"), None).await.unwrap();
    let now = chrono::Utc::now();
    for text in ["first", "second"] {
        store
            .enqueue("discord:1", text, PostStatus::Pending, None, now)
            .await
            .unwrap();
    }
    store.close().await;
    let o = output(&env, &["posts", "list", "--status", "pending"]).await;
    assert!(
        stdout(&o).contains("first") && stdout(&o).contains("second"),
        "{}",
        stdout(&o)
    );
    let o = output(&env, &["posts", "approve", "1"]).await;
    assert_eq!(stdout(&o).trim(), "post 1 approved");
    let o = output(&env, &["posts", "reject", "2"]).await;
    assert_eq!(stdout(&o).trim(), "post 2 rejected");
    let o = output(&env, &["posts", "approve", "9"]).await;
    assert_fails_with(&o, "cannot approve post 9: post 9 does not exist");
    let store = Store::open(&env.path("state"), None).await.unwrap();
    assert_eq!(
        store.post(1).await.unwrap().unwrap().status,
        PostStatus::Approved
    );
    assert_eq!(
        store.post(2).await.unwrap().unwrap().status,
        PostStatus::Rejected
    );
}

/// SIGTERM during a run: no new runs, the run in flight finishes within the grace period
/// and is recorded, and the process exits 0.
#[tokio::test]
async fn sigterm_lets_the_run_in_flight_finish() {
    let env = TestEnv::new().await;
    env.write("one.toml", ONE_ACT);
    env.llm.push(Reply::Delay(Duration::from_secs(2)));
    env.config(
        "",
        "[[actors]]\nname = \"slow\"\nnarrative = \"one.toml\"\ntarget = \"chan\"\n[actors.schedule]\ntype = \"Interval\"\nseconds = 3600\n",
    );
    let mut child = env.spawn_serve();
    eventually("the LLM call started", LIMIT, || async {
        env.llm.request_count() == 1
    })
    .await;
    signal(child.id().unwrap(), "-TERM");
    let status = tokio::time::timeout(LIMIT, child.wait())
        .await
        .expect("exits within the grace period")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(
        env.discord.messages_in(CHANNEL).len(),
        1,
        "the run in flight completed its post"
    );
    let store = Store::open(&env.path("state"), None).await.unwrap();
    let runs = store.recent_runs(Some("slow"), 5).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].outcome, RunOutcome::Success);
}

/// SIGTERM with a run longer than the grace period: the run is stopped between acts and
/// recorded as cancelled, the process still exits 0, and nothing was posted half-way.
#[tokio::test]
async fn sigterm_past_grace_cancels_between_acts() {
    let env = TestEnv::new().await;
    env.write("tip.toml", TIP);
    env.llm.push(Reply::Delay(Duration::from_secs(600)));
    env.config(
        "shutdown_grace_seconds = 1",
        "[[actors]]\nname = \"slow\"\nnarrative = \"tip.toml\"\ntarget = \"chan\"\nvars = { topic = \"x\" }\n[actors.schedule]\ntype = \"Interval\"\nseconds = 3600\n",
    );
    let mut child = env.spawn_serve();
    eventually("the LLM call started", LIMIT, || async {
        env.llm.request_count() == 1
    })
    .await;
    signal(child.id().unwrap(), "-TERM");
    let status = tokio::time::timeout(LIMIT, child.wait())
        .await
        .expect("exits after the grace period")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(env.discord.messages().is_empty());
    let store = Store::open(&env.path("state"), None).await.unwrap();
    let runs = store.recent_runs(Some("slow"), 5).await.unwrap();
    assert_eq!(runs[0].outcome, RunOutcome::Cancelled, "{runs:?}");
}

/// A second `serve` on the same state directory stops at start with a message naming the
/// other server, and leaves the first one running.
#[tokio::test]
async fn a_second_server_on_the_same_state_is_refused() {
    let env = TestEnv::new().await;
    env.write("one.toml", ONE_ACT);
    env.config("", ONCE_ACTOR);
    let mut first = env.spawn_serve();
    eventually("the first server posted", LIMIT, || async {
        env.discord.messages_in(CHANNEL).len() == 1
    })
    .await;
    let second = tokio::time::timeout(LIMIT, env.command(&["serve"]).output())
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

/// `kill -9` after Discord accepted a message but before the post was recorded as posted:
/// after restart the post is re-sent with the same nonce, Discord returns the existing
/// message, and the channel has exactly one message.
#[tokio::test]
async fn crash_after_discord_accepted_does_not_post_twice() {
    let env = TestEnv::new().await;
    env.write("one.toml", ONE_ACT);
    env.discord.push_failure(Fail::HangAfterCreate);
    env.config("", ONCE_ACTOR);
    let mut child = env.spawn_serve();
    eventually("Discord accepted the message", LIMIT, || async {
        env.discord.messages_in(CHANNEL).len() == 1
    })
    .await;
    signal(child.id().unwrap(), "-KILL");
    let _ = child.wait().await;
    {
        let store = Store::open(&env.path("state"), None).await.unwrap();
        let post = store
            .post(1)
            .await
            .unwrap()
            .expect("post stored before sending");
        assert_eq!(post.status, PostStatus::Sending);
        // As the killed process left it: only the next server decides it was interrupted.
        let runs = store.recent_runs(Some("once"), 5).await.unwrap();
        assert_eq!(runs[0].outcome, RunOutcome::Running);
        store.close().await;
    }

    let mut child = env.spawn_serve();
    let store = Store::open(&env.path("state"), None).await.unwrap();
    eventually("post recorded as posted", LIMIT, || async {
        store
            .post(1)
            .await
            .unwrap()
            .is_some_and(|p| p.status == PostStatus::Posted)
    })
    .await;
    signal(child.id().unwrap(), "-TERM");
    assert!(child.wait().await.unwrap().success());
    let messages = env.discord.messages_in(CHANNEL);
    assert_eq!(messages.len(), 1, "posted twice: {messages:?}");
    let post = store.post(1).await.unwrap().unwrap();
    assert_eq!(post.message_ids, vec![messages[0].id.to_string()]);
    let runs = store.recent_runs(Some("once"), 5).await.unwrap();
    assert_eq!(
        runs.last().map(|r| r.outcome),
        Some(RunOutcome::Interrupted),
        "the killed run, recovered by the restarted server: {runs:?}"
    );
    assert_eq!(
        store.posts(None, None, 10).await.unwrap().len(),
        1,
        "the re-run's identical text is a duplicate"
    );
}

/// A narrative is not expanded from the environment: `${DISCORD_TOKEN}` in a prompt is refused
/// at `check` (naming file and line) instead of sending the token to the model, and `run`
/// refuses it too; other `${...}` stay text.
#[tokio::test]
async fn narrative_naming_a_secret_is_refused() {
    let env = TestEnv::new().await;
    env.write(
        "leak.toml",
        "[narrative]\nname = \"leak\"\n[acts]\nonly = \"Here is ${DISCORD_TOKEN} for you\"\n",
    );
    env.config(
        "",
        "[[actors]]\nname = \"leak\"\nnarrative = \"leak.toml\"\ntarget = \"chan\"\n[actors.schedule]\ntype = \"Immediate\"\n",
    );
    let o = output(&env, &["check"]).await;
    assert_fails_with(
        &o,
        "leak.toml:4: `${DISCORD_TOKEN}` names a secret, and a narrative's text is sent to the model as it is",
    );
    let o = output(&env, &["run", "leak.toml"]).await;
    assert_fails_with(&o, "`${DISCORD_TOKEN}` names a secret");
    assert_eq!(env.llm.request_count(), 0);
    assert!(!stderr(&o).contains(DISCORD_TOKEN) && !stdout(&o).contains(DISCORD_TOKEN));
}

/// A secret can reach a prompt by no other way either: an actor's `vars` (`${DISCORD_TOKEN}`
/// in the server config, which `check` passed before), a narrative's `[vars]` holding the
/// token's value, and `run --var` with it (as a shell expands `--var t=$DISCORD_TOKEN`) are each
/// refused with the file and line (or the option), before any model call, never showing it.
#[tokio::test]
async fn secrets_in_vars_are_refused_before_any_prompt() {
    let env = TestEnv::new().await;
    env.write("tip.toml", TIP);
    env.config(
        "",
        "[[actors]]\nname = \"tip\"\nnarrative = \"tip.toml\"\ntarget = \"chan\"\nvars = { topic = \"${DISCORD_TOKEN}\" }\n[actors.schedule]\ntype = \"Immediate\"\n",
    );
    let line = std::fs::read_to_string(env.path("actor_server.toml"))
        .unwrap()
        .lines()
        .position(|l| l.starts_with("vars = "))
        .unwrap()
        + 1;
    let mut outputs = Vec::new();
    for args in [&["check"][..], &["serve"]] {
        let o = output(&env, args).await;
        assert_fails_with(
            &o,
            &format!(
                "actor_server.toml:{line}: `actors[0].vars.topic` holds the value of DISCORD_TOKEN, a secret"
            ),
        );
        outputs.push(o);
    }
    // The narrative's [vars], with the token pasted in.
    env.write(
        "leaky.toml",
        &format!("[narrative]\nname = \"leaky\"\n[vars]\nsign = \"from {DISCORD_TOKEN}\"\n[acts]\nonly = \"Sign with {{{{ sign }}}}\"\n"),
    );
    env.config(
        "",
        "[[actors]]\nname = \"leaky\"\nnarrative = \"leaky.toml\"\ntarget = \"chan\"\n[actors.schedule]\ntype = \"Immediate\"\n",
    );
    for args in [&["check"][..], &["run", "leaky.toml"]] {
        let o = output(&env, args).await;
        assert_fails_with(
            &o,
            "leaky.toml:4: `vars.sign` holds the value of DISCORD_TOKEN, a secret",
        );
        outputs.push(o);
    }
    let o = output(
        &env,
        &[
            "run",
            "tip.toml",
            "--var",
            &format!("topic={DISCORD_TOKEN}"),
        ],
    )
    .await;
    assert_fails_with(
        &o,
        "--var topic: the value holds the value of DISCORD_TOKEN, a secret",
    );
    outputs.push(o);
    assert_eq!(env.llm.request_count(), 0, "no prompt was sent");
    for o in &outputs {
        assert!(!stderr(o).contains(DISCORD_TOKEN) && !stdout(o).contains(DISCORD_TOKEN));
    }
}

/// A config named with `--config` that does not exist is an error naming it, for `run` (which
/// does without a config only when none was named) and `healthcheck` as for `check` and `serve`.
#[tokio::test]
async fn a_named_config_that_does_not_exist_is_an_error() {
    let env = TestEnv::new().await;
    env.write("tip.toml", TIP);
    for args in [
        &[
            "run",
            "tip.toml",
            "--var",
            "topic=x",
            "--config",
            "missing.toml",
        ][..],
        &["healthcheck", "--config", "missing.toml"],
        &["serve", "--config", "missing.toml"],
        &["check", "--config", "missing.toml"],
    ] {
        let o = output(&env, args).await;
        assert_fails_with(
            &o,
            "missing.toml: cannot read the file: No such file or directory",
        );
    }
    assert_eq!(env.llm.request_count(), 0);
    // Not named and absent: `run` uses the built-in providers (here: offline).
    let o = output(
        &env,
        &[
            "run",
            "tip.toml",
            "--var",
            "topic=x",
            "--provider",
            "offline",
        ],
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
}

/// `check` fails when credentials are missing, naming each variable and the actor that needs
/// it; `--offline` skips the credential check and exits 0.
#[tokio::test]
async fn check_fails_on_missing_credentials_unless_offline() {
    let env = TestEnv::new().await;
    env.write("tip.toml", TIP);
    env.config("", ONE_ACTOR);
    let without_secrets = |args: &[&str]| {
        let mut cmd = env.command(args);
        cmd.env_remove("DISCORD_TOKEN").env_remove("GEMINI_API_KEY");
        cmd
    };
    let o = without_secrets(&["check"]).output().await.unwrap();
    assert_fails_with(&o, "2 problem(s) would stop `serve`");
    assert_fails_with(
        &o,
        "actor `tip`: posts to Discord channel target `chan` and needs a bot token: set DISCORD_TOKEN (or DISCORD_TOKEN_FILE)",
    );
    assert_fails_with(
        &o,
        "actor `tip`: act `draft`: provider `gemini` needs an API key: set GEMINI_API_KEY (or GEMINI_API_KEY_FILE)",
    );
    assert_fails_with(&o, "check --offline");
    assert_eq!(
        stderr(&o).matches("GEMINI_API_KEY (or").count(),
        1,
        "one line per actor and provider: {}",
        stderr(&o)
    );

    let o = without_secrets(&["check", "--offline"])
        .output()
        .await
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("credentials not checked (--offline)"),
        "{}",
        stdout(&o)
    );

    // The token from a file (as compose `secrets:` mount it) counts; only the key is missing.
    let token_file = env.write("discord_token", &format!("{DISCORD_TOKEN}\n"));
    let o = without_secrets(&["check"])
        .env("DISCORD_TOKEN_FILE", &token_file)
        .output()
        .await
        .unwrap();
    assert_fails_with(&o, "1 problem(s) would stop `serve`");
    assert_fails_with(&o, "set GEMINI_API_KEY");
}

/// A secret given both as `NAME` and `NAME_FILE` is an error naming both; a `NAME_FILE` that
/// cannot be read is named with its path; the secret's value is never printed.
#[tokio::test]
async fn secret_and_its_file_both_set_or_unreadable_are_named() {
    let env = TestEnv::new().await;
    env.write("tip.toml", TIP);
    env.config("", ONE_ACTOR);
    let token_file = env.write("discord_token", "file-token-SECRET\n");
    let o = env
        .command(&["check"])
        .env("DISCORD_TOKEN_FILE", &token_file)
        .output()
        .await
        .unwrap();
    assert_fails_with(&o, "both DISCORD_TOKEN and DISCORD_TOKEN_FILE are set");
    let o = env
        .command(&["serve"])
        .env("DISCORD_TOKEN_FILE", &token_file)
        .output()
        .await
        .unwrap();
    assert_fails_with(&o, "both DISCORD_TOKEN and DISCORD_TOKEN_FILE are set");
    let o = env
        .command(&["check"])
        .env_remove("GEMINI_API_KEY")
        .env("GEMINI_API_KEY_FILE", "/nonexistent/gemini_key")
        .output()
        .await
        .unwrap();
    assert_fails_with(
        &o,
        "GEMINI_API_KEY_FILE=/nonexistent/gemini_key: cannot read the file",
    );
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        !all.contains(DISCORD_TOKEN) && !all.contains("file-token-SECRET"),
        "{all}"
    );
}

/// `--help` of the binary and of each command lists the environment variables it reads.
#[tokio::test]
async fn help_lists_the_environment_variables() {
    let env = TestEnv::new().await;
    let help = |args: &'static [&'static str]| {
        let env = &env;
        async move {
            let o = output(env, args).await;
            assert!(o.status.success(), "{}", stderr(&o));
            stdout(&o)
        }
    };
    let all = help(&["--help"]).await;
    for var in [
        "BOT_SERVER_CONFIG",
        "VAR_FILE",
        "DISCORD_TOKEN[_FILE]",
        "GEMINI_API_KEY[_FILE]",
        "OPENAI_API_KEY[_FILE]",
        "ANTHROPIC_API_KEY[_FILE]",
        "DATABASE_URL[_FILE]",
        "RUST_LOG",
        "LOG_FORMAT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ] {
        assert!(all.contains(var), "--help does not name {var}:\n{all}");
    }
    let serve = help(&["serve", "--help"]).await;
    assert!(serve.contains("DISCORD_TOKEN[_FILE]") && serve.contains("DATABASE_URL[_FILE]"));
    let check = help(&["check", "--help"]).await;
    assert!(check.contains("--offline") && check.contains("GEMINI_API_KEY[_FILE]"));
    assert!(!check.contains("DATABASE_URL"), "{check}");
    let posts = help(&["posts", "--help"]).await;
    assert!(posts.contains("DATABASE_URL[_FILE]") && !posts.contains("DISCORD_TOKEN"));
    let run = help(&["run", "--help"]).await;
    assert!(run.contains("GEMINI_API_KEY[_FILE]") && run.contains("RUST_LOG"));
}
