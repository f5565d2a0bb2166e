//! Reading TOML files into typed structs with errors a user can act on.
//!
//! Every error names the file, the key path (`actors[1].schedule.seconds`) and, where TOML
//! gives a position, the line. Unknown keys are errors (`deny_unknown_fields` on every table),
//! so a typo is reported instead of silently ignored. `${VAR}` references are replaced from the
//! environment before parsing; an unset variable is an error naming it.

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
        "{path}:{line}: environment variable {var} is not set (referenced as `${{{var}}}`); export it, or put its value in the file"
    )]
    UnsetVariable {
        path: PathBuf,
        line: usize,
        var: String,
    },
}

/// Reads and parses `path`.
///
/// # Errors
///
/// When the file cannot be read, a `${VAR}` is unset, or the content does not match `T`.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, TomlFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| TomlFileError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text, |name| std::env::var(name).ok())
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
    let text = interpolate(path, text, env)?;
    let parse_error = |err: toml::de::Error, key: Option<String>| {
        // Syntax errors (e.g. "duplicate key") carry no key path; the span's text names it.
        let key = key.or_else(|| {
            let span = err.span()?;
            let snippet = text.get(span)?.lines().next()?.trim();
            (!snippet.is_empty() && snippet.len() <= 80).then(|| snippet.to_owned())
        });
        TomlFileError::Parse {
            path: path.to_owned(),
            line: err.span().map(|span| line_of(&text, span.start)),
            key,
            message: err.message().trim().to_owned(),
        }
    };
    let deserializer = toml::Deserializer::parse(&text).map_err(|err| parse_error(err, None))?;
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let key = err.path().to_string();
        let key = (key != ".").then_some(key);
        parse_error(err.into_inner(), key)
    })
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

/// Replaces `${NAME}` with the variable's value, escaped for a TOML basic string (where such
/// references belong), so a value cannot change the file's structure. `$${` is a literal `${`.
/// Comment lines are left alone, so a commented-out reference needs no variable.
///
/// Hand-written: no maintained crate does "environment interpolation with line-numbered errors"
/// without also bringing a template language the config does not want.
fn interpolate(
    path: &Path,
    text: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<String, TomlFileError> {
    if !text.contains("${") {
        return Ok(text.to_owned());
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
                let var = &tail[..end];
                let value = env(var).ok_or_else(|| TomlFileError::UnsetVariable {
                    path: path.to_owned(),
                    line: index + 1,
                    var: var.to_owned(),
                })?;
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
    Ok(out)
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
            "a.toml:2: environment variable NOPE is not set (referenced as `${NOPE}`); export it, or put its value in the file"
        );
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
