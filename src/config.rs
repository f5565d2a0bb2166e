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
    /// How long a run in flight may take to finish after SIGTERM.
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
            shutdown_grace_seconds: 30,
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
        let file: ConfigFile = tomlfile::load(path)?;
        Self::from_file(path, file)
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
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let file: ConfigFile =
            tomlfile::parse(Path::new("/etc/bot/actor_server.toml"), text, |_| None)?;
        Config::from_file(Path::new("/etc/bot/actor_server.toml"), file)
    }

    #[test]
    fn example_config_documents_the_defaults() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/actor_server.example.toml"
        ));
        let text = std::fs::read_to_string(path).unwrap();
        let env = |name: &str| {
            if name.ends_with("_FILE") {
                return None;
            }
            Some(match name {
                "DISCORD_CHANNEL_ID" => "123456789012345678".to_owned(),
                "DISCORD_WEBHOOK_URL" => "https://discord.com/api/webhooks/1/abc".to_owned(),
                _ => "x".to_owned(),
            })
        };
        let file: ConfigFile = tomlfile::parse(path, &text, env).unwrap();
        assert_eq!(
            file.server,
            ServerSettings {
                default_provider: file.server.default_provider.clone(),
                ..ServerSettings::default()
            }
        );
        assert_eq!(file.discord, DiscordSettings::default());
        Config::from_file(path, file).unwrap();
    }

    /// A webhook URL given as `${VAR}` (here read from `VAR_FILE`) is used, but shows neither
    /// in the config's `Debug` nor in the error for a URL that is not a webhook.
    #[test]
    fn webhook_url_from_a_file_is_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hook");
        let text = "[targets.hook]\ntype = \"webhook\"\nurl = \"${DISCORD_WEBHOOK_URL}\"\n\
                    [[actors]]\nname = \"a\"\nnarrative = \"n.toml\"\ntarget = \"hook\"\n\
                    [actors.schedule]\ntype = \"Immediate\"\n";
        let path = Path::new("/etc/bot/actor_server.toml");
        let load = |url: &str| {
            std::fs::write(&file, format!("{url}\n")).unwrap();
            let env = |name: &str| {
                (name == "DISCORD_WEBHOOK_URL_FILE").then(|| file.to_str().unwrap().to_owned())
            };
            let parsed: ConfigFile = tomlfile::parse(path, text, env)?;
            Config::from_file(path, parsed)
        };
        let url = "https://discord.com/api/webhooks/1/s3cret-token";
        let config = load(url).unwrap();
        assert_eq!(
            config.actors[0].target,
            Target::Webhook {
                url: Secret::new(url)
            }
        );
        assert!(!format!("{config:?}").contains("s3cret"));
        let e = load("https://example.com/s3cret-token")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "/etc/bot/actor_server.toml: `targets.hook.url`: not a Discord webhook URL (expected https://discord.com/api/webhooks/ID/TOKEN)"
        );
    }

    #[test]
    fn legacy_channel_id_is_a_discord_target() {
        let c = parse(
            "[[actors]]\nname = \"tip\"\nnarrative = \"n.toml\"\nchannel_id = \"42\"\n[actors.schedule]\ntype = \"Interval\"\nseconds = 5\n",
        )
        .unwrap();
        assert_eq!(c.actors[0].target, Target::Discord { channel_id: 42 });
        assert_eq!(
            c.actors[0].narrative.as_deref(),
            Some(Path::new("/etc/bot/n.toml"))
        );
        assert_eq!(c.server.state_dir, Path::new("/etc/bot/state"));
    }

    #[test]
    fn unknown_target_is_named() {
        let e = parse("[[actors]]\nname = \"tip\"\nnarrative = \"n.toml\"\ntarget = \"nope\"\n[actors.schedule]\ntype = \"Immediate\"\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "/etc/bot/actor_server.toml: `actors[0].target`: no target named `nope` (defined: []); add a [targets.nope] table"
        );
    }

    const INTERVAL_ACTOR: &str = "[[actors]]\nname = \"tip\"\nnarrative = \"n.toml\"\ntarget = \"log\"\n[actors.schedule]\ntype = \"Interval\"\n";
    const LOG_TARGET: &str = "[targets.log]\ntype = \"log\"\n";

    /// A number out of range is refused with the file, the key, the allowed range and the
    /// value, for server, Discord, provider, schedule and actor keys, zero and huge alike.
    #[test]
    fn numbers_out_of_range_are_named_with_their_range() {
        let schedule = |lines: &str| format!("{LOG_TARGET}{INTERVAL_ACTOR}{lines}");
        let actor = |lines: &str| {
            format!(
                "{LOG_TARGET}{}seconds = 60\n",
                INTERVAL_ACTOR.replace("[actors.schedule]", &format!("{lines}[actors.schedule]"))
            )
        };
        for (text, key, message) in [
            (
                "[server]\ncheck_interval_seconds = 86401\n".to_owned(),
                "server.check_interval_seconds",
                "must be between 1 and 86400 (a day), not 86401",
            ),
            (
                "[server]\ncheck_interval_seconds = 0\n".to_owned(),
                "server.check_interval_seconds",
                "must be between 1 and 86400 (a day), not 0",
            ),
            (
                "[server]\ncircuit_cooldown_seconds = 9223372036854775807\n".to_owned(),
                "server.circuit_cooldown_seconds",
                "must be between 0 and 315360000 (10 years), not 9223372036854775807",
            ),
            (
                "[server]\nmax_concurrent_runs = 0\n".to_owned(),
                "server.max_concurrent_runs",
                "must be between 1 and 1000, not 0",
            ),
            (
                "[server]\nrun_retention_days = 36501\n".to_owned(),
                "server.run_retention_days",
                "must be between 0 and 36500 (100 years), not 36501",
            ),
            (
                "[server]\nshutdown_grace_seconds = 86401\n".to_owned(),
                "server.shutdown_grace_seconds",
                "must be between 0 and 86400 (a day), not 86401",
            ),
            (
                "[discord]\ntimeout_seconds = 0\n".to_owned(),
                "discord.timeout_seconds",
                "must be between 1 and 86400 (a day), not 0",
            ),
            (
                "[providers.gemini]\nmax_backoff_seconds = 86401\n".to_owned(),
                "providers.gemini.max_backoff_seconds",
                "must be between 0 and 86400 (a day), not 86401",
            ),
            (
                schedule("seconds = 9223372036854775807\n"),
                "actors[0].schedule.seconds",
                "must be between 1 and 315360000 (10 years), not 9223372036854775807",
            ),
            (
                schedule("seconds = -5\n"),
                "actors[0].schedule.seconds",
                "must be between 1 and 315360000 (10 years), not -5",
            ),
            (
                schedule("seconds = 60\njitter_seconds = 61\n"),
                "actors[0].schedule.jitter_seconds",
                "must be between 0 and 60 (the interval `seconds`), not 61",
            ),
            (
                schedule("seconds = 315360000\njitter_seconds = 31536001\n"),
                "actors[0].schedule.jitter_seconds",
                "must be between 0 and 31536000 (a year), not 31536001",
            ),
            (
                actor("batch_size = 0\n"),
                "actors[0].batch_size",
                "must be between 1 and 1000, not 0",
            ),
            (
                actor("run_timeout_seconds = 86401\n"),
                "actors[0].run_timeout_seconds",
                "must be between 1 and 86400 (a day), not 86401",
            ),
        ] {
            let e = parse(&text).expect_err(&text).to_string();
            assert_eq!(
                e,
                format!("/etc/bot/actor_server.toml: `{key}`: {message}"),
                "{text}"
            );
        }
    }

    /// Every numeric key at its maximum loads: the limits are inclusive.
    #[test]
    fn numbers_at_their_maximum_load() {
        let text = format!(
            "[server]\ncheck_interval_seconds = 86400\nmax_consecutive_failures = 1000\ncircuit_cooldown_seconds = 315360000\n\
             shutdown_grace_seconds = 86400\nrun_timeout_seconds = 86400\nmax_concurrent_runs = 1000\n\
             run_retention_days = 36500\nmax_parts_per_post = 100\npost_retention_days = 36500\n\
             [discord]\ntimeout_seconds = 86400\n\
             [providers.gemini]\ntimeout_seconds = 86400\nmax_backoff_seconds = 86400\n\
             {LOG_TARGET}{}seconds = 315360000\njitter_seconds = 31536000\n",
            INTERVAL_ACTOR.replace(
                "[actors.schedule]",
                "batch_size = 1000\nrun_timeout_seconds = 86400\n[actors.schedule]"
            )
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.server.circuit_cooldown_seconds, 10 * limits::YEAR);
        assert_eq!(c.actors[0].batch_size, 1000);
        assert!(matches!(
            c.actors[0].schedule,
            Schedule::Interval {
                seconds: 315_360_000,
                jitter_seconds: 31_536_000
            }
        ));
    }

    /// Schedule types are lowercase like every other enum of the config; the PascalCase
    /// spelling of earlier versions still loads.
    #[test]
    fn schedule_types_are_lowercase_with_the_old_spelling_accepted() {
        for (lower, pascal, rest) in [
            ("interval", "Interval", "seconds = 60\n"),
            ("cron", "Cron", "expression = \"0 9 * * *\"\n"),
            ("immediate", "Immediate", ""),
            ("once", "Once", "at = \"2030-01-01T00:00:00Z\"\n"),
        ] {
            for ty in [lower, pascal] {
                let text = format!(
                    "{LOG_TARGET}{}",
                    INTERVAL_ACTOR
                        .replace("type = \"Interval\"\n", &format!("type = \"{ty}\"\n{rest}"))
                );
                let c = parse(&text).unwrap_or_else(|e| panic!("{ty}: {e}"));
                assert!(
                    c.actors[0]
                        .schedule
                        .describe()
                        .to_lowercase()
                        .contains(match lower {
                            "interval" => "every",
                            other => other,
                        }),
                    "{ty}"
                );
            }
        }
    }

    /// Durations take a number of seconds or a string with a unit, for schedule, server,
    /// Discord and actor keys; the ranges apply to the seconds.
    #[test]
    fn durations_take_units() {
        let text = format!(
            "[server]\ncheck_interval_seconds = \"2m\"\ncircuit_cooldown_seconds = \"1d\"\n\
             shutdown_grace_seconds = \"90s\"\nrun_timeout_seconds = \"1h\"\n\
             [discord]\ntimeout_seconds = \"30s\"\n\
             [providers.gemini]\ntimeout_seconds = \"2m\"\nmax_backoff_seconds = \"1m30s\"\n\
             {LOG_TARGET}{}seconds = \"15m\"\njitter_seconds = \"1m30s\"\n",
            INTERVAL_ACTOR.replace(
                "[actors.schedule]",
                "run_timeout_seconds = \"2h\"\n[actors.schedule]"
            )
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.server.check_interval_seconds, 120);
        assert_eq!(c.server.circuit_cooldown_seconds, 86_400);
        assert_eq!(c.server.shutdown_grace_seconds, 90);
        assert_eq!(c.server.run_timeout_seconds, 3_600);
        assert_eq!(c.discord.timeout_seconds, 30);
        assert_eq!(c.providers["gemini"].timeout_seconds, Some(120));
        assert_eq!(c.providers["gemini"].max_backoff_seconds, Some(90));
        assert_eq!(c.actors[0].run_timeout_seconds, 7_200);
        assert!(matches!(
            c.actors[0].schedule,
            Schedule::Interval {
                seconds: 900,
                jitter_seconds: 90
            }
        ));
    }

    /// A duration that is not one is refused naming the key and the accepted forms; one out
    /// of range names the range in seconds.
    #[test]
    fn bad_durations_name_the_key_and_the_forms() {
        let accepted = crate::duration::ACCEPTED;
        let e = parse(&format!(
            "{LOG_TARGET}{INTERVAL_ACTOR}seconds = \"15 minutes\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            format!(
                "/etc/bot/actor_server.toml: `actors[0].schedule.seconds`: `15 minutes` is not a duration: expected {accepted}"
            )
        );
        let e = parse("[server]\ncheck_interval_seconds = \"1w\"\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!(
                "/etc/bot/actor_server.toml:2: `server.check_interval_seconds`: `1w` is not a duration: expected {accepted}"
            )
        );
        let e = parse("[server]\ncheck_interval_seconds = \"2d\"\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "/etc/bot/actor_server.toml: `server.check_interval_seconds`: must be between 1 and 86400 (a day), not 172800"
        );
    }

    #[test]
    fn bad_schedule_type_is_a_parse_error_with_line() {
        let e = parse("[[actors]]\nname = \"tip\"\nnarrative = \"n.toml\"\n[actors.schedule]\ntype = \"Weekly\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "/etc/bot/actor_server.toml:5: `actors[0].schedule.type`: unknown variant `Weekly`"
            ),
            "{e}"
        );
        assert!(e.contains("Weekly"), "{e}");
    }
}
