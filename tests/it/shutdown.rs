//! Shutdown within its budget whatever clients and Discord do: an admin client that never
//! finishes its request headers, a Discord that never answers. The budget is the runs' grace
//! (`shutdown_grace_seconds`) plus 10 s to cut sends, record, close and flush traces.

use crate::support::*;
use bot_server::fakes::discord::Fail;
use bot_server::store::PostStatus;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Child;

const LIMIT: Duration = Duration::from_secs(30);
/// The tail of the shutdown budget after the runs' grace.
const TAIL: Duration = Duration::from_secs(10);
const WEBHOOK: u64 = 7_007;
const HOOK_TOKEN: &str = "hook-SECRET-token-shutdown";

/// A request cut off inside its request line: the headers never end.
const HALF_REQUEST: &[u8] = b"GET /metr";

/// Two actors posting at once, one to the channel, one to a webhook, with Discord's request
/// timeout at its default (30 s, longer than the whole budget).
fn channel_and_webhook(env: &TestEnv, grace_seconds: u64) -> std::path::PathBuf {
    env.write("one.toml", ONE_ACT);
    let url = env.discord.add_webhook(WEBHOOK, HOOK_TOKEN);
    let text = format!(
        r#"
[server]
state_dir = "state"
default_provider = "gemini"
check_interval_seconds = 1
admin_listen = "127.0.0.1:0"
shutdown_grace_seconds = {grace_seconds}

[discord]
base_url = "{discord}"

[providers.gemini]
base_url = "{llm}"
default_model = "gemini-2.5-flash"
max_retries = 0
timeout_seconds = 5

[targets.chan]
type = "discord"
channel_id = "{CHANNEL}"

[targets.hook]
type = "webhook"
url = "{url}"

[[actors]]
name = "to_channel"
narrative = "one.toml"
target = "chan"
[actors.schedule]
type = "Immediate"

[[actors]]
name = "to_webhook"
narrative = "two.toml"
target = "hook"
[actors.schedule]
type = "Immediate"
"#,
        discord = env.discord.base_url(),
        llm = env.llm.base_url(),
    );
    // A different prompt, so the two posts differ.
    env.write(
        "two.toml",
        "[narrative]\nname = \"two\"\n[acts]\nonly = \"hello webhook\"\n",
    );
    env.write("actor_server.toml", &text)
}

/// `serve` with stderr in `stderr.log`; returns the child and its admin address, read from
/// the start-up line (the config asks for port 0).
async fn serve_logged(env: &TestEnv) -> (Child, String) {
    let log = std::fs::File::create(env.path("stderr.log")).unwrap();
    let child = env
        .command(&["serve"])
        .env("RUST_LOG", "info")
        .env_remove("LOG_FORMAT")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let mut admin = None;
    eventually("the start-up line naming the admin address", LIMIT, || {
        let found = stderr_of(env)
            .lines()
            .filter(|l| l.contains("bot-server started"))
            .find_map(|l| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix("admin="))
                    .map(str::to_owned)
            });
        let done = found.is_some();
        if found.is_some() {
            admin = found;
        }
        async move { done }
    })
    .await;
    (child, admin.unwrap())
}

fn stderr_of(env: &TestEnv) -> String {
    std::fs::read_to_string(env.path("stderr.log")).unwrap_or_default()
}

/// SIGTERMs `child`, waits (at most `wait`) for it to exit, and returns how long it took;
/// fails if it does not exit 0.
async fn sigterm_and_time(env: &TestEnv, mut child: Child, wait: Duration) -> Duration {
    signal(child.id().expect("running"), "-TERM");
    let started = std::time::Instant::now();
    let status = tokio::time::timeout(wait, child.wait())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no exit within {wait:?} of SIGTERM; stderr:\n{}",
                stderr_of(env)
            )
        })
        .unwrap();
    let took = started.elapsed();
    assert!(
        status.success(),
        "exit {status:?}; stderr:\n{}",
        stderr_of(env)
    );
    took
}

/// The real binary, one client connected to the admin port with an unfinished request line
/// and holding the connection: SIGTERM still ends the process with exit 0 within the budget
/// (it used to wait for the client for as long as the client stayed).
#[tokio::test]
async fn sigterm_with_a_half_open_admin_client_exits_within_the_budget() {
    let env = TestEnv::new().await;
    env.config("shutdown_grace_seconds = 1", "");
    let (child, admin) = serve_logged(&env).await;
    let mut client = TcpStream::connect(&admin).await.unwrap();
    client.write_all(HALF_REQUEST).await.unwrap();
    // Time for the server to accept the connection and read the bytes (it is then waiting for
    // the rest of the headers).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let budget = Duration::from_secs(1) + TAIL;
    let took = sigterm_and_time(&env, child, budget + LIMIT).await;
    eprintln!("half-open admin client: SIGTERM to exit took {took:?} (budget {budget:?})");
    assert!(
        took < budget,
        "SIGTERM to exit took {took:?}, over the budget of {budget:?}; stderr:\n{}",
        stderr_of(&env)
    );
    // The client was still there: the server did not wait for it to leave.
    client.write_all(b"ics HTTP/1.1\r\n").await.ok();
}

