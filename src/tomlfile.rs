//! Reading TOML files into typed structs with errors a user can act on.
//!
//! Every error names the file, the key path (`actors[1].schedule.seconds`) and, where TOML
//! gives a position, the line. Unknown keys are errors (`deny_unknown_fields` on every table),
//! so a typo is reported instead of silently ignored. In the server config, `${VAR}` references
//! are replaced from the environment before parsing: the variable `VAR`, or the content of the
//! file named by `VAR_FILE` (see [`crate::secret::lookup`]), or the default of
//! `${VAR:-default}`; an unset variable without a default is an error naming it. Values taken
//! from secrets (a secret's name, or any `VAR_FILE`) are replaced by `***` in error messages.
//! Narratives are read without the environment ([`load_literal`]): their text goes to a model,
//! so `${VAR}` stays text there, and a reference to a secret's name is refused.

use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// A TOML file that could not be read or understood.
#[derive(Debug, thiserror::Error)]
pub enum TomlFileError {
    #[error("{path}: cannot read the file")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}{}: {}{message}", line.map(|l| format!(":{l}")).unwrap_or_default(), key.as_ref().map(|k| format!("`{k}`: ")).unwrap_or_default())]
    Parse {
        path: PathBuf,
        line: Option<usize>,
        key: Option<String>,
        message: String,
    },
    #[error(
        "{path}:{line}: environment variable {var} is not set (referenced as `${{{var}}}`); export it (or {var}_FILE, the path of a file holding it), give a default as `${{{var}:-default}}`, or put its value in the file"
    )]
    UnsetVariable {
        path: PathBuf,
        line: usize,
        var: String,
    },
    #[error("{path}:{line}: {source}")]
    Variable {
        path: PathBuf,
        line: usize,
        #[source]
        source: crate::secret::EnvValueError,
    },
    #[error(
        "{path}:{line}: `${{{var}}}` names a secret, and a narrative's text is sent to the model as it is (narratives do not read environment variables): remove it"
    )]
    SecretReference {
        path: PathBuf,
        line: usize,
        var: String,
    },
}

pub use crate::secret::is_secret_name;

/// Reads and parses `path` without the environment: `${VAR}` is text, except that a reference
/// to a secret's name ([`is_secret_name`]) is an error.
///
/// # Errors
///
/// When the file cannot be read, names a secret, or the content does not match `T`.
pub fn load_literal<T: DeserializeOwned>(path: &Path) -> Result<T, TomlFileError> {
    parse_literal(path, &read(path)?)
}

