//! [`LlmError`]: every way one LLM call can fail, classified so that callers (the retry loop,
//! the runner, metrics) can branch on the cause without parsing messages.
//!
//! Messages carry the provider's own explanation, but never an API key: the client redacts the
//! key from every text it puts in an error (see [`LlmError::redact`]).

use std::time::Duration;

/// Why an LLM call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LlmError {
    /// The narrative or config names a provider that is not configured.
    #[error("unknown LLM provider `{name}`")]
    UnknownProvider { name: String },

    /// The provider needs a key and none was found.
    #[error("provider `{provider}` needs an API key: set {env_var} (or {env_var}_FILE)")]
    MissingApiKey { provider: String, env_var: String },

    /// The key was rejected (HTTP 401/403, or Gemini's 400 "API key not valid"); retrying
    /// cannot help.
    #[error("provider `{provider}` rejected the API key (HTTP {status}): {message}")]
    Auth {
        provider: String,
        status: u16,
        message: String,
    },

    /// The account is out of quota or credit (daily quota, billing); retrying within the run
    /// cannot help.
    #[error("provider `{provider}` quota exhausted: {message}")]
    QuotaExhausted { provider: String, message: String },

    /// The provider asks us to slow down (HTTP 429); retryable, after `retry_after` if given.
    #[error("provider `{provider}` is rate limiting{}: {message}", after_suffix(.retry_after))]
    RateLimited {
        provider: String,
        retry_after: Option<Duration>,
        message: String,
    },

    /// The provider failed (HTTP 5xx, including Anthropic's 529 "overloaded"); retryable.
    #[error("provider `{provider}` server error (HTTP {status}): {message}")]
    Server {
        provider: String,
        status: u16,
        message: String,
    },

    /// The provider rejected the request (other 4xx): unknown model, bad parameter, prompt too
    /// long. Retrying the same request cannot help.
    #[error("provider `{provider}` rejected the request (HTTP {status}): {message}")]
    BadRequest {
        provider: String,
        status: u16,
        message: String,
    },

    /// No complete answer within `timeout_seconds`; retryable.
    #[error("provider `{provider}` did not answer within {seconds}s")]
    Timeout { provider: String, seconds: u64 },

    /// The connection failed (refused, reset, DNS, TLS); retryable.
    #[error("provider `{provider}` cannot be reached: {message}")]
    Transport { provider: String, message: String },

    /// A success status came with a body we do not understand.
    #[error(
        "provider `{provider}` sent a response that cannot be read: {message} (body: {body_excerpt})"
    )]
    Decode {
        provider: String,
        message: String,
        body_excerpt: String,
    },

    /// The provider answered but gave no text: the prompt or the answer was blocked (Gemini
    /// `blockReason`, safety stop, refusal) or the answer was cut off before any text.
    #[error("provider `{provider}` returned no answer: {reason}")]
    NoAnswer { provider: String, reason: String },

    /// The answer was longer than the provider's `max_response_bytes`; not retried.
    #[error(
        "provider `{provider}` sent a response over {max_bytes} bytes (max_response_bytes): not read"
    )]
    TooLarge { provider: String, max_bytes: u64 },

    /// The provider's settings cannot work (bad URL, zero limit, unreadable key file, no model).
    #[error("provider `{provider}` has invalid settings: {reason}")]
    InvalidSettings { provider: String, reason: String },
}

fn after_suffix(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(delay) => format!(" (retry after {:.1}s)", delay.as_secs_f64()),
        None => String::new(),
    }
}

