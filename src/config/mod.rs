//! The server config (`actor_server.toml`): its types, defaults, loading and validation.
//!
//! The committed, commented `actor_server.example.toml` documents every key and its default;
//! a unit test keeps it in step with the defaults here. Paths in the file (narratives, the
//! state directory) are relative to the file's own directory. Every numeric key has a range
//! ([`crate::limits`]), checked here.

use crate::discord::{DiscordSettings, Target};
use crate::limits;
use crate::llm::ProviderSettings;
use crate::schedule::{Schedule, ScheduleError, ScheduleSpec};
use crate::secret::Secret;
use crate::tomlfile::{self, TomlFileError};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The whole config file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub server: ServerSettings,
    #[serde(default)]
    pub discord: DiscordSettings,
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderSettings>,
    #[serde(default)]
    pub targets: BTreeMap<String, TargetSpec>,
    #[serde(default)]
    pub actors: Vec<ActorSpec>,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Longest the scheduler sleeps before looking at the actors again.
    #[serde(deserialize_with = "crate::duration::seconds")]
    pub check_interval_seconds: u64,
    /// Consecutive failed runs that open an actor's circuit.
    pub max_consecutive_failures: u32,
    /// How long an open circuit pauses the actor before one trial run.
    #[serde(deserialize_with = "crate::duration::seconds")]
    pub circuit_cooldown_seconds: u64,
    /// Where the state store lives (relative to the config file).
    pub state_dir: PathBuf,
    /// Admin HTTP (metrics, health).
    pub admin_listen: SocketAddr,
    /// How long a run in flight may take to finish after SIGTERM; the process exits within
    /// this plus [`crate::shutdown::TAIL`] ([`crate::shutdown::ShutdownBudget`]).
    #[serde(deserialize_with = "crate::duration::seconds")]
    pub shutdown_grace_seconds: u64,
    /// Longest one run may take.
    #[serde(deserialize_with = "crate::duration::seconds")]
    pub run_timeout_seconds: u64,
    /// Provider used when neither act nor narrative names one.
    pub default_provider: String,
    /// Runs at most this many actor runs at once.
    pub max_concurrent_runs: usize,
    /// Run records (and their act outputs) older than this are deleted; posts are kept, so
    /// dedup still sees everything ever posted. 0 keeps every run.
    pub run_retention_days: u64,
    /// Most Discord messages (of 2,000 characters) one post may become; a longer text fails
    /// the run instead of flooding the channel.
    pub max_parts_per_post: usize,
    /// The text of posts posted longer ago than this is dropped (their record, with the content
    /// hash that duplicate detection needs, is kept). 0 keeps every text.
    pub post_retention_days: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            check_interval_seconds: 60,
            max_consecutive_failures: 5,
            circuit_cooldown_seconds: 300,
            state_dir: PathBuf::from("state"),
            admin_listen: SocketAddr::from(([0, 0, 0, 0], 9090)),
            // With the shutdown budget's tail (10 s): exit within 25 s, under a container's
            // 30 s stop timeout.
            shutdown_grace_seconds: 15,
            run_timeout_seconds: 300,
            default_provider: "gemini".to_owned(),
            max_concurrent_runs: 16,
            run_retention_days: 30,
            max_parts_per_post: 4,
            post_retention_days: 90,
        }
    }
}

/// `[targets.NAME]`: where posts go.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum TargetSpec {
    /// A channel, through the bot API (`DISCORD_TOKEN`).
    Discord { channel_id: String },
    /// A Discord webhook URL. It holds a token, so it is a secret: never logged or shown in an
    /// error; give it as `url = "${DISCORD_WEBHOOK_URL}"` (the variable, or a file named by
    /// `DISCORD_WEBHOOK_URL_FILE`).
    Webhook { url: Secret },
    /// The server's log (stdout); the demo target.
    Log,
}

/// What an actor does with its narrative.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Run the narrative and post its final output to the target.
    #[default]
    Post,
    /// Run the narrative; its final output is a JSON list of posts, queued as pending.
    Generate,
    /// Show pending posts to the narrative; it returns the ids it approves.
    Curate,
    /// Publish the oldest approved post (no narrative).
    Publish,
}

impl Action {
    /// Lowercase name, as in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Post => "post",
            Self::Generate => "generate",
            Self::Curate => "curate",
            Self::Publish => "publish",
        }
    }
}