/// The text of `path`.
///
/// # Errors
///
/// [`TomlFileError::Io`] naming the file when it cannot be read.
pub fn read(path: &Path) -> Result<String, TomlFileError> {
    std::fs::read_to_string(path).map_err(|source| TomlFileError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Parses `text` as the content of `path` without the environment (see [`load_literal`]).
///
/// # Errors
///
/// See [`load_literal`].
pub fn parse_literal<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, TomlFileError> {
    for (index, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(start) = rest.find("${") {
            let tail = &rest[start + 2..];
            let Some(end) = tail.find('}') else { break };
            let var = tail[..end].split(":-").next().unwrap_or_default().trim();
            if is_secret_name(var) {
                return Err(TomlFileError::SecretReference {
                    path: path.to_owned(),
                    line: index + 1,
                    var: var.to_owned(),
                });
            }
            rest = &tail[end + 1..];
        }
    }
    deserialize(path, text)
}

/// Reads and parses `path`.
///
/// # Errors
///
/// When the file cannot be read, a `${VAR}` is unset, or the content does not match `T`.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, TomlFileError> {
    parse(path, &read(path)?, |name| std::env::var(name).ok())
}

/// Parses `text` as the content of `path`, looking `${VAR}` up with `env`.
///
/// # Errors
///
/// See [`load`].
pub fn parse<T: DeserializeOwned>(
    path: &Path,
    text: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<T, TomlFileError> {
    Interpolated::new(path, text, env)?.deserialize()
}

/// A file's text with its `${VAR}` references replaced ([`interpolate`]), and the secrets that
/// went into it.
pub struct Interpolated {
    path: PathBuf,
    text: String,
    /// Each secret's variable and value, to keep them out of errors and templates.
    secrets: Vec<(String, String)>,
}

impl Interpolated {
    /// Replaces the `${VAR}` references of `text` (the content of `path`) using `env`.
    ///
    /// # Errors
    ///
    /// When a variable is unset without a default, or cannot be read.
    pub fn new(
        path: &Path,
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, TomlFileError> {
        let (text, secrets) = interpolate(path, text, env)?;
        Ok(Self {
            path: path.to_owned(),
            text,
            secrets,
        })
    }

    /// The text after interpolation: its lines are the file's lines.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The secrets that went into the text (variables named like one, or read from a file):
    /// each variable's name and value.
    pub fn secret_values(&self) -> impl Iterator<Item = (&str, &str)> {
        self.secrets
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
    }

    /// The text parsed as `T`; secrets in a parse error's quote are replaced by `***`.
    ///
    /// # Errors
    ///
    /// When the content does not match `T`.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, TomlFileError> {
        deserialize(&self.path, &self.text).map_err(|err| redact(err, &self.secrets))
    }
}

/// The 1-based line of byte `offset` in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

fn deserialize<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, TomlFileError> {
    let parse_error = |err: toml::de::Error, key: Option<String>| {
        // Syntax errors (e.g. "duplicate key") carry no key path; the span's text names it.
        let key = key.or_else(|| {
            let span = err.span()?;
            let snippet = text.get(span)?.lines().next()?.trim();
            (!snippet.is_empty() && snippet.len() <= 80).then(|| snippet.to_owned())
        });
        TomlFileError::Parse {
            path: path.to_owned(),
            line: err.span().map(|span| line_of(text, span.start)),
            key,
            message: err.message().trim().to_owned(),
        }
    };
    let deserializer = toml::Deserializer::parse(text).map_err(|err| parse_error(err, None))?;
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let key = err.path().to_string();
        let key = (key != ".").then_some(key);
        parse_error(err.into_inner(), key)
    })
}

/// Replaces `${NAME}` (or `${NAME:-default}`) with the variable's value ([`crate::secret::lookup`]:
/// `NAME`, or the file named by `NAME_FILE`; an empty variable counts as unset, as with the
/// shell's `:-`), escaped for a TOML basic string (where such references belong), so a value
/// cannot change the file's structure. `$${` is a literal `${`. Comment lines are left alone,
/// so a commented-out reference needs no variable. Returns the text and the values that are
/// secrets (named like one, or read from a file), each with its variable's name, for
/// [`redact`] and [`Interpolated::secrets`].
///
/// Hand-written: no maintained crate does "environment interpolation with line-numbered errors"
/// without also bringing a template language the config does not want.
fn interpolate(
    path: &Path,
    text: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(String, Vec<(String, String)>), TomlFileError> {
    let mut secrets = Vec::new();
    if !text.contains("${") {
        return Ok((text.to_owned(), secrets));
    }
    let mut out = String::with_capacity(text.len());
    for (index, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find('$') {
            out.push_str(&rest[..start]);
            let after = &rest[start..];
            if let Some(tail) = after.strip_prefix("$${") {
                out.push_str("${");
                rest = tail;
            } else if let Some(tail) = after.strip_prefix("${")
                && let Some(end) = tail.find('}')
            {
                let (var, default) = match tail[..end].split_once(":-") {
                    Some((var, default)) => (var, Some(default)),
                    None => (&tail[..end], None),
                };
                let found =
                    crate::secret::lookup(var, &env).map_err(|source| TomlFileError::Variable {
                        path: path.to_owned(),
                        line: index + 1,
                        source,
                    })?;
                let value = match (found, default) {
                    (Some(value), _) => {
                        let from_file = env(&format!("{var}_FILE")).is_some_and(|v| !v.is_empty());
                        if (from_file || is_secret_name(var)) && !value.is_empty() {
                            secrets.push((var.to_owned(), value.clone()));
                        }
                        value
                    }
                    (None, Some(default)) => default.to_owned(),
                    (None, None) => {
                        return Err(TomlFileError::UnsetVariable {
                            path: path.to_owned(),
                            line: index + 1,
                            var: var.to_owned(),
                        });
                    }
                };
                for c in value.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        '\n' => out.push_str("\\n"),
                        '\r' => out.push_str("\\r"),
                        '\t' => out.push_str("\\t"),
                        c => out.push(c),
                    }
                }
                rest = &tail[end + 1..];
            } else {
                out.push('$');
                rest = &after[1..];
            }
        }
        out.push_str(rest);
    }
    Ok((out, secrets))
}

