//! Durations in the config: a number of seconds (`seconds = 90`) or a string with a unit
//! (`"90s"`, `"15m"`, `"2h"`, `"1d"`, combined as `"1h30m"`).
//!
//! A tiny parser rather than `humantime`: that crate also takes sub-second units, months and
//! years of fractional days, which a key counted in whole seconds would have to refuse one by
//! one, and its errors cannot name the accepted forms. The ranges stay those of
//! [`crate::limits`], checked on the number of seconds.

use serde::de::{self, Deserializer, Visitor};
use std::fmt;

/// The forms a duration key accepts, for error messages.
pub const ACCEPTED: &str = "a number of seconds (90) or a string with a unit: \"90s\", \"15m\", \"2h\", \"1d\" (or combined, \"1h30m\")";

/// A duration as written: a TOML integer, or a string with units. Kept as written until
/// it is checked, so that a schedule's error can name its field (serde cannot inside an
/// internally tagged enum).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationSpec {
    Seconds(i64),
    Text(String),
}

impl Default for DurationSpec {
    fn default() -> Self {
        Self::Seconds(0)
    }
}

impl DurationSpec {
    /// The number of seconds (negative for a negative integer, which the key's range refuses
    /// with its own message).
    ///
    /// # Errors
    ///
    /// A string that is not a duration; the message names the accepted forms.
    pub fn seconds(&self) -> Result<i64, String> {
        match self {
            Self::Seconds(seconds) => Ok(*seconds),
            Self::Text(text) => parse(text),
        }
    }
}

/// Parses `"90"`, `"90s"`, `"15m"`, `"2h"`, `"1d"`, `"1h30m"` (spaces allowed between parts)
/// into seconds.
///
/// # Errors
///
/// Anything else, or a value too large for an `i64`; the message names the accepted forms.
pub fn parse(text: &str) -> Result<i64, String> {
    let bad = || format!("`{text}` is not a duration: expected {ACCEPTED}");
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(bad());
    }
    if trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return trimmed.parse().map_err(|_| bad());
    }
    let mut total: i64 = 0;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let number: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = rest[digits..].trim_start();
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = match &rest[..unit_len] {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            _ => return Err(bad()),
        };
        rest = rest[unit_len..].trim_start();
        total = number
            .checked_mul(unit)
            .and_then(|part| total.checked_add(part))
            .ok_or_else(bad)?;
    }
    Ok(total)
}

impl<'de> de::Deserialize<'de> for DurationSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SpecVisitor;
        impl Visitor<'_> for SpecVisitor {
            type Value = DurationSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(ACCEPTED)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationSpec, E> {
                Ok(DurationSpec::Seconds(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DurationSpec, E> {
                i64::try_from(v)
                    .map(DurationSpec::Seconds)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationSpec, E> {
                Ok(DurationSpec::Text(v.to_owned()))
            }
        }
        deserializer.deserialize_any(SpecVisitor)
    }
}

/// For `#[serde(deserialize_with)]` on a `u64` key counted in seconds.
///
/// # Errors
///
/// A value that is not a duration, or a negative one.
pub fn seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let spec = <DurationSpec as de::Deserialize>::deserialize(deserializer)?;
    let seconds = spec.seconds().map_err(de::Error::custom)?;
    u64::try_from(seconds).map_err(|_| {
        de::Error::custom(format!(
            "a duration cannot be negative (`{seconds}`): expected {ACCEPTED}"
        ))
    })
}

/// [`seconds`] for an optional key (with `#[serde(default)]`).
///
/// # Errors
///
/// See [`seconds`].
pub fn option_seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    seconds(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_plain_numbers() {
        for (text, seconds) in [
            ("90", 90),
            ("90s", 90),
            ("15m", 900),
            ("2h", 7_200),
            ("1d", 86_400),
            ("1h30m", 5_400),
            (" 1h 30m ", 5_400),
            ("0s", 0),
        ] {
            assert_eq!(parse(text), Ok(seconds), "{text}");
        }
    }

    #[test]
    fn other_text_names_the_accepted_forms() {
        for text in [
            "",
            "m",
            "1.5h",
            "10 minutes",
            "-5s",
            "1w",
            "5ms",
            "99999999999999999999d",
        ] {
            assert_eq!(
                parse(text),
                Err(format!("`{text}` is not a duration: expected {ACCEPTED}")),
                "{text}"
            );
        }
    }
}