/// One `[[actors]]` entry as written.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ActorSpec {
    pub name: String,
    #[serde(default)]
    pub narrative: Option<PathBuf>,
    pub schedule: ScheduleSpec,
    #[serde(default)]
    pub action: Action,
    /// Name of a `[targets.NAME]` table.
    #[serde(default)]
    pub target: Option<String>,
    /// Shorthand for a Discord channel target (the established syntax).
    #[serde(default)]
    pub channel_id: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Template variables for the narrative.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// Curators: how many pending posts one run is shown.
    #[serde(default)]
    pub batch_size: Option<u32>,
    #[serde(default, deserialize_with = "crate::duration::option_seconds")]
    pub run_timeout_seconds: Option<u64>,
}

fn yes() -> bool {
    true
}

/// A validated actor.
#[derive(Debug, Clone)]
pub struct Actor {
    pub name: String,
    pub narrative: Option<PathBuf>,
    pub schedule: Schedule,
    pub action: Action,
    pub target_name: String,
    pub target: Target,
    pub enabled: bool,
    pub vars: BTreeMap<String, String>,
    pub batch_size: u32,
    pub run_timeout_seconds: u64,
}

/// A loaded, validated config.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    pub server: ServerSettings,
    pub discord: DiscordSettings,
    pub providers: BTreeMap<String, ProviderSettings>,
    pub actors: Vec<Actor>,
}

/// A config that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    File(#[from] TomlFileError),
    #[error(
        "{path}{line}: `{key}` holds the value of {secret}, a secret: an actor's vars go into its narrative's prompts, which are sent to the model and can end up in a post; remove it (credentials are read only where they are used: DISCORD_TOKEN, provider keys, webhook URLs in [targets])"
    )]
    SecretInVars {
        path: PathBuf,
        /// `:LINE`, or empty when the line is unknown.
        line: String,
        key: String,
        /// Which secret: its variable's name, or the config key holding it.
        secret: String,
    },
    #[error("{path}: `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

