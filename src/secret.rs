//! A string that must never be printed: API keys, the Discord bot token, webhook URLs.
//!
//! `Secret` has no `Display`, and its `Debug` prints `***`, so a secret cannot end up in a log
//! line, an error message, a metric label or a span attribute by accident.

use std::fmt;

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

    /// Reads `NAME` from the environment, or the file named by `NAME_FILE` (trailing newline
    /// removed). `Ok(None)` when neither is set.
    ///
    /// # Errors
    ///
    /// When `NAME_FILE` is set but the file cannot be read; the message names the variable and
    /// the path, never the content.
    pub fn from_env(name: &str) -> Result<Option<Self>, String> {
        if let Ok(value) = std::env::var(name)
            && !value.is_empty()
        {
            return Ok(Some(Self(value)));
        }
        let file_var = format!("{name}_FILE");
        match std::env::var(&file_var) {
            Ok(path) if !path.is_empty() => match std::fs::read_to_string(&path) {
                Ok(content) => Ok(Some(Self(
                    content.trim_end_matches(['\n', '\r']).to_owned(),
                ))),
                Err(err) => Err(format!("{file_var}={path}: cannot read the file: {err}")),
            },
            _ => Ok(None),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
