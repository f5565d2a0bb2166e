//! The `bot-server` binary: parses the command line, sets up logs and traces, calls into the
//! library and turns errors into an exit code.

use anyhow::Context;
use bot_server::app::{App, AppOptions};
use bot_server::commands::{self, Decision, RunCommand};
use bot_server::config::Config;
use bot_server::scheduler::SchedulerStatus;
use bot_server::shutdown::Deadlines;
use bot_server::store::{PostStatus, Store};
use bot_server::telemetry::Telemetry;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// mimalloc instead of glibc's malloc: allocation was ~11 % of the server's CPU under load
/// (many small, short-lived allocations across two worker threads); see docs/PERFORMANCE.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The config file when neither `--config` nor `BOT_SERVER_CONFIG` names one.
const DEFAULT_CONFIG: &str = "actor_server.toml";

// The environment each command reads, for `--help`: found by grepping the sources for
// `std::env::var`, `secret::from_env` and the telemetry module's variables. Keep in step.
macro_rules! env_config {
    () => {
        "  BOT_SERVER_CONFIG    the config file when --config is not given [default: actor_server.toml]\n  \
         VAR, VAR_FILE        each ${VAR} (or ${VAR:-default}) in the config: the variable, or a file\n                       \
         holding the value; setting both is an error\n"
    };
}
macro_rules! env_discord {
    () => {
        "  DISCORD_TOKEN[_FILE] the bot token, for `discord` targets\n"
    };
}
macro_rules! env_keys {
    () => {
        "  GEMINI_API_KEY[_FILE], OPENAI_API_KEY[_FILE], ANTHROPIC_API_KEY[_FILE]\n                       \
         provider keys (or the variable a provider's `api_key_env` names, and its _FILE)\n"
    };
}
macro_rules! env_database {
    () => {
        "  DATABASE_URL[_FILE]  sqlite://PATH instead of the config's state_dir/bot-server.db\n"
    };
}
macro_rules! env_telemetry {
    () => {
        "  RUST_LOG             log filter [default: info], e.g. info,bot_server=debug\n  \
         LOG_FORMAT           `json` for one JSON object per log line\n  \
         OTEL_EXPORTER (otlp|stdout|none), OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL,\n  \
         OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER_ARG, other OTEL_EXPORTER_OTLP_* and OTEL_BSP_*\n                       \
         traces (see README.md, Operations)\n"
    };
}

#[derive(Debug, Parser)]
#[command(
    name = "bot-server",
    version,
    about = "Runs scheduled LLM narratives and posts the results to Discord",
    after_help = concat!(
        "Environment (each command's --help lists what it reads):\n",
        env_config!(), env_discord!(), env_keys!(), env_database!(), env_telemetry!()
    )
)]
struct Cli {
    /// The server config [default: actor_server.toml; `run` and `healthcheck` do without it
    /// when it does not exist and was not named].
    #[arg(long, short, global = true, env = "BOT_SERVER_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

impl Cli {
    /// The config file: `--config`, `BOT_SERVER_CONFIG`, or [`DEFAULT_CONFIG`].
    fn config_path(&self) -> PathBuf {
        self.config
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG))
    }

    /// The config file for commands that can do without one: the one named (which must then
    /// exist), else [`DEFAULT_CONFIG`] if it exists, else none.
    fn optional_config(&self) -> Option<PathBuf> {
        self.config.clone().or_else(|| {
            let default = PathBuf::from(DEFAULT_CONFIG);
            default.exists().then_some(default)
        })
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the actors on their schedules until SIGTERM or SIGINT (the default command).
    #[command(after_help = concat!(
        "Environment:\n",
        env_config!(), env_discord!(), env_keys!(), env_database!(), env_telemetry!()
    ))]
    Serve,
    /// Run one narrative once and print every act's output.
    #[command(after_help = concat!(
        "Environment:\n",
        env_config!(), env_keys!(), env_telemetry!()
    ))]
    Run {
        /// The narrative file.
        narrative: PathBuf,
        /// A template variable, `NAME=VALUE` (repeatable).
        #[arg(long = "var", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        /// Use this provider for every act.
        #[arg(long)]
        provider: Option<String>,
        /// Use this model for every act.
        #[arg(long)]
        model: Option<String>,
    },
    /// Validate the config and its narratives; show each actor's next fire times; fail on
    /// missing credentials (the bot token, the providers' API keys), naming each.
    #[command(after_help = concat!(
        "Environment:\n",
        env_config!(), env_discord!(), env_keys!(), env_telemetry!()
    ))]
    Check {
        /// Do not require credentials (check a config without its secrets, e.g. in CI).
        #[arg(long)]
        offline: bool,
    },
    /// Exit 0 when the server's /readyz answers 200 (for a container HEALTHCHECK).
    #[command(after_help = concat!(
        "Environment:\n",
        env_config!(), env_telemetry!()
    ))]
    Healthcheck {
        /// The readiness URL; default: /readyz on the config's `admin_listen` port on 127.0.0.1.
        #[arg(long)]
        url: Option<String>,
    },
    /// Inspect and curate the post queue.
    #[command(after_help = concat!(
        "Environment:\n",
        env_config!(), env_database!(), env_telemetry!()
    ))]
    Posts {
        #[command(subcommand)]
        action: PostsAction,
    },
}

