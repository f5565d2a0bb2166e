//! The `bot-server` binary: parses the command line, sets up logs and traces, calls into the
//! library and turns errors into an exit code.

use anyhow::Context;
use bot_server::app::{App, AppOptions};
use bot_server::commands::{self, Decision, RunCommand};
use bot_server::config::Config;
use bot_server::scheduler::SchedulerStatus;
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

#[derive(Debug, Parser)]
#[command(
    name = "bot-server",
    version,
    about = "Runs scheduled LLM narratives and posts the results to Discord"
)]
struct Cli {
    /// The server config.
    #[arg(
        long,
        short,
        global = true,
        env = "BOT_SERVER_CONFIG",
        default_value = "actor_server.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the actors on their schedules until SIGTERM or SIGINT (the default command).
    Serve,
    /// Run one narrative once and print every act's output.
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
    /// Validate the config and its narratives; show each actor's next fire times.
    Check,
    /// Exit 0 when the server's /readyz answers 200 (for a container HEALTHCHECK).
    Healthcheck {
        /// The readiness URL; default: /readyz on the config's `admin_listen` port on 127.0.0.1.
        #[arg(long)]
        url: Option<String>,
    },
    /// Inspect and curate the post queue.
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
    let code = match dispatch(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    };
    // Export the spans still queued (the last run's trace), bounded in time.
    telemetry.shutdown().await;
    code
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(&cli.config).await,
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
            commands::run_narrative(&cli.config, &cmd, None, &mut stdout).await
        }
        Command::Check => {
            let token = bot_server::secret::Secret::from_env("DISCORD_TOKEN")
                .map_err(anyhow::Error::msg)?;
            commands::check(&cli.config, token.is_some(), &mut stdout)
        }
        Command::Healthcheck { url } => healthcheck(&cli.config, url).await,
        Command::Posts { action } => {
            let config = Config::load(&cli.config)?;
            let url = bot_server::secret::from_env("DATABASE_URL")?;
            let store = Store::open(&config.server.state_dir, url.as_deref()).await?;
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

async fn serve(config_path: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let admin_addr = config.server.admin_listen;
    let app = Arc::new(App::build(config, AppOptions::from_env()?).await?);
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

/// `healthcheck`: GET the readiness URL; success only on 200.
async fn healthcheck(config_path: &std::path::Path, url: Option<String>) -> anyhow::Result<()> {
    let url = match url {
        Some(url) => url,
        None => {
            let port =
                match bot_server::tomlfile::load::<bot_server::config::ConfigFile>(config_path) {
                    Ok(file) => file.server.admin_listen.port(),
                    Err(_) => bot_server::config::ServerSettings::default()
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