/// `err` with every secret in `secrets` replaced by `***`: a parse error quotes the text
/// around it, which may hold an interpolated token or webhook URL.
fn redact(err: TomlFileError, secrets: &[(String, String)]) -> TomlFileError {
    let clean = |text: String| {
        secrets.iter().fold(text, |text, (_, secret)| {
            text.replace(secret.as_str(), "***")
        })
    };
    match err {
        TomlFileError::Parse {
            path,
            line,
            key,
            message,
        } => TomlFileError::Parse {
            path,
            line,
            key: key.map(clean),
            message: clean(message),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        name: String,
        #[serde(default)]
        inner: Vec<Inner>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[allow(dead_code)]
        seconds: u64,
    }

    /// Secret names are recognised; ordinary ones are not.
    #[test]
    fn secret_names() {
        for name in [
            "DISCORD_TOKEN",
            "GEMINI_API_KEY",
            "OPENAI_API_KEY",
            "DATABASE_URL",
            "DISCORD_WEBHOOK_URL",
            "DISCORD_TOKEN_FILE",
            "MY_SECRET",
            "db_password",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in ["TOPIC", "HOME", "KEYBOARD", "MONKEY_NAME", "LANG"] {
            assert!(!is_secret_name(name), "{name}");
        }
    }

    /// Without the environment `${VAR}` stays text, and a secret's name is refused with the
    /// file and line.
    #[test]
    fn literal_files_keep_references_and_refuse_secrets() {
        let ok: Outer = parse_literal(Path::new("n.toml"), "name = \"cost: ${PRICE}\"\n").unwrap();
        assert_eq!(ok.name, "cost: ${PRICE}");
        let e = parse_literal::<Outer>(Path::new("n.toml"), "\nname = \"leak ${DISCORD_TOKEN}\"\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "n.toml:2: `${DISCORD_TOKEN}` names a secret, and a narrative's text is sent to the model as it is (narratives do not read environment variables): remove it"
        );
    }

    fn env(name: &str) -> Option<String> {
        (name == "CHANNEL").then(|| "12\"3".to_owned())
    }

    #[test]
    fn interpolates_and_escapes() {
        let o: Outer = parse(
            Path::new("a.toml"),
            "name = \"x${CHANNEL}y\"\n# ${UNSET}\n",
            env,
        )
        .unwrap();
        assert_eq!(o.name, "x12\"3y");
        assert!(o.inner.is_empty());
    }

    #[test]
    fn unset_variable_is_named_with_line() {
        let e = parse::<Outer>(Path::new("a.toml"), "\nname = \"${NOPE}\"\n", env).unwrap_err();
        assert_eq!(
            e.to_string(),
            "a.toml:2: environment variable NOPE is not set (referenced as `${NOPE}`); export it (or NOPE_FILE, the path of a file holding it), give a default as `${NOPE:-default}`, or put its value in the file"
        );
    }

    /// `${VAR:-default}` takes the default when VAR (and VAR_FILE) is unset or empty, and
    /// the variable when it is set; an empty default is allowed.
    #[test]
    fn default_syntax() {
        let none = |_: &str| None;
        let o: Outer = parse(Path::new("a.toml"), "name = \"${NOPE:-fall back}\"\n", none).unwrap();
        assert_eq!(o.name, "fall back");
        let o: Outer = parse(Path::new("a.toml"), "name = \"a${NOPE:-}b\"\n", none).unwrap();
        assert_eq!(o.name, "ab");
        let o: Outer = parse(Path::new("a.toml"), "name = \"${CHANNEL:-no}\"\n", env).unwrap();
        assert_eq!(o.name, "12\"3");
        let empty = |name: &str| (name == "EMPTY").then(String::new);
        let o: Outer = parse(Path::new("a.toml"), "name = \"${EMPTY:-d}\"\n", empty).unwrap();
        assert_eq!(o.name, "d");
    }

    /// `${VAR}` reads the file named by `VAR_FILE` (trailing newline trimmed); both set is an
    /// error naming both and the line; an unreadable file names the variable and the path.
    #[test]
    fn file_variables() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hook");
        std::fs::write(&file, "https://discord.com/api/webhooks/1/tok\n").unwrap();
        let file = file.to_str().unwrap().to_owned();
        let from_file = |name: &str| (name == "HOOK_FILE").then(|| file.clone());
        let o: Outer = parse(Path::new("a.toml"), "name = \"${HOOK}\"\n", from_file).unwrap();
        assert_eq!(o.name, "https://discord.com/api/webhooks/1/tok");

        let both = |name: &str| match name {
            "HOOK" => Some("v".to_owned()),
            "HOOK_FILE" => Some(file.clone()),
            _ => None,
        };
        let e = parse::<Outer>(Path::new("a.toml"), "\nname = \"${HOOK}\"\n", both)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("a.toml:2: both HOOK and HOOK_FILE are set: set only one"),
            "{e}"
        );

        let missing = |name: &str| (name == "HOOK_FILE").then(|| "/nonexistent/hook".to_owned());
        let e = parse::<Outer>(Path::new("a.toml"), "name = \"${HOOK}\"\n", missing)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "a.toml:1: HOOK_FILE=/nonexistent/hook: cannot read the file (entity not found); fix the path or unset HOOK_FILE"
        );
    }

    /// A parse error quoting text that holds a secret's value shows `***` instead.
    #[test]
    fn secrets_are_redacted_from_parse_errors() {
        let token = |name: &str| (name == "BOT_TOKEN").then(|| "s3cr3t-value".to_owned());
        let e = parse::<Outer>(
            Path::new("a.toml"),
            "name = \"a\"\nname = \"${BOT_TOKEN}\"\n",
            token,
        )
        .unwrap_err()
        .to_string();
        assert!(!e.contains("s3cr3t-value"), "{e}");
        #[derive(Debug, Deserialize)]
        enum Kind {
            A,
        }
        #[derive(Debug, Deserialize)]
        struct Tagged {
            #[allow(dead_code)]
            kind: Kind,
        }
        let e = parse::<Tagged>(Path::new("a.toml"), "kind = \"${BOT_TOKEN}\"\n", token)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "a.toml:1: `kind`: unknown variant `***`, expected `A`");
    }

    #[test]
    fn unknown_key_names_file_key_and_line() {
        let text = "name = \"x\"\n\n[[inner]]\nseconds = 1\n[[inner]]\nsecnds = 2\n";
        let e = parse::<Outer>(Path::new("b.toml"), text, env)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("b.toml:6: `inner[1].secnds`: unknown field `secnds`"),
            "{e}"
        );
    }

    #[test]
    fn duplicate_key_names_the_key() {
        let e = parse::<Outer>(Path::new("d.toml"), "name = \"a\"\nname = \"b\"\n", env)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "d.toml:2: `name`: duplicate key");
    }

    #[test]
    fn wrong_type_names_key() {
        let e = parse::<Outer>(Path::new("c.toml"), "name = 3\n", env)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("c.toml:1: `name`: invalid type"), "{e}");
    }
}
