//! What the CLI subcommands do, as library functions writing to any `Write`, so tests can run
//! them without a process: `check`, `run` (one narrative once), `posts`.

use crate::app::{load_narratives, readiness_problems};
use crate::config::{Config, ConfigFile};
use crate::llm::LlmClients;
use crate::narrative::{Narrative, RunOptions};
use crate::schedule::History;
use crate::store::{PostStatus, Store};
use anyhow::Context;
use chrono::Utc;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// What `bot-server check` checks besides the config and its narratives.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckOptions {
    /// Whether `DISCORD_TOKEN` (or `DISCORD_TOKEN_FILE`) is set.
    pub discord_token_set: bool,
    /// `--offline`: do not require credentials (a config checked on a machine without the
    /// secrets, in CI or before a deployment).
    pub offline: bool,
}

/// `bot-server check`: validates the config and every narrative it references and prints
/// each actor's schedule and next five fire times, then every missing credential (the bot
/// token for Discord channel targets, the API key of each provider the narratives use),
/// naming the variable and the actor that needs it (unless `offline`).
///
/// # Errors
///
/// The first problem in the config or a narrative; an act without a model; or, unless
/// `offline`, missing credentials (all of them are printed first).
pub fn check(
    config_path: &Path,
    options: CheckOptions,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let narratives = load_narratives(&config)?;
    let llm = LlmClients::new(&config.providers)?;
    let now = Utc::now();
    writeln!(
        out,
        "{}: valid, {} actor(s), {} narrative(s)",
        config_path.display(),
        config.actors.len(),
        narratives.len()
    )?;
    let budget = crate::shutdown::ShutdownBudget::of(&config.server);
    writeln!(
        out,
        "on SIGTERM: exits within {} s (shutdown_grace_seconds {} + {} s); give a container a longer stop timeout",
        budget.total().as_secs(),
        budget.grace().as_secs(),
        crate::shutdown::TAIL.as_secs()
    )?;
    for actor in &config.actors {
        let narrative = actor
            .narrative
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "-".into());
        writeln!(out)?;
        writeln!(
            out,
            "actor {}{}: {} -> {} ({})",
            actor.name,
            if actor.enabled { "" } else { " (disabled)" },
            actor.action.as_str(),
            actor.target_name,
            narrative
        )?;
        writeln!(out, "  schedule: {}", actor.schedule.describe())?;
        let tz = actor.schedule.timezone();
        let times = actor.schedule.upcoming(History::default(), now, 5);
        if times.is_empty() {
            writeln!(out, "  never fires again")?;
        }
        for t in times {
            let local = t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %Z (%:z)");
            writeln!(
                out,
                "  next: {}  |  {local} {tz}",
                t.format("%Y-%m-%d %H:%M:%S UTC")
            )?;
        }
    }
    let problems: Vec<_> =
        readiness_problems(&config, &narratives, &llm, options.discord_token_set)
            .into_iter()
            .filter(|p| !(options.offline && p.credential))
            .collect();
    if problems.is_empty() {
        if options.offline {
            writeln!(out, "\ncredentials not checked (--offline)")?;
        }
        return Ok(());
    }
    let credentials = problems.iter().filter(|p| p.credential).count();
    let list = crate::app::list(problems.iter().map(|p| &p.error));
    anyhow::bail!(
        "{}: {} problem(s) would stop `serve`:{list}{}",
        config_path.display(),
        problems.len(),
        if credentials > 0 {
            "\nset the variables named (or their _FILE form), or run `check --offline` to skip the credential check"
        } else {
            ""
        }
    )
}

/// Options of `bot-server run`.
#[derive(Debug, Clone, Default)]
pub struct RunCommand {
    pub narrative: std::path::PathBuf,
    pub vars: BTreeMap<String, String>,
    pub provider: Option<String>,
    pub model: Option<String>,
}

