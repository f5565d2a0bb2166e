//! The admin HTTP server: `/metrics` values after known runs (checked by promtool when
//! installed), `/readyz` in both states, and the `healthcheck` command.

use crate::support::*;
use bot_server::admin::{self, AdminState};
use bot_server::app::App;
use bot_server::fakes::llm::Reply;
use bot_server::scheduler::SchedulerStatus;
use std::sync::Arc;
use std::time::Duration;

const SECS: Duration = Duration::from_secs(60);

async fn start_admin(state: AdminState) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(admin::serve(listener, state, std::future::pending()));
    format!("http://{addr}")
}

/// Waits until no run is in flight, so that what the runs record is in the metrics.
async fn settled(serving: &Serving) {
    eventually("no run in flight", SECS, || async {
        serving
            .status
            .running
            .load(std::sync::atomic::Ordering::Relaxed)
            == 0
    })
    .await;
}

/// `app` served as the binary serves it, and the base URL of its admin server.
async fn run_with_admin(app: &Arc<App>) -> (Serving, String) {
    let serving = Serving::start(app.clone()).await;
    let base = serving.base.clone();
    (serving, base)
}

/// The value of the sample `name{labels}` in a text exposition, if present.
#[track_caller]
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// After a pipeline ran, `/metrics` reports the runs, durations, queue sizes, LLM calls and
/// tokens, Discord messages and duplicates with the values the runs produced; promtool finds
/// nothing to complain about.
#[tokio::test(start_paused = true)]
async fn metrics_report_known_runs() {
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
seconds = 10

[[actors]]
name = "poster"
action = "publish"
target = "chan"
[actors.schedule]
type = "Interval"
seconds = 30
"#,
    );
    let app = env.app(&config).await;
    let (running, base) = run_with_admin(&app).await;
    eventually("the poster sent one post", SECS, || async {
        env.discord.messages_in(CHANNEL).len() == 1
    })
    .await;
    settled(&running).await;
    let response = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let text = response.text().await.unwrap();
    let openmetrics = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert!(
        openmetrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    assert!(openmetrics.text().await.unwrap().ends_with("# EOF\n"));

    let runs = |actor: &str| {
        sample(
            &text,
            &format!("botticelli_actor_runs_total{{actor=\"{actor}\",outcome=\"success\"}}"),
        )
    };
    assert_eq!(runs("generator"), Some(1.0), "{text}");
    assert!(
        runs("curator").unwrap() >= 2.0,
        "the first curator run saw nothing; a later one approved"
    );
    let poster_runs = runs("poster").unwrap();
    assert!(poster_runs >= 1.0);
    assert_eq!(
        sample(
            &text,
            "botticelli_actor_run_duration_seconds_count{actor=\"poster\"}"
        ),
        Some(poster_runs)
    );
    assert_eq!(sample(&text, "botticelli_posts_enqueued_total"), Some(3.0));
    assert_eq!(
        sample(&text, "botticelli_posts_duplicates_skipped_total"),
        Some(1.0)
    );
    // The post the curator was shown and did not approve is rejected, not left pending.
    assert_eq!(
        sample(&text, "botticelli_posts{status=\"pending\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "botticelli_posts{status=\"rejected\"}"),
        Some(1.0)
    );
    let posted = sample(&text, "botticelli_posts{status=\"posted\"}").unwrap();
    let approved = sample(&text, "botticelli_posts{status=\"approved\"}").unwrap();
    assert_eq!(posted + approved, 2.0);
    assert_eq!(
        sample(
            &text,
            "botticelli_discord_messages_total{outcome=\"success\"}"
        ),
        Some(posted)
    );
    let model = "provider=\"gemini\",model=\"gemini-2.5-flash\"";
    let llm_calls = env.llm.request_count() as f64;
    assert_eq!(
        sample(
            &text,
            &format!("botticelli_llm_requests_total{{{model},outcome=\"success\"}}")
        ),
        Some(llm_calls)
    );
    assert!(
        sample(
            &text,
            &format!("botticelli_llm_input_tokens_total{{{model}}}")
        )
        .unwrap()
            > 0.0
    );
    assert!(
        sample(
            &text,
            &format!("botticelli_llm_output_tokens_total{{{model}}}")
        )
        .unwrap()
            > 0.0
    );
    assert_eq!(
        sample(
            &text,
            "botticelli_act_duration_seconds_count{narrative=\"gen\",act=\"posts\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "botticelli_actor_circuit_state{actor=\"generator\",state=\"closed\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "botticelli_actor_consecutive_failures{actor=\"generator\"}"
        ),
        Some(0.0)
    );
    assert!(
        sample(
            &text,
            "botticelli_actor_last_success_timestamp_seconds{actor=\"generator\"}"
        )
        .unwrap()
            > 1.7e9
    );
    assert!(
        sample(
            &text,
            "botticelli_actor_next_run_timestamp_seconds{actor=\"curator\"}"
        )
        .unwrap()
            > 1.7e9
    );
    assert!(text.contains("botticelli_build_info{version=\""), "{text}");
    assert!(sample(&text, "process_resident_memory_bytes").unwrap() > 1e6);
    assert!(sample(&text, "process_start_time_seconds").unwrap() > 1.7e9);
    assert!(
        sample(&text, "process_virtual_memory_bytes").unwrap()
            > sample(&text, "process_resident_memory_bytes").unwrap()
    );
    assert!(
        sample(&text, "process_max_fds").unwrap() >= sample(&text, "process_open_fds").unwrap()
    );
    // No secret and no message text in the exposition.
    for forbidden in [DISCORD_TOKEN, GEMINI_KEY, "Post one about rust"] {
        assert!(
            !text.contains(forbidden),
            "{forbidden} leaked into /metrics"
        );
    }
    promtool_check(&text);
    running.stop().await;
}

/// Runs `promtool check metrics` on the exposition. Without promtool the check is skipped,
/// except under `CI=true`, where it fails (scripts/install-deps.sh installs promtool).
fn promtool_check(text: &str) {
    let Ok(mut child) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        skip_or_fail_in_ci(
            "promtool check metrics",
            "promtool is not installed (scripts/install-deps.sh --cargo-only installs it)",
        );
        return;
    };
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics:\n{report}"
    );
}

/// A global rate limit asking for more than a minute is shown on `/readyz` while it holds
/// (it is waited out in full, so nothing reaches Discord meanwhile); it does not make the
/// server unready, since a restart would not lift it.
#[tokio::test]
async fn readyz_shows_a_long_global_rate_limit() {
    use bot_server::discord::Target;
    use bot_server::fakes::discord::Fail;
    let env = TestEnv::new().await;
    let config = env.config("", "");
    let app = env.app(&config).await;
    let (running, base) = run_with_admin(&app).await;
    let body = || async {
        reqwest::get(format!("{base}/readyz"))
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    };
    eventually("ready", SECS, || async {
        body().await["status"] == "ready"
    })
    .await;
    assert_eq!(body().await["discord"], "ok");
    env.discord.push_failure(Fail::RateLimited {
        retry_after_seconds: 600.0,
        global: true,
    });
    let cancel = tokio_util::sync::CancellationToken::new();
    let send = tokio::spawn({
        let (app, cancel) = (app.clone(), cancel.clone());
        async move {
            app.delivery
                .send(
                    &Target::Discord {
                        channel_id: CHANNEL,
                    },
                    "x",
                    "n1",
                    &cancel,
                )
                .await
        }
    });
    eventually("the 429", SECS, || async {
        env.discord.rate_limited_count() == 1
    })
    .await;
    let shown = body().await;
    assert!(
        shown["discord"]
            .as_str()
            .unwrap()
            .starts_with("paused: Discord's global rate limit holds every request for 5"),
        "{shown}"
    );
    assert_eq!(shown["status"], "ready", "{shown}");
    cancel.cancel();
    assert!(send.await.unwrap().is_err());
    running.stop().await;
}

/// `/readyz` is 503 with a body naming the scheduler before the loop ticks, 200 once it
/// runs, and 503 naming the store when the store is closed; `/healthz` is always 200.
#[tokio::test]
async fn readyz_reports_what_is_not_ready() {
    let env = TestEnv::new().await;
    let config = env.config("", "");
    let app = env.app(&config).await;
    let idle = Arc::new(SchedulerStatus::default());
    let base = start_admin(AdminState {
        app: app.clone(),
        status: idle,
    })
    .await;
    let r = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body["checks"]["scheduler"], "not ready: the scheduler loop has not started",
        "{body}"
    );
    assert_eq!(body["checks"]["store"], "ok");
    assert_eq!(
        reqwest::get(format!("{base}/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );

    let (running, base) = run_with_admin(&app).await;
    eventually("ready", SECS, || async {
        reqwest::get(format!("{base}/readyz"))
            .await
            .unwrap()
            .status()
            == 200
    })
    .await;
    let body: serde_json::Value = reqwest::get(format!("{base}/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "ready", "{body}");

    app.store.close().await;
    let r = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["checks"]["store"]
            .as_str()
            .unwrap()
            .starts_with("not ready:"),
        "{body}"
    );
    running.stop().await;
}

/// `bot-server healthcheck` exits 0 against a ready server and non-zero when nothing
/// answers, so a container image needs no curl.
#[tokio::test]
async fn healthcheck_command_follows_readyz() {
    let env = TestEnv::new().await;
    let config = env.config("", "");
    let app = env.app(&config).await;
    let (running, base) = run_with_admin(&app).await;
    let url = format!("{base}/readyz");
    eventually("ready", SECS, || async {
        reqwest::get(&url).await.unwrap().status() == 200
    })
    .await;
    let ok = env
        .command(&["healthcheck", "--url", &url])
        .output()
        .await
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("\"ready\""));
    running.stop().await;

    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let down = env
        .command(&["healthcheck", "--url", &format!("http://{closed}/readyz")])
        .output()
        .await
        .unwrap();
    assert!(!down.status.success());
    assert!(
        String::from_utf8_lossy(&down.stderr).contains("no answer"),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
}

/// The real binary serves `/metrics` on its admin port: after Discord answered one 429
/// (which twilight retried by itself) and the post went through, the counters say so.
#[tokio::test]
async fn binary_metrics_count_discord_rate_limits() {
    let env = TestEnv::new().await;
    env.write("one.toml", ONE_ACT);
    env.discord
        .push_failure(bot_server::fakes::discord::Fail::RateLimited {
            retry_after_seconds: 0.2,
            global: false,
        });
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    env.config(&format!("admin_listen = \"127.0.0.1:{port}\""), ONCE_ACTOR);
    let mut child = env.spawn_serve();
    eventually("posted", SECS, || async {
        env.discord.messages_in(CHANNEL).len() == 1
    })
    .await;
    let url = format!("http://127.0.0.1:{port}/metrics");
    let scrape = || async { reqwest::get(&url).await.ok()?.text().await.ok() };
    eventually("metrics show the run", SECS, || async {
        scrape().await.is_some_and(|t| {
            sample(
                &t,
                "botticelli_actor_runs_total{actor=\"once\",outcome=\"success\"}",
            ) == Some(1.0)
        })
    })
    .await;
    let text = scrape().await.unwrap();
    assert_eq!(env.discord.rate_limited_count(), 1);
    assert_eq!(
        sample(&text, "botticelli_discord_rate_limited_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "botticelli_discord_messages_total{outcome=\"success\"}"
        ),
        Some(1.0)
    );
    child.start_kill().unwrap();
    let _ = child.wait().await;
}

/// Retries are counted as they happen: a call that fails after all its retries (the provider
/// is down) shows them in `botticelli_llm_retries_total`, as a call that finally succeeds
/// does.
#[tokio::test(start_paused = true)]
async fn llm_retries_are_counted_when_the_call_finally_fails_too() {
    let env = TestEnv::new().await;
    env.write("one.toml", ONE_ACT);
    // `max_retries = 2` (tests' config): the first call fails after its 2 retries, the
    // next run's call succeeds after 1.
    for _ in 0..4 {
        env.llm.push(Reply::ServerError(503));
    }
    let config = env.config("check_interval_seconds = 5", ONCE_ACTOR);
    let app = env.app(&config).await;
    let (running, base) = run_with_admin(&app).await;
    eventually("the retried run posted", SECS, || async {
        env.discord.messages_in(CHANNEL).len() == 1
    })
    .await;
    settled(&running).await;
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        sample(&text, "botticelli_llm_retries_total{provider=\"gemini\"}"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "botticelli_actor_runs_total{actor=\"once\",outcome=\"failure\"}"
        ),
        Some(1.0)
    );
    running.stop().await;
}