#[derive(Debug, Subcommand)]
enum PostsAction {
    /// List posts, oldest first.
    List {
        /// Only posts with this status (pending, approved, rejected, sending, posted, failed).
        #[arg(long)]
        status: Option<PostStatus>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Approve pending (or rejected) posts for publishing.
    Approve { ids: Vec<i64> },
    /// Reject posts that are pending, approved, failed or stuck sending.
    Reject { ids: Vec<i64> },
    /// Send failed posts again: the server's re-send loop sends them within a minute.
    Retry { ids: Vec<i64> },
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("`{s}` is not NAME=VALUE"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs to stderr and traces; inside the runtime, which the OTLP/gRPC exporter needs.
    let telemetry = match Telemetry::init() {
        Ok(telemetry) => telemetry,
        Err(err) => {
            eprintln!("error: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    // Set by `serve` when it stops: the rest of the exit keeps to its shutdown budget.
    let mut stopping: Option<Deadlines> = None;
    let code = match dispatch(cli, &mut stopping).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    };
    // Export the spans still queued (the last run's trace), bounded in time.
    let flush = stopping.map_or(bot_server::telemetry::SHUTDOWN_TIMEOUT, |d| d.flush_bound());
    telemetry.shutdown_within(flush).await;
    code
}

async fn dispatch(cli: Cli, stopping: &mut Option<Deadlines>) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout();
    let config_path = cli.config_path();
    let optional_config = cli.optional_config();
    // The process environment, read here once (`DATABASE_URL`, `DISCORD_TOKEN`, each or its
    // `_FILE`).
    let options = AppOptions::from_env()?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            *stopping = Some(serve(&config_path, options).await?);
            Ok(())
        }
        Command::Run {
            narrative,
            vars,
            provider,
            model,
        } => {
            let cmd = RunCommand {
                narrative,
                vars: vars.into_iter().collect(),
                provider,
                model,
            };
            commands::run_narrative(optional_config.as_deref(), &cmd, None, &mut stdout).await
        }
        Command::Check { offline } => {
            let options = commands::CheckOptions {
                discord_token_set: !offline && options.discord_token.is_some(),
                offline,
            };
            commands::check(&config_path, options, &mut stdout)
        }
        Command::Healthcheck { url } => healthcheck(optional_config.as_deref(), url).await,
        Command::Posts { action } => {
            let config = Config::load(&config_path)?;
            let store =
                Store::open(&config.server.state_dir, options.database_url.as_deref()).await?;
            let result = match action {
                PostsAction::List { status, limit } => {
                    commands::posts_list(&store, status, limit, &mut stdout).await
                }
                PostsAction::Approve { ids } => {
                    commands::posts_decide(&store, &ids, Decision::Approve, &mut stdout).await
                }
                PostsAction::Reject { ids } => {
                    commands::posts_decide(&store, &ids, Decision::Reject, &mut stdout).await
                }
                PostsAction::Retry { ids } => {
                    commands::posts_decide(&store, &ids, Decision::Retry, &mut stdout).await
                }
            };
            store.close().await;
            result
        }
    }
}

/// `serve`: until SIGTERM or SIGINT; returns the deadlines of the stop.
async fn serve(config_path: &std::path::Path, options: AppOptions) -> anyhow::Result<Deadlines> {
    let config = Config::load(config_path)?;
    let admin_addr = config.server.admin_listen;
    let app = Arc::new(App::build(config, options).await?);
    let listener = tokio::net::TcpListener::bind(admin_addr)
        .await
        .with_context(|| {
            format!(
                "cannot listen on admin_listen = {admin_addr} (is another process using the port?)"
            )
        })?;
    tracing::info!(
        config = %config_path.display(),
        state = app.store.location(),
        actors = app.config.actors.len(),
        admin = %listener.local_addr().unwrap_or(admin_addr),
        version = env!("CARGO_PKG_VERSION"),
        "bot-server started"
    );
    let status = Arc::new(SchedulerStatus::default());
    bot_server::server::run(app, status, listener, shutdown_signal())
        .await
        .context("scheduler failed")
}

/// `healthcheck`: GET the readiness URL; success only on 200. The port comes from the config
/// when there is one (`config` is `None` when none was named and the default does not exist).
async fn healthcheck(
    config_path: Option<&std::path::Path>,
    url: Option<String>,
) -> anyhow::Result<()> {
    let url = match url {
        Some(url) => url,
        None => {
            let port = match config_path {
                Some(path) => bot_server::tomlfile::load::<bot_server::config::ConfigFile>(path)?
                    .server
                    .admin_listen
                    .port(),
                None => bot_server::config::ServerSettings::default()
                    .admin_listen
                    .port(),
            };
            format!("http://127.0.0.1:{port}/readyz")
        }
    };
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()?;
    let response = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("{url}: no answer"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    println!("{}", body.trim());
    anyhow::ensure!(status.is_success(), "{url} answered {status}");
    Ok(())
}

/// Resolves on SIGTERM (what `podman stop` sends) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(cause = %err, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(err) => {
                tracing::error!(cause = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}
