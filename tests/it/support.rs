//! Test harness: a temporary state directory, fake LLM and Discord servers, a config that
//! points at them, and helpers to run the server in-process or as the real binary.

use bot_server::app::{App, AppOptions};
use bot_server::config::Config;
use bot_server::fakes::discord::FakeDiscord;
use bot_server::fakes::llm::FakeLlm;
use bot_server::llm::{LlmClients, ProviderKind};
use bot_server::scheduler::SchedulerStatus;
use bot_server::secret::Secret;
use bot_server::store::Store;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const CHANNEL: u64 = 111_222_333;
pub const DISCORD_TOKEN: &str = "test-bot-token-SECRET";
pub const GEMINI_KEY: &str = "test-gemini-key-SECRET";

/// Fakes plus a temporary directory holding config, narratives and state.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub discord: FakeDiscord,
    pub llm: FakeLlm,
}

impl TestEnv {
    pub async fn new() -> Self {
        let discord = FakeDiscord::start(DISCORD_TOKEN).await;
        discord.add_channel(CHANNEL);
        let llm = FakeLlm::start(ProviderKind::Gemini, GEMINI_KEY).await;
        Self {
            dir: tempfile::tempdir().unwrap(),
            discord,
            llm,
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Writes `actor_server.toml`: `[server]` settings `server_extra`, the fakes as provider
    /// and Discord, a `chan` Discord target and a `console` log target, then `actors`.
    pub fn config(&self, server_extra: &str, actors: &str) -> PathBuf {
        let check = if server_extra.contains("check_interval_seconds") {
            ""
        } else {
            "check_interval_seconds = 1"
        };
        // Port 0: binary tests run in parallel, each with its own admin port.
        let admin = if server_extra.contains("admin_listen") {
            ""
        } else {
            "admin_listen = \"127.0.0.1:0\""
        };
        let text = format!(
            r#"
[server]
state_dir = "state"
default_provider = "gemini"
{check}
{admin}
{server_extra}

[discord]
base_url = "{discord}"
timeout_seconds = 5

[providers.gemini]
base_url = "{llm}"
default_model = "gemini-2.5-flash"
max_retries = 2
timeout_seconds = 5

[targets.chan]
type = "discord"
channel_id = "{CHANNEL}"

[targets.console]
type = "log"

{actors}
"#,
            discord = self.discord.base_url(),
            llm = self.llm.base_url(),
        );
        self.write("actor_server.toml", &text)
    }

    /// LLM clients with the fake's key given directly (tests cannot set env vars safely).
    pub fn llm_clients(&self, config: &Config) -> LlmClients {
        llm_clients(config)
    }

    pub async fn app(&self, config_path: &Path) -> Arc<App> {
        app_for(config_path).await
    }

    /// `bot-server serve` as a child process, output discarded (an unread pipe could fill up
    /// and block the server).
    pub fn spawn_serve(&self) -> tokio::process::Child {
        self.command(&["serve"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Environment for the real binary: keys and token, quiet logs unless RUST_LOG is set.
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_bot-server"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("GEMINI_API_KEY", GEMINI_KEY)
            .env("DISCORD_TOKEN", DISCORD_TOKEN)
            .env_remove("DATABASE_URL")
            .env_remove("BOT_SERVER_CONFIG")
            // The tests' own telemetry settings, not the shell's (the two exporter variables
            // must not contradict each other).
            .env_remove("OTEL_TRACES_EXPORTER")
            .env_remove("OTEL_EXPORTER")
            .env_remove("OTEL_SDK_DISABLED")
            .env_remove("OTEL_TRACES_SAMPLER")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .kill_on_drop(true);
        cmd
    }
}

/// LLM clients with the fake's key given directly (tests cannot set env vars safely).
pub fn llm_clients(config: &Config) -> LlmClients {
    let keys = BTreeMap::from([("gemini".to_owned(), Secret::new(GEMINI_KEY))]);
    LlmClients::with_api_keys(&config.providers, &keys).unwrap()
}

/// The app of the config at `config_path`, with the fakes' token and key; needs no `TestEnv`
/// borrow, so a test can build it on a runtime of its own.
pub async fn app_for(config_path: &Path) -> Arc<App> {
    let config = Config::load(config_path).unwrap();
    let options = AppOptions {
        discord_token: Some(Secret::new(DISCORD_TOKEN)),
        llm: Some(llm_clients(&config)),
        ..Default::default()
    };
    Arc::new(App::build(config, options).await.unwrap())
}

/// The server exactly as `bot-server serve` runs it ([`bot_server::server::run`]): admin HTTP
/// on a free loopback port, the scheduler; [`Serving::stop`] ends it as SIGTERM does (admin
/// stopped, store closed).
pub struct Serving {
    pub app: Arc<App>,
    pub status: Arc<SchedulerStatus>,
    /// `http://127.0.0.1:PORT` of the admin server.
    pub base: String,
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<()>,
}

impl Serving {
    pub async fn start(app: Arc<App>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let status = Arc::new(SchedulerStatus::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn({
            let app = app.clone();
            let status = status.clone();
            async move {
                bot_server::server::run(app, status, listener, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            }
        });
        Self {
            app,
            status,
            base,
            stop: Some(stop),
            handle,
        }
    }

    /// Shuts the server down, waits until it has stopped (store closed), and opens the store
    /// again as `bot-server posts` would, to read what the server left on disk.
    pub async fn stop(mut self) -> Store {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.handle).await.unwrap();
        Store::open(&self.app.config.server.state_dir, None)
            .await
            .unwrap()
    }
}

/// Polls `cond` every 20 ms (of tokio time) until it holds, or panics after `limit` naming
/// `what`.
#[track_caller]
pub fn eventually<'a, F, Fut>(
    what: &'a str,
    limit: Duration,
    mut cond: F,
) -> impl Future<Output = ()> + 'a
where
    F: FnMut() -> Fut + 'a,
    Fut: Future<Output = bool> + 'a,
{
    let caller = std::panic::Location::caller();
    async move {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if cond().await {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("{caller}: timed out after {limit:?} waiting for: {what}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Sends `sig` (`-TERM`, `-KILL`, ...) to process `pid`.
pub fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// A one-act narrative with a fixed prompt.
pub const ONE_ACT: &str = "[narrative]\nname = \"one\"\n[acts]\nonly = \"hello\"\n";
/// An actor `once` running `one.toml` (write [`ONE_ACT`] there) right away, posting to `chan`.
pub const ONCE_ACTOR: &str = "[[actors]]\nname = \"once\"\nnarrative = \"one.toml\"\ntarget = \"chan\"\n[actors.schedule]\ntype = \"Immediate\"\n";

/// A narrative whose single act asks for JSON (a generator).
pub const GENERATOR: &str = r#"
[narrative]
name = "gen"
[acts.posts]
prompt = "Write posts about {{ topic }} as a JSON array of strings."
output = "json"
[vars]
topic = "rust"
"#;

/// A curator narrative: shows pending posts with their ids.
pub const CURATOR: &str = r#"
[narrative]
name = "cur"
[acts.review]
prompt = """
CURATE these posts:
{% for p in pending_posts %}{"id": {{ p.id }}, "text": {{ p.text | tojson }}}
{% endfor %}Answer with a JSON array of approved ids."""
output = "json"
"#;

/// A three-act narrative ending in one post.
/// One actor running the three-act `TIP` narrative once, posting to `chan`.
pub const TIP_ONCE: &str = r#"
[[actors]]
name = "tip"
narrative = "tip.toml"
target = "chan"
vars = { topic = "x" }
[actors.schedule]
type = "Immediate"
"#;

pub const TIP: &str = r#"
[narrative]
name = "tip"
[toc]
order = ["draft", "critique", "final"]
[acts]
draft = "Draft a tip about {{ topic }}."
critique = "Critique: {{ draft }}"
final = "Final post from: {{ critique }}"
"#;

/// Responder for the fake LLM: generator prompts get a JSON list, curator prompts get the
/// ids of posts whose text does not contain "bad", others an echo.
pub fn pipeline_responder(req: &bot_server::fakes::llm::FakeRequest) -> String {
    if req.prompt.contains("CURATE") {
        let ids: Vec<i64> = req
            .prompt
            .lines()
            .filter(|l| l.starts_with("{\"id\""))
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| !v["text"].as_str().unwrap_or_default().contains("bad"))
            .filter_map(|v| v["id"].as_i64())
            .collect();
        format!(
            "Approved:\n```json\n{}\n```",
            serde_json::to_string(&ids).unwrap()
        )
    } else if req.prompt.contains("JSON array of strings") {
        r#"["Post one about rust", "A bad post", "Post three about rust", "post ONE about   rust"]"#
            .to_owned()
    } else {
        format!(
            "reply to [{}]",
            req.prompt.chars().take(40).collect::<String>()
        )
    }
}

/// A test that cannot run its check here calls this instead of passing silently: under
/// `CI=true` (as `.ci/run` runs) a missing prerequisite is a failure; elsewhere the test is
/// counted as skipped. Each skip is printed and, when `BOTTICELLI_TEST_SKIPS` names a file,
/// appended to it so `.ci/run` can report how many tests were skipped.
#[track_caller]
pub fn skip_or_fail_in_ci(test: &str, why: &str) {
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(
        !in_ci,
        "{test}: {why} (CI=true: a skipped check is a failure)"
    );
    eprintln!("SKIPPED {test}: {why}");
    if let Ok(path) = std::env::var("BOTTICELLI_TEST_SKIPS") {
        use std::io::Write;
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(file, "{test}: {why}");
        }
    }
}