/// The real binary with Discord hanging on a channel send and a webhook send (its request
/// timeout, 30 s, is longer than the budget): SIGTERM ends it with exit 0 within the budget
/// (grace 1 s + 10 s; it used to take the grace plus Discord's timeout), the channel post stays
/// `sending` (re-sent with its nonce at the next start), and the webhook post is set aside as
/// `failed` for an operator, as the delivery rules say.
#[tokio::test]
async fn sigterm_while_discord_hangs_exits_within_the_budget() {
    let env = TestEnv::new().await;
    env.discord.push_failure(Fail::Hang);
    env.discord.push_failure(Fail::Hang);
    channel_and_webhook(&env, 1);
    let (child, _admin) = serve_logged(&env).await;
    eventually("both sends reached Discord", LIMIT, || async {
        env.discord.request_count() >= 2
    })
    .await;
    let budget = Duration::from_secs(1) + TAIL;
    let took = sigterm_and_time(&env, child, budget + LIMIT + LIMIT).await;
    eprintln!("hanging Discord: SIGTERM to exit took {took:?} (budget {budget:?})");
    assert!(
        took < budget,
        "SIGTERM to exit took {took:?}, over the budget of {budget:?}; stderr:\n{}",
        stderr_of(&env)
    );
    let store = bot_server::store::Store::open(&env.path("state"), None)
        .await
        .unwrap();
    assert_cut_posts(&store).await;
    assert!(env.discord.messages().is_empty());
}

/// The channel post cut at shutdown is left `sending`; the webhook post is `failed` with a
/// reason telling the operator what to do; no token in either.
async fn assert_cut_posts(store: &bot_server::store::Store) {
    let posts = store.posts(None, None, 10).await.unwrap();
    let channel = posts
        .iter()
        .find(|p| p.target == format!("discord:{CHANNEL}"))
        .unwrap_or_else(|| panic!("no channel post: {posts:?}"));
    let webhook = posts
        .iter()
        .find(|p| p.target == format!("webhook:{WEBHOOK}"))
        .unwrap_or_else(|| panic!("no webhook post: {posts:?}"));
    assert_eq!(channel.status, PostStatus::Sending, "{channel:?}");
    assert_eq!(webhook.status, PostStatus::Failed, "{webhook:?}");
    let reason = webhook.last_error.as_deref().unwrap_or_default();
    for wanted in [
        "Discord may have posted",
        "posts retry",
        "posts reject",
        "shutdown",
    ] {
        assert!(reason.contains(wanted), "{wanted:?} not in {reason:?}");
    }
    for post in [channel, webhook] {
        let error = post.last_error.as_deref().unwrap_or_default();
        assert!(!error.contains(HOOK_TOKEN) && !error.contains(DISCORD_TOKEN));
    }
}

/// In-process, on tokio's clock: Discord hangs on a channel send and a webhook send; the stop
/// ends within the budget (grace 2 s + 10 s), cutting both requests: the channel post stays
/// `sending` and is sent at the next start, once, with its nonce; the webhook post is set
/// aside as `failed` and never sent again by itself.
#[tokio::test(start_paused = true)]
async fn a_send_hanging_at_the_end_of_the_budget_is_cut_and_set_aside() {
    let env = TestEnv::new().await;
    env.discord.push_failure(Fail::Hang);
    env.discord.push_failure(Fail::Hang);
    let config = channel_and_webhook(&env, 2);
    let serving = Serving::start(env.app(&config).await).await;
    eventually("both sends reached Discord", LIMIT, || async {
        env.discord.request_count() >= 2
    })
    .await;
    let stopping = tokio::time::Instant::now();
    let store = serving.stop().await;
    let took = stopping.elapsed();
    let budget = Duration::from_secs(2) + TAIL;
    assert!(took <= budget, "the stop took {took:?} of tokio time");
    assert_cut_posts(&store).await;
    store.close().await;

    // Discord answers again: the next start sends the channel post, once; the webhook post
    // waits for an operator.
    let serving = Serving::start(env.app(&config).await).await;
    let store = serving.app.store.clone();
    eventually("the channel post is posted", LIMIT, || async {
        store
            .posts(Some(PostStatus::Posted), None, 10)
            .await
            .unwrap()
            .len()
            == 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(120)).await;
    let store = serving.stop().await;
    assert_eq!(env.discord.messages_in(CHANNEL).len(), 1);
    assert!(env.discord.messages_in(WEBHOOK).is_empty());
    let failed = store
        .posts(Some(PostStatus::Failed), None, 10)
        .await
        .unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
}

/// In-process, on tokio's clock: a client that sends part of a request line and then nothing
/// is disconnected by the admin server once the header-read timeout has passed, while the
/// server keeps serving others.
#[tokio::test(start_paused = true)]
async fn admin_closes_a_connection_whose_headers_never_end() {
    let env = TestEnv::new().await;
    let config = env.config("", "");
    let serving = Serving::start(env.app(&config).await).await;
    let addr = serving.base.trim_start_matches("http://").to_owned();
    let mut client = TcpStream::connect(&addr).await.unwrap();
    client.write_all(HALF_REQUEST).await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(120), client.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the half-open connection is still open after 120 s"
    );
    let healthz = reqwest::get(format!("{}/healthz", serving.base))
        .await
        .unwrap();
    assert_eq!(healthz.status(), 200);
    serving.stop().await;
}

/// In-process, on tokio's clock: with a half-open admin client connected, the stop does not
/// wait for it (the admin server gets a bounded drain, then its connections are closed).
#[tokio::test(start_paused = true)]
async fn stop_does_not_wait_for_a_half_open_admin_client() {
    let env = TestEnv::new().await;
    let config = env.config("shutdown_grace_seconds = 1", "");
    let serving = Serving::start(env.app(&config).await).await;
    let addr = serving.base.trim_start_matches("http://").to_owned();
    let mut client = TcpStream::connect(&addr).await.unwrap();
    client.write_all(HALF_REQUEST).await.unwrap();
    // The server has read the bytes and waits for the rest.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = tokio::time::Instant::now();
    let stopped = tokio::time::timeout(Duration::from_secs(600), serving.stop()).await;
    let took = stopping.elapsed();
    assert!(stopped.is_ok(), "the stop waited for the client ({took:?})");
    assert!(took <= Duration::from_secs(2), "the stop took {took:?}");
    drop(client);
}
