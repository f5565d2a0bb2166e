//! What the server config says about one provider: [`ProviderSettings`] (a `[providers.NAME]`
//! table) and [`ProviderKind`] (its wire protocol, with the public API's defaults per kind).

use std::fmt;

/// Settings of one provider, deserialized from `[providers.NAME]` in the server config TOML.
#[derive(Debug, Clone, Default, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    /// Optional when the table name is one of the four kinds (`[providers.gemini]`); required
    /// otherwise (`[providers.ollama] kind = "openai"`).
    pub kind: Option<ProviderKind>,
    /// Default per kind: `https://generativelanguage.googleapis.com`,
    /// `https://api.openai.com/v1`, `https://api.anthropic.com`; unused by offline.
    pub base_url: Option<String>,
    /// Name of the environment variable holding the key (`NAME_FILE` also accepted). Default
    /// per kind: `GEMINI_API_KEY`, `ANTHROPIC_API_KEY`; `OPENAI_API_KEY` for kind openai only
    /// when `base_url` is unset, so that the OpenAI key is never sent to another server.
    pub api_key_env: Option<String>,
    pub default_model: Option<String>,
    /// Bound of one HTTP exchange; default 60 (seconds, or a duration such as `"2m"`).
    #[serde(default, deserialize_with = "crate::duration::option_seconds")]
    pub timeout_seconds: Option<u64>,
    /// Retries after the first attempt; default 4.
    pub max_retries: Option<u32>,
    /// Local request budget; default unlimited.
    pub requests_per_minute: Option<u32>,
    /// Local token budget (estimated, see [`LlmClients::complete`](super::LlmClients::complete)); default unlimited.
    pub tokens_per_minute: Option<u32>,
    /// Cap of one backoff wait, including a provider's `Retry-After`; default 60 (seconds, or a
    /// duration such as `"1m"`).
    #[serde(default, deserialize_with = "crate::duration::option_seconds")]
    pub max_backoff_seconds: Option<u64>,
    /// Longest response body read; a longer one fails the call; default 1 MiB.
    pub max_response_bytes: Option<u64>,
    /// Kind openai only: the request field carrying an act's `max_tokens`. Default
    /// `max_completion_tokens` for OpenAI's own API (`base_url` unset or on
    /// `api.openai.com`: its reasoning and GPT-5 models refuse `max_tokens` with a 400),
    /// `max_tokens` for any other server (Ollama, vLLM, llama.cpp and older compatible
    /// servers know only that one).
    pub max_tokens_field: Option<MaxTokensField>,
}

/// The name under which an OpenAI-compatible request carries the answer's token limit.
#[derive(Debug, Clone, Copy, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MaxTokensField {
    /// `max_tokens`: the original field, deprecated by OpenAI, refused by its reasoning models.
    MaxTokens,
    /// `max_completion_tokens`: OpenAI's current field (visible and reasoning tokens).
    MaxCompletionTokens,
}

impl MaxTokensField {
    /// The JSON field name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MaxTokens => "max_tokens",
            Self::MaxCompletionTokens => "max_completion_tokens",
        }
    }
}

impl ProviderSettings {
    /// Checks the numeric keys that become durations against their ranges
    /// ([`crate::limits::PROVIDER_TIMEOUT_SECONDS`], [`crate::limits::MAX_BACKOFF_SECONDS`]).
    /// Both the config loader (which names the file and `providers.NAME.KEY`) and
    /// [`LlmClients::new`](super::LlmClients::new) (for `bot-server run`, which reads no more of the config) call it.
    ///
    /// # Errors
    ///
    /// The first key out of range and the message naming its range.
    pub fn check_ranges(&self) -> Result<(), (&'static str, String)> {
        use crate::limits;
        let keys = [
            (
                "timeout_seconds",
                limits::PROVIDER_TIMEOUT_SECONDS,
                self.timeout_seconds,
            ),
            (
                "max_backoff_seconds",
                limits::MAX_BACKOFF_SECONDS,
                self.max_backoff_seconds,
            ),
        ];
        for (key, range, value) in keys {
            if let Some(value) = value {
                range.check(value).map_err(|message| (key, message))?;
            }
        }
        Ok(())
    }
}

/// The wire protocol of a provider.
#[derive(Debug, Clone, Copy, serde::Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Gemini,
    Openai,
    Anthropic,
    Offline,
}

impl ProviderKind {
    /// Every kind, in documentation order.
    pub const ALL: [ProviderKind; 4] = [Self::Gemini, Self::Openai, Self::Anthropic, Self::Offline];

    /// The lowercase name used in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gemini => "gemini",
            Self::Openai => "openai",
            Self::Anthropic => "anthropic",
            Self::Offline => "offline",
        }
    }

    /// The kind whose name is `name`, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// The public API root used when `base_url` is unset.
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            Self::Gemini => Some("https://generativelanguage.googleapis.com"),
            Self::Openai => Some("https://api.openai.com/v1"),
            Self::Anthropic => Some("https://api.anthropic.com"),
            Self::Offline => None,
        }
    }

    /// The environment variable of the key of the public API.
    pub fn default_api_key_env(self) -> Option<&'static str> {
        match self {
            Self::Gemini => Some("GEMINI_API_KEY"),
            Self::Openai => Some("OPENAI_API_KEY"),
            Self::Anthropic => Some("ANTHROPIC_API_KEY"),
            Self::Offline => None,
        }
    }

    /// The model used when neither the request nor the settings name one, for the public API.
    pub(super) fn default_model(self) -> &'static str {
        match self {
            Self::Gemini => "gemini-2.5-flash",
            Self::Openai => "gpt-4o-mini",
            Self::Anthropic => "claude-haiku-4-5",
            Self::Offline => "offline",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