impl LlmError {
    /// Whether the same request may succeed if sent again later: rate limits, server errors,
    /// timeouts and connection failures.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::Server { .. }
                | Self::Timeout { .. }
                | Self::Transport { .. }
        )
    }

    /// The delay the provider asked for before the next attempt, if it named one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The provider the error is about (for [`LlmError::UnknownProvider`], the unknown name).
    pub fn provider(&self) -> &str {
        match self {
            Self::UnknownProvider { name } => name,
            Self::MissingApiKey { provider, .. }
            | Self::Auth { provider, .. }
            | Self::QuotaExhausted { provider, .. }
            | Self::RateLimited { provider, .. }
            | Self::Server { provider, .. }
            | Self::BadRequest { provider, .. }
            | Self::Timeout { provider, .. }
            | Self::Transport { provider, .. }
            | Self::Decode { provider, .. }
            | Self::NoAnswer { provider, .. }
            | Self::TooLarge { provider, .. }
            | Self::InvalidSettings { provider, .. } => provider,
        }
    }

    /// A short label from a fixed set, for metrics and log fields (bounded cardinality).
    pub fn kind_label(&self) -> &'static str {
        match self {
            Self::UnknownProvider { .. } => "unknown_provider",
            Self::MissingApiKey { .. } => "missing_api_key",
            Self::Auth { .. } => "auth",
            Self::QuotaExhausted { .. } => "quota",
            Self::RateLimited { .. } => "rate_limited",
            Self::Server { .. } => "server",
            Self::BadRequest { .. } => "bad_request",
            Self::Timeout { .. } => "timeout",
            Self::Transport { .. } => "transport",
            Self::Decode { .. } => "decode",
            Self::NoAnswer { .. } => "no_answer",
            Self::TooLarge { .. } => "too_large",
            Self::InvalidSettings { .. } => "invalid_settings",
        }
    }

    /// Replaces every occurrence of `secret` in the error's texts by `***`.
    ///
    /// Providers sometimes echo (part of) the key they were sent; the error may then end up in
    /// logs, the state store or Discord, so the client scrubs it before returning the error.
    #[must_use]
    pub fn redact(self, secret: &str) -> Self {
        if secret.is_empty() {
            return self;
        }
        let scrub = |text: String| {
            if text.contains(secret) {
                text.replace(secret, "***")
            } else {
                text
            }
        };
        match self {
            Self::Auth {
                provider,
                status,
                message,
            } => Self::Auth {
                provider,
                status,
                message: scrub(message),
            },
            Self::QuotaExhausted { provider, message } => Self::QuotaExhausted {
                provider,
                message: scrub(message),
            },
            Self::RateLimited {
                provider,
                retry_after,
                message,
            } => Self::RateLimited {
                provider,
                retry_after,
                message: scrub(message),
            },
            Self::Server {
                provider,
                status,
                message,
            } => Self::Server {
                provider,
                status,
                message: scrub(message),
            },
            Self::BadRequest {
                provider,
                status,
                message,
            } => Self::BadRequest {
                provider,
                status,
                message: scrub(message),
            },
            Self::Transport { provider, message } => Self::Transport {
                provider,
                message: scrub(message),
            },
            Self::Decode {
                provider,
                message,
                body_excerpt,
            } => Self::Decode {
                provider,
                message: scrub(message),
                body_excerpt: scrub(body_excerpt),
            },
            Self::NoAnswer { provider, reason } => Self::NoAnswer {
                provider,
                reason: scrub(reason),
            },
            Self::InvalidSettings { provider, reason } => Self::InvalidSettings {
                provider,
                reason: scrub(reason),
            },
            other @ (Self::UnknownProvider { .. }
            | Self::MissingApiKey { .. }
            | Self::TooLarge { .. }
            | Self::Timeout { .. }) => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_key_message_names_both_variables() {
        let err = LlmError::MissingApiKey {
            provider: "gemini".into(),
            env_var: "GEMINI_API_KEY".into(),
        };
        assert_eq!(
            err.to_string(),
            "provider `gemini` needs an API key: set GEMINI_API_KEY (or GEMINI_API_KEY_FILE)"
        );
    }

    #[test]
    fn rate_limited_message_shows_the_delay() {
        let err = LlmError::RateLimited {
            provider: "openai".into(),
            retry_after: Some(Duration::from_millis(2500)),
            message: "slow down".into(),
        };
        assert_eq!(
            err.to_string(),
            "provider `openai` is rate limiting (retry after 2.5s): slow down"
        );
        assert!(err.is_retryable());
        assert_eq!(err.kind_label(), "rate_limited");
    }

    #[test]
    fn redact_scrubs_the_key_everywhere() {
        let err = LlmError::Auth {
            provider: "openai".into(),
            status: 401,
            message: "Incorrect API key provided: sk-secret".into(),
        }
        .redact("sk-secret");
        assert!(!err.to_string().contains("sk-secret"));
        assert!(!format!("{err:?}").contains("sk-secret"));
        assert!(!err.is_retryable());
    }
}