/// `bot-server run`: runs one narrative once and prints every act's output with timings.
/// Providers come from the config `config_path` (base URLs, limits, default provider); with
/// `None`, the built-in defaults.
///
/// # Errors
///
/// When the config cannot be read (a config that was named must exist), the narrative cannot
/// be loaded, a variable is missing, or an act fails.
pub async fn run_narrative(
    config_path: Option<&Path>,
    cmd: &RunCommand,
    llm: Option<LlmClients>,
    out: &mut (impl Write + Send),
) -> anyhow::Result<()> {
    let file = match config_path {
        Some(path) => crate::tomlfile::load::<ConfigFile>(path)?,
        None => ConfigFile::default(),
    };
    let llm = match llm {
        Some(llm) => llm,
        None => LlmClients::new(&file.providers)?,
    };
    let narrative = Narrative::load(&cmd.narrative)?;
    // What reaches the prompts must hold no secret: the narrative's [vars] and each --var
    // (a shell expands `--var t=$DISCORD_TOKEN` before the server sees it).
    let secrets = crate::secret::Known::from_environment(
        file.providers
            .values()
            .filter_map(|p| p.api_key_env.as_deref()),
    );
    narrative.refuse_secrets_in_vars(&secrets)?;
    if let Some((name, secret)) = cmd
        .vars
        .iter()
        .find_map(|(name, value)| Some((name, secrets.found_in(value)?)))
    {
        anyhow::bail!(
            "--var {name}: the value holds the value of {secret}, a secret: variables go into the prompts, which are sent to the model; remove it"
        );
    }
    let options = RunOptions {
        vars: cmd.vars.clone(),
        builtins: BTreeMap::from([
            ("actor".to_owned(), minijinja::Value::from("cli")),
            (
                "now".to_owned(),
                minijinja::Value::from(Utc::now().to_rfc3339()),
            ),
        ]),
        provider_override: cmd.provider.clone(),
        model_override: cmd.model.clone(),
        default_provider: file.server.default_provider.clone(),
    };
    writeln!(
        out,
        "narrative {} ({} acts)",
        narrative.name,
        narrative.acts.len()
    )?;
    let started = tokio::time::Instant::now();
    let cancel = tokio_util::sync::CancellationToken::new();
    let mut printed = Ok(());
    let result = narrative
        .run(&llm, &options, &cancel, |act| {
            if printed.is_ok() {
                printed = writeln!(
                    out,
                    "\n── act {} · {}/{} · {} ms · {} in / {} out tokens{} ──\n{}",
                    act.act,
                    act.provider,
                    act.model,
                    act.duration.as_millis(),
                    act.input_tokens,
                    act.output_tokens,
                    if act.retries > 0 {
                        format!(" · {} retries", act.retries)
                    } else {
                        String::new()
                    },
                    act.text.trim_end()
                );
            }
        })
        .await;
    printed?;
    result?;
    writeln!(out, "\ndone in {} ms", started.elapsed().as_millis())?;
    Ok(())
}

/// `bot-server posts list`.
///
/// # Errors
///
/// On a store error.
pub async fn posts_list(
    store: &Store,
    status: Option<PostStatus>,
    limit: u32,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let posts = store.posts(status, None, limit).await?;
    if posts.is_empty() {
        writeln!(
            out,
            "no posts{}",
            status
                .map(|s| format!(" with status {}", s.as_str()))
                .unwrap_or_default()
        )?;
    }
    for p in posts {
        let first_line: String = if p.content.is_empty() {
            "(text pruned: post_retention_days)".to_owned()
        } else {
            p.content
                .lines()
                .next()
                .unwrap_or_default()
                .chars()
                .take(80)
                .collect()
        };
        writeln!(
            out,
            "{:>6}  {:<9} {:<24} {}  {}",
            p.id,
            p.status.as_str(),
            p.target,
            p.created_at.format("%Y-%m-%d %H:%M"),
            first_line
        )?;
        if let Some(err) = p.last_error {
            writeln!(out, "        last error: {err}")?;
        }
    }
    Ok(())
}

/// What an operator decides about posts (`bot-server posts approve|reject|retry`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Pending (or rejected, to undo a mistaken rejection) → approved.
    Approve,
    /// Pending, approved, failed or stuck sending → rejected: never sent.
    Reject,
    /// Failed → sending: the re-send loop sends it again within a minute (parts Discord
    /// already accepted are not re-sent).
    Retry,
}

impl Decision {
    /// The statuses it applies to, the status it sets, and its verb.
    fn rule(
        self,
    ) -> (
        &'static [PostStatus],
        PostStatus,
        &'static str,
        &'static str,
    ) {
        use PostStatus::*;
        match self {
            Self::Approve => (&[Pending, Rejected], Approved, "approve", "approved"),
            Self::Reject => (
                &[Pending, Approved, Failed, Sending],
                Rejected,
                "reject",
                "rejected",
            ),
            Self::Retry => (&[Failed], Sending, "retry", "queued for sending"),
        }
    }
}

/// `bot-server posts approve|reject|retry ID...`.
///
/// # Errors
///
/// When a post does not exist or its status does not allow the decision (see [`Decision`]);
/// earlier ids in the list stay changed.
pub async fn posts_decide(
    store: &Store,
    ids: &[i64],
    decision: Decision,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let (from, to, verb, done) = decision.rule();
    for &id in ids {
        store
            .transition(id, from, to, done, Utc::now())
            .await
            .with_context(|| format!("cannot {verb} post {id}"))?;
        writeln!(out, "post {id} {done}")?;
    }
    Ok(())
}
