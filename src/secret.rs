//! Secrets: reading them from the environment (`NAME` or a file named by `NAME_FILE`), and a
//! string type that never prints its value (API keys, the Discord bot token, webhook URLs).
//!
//! `Secret` has no `Display`, and its `Debug` prints `***`, so a secret cannot end up in a log
//! line, an error message, a metric label or a span attribute by accident.
//!
//! [`Known`] holds the values of the secrets the process can see, so that no value which
//! reaches a template (an actor's `vars`, a narrative's `[vars]`, `run --var`) carries one:
//! what a template renders is sent to the model and can end up in a post.

use std::fmt;

/// A variable that names a secret (or a config value) but cannot be used; the message names
/// the variable(s) and a file's path, never a value or a file's content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvValueError {
    #[error(
        "both {name} and {name}_FILE are set: set only one ({name} holds the value, {name}_FILE the path of a file holding it; an empty file counts as unset)"
    )]
    BothSet { name: String },
    #[error(
        "{name}_FILE={path}: cannot read the file ({reason}); fix the path or unset {name}_FILE"
    )]
    Unreadable {
        name: String,
        path: String,
        reason: String,
    },
}

/// The value of `name` from the variables `get` looks up: `NAME` itself, or the content of the
/// file named by `NAME_FILE` (trailing newlines trimmed, as `echo` and editors leave one), the
/// form compose and Kubernetes secrets mounted as files take. An empty variable or an empty
/// file counts as unset, so a deployment can mount an empty secret file for a credential it
/// does not use (`just init-secrets` creates them) and still take the value from `NAME`.
/// `Ok(None)` when neither holds a value.
///
/// Every secret the server reads comes through here ([`Secret::from_env`]), as does every
/// `${NAME}` in the config (see [`crate::tomlfile`]).
///
/// # Errors
///
/// When both `NAME` and the file of `NAME_FILE` hold a value (which one would win is a guess),
/// or `NAME_FILE` names a file that cannot be read.
pub fn lookup(
    name: &str,
    get: impl Fn(&str) -> Option<String>,
) -> Result<Option<String>, EnvValueError> {
    let file_var = format!("{name}_FILE");
    let value = get(name).filter(|v| !v.is_empty());
    let from_file = match get(&file_var).filter(|v| !v.is_empty()) {
        None => None,
        Some(path) => match std::fs::read_to_string(&path) {
            Ok(content) => Some(content.trim_end_matches(['\n', '\r']).to_owned()),
            Err(err) => {
                return Err(EnvValueError::Unreadable {
                    name: name.to_owned(),
                    reason: err.kind().to_string(),
                    path,
                });
            }
        },
    }
    .filter(|content| !content.is_empty());
    match (value, from_file) {
        (Some(_), Some(_)) => Err(EnvValueError::BothSet {
            name: name.to_owned(),
        }),
        (value, from_file) => Ok(value.or(from_file)),
    }
}

/// [`lookup`] in the process environment.
///
/// # Errors
///
/// See [`lookup`].
pub fn from_env(name: &str) -> Result<Option<String>, EnvValueError> {
    lookup(name, |var| std::env::var(var).ok())
}

/// A secret value read from the environment or a `*_FILE` path.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is sent to the service it belongs to.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Reads `NAME` from the environment, or the file named by `NAME_FILE` (see [`lookup`]).
    /// `Ok(None)` when neither is set.
    ///
    /// # Errors
    ///
    /// When both are set, or `NAME_FILE` is set but the file cannot be read; the message names
    /// the variables and the path, never the content.
    pub fn from_env(name: &str) -> Result<Option<Self>, String> {
        from_env(name)
            .map(|value| value.map(Self))
            .map_err(|err| err.to_string())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A secret in a config file (a webhook URL): read as a string, never printed.
impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self)
    }
}

/// Whether an environment variable's name says it holds a secret: the bot token, the database
/// URL, provider keys, webhook URLs, and anything named like a token, key, secret or password.
pub fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_uppercase();
    let name = name.strip_suffix("_FILE").unwrap_or(&name);
    name == "DATABASE_URL"
        || name.contains("WEBHOOK")
        || [
            "TOKEN",
            "KEY",
            "SECRET",
            "PASSWORD",
            "PASSWD",
            "CREDENTIALS",
        ]
        .iter()
        .any(|word| name == *word || name.ends_with(&format!("_{word}")))
}

/// The values of the secrets a process can see, each with where it comes from (a variable's
/// name, or the config key that holds it), to refuse any of them in a value that reaches a
/// template: a narrative's prompts are sent to the model, and its answer is posted.
#[derive(Default, Clone)]
pub struct Known {
    entries: Vec<(String, String)>,
}

impl fmt::Debug for Known {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.entries.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("Known").field("names", &names).finish()
    }
}

impl Known {
    /// Values shorter than this are not looked for: a 3-character "key" in a test setup would
    /// match ordinary words, and no real credential is this short.
    pub const MIN_CHARS: usize = 8;

    /// Adds `value`, the secret called `name` (`DISCORD_TOKEN`, `the webhook URL of
    /// [targets.hook]`); an empty or very short value is ignored.
    pub fn add(&mut self, name: impl Into<String>, value: &str) {
        let value = value.trim();
        if value.chars().count() >= Self::MIN_CHARS
            && !self.entries.iter().any(|(_, known)| known == value)
        {
            self.entries.push((name.into(), value.to_owned()));
        }
    }

