//! The assembled server: config, narratives, state store, LLM clients and delivery, built
//! once at start-up and shared (`Arc<App>`) by the scheduler and every run.

use crate::clock::Clock;
use crate::config::{Action, Actor, Config};
use crate::discord::Delivery;
use crate::discord::Target;
use crate::llm::LlmClients;
use crate::narrative::{BUILTIN_VARS, Narrative, NarrativeError};
use crate::secret::Secret;
use crate::store::{Store, StoreError};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// A problem found while assembling the server.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Narrative(#[from] NarrativeError),
    #[error("actor `{actor}`")]
    ActorNarrative {
        actor: String,
        #[source]
        source: Box<NarrativeError>,
    },
    #[error("actor `{actor}`: {message}")]
    Actor { actor: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Llm(#[from] crate::llm::LlmError),
    #[error(transparent)]
    Discord(#[from] crate::discord::DeliveryError),
    #[error("{0}")]
    Secret(String),
    /// Several problems, each on its own line (`bot-server check` lists the same).
    #[error("{} problems stop the server:{}", .0.len(), list(.0))]
    Several(Vec<SetupError>),
}

/// Each error on its own indented line, with its causes (`serve`'s and `check`'s lists).
pub fn list<'a>(errors: impl IntoIterator<Item = &'a SetupError>) -> String {
    errors
        .into_iter()
        .map(|err| format!("\n  - {}", crate::error_chain(err)))
        .collect()
}

/// What [`App::build`] takes besides the config.
#[derive(Default)]
pub struct AppOptions {
    /// Time source (tests start it at a chosen instant); `None` is the system clock.
    pub clock: Option<Clock>,
    /// `DATABASE_URL`, overriding the state directory.
    pub database_url: Option<String>,
    /// The bot token (`DISCORD_TOKEN`).
    pub discord_token: Option<Secret>,
    /// Pre-built LLM clients (tests inject keys this way); `None` builds them from the config.
    pub llm: Option<LlmClients>,
}

impl AppOptions {
    /// Options from the process environment: `DATABASE_URL` and `DISCORD_TOKEN`, each or its
    /// `_FILE` form ([`crate::secret::lookup`]).
    ///
    /// # Errors
    ///
    /// When a variable and its `_FILE` form are both set, or a `_FILE` names a file that
    /// cannot be read.
    pub fn from_env() -> Result<Self, SetupError> {
        Ok(Self {
            clock: None,
            database_url: crate::secret::from_env("DATABASE_URL")
                .map_err(|err| SetupError::Secret(err.to_string()))?
                .filter(|v| !v.trim().is_empty()),
            discord_token: Secret::from_env("DISCORD_TOKEN").map_err(SetupError::Secret)?,
            llm: None,
        })
    }
}

/// Everything a run needs.
pub struct App {
    pub config: Arc<Config>,
    pub narratives: BTreeMap<PathBuf, Arc<Narrative>>,
    pub store: Store,
    pub llm: LlmClients,
    pub delivery: Delivery,
    pub clock: Clock,
    /// Mixed into Discord nonces (see [`Store::nonce_salt`]).
    pub nonce_salt: String,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Posts being sent, each by one sender.
    pub claims: crate::claims::Claims,
    /// Errors the loops log again and again while a fault lasts (the store failing to write,
    /// Discord down): each at most once a minute, with the count held back.
    pub log_throttle: crate::telemetry::LogThrottle,
}

/// Narratives of the config's actors, loaded and checked against each actor's variables.
///
/// # Errors
///
/// The first narrative that fails to load, or an actor that does not supply a variable its
/// narrative needs.
pub fn load_narratives(config: &Config) -> Result<BTreeMap<PathBuf, Arc<Narrative>>, SetupError> {
    let mut narratives: BTreeMap<PathBuf, Arc<Narrative>> = BTreeMap::new();
    // Actors' vars were checked when the config was loaded; narratives' [vars] are here.
    let secrets = config.process_secrets();
    for actor in &config.actors {
        let Some(path) = &actor.narrative else {
            continue;
        };
        let narrative = match narratives.get(path) {
            Some(n) => n.clone(),
            None => {
                let n = Narrative::load(path)
                    .and_then(|n| n.refuse_secrets_in_vars(&secrets).map(|()| Arc::new(n)))
                    .map_err(|source| SetupError::ActorNarrative {
                        actor: actor.name.clone(),
                        source: Box::new(source),
                    })?;
                narratives.insert(path.clone(), n.clone());
                n
            }
        };
        let builtins: &[&str] = if actor.action == Action::Curate {
            BUILTIN_VARS
        } else {
            &BUILTIN_VARS[1..]
        };
        narrative
            .check_variables(&actor.vars, builtins)
            .map_err(|source| SetupError::ActorNarrative {
                actor: actor.name.clone(),
                source: Box::new(source),
            })?;
    }
    Ok(narratives)
}

/// Something that keeps an enabled actor from working, found before it runs.
#[derive(Debug)]
pub struct Problem {
    /// A credential is missing or unreadable (a bot token, an API key); `check --offline`
    /// skips these.
    pub credential: bool,
    pub error: SetupError,
}

/// Every reason an enabled actor could not reach its provider(s) and target: API keys
/// missing or unreadable, no bot token for a channel target, an act with no model. Each
/// actor's provider is named once, however many acts use it.
pub fn readiness_problems(
    config: &Config,
    narratives: &BTreeMap<PathBuf, Arc<Narrative>>,
    llm: &LlmClients,
    has_discord_token: bool,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    for actor in config.actors.iter().filter(|a| a.enabled) {
        let problem = |credential, message| Problem {
            credential,
            error: SetupError::Actor {
                actor: actor.name.clone(),
                message,
            },
        };
        if matches!(actor.target, Target::Discord { .. }) && !has_discord_token {
            problems.push(problem(
                true,
                format!(
                    "posts to Discord channel target `{}` and needs a bot token: set DISCORD_TOKEN (or DISCORD_TOKEN_FILE)",
                    actor.target_name
                ),
            ));
        }
        let Some(narrative) = actor.narrative.as_ref().and_then(|p| narratives.get(p)) else {
            continue;
        };
        let options = crate::narrative::RunOptions {
            default_provider: config.server.default_provider.clone(),
            ..Default::default()
        };
        let mut reported = std::collections::BTreeSet::new();
        for act in &narrative.acts {
            let (provider, model) = narrative.resolve(act, &options, llm);
            if model.is_empty() {
                problems.push(problem(
                    false,
                    format!(
                        "act `{}` of {} names no model and provider `{provider}` has no default: set `model` in the narrative or `default_model` in [providers.{provider}]",
                        act.name,
                        narrative.path.display()
                    ),
                ));
            }
            if let Err(err) = llm.check_ready(&provider)
                && reported.insert(provider.clone())
            {
                let credential = matches!(
                    err,
                    crate::llm::LlmError::MissingApiKey { .. }
                        | crate::llm::LlmError::InvalidSettings { .. }
                );
                problems.push(problem(credential, format!("act `{}`: {err}", act.name)));
            }
        }
    }
    problems
}

/// Checks that every enabled actor can reach its provider(s) and target (see
/// [`readiness_problems`]).
///
/// # Errors
///
/// The first problem found, naming what to set.
pub fn check_credentials(
    config: &Config,
    narratives: &BTreeMap<PathBuf, Arc<Narrative>>,
    llm: &LlmClients,
    has_discord_token: bool,
) -> Result<(), SetupError> {
    let mut errors: Vec<SetupError> =
        readiness_problems(config, narratives, llm, has_discord_token)
            .into_iter()
            .map(|problem| problem.error)
            .collect();
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(SetupError::Several(errors)),
    }
}