impl Config {
    /// Loads and validates `path`.
    ///
    /// # Errors
    ///
    /// When the file cannot be read or parsed, or a value is invalid; the error names the file
    /// and the key.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::parse(path, &tomlfile::read(path)?, |name| {
            std::env::var(name).ok()
        })
    }

    /// Parses and validates `text` as the content of `path`, looking `${VAR}` up with `env`.
    ///
    /// # Errors
    ///
    /// See [`Config::load`]; also an actor's `vars` value that holds a secret
    /// ([`ConfigError::SecretInVars`]).
    pub fn parse(
        path: &Path,
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let doc = tomlfile::Interpolated::new(path, text, &env)?;
        let config = Self::from_file(path, doc.deserialize()?)?;
        let mut secrets = config.known_secrets(&env);
        for (name, value) in doc.secret_values() {
            secrets.add(name, value);
        }
        config.refuse_secrets_in_vars(&doc, &secrets)?;
        Ok(config)
    }

    /// The variables that hold this config's credentials: the bot token, the database URL
    /// and each provider's key (`api_key_env`, or the kind's default).
    pub fn credential_variables(&self) -> Vec<String> {
        let mut names: Vec<String> = ["DISCORD_TOKEN", "DATABASE_URL"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        for (name, provider) in &self.providers {
            let kind = provider
                .kind
                .or_else(|| crate::llm::ProviderKind::from_name(name));
            names.extend(provider.api_key_env.clone().or_else(|| {
                kind.and_then(|k| k.default_api_key_env())
                    .map(str::to_owned)
            }));
        }
        names.sort();
        names.dedup();
        names
    }

    /// The secrets this config can reach: its credentials' variables as `env` has them, and
    /// its webhook URLs.
    pub fn known_secrets(&self, env: impl Fn(&str) -> Option<String>) -> crate::secret::Known {
        let mut known = crate::secret::Known::default();
        known.add_vars(self.credential_variables().iter().map(String::as_str), env);
        self.add_webhooks(&mut known);
        known
    }

    /// The secrets of the process: every variable named like a secret, this config's
    /// credentials' variables, and its webhook URLs (for narratives' `[vars]` and `run --var`).
    pub fn process_secrets(&self) -> crate::secret::Known {
        let names = self.credential_variables();
        let mut known = crate::secret::Known::from_environment(names.iter().map(String::as_str));
        self.add_webhooks(&mut known);
        known
    }

    fn add_webhooks(&self, known: &mut crate::secret::Known) {
        for actor in &self.actors {
            if let Target::Webhook { url } = &actor.target {
                known.add(
                    format!("the webhook URL of target `{}`", actor.target_name),
                    url.expose(),
                );
            }
        }
    }

    /// Refuses an actor's `vars` value holding one of `secrets`, naming the line where it is.
    fn refuse_secrets_in_vars(
        &self,
        doc: &tomlfile::Interpolated,
        secrets: &crate::secret::Known,
    ) -> Result<(), ConfigError> {
        /// Only the actors' `vars`, with where each value stands in the file.
        #[derive(Deserialize)]
        struct Probe {
            #[serde(default)]
            actors: Vec<ProbeActor>,
        }
        #[derive(Deserialize)]
        struct ProbeActor {
            #[serde(default)]
            vars: BTreeMap<String, toml::Spanned<String>>,
        }
        // The file has parsed as a `ConfigFile` already, so this parse cannot fail on what it
        // reads; an error would only skip the line numbers, never the check below.
        let lines: Option<Probe> = toml::from_str(doc.text()).ok();
        for (index, actor) in self.actors.iter().enumerate() {
            for (var, value) in &actor.vars {
                let Some(secret) = secrets.found_in(value) else {
                    continue;
                };
                let line = lines
                    .as_ref()
                    .and_then(|probe| probe.actors.get(index)?.vars.get(var))
                    .map(|spanned| tomlfile::line_of(doc.text(), spanned.span().start));
                return Err(ConfigError::SecretInVars {
                    path: self.path.clone(),
                    line: line.map(|l| format!(":{l}")).unwrap_or_default(),
                    key: format!("actors[{index}].vars.{var}"),
                    secret: secret.to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Validates an already parsed file; `path` locates relative paths and names errors.
    ///
    /// # Errors
    ///
    /// See [`Config::load`].
    pub fn from_file(path: &Path, file: ConfigFile) -> Result<Self, ConfigError> {
        let invalid = |key: String, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            message,
        };
        // `checked` is a `Range::check`; its error becomes the key's.
        let in_range = |key: &str, checked: Result<u64, String>| {
            checked.map_err(|message| invalid(key.into(), message))
        };
        let base = path.parent().map(Path::to_owned).unwrap_or_default();
        let mut server = file.server;
        in_range(
            "server.check_interval_seconds",
            limits::CHECK_INTERVAL_SECONDS.check(server.check_interval_seconds),
        )?;
        in_range(
            "server.max_consecutive_failures",
            limits::MAX_CONSECUTIVE_FAILURES.check(server.max_consecutive_failures),
        )?;
        in_range(
            "server.circuit_cooldown_seconds",
            limits::CIRCUIT_COOLDOWN_SECONDS.check(server.circuit_cooldown_seconds),
        )?;
        in_range(
            "server.shutdown_grace_seconds",
            limits::SHUTDOWN_GRACE_SECONDS.check(server.shutdown_grace_seconds),
        )?;
        in_range(
            "server.run_timeout_seconds",
            limits::RUN_TIMEOUT_SECONDS.check(server.run_timeout_seconds),
        )?;
        in_range(
            "server.max_concurrent_runs",
            limits::MAX_CONCURRENT_RUNS.check(server.max_concurrent_runs),
        )?;
        in_range(
            "server.run_retention_days",
            limits::RUN_RETENTION_DAYS.check(server.run_retention_days),
        )?;
        in_range(
            "server.max_parts_per_post",
            limits::MAX_PARTS_PER_POST.check(server.max_parts_per_post),
        )?;
        in_range(
            "server.post_retention_days",
            limits::POST_RETENTION_DAYS.check(server.post_retention_days),
        )?;
        in_range(
            "discord.timeout_seconds",
            limits::DISCORD_TIMEOUT_SECONDS.check(file.discord.timeout_seconds),
        )?;
        for (name, provider) in &file.providers {
            provider.check_ranges().map_err(|(field, message)| {
                invalid(format!("providers.{name}.{field}"), message)
            })?;
        }
        if server.state_dir.is_relative() {
            server.state_dir = base.join(&server.state_dir);
        }
        url::Url::parse(&file.discord.base_url)
            .map_err(|e| invalid("discord.base_url".into(), format!("not a URL ({e})")))?;

        let mut targets = BTreeMap::new();
        for (name, spec) in &file.targets {
            let key = format!("targets.{name}");
            let target = match spec {
                TargetSpec::Discord { channel_id } => Target::Discord {
                    channel_id: parse_channel_id(channel_id)
                        .map_err(|m| invalid(format!("{key}.channel_id"), m))?,
                },
                TargetSpec::Webhook { url } => {
                    crate::discord::webhook_id(url.expose()).ok_or_else(|| {
                        invalid(
                            format!("{key}.url"),
                            "not a Discord webhook URL (expected https://discord.com/api/webhooks/ID/TOKEN)".into(),
                        )
                    })?;
                    Target::Webhook { url: url.clone() }
                }
                TargetSpec::Log => Target::Log,
            };
            targets.insert(name.clone(), target);
        }

        let mut actors = Vec::with_capacity(file.actors.len());
        let mut seen = std::collections::HashSet::new();
        for (index, spec) in file.actors.into_iter().enumerate() {
            let key = |field: &str| format!("actors[{index}].{field}");
            if !valid_name(&spec.name) {
                return Err(invalid(
                    key("name"),
                    format!(
                        "`{}` is not a valid actor name (use letters, digits, `_` and `-`, at most 64)",
                        spec.name
                    ),
                ));
            }
            if !seen.insert(spec.name.clone()) {
                return Err(invalid(
                    key("name"),
                    format!("actor `{}` is defined twice", spec.name),
                ));
            }
            let schedule = Schedule::from_spec(&spec.schedule).map_err(|e| match e {
                ScheduleError::OutOfRange { field, message }
                | ScheduleError::BadDuration { field, message } => {
                    invalid(key(&format!("schedule.{field}")), message)
                }
                e => invalid(key("schedule"), e.to_string()),
            })?;
            let batch_size = match spec.batch_size {
                Some(size) => {
                    in_range(&key("batch_size"), limits::BATCH_SIZE.check(size))?;
                    size
                }
                None => DEFAULT_BATCH_SIZE,
            };
            let run_timeout_seconds = match spec.run_timeout_seconds {
                Some(seconds) => in_range(
                    &key("run_timeout_seconds"),
                    limits::RUN_TIMEOUT_SECONDS.check(seconds),
                )?,
                None => server.run_timeout_seconds,
            };
            let narrative = match (&spec.narrative, spec.action) {
                (Some(p), _) => Some(base.join(p)),
                (None, Action::Publish) => None,
                (None, action) => {
                    return Err(invalid(
                        key("narrative"),
                        format!(
                            "actor `{}` has action `{}` and needs a narrative file",
                            spec.name,
                            action.as_str()
                        ),
                    ));
                }
            };
            let (target_name, target) = match (&spec.target, &spec.channel_id) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        key("target"),
                        "set either `target` or `channel_id`, not both".into(),
                    ));
                }
                (Some(name), None) => match targets.get(name) {
                    Some(t) => (name.clone(), t.clone()),
                    None => {
                        let known: Vec<_> = targets.keys().map(String::as_str).collect();
                        return Err(invalid(
                            key("target"),
                            format!(
                                "no target named `{name}` (defined: [{}]); add a [targets.{name}] table",
                                known.join(", ")
                            ),
                        ));
                    }
                },
                (None, Some(id)) => {
                    let channel_id =
                        parse_channel_id(id).map_err(|m| invalid(key("channel_id"), m))?;
                    (
                        format!("channel:{channel_id}"),
                        Target::Discord { channel_id },
                    )
                }
                (None, None) => {
                    return Err(invalid(
                        key("target"),
                        format!(
                            "actor `{}` has no target: set `target = \"NAME\"` (a [targets.NAME] table) or `channel_id`",
                            spec.name
                        ),
                    ));
                }
            };
            actors.push(Actor {
                name: spec.name,
                narrative,
                schedule,
                action: spec.action,
                target_name,
                target,
                enabled: spec.enabled,
                vars: spec.vars,
                batch_size,
                run_timeout_seconds,
            });
        }
        Ok(Self {
            path: path.to_owned(),
            server,
            discord: file.discord,
            providers: file.providers,
            actors,
        })
    }

    /// The actor named `name`.
    pub fn actor(&self, name: &str) -> Option<&Actor> {
        self.actors.iter().find(|a| a.name == name)
    }
}

/// Pending posts a curator is shown per run when its actor sets no `batch_size`.
const DEFAULT_BATCH_SIZE: u32 = 20;

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn parse_channel_id(value: &str) -> Result<u64, String> {
    match value.trim().parse::<u64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(format!(
            "`{value}` is not a Discord channel id (a number such as 123456789012345678)"
        )),
    }
}

#[cfg(test)]
mod tests;