    /// Adds the secret read by [`lookup`] under each of `names` (a variable or its `_FILE`
    /// form). A variable that cannot be read is skipped: reading it for use reports the error.
    pub fn add_vars<'a>(
        &mut self,
        names: impl IntoIterator<Item = &'a str>,
        get: impl Fn(&str) -> Option<String>,
    ) {
        for name in names {
            if let Ok(Some(value)) = lookup(name, &get) {
                self.add(name, &value);
            }
        }
    }

    /// The secrets of the process environment: every variable named like a secret
    /// ([`is_secret_name`], or its `_FILE` form), and the variables of `names` whatever they
    /// are called (an API key in a variable a provider's `api_key_env` names).
    pub fn from_environment<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut known = Self::default();
        let mut secret_names: Vec<String> = std::env::vars_os()
            .filter_map(|(name, _)| name.into_string().ok())
            .filter(|name| is_secret_name(name))
            .map(|name| match name.strip_suffix("_FILE") {
                Some(base) => base.to_owned(),
                None => name,
            })
            .collect();
        secret_names.extend(names.into_iter().map(str::to_owned));
        secret_names.sort();
        secret_names.dedup();
        known.add_vars(secret_names.iter().map(String::as_str), |var| {
            std::env::var(var).ok()
        });
        known
    }

    /// The name of the first secret whose value `text` contains.
    pub fn found_in(&self, text: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(_, value)| text.contains(value.as_str()))
            .map(|(name, _)| name.as_str())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn debug_hides_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    /// A variable lookup over `pairs`, for the tests of what reads secrets (here, the OTLP
    /// headers).
    pub(crate) fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    /// `NAME` is read as is; `NAME_FILE` reads the file with its trailing newline trimmed;
    /// empty variables count as unset; neither is `None`.
    #[test]
    fn reads_the_variable_or_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file\n").unwrap();
        let path = file.to_str().unwrap();
        assert_eq!(
            lookup("TOKEN", vars(&[("TOKEN", "plain")])),
            Ok(Some("plain".into()))
        );
        assert_eq!(
            lookup("TOKEN", vars(&[("TOKEN_FILE", path)])),
            Ok(Some("from-file".into()))
        );
        assert_eq!(
            lookup("TOKEN", vars(&[("TOKEN", ""), ("TOKEN_FILE", path)])),
            Ok(Some("from-file".into()))
        );
        assert_eq!(lookup("TOKEN", vars(&[])), Ok(None));
        // An empty secret file (mounted for a credential not in use) is unset too.
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let empty = empty.to_str().unwrap();
        assert_eq!(lookup("TOKEN", vars(&[("TOKEN_FILE", empty)])), Ok(None));
        assert_eq!(
            lookup("TOKEN", vars(&[("TOKEN", "plain"), ("TOKEN_FILE", empty)])),
            Ok(Some("plain".into()))
        );
    }

    /// Both holding a value is an error naming both variables, not a silent choice.
    #[test]
    fn both_set_is_an_error_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file\n").unwrap();
        let err = lookup(
            "DISCORD_TOKEN",
            vars(&[
                ("DISCORD_TOKEN", "a"),
                ("DISCORD_TOKEN_FILE", file.to_str().unwrap()),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("both DISCORD_TOKEN and DISCORD_TOKEN_FILE are set"),
            "{err}"
        );
    }

    /// An unreadable file is named with its variable and path.
    #[test]
    fn unreadable_file_names_variable_and_path() {
        let err = lookup(
            "GEMINI_API_KEY",
            vars(&[("GEMINI_API_KEY_FILE", "/nonexistent/key")]),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "GEMINI_API_KEY_FILE=/nonexistent/key: cannot read the file (entity not found); fix the path or unset GEMINI_API_KEY_FILE"
        );
    }

    /// A secret's value is found inside a longer text and named; short values are ignored,
    /// and `Debug` shows names only.
    #[test]
    fn known_values_are_found_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "key-from-a-file-123\n").unwrap();
        let mut known = Known::default();
        known.add_vars(
            ["DISCORD_TOKEN", "GEMINI_API_KEY", "SHORT"],
            vars(&[
                ("DISCORD_TOKEN", "MTIz.bot-token.xyz"),
                ("GEMINI_API_KEY_FILE", file.to_str().unwrap()),
                ("SHORT", "abc"),
            ]),
        );
        known.add(
            "the webhook URL of [targets.hook]",
            "https://discord.com/api/webhooks/1/tok",
        );
        assert_eq!(
            known.found_in("say MTIz.bot-token.xyz now"),
            Some("DISCORD_TOKEN")
        );
        assert_eq!(
            known.found_in("key-from-a-file-123"),
            Some("GEMINI_API_KEY")
        );
        assert_eq!(
            known.found_in("post to https://discord.com/api/webhooks/1/tok"),
            Some("the webhook URL of [targets.hook]")
        );
        assert_eq!(known.found_in("abc"), None);
        assert_eq!(known.found_in("nothing here"), None);
        let debug = format!("{known:?}");
        assert!(!debug.contains("bot-token"), "{debug}");
        assert!(debug.contains("DISCORD_TOKEN"), "{debug}");
    }
}