impl App {
    /// Assembles the server from a loaded config: loads narratives, opens the store, builds
    /// the clients, and checks credentials of enabled actors.
    ///
    /// # Errors
    ///
    /// See [`SetupError`].
    pub async fn build(config: Config, options: AppOptions) -> Result<Self, SetupError> {
        let AppOptions {
            clock,
            database_url,
            discord_token: token,
            llm,
        } = options;
        let narratives = load_narratives(&config)?;
        let llm = match llm {
            Some(llm) => llm,
            None => LlmClients::new(&config.providers)?,
        };
        check_credentials(&config, &narratives, &llm, token.is_some())?;
        let store =
            Store::open_for_serving(&config.server.state_dir, database_url.as_deref()).await?;
        let nonce_salt = store.nonce_salt().await?;
        let metrics = Arc::new(crate::metrics::Metrics::default());
        store.write_health().observe({
            let metrics = metrics.clone();
            move |ok| metrics.store_write(ok)
        });
        let delivery = Delivery::new(&config.discord, token)?
            .observe_rate_limits({
                let metrics = metrics.clone();
                move || {
                    metrics.discord_rate_limited.inc();
                }
            })
            .observe_messages({
                let metrics = metrics.clone();
                move |outcome| metrics.discord_message(outcome)
            });
        Ok(Self {
            config: Arc::new(config),
            narratives,
            store,
            llm: llm
                .observe_retries({
                    let metrics = metrics.clone();
                    move |provider| metrics.llm_retry(provider)
                })
                .observe_calls({
                    let metrics = metrics.clone();
                    move |call| metrics.llm_call_done(call)
                }),
            delivery,
            clock: clock.unwrap_or_else(Clock::system),
            nonce_salt,
            metrics,
            claims: Default::default(),
            log_throttle: Default::default(),
        })
    }

    /// The narrative of an actor (loaded at build time).
    pub fn narrative_of(&self, actor: &Actor) -> Option<&Arc<Narrative>> {
        actor
            .narrative
            .as_ref()
            .and_then(|p| self.narratives.get(p))
    }
}
