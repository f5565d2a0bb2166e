//! One configured provider as built from its settings: its API key (read once, from the
//! environment or given), retry policy, rate limits, default model and wire-format client, and
//! one attempt of a call on it.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;

use url::Url;

use super::anthropic::AnthropicClient;
use super::gemini::GeminiClient;
use super::http::{self, HttpTarget};
use super::offline::OfflineClient;
use super::openai::OpenAiClient;
use super::ratelimit::RateLimits;
use super::retry::RetryPolicy;
use super::{LlmError, LlmRequest, LlmResponse, MaxTokensField, ProviderKind, ProviderSettings};
use crate::secret::Secret;

const DEFAULT_TIMEOUT_SECONDS: u64 = 60;
const DEFAULT_MAX_RETRIES: u32 = 4;
const DEFAULT_MAX_BACKOFF_SECONDS: u64 = 60;

/// Where API keys come from.
pub(super) enum KeySource<'a> {
    /// `api_key_env` (or its default) and `*_FILE`, via [`Secret::from_env`].
    Environment,
    /// Exactly these keys, by provider name; the environment is not read.
    Given(&'a BTreeMap<String, Secret>),
}

/// What we know about a provider's key.
#[derive(Debug)]
enum KeyState {
    Present(Secret),
    Missing,
    /// `NAME_FILE` is set but unreadable; the text names the variable and path, not the key.
    Unreadable(String),
}

/// One configured provider.
#[derive(Debug)]
pub(super) struct Provider {
    pub(super) name: String,
    pub(super) kind: ProviderKind,
    /// The variable to tell the user about when the key is missing.
    env_var: Option<String>,
    key: KeyState,
    /// Whether calls fail without a key (see [`LlmClients::check_ready`](super::LlmClients::check_ready)).
    key_required: bool,
    pub(super) default_model: Option<String>,
    pub(super) retry: RetryPolicy,
    pub(super) limits: RateLimits,
    backend: Backend,
}

#[derive(Debug)]
enum Backend {
    Gemini(GeminiClient),
    Openai(OpenAiClient),
    Anthropic(AnthropicClient),
    Offline(OfflineClient),
}

impl Provider {
    pub(super) fn new(
        name: &str,
        settings: &ProviderSettings,
        keys: &KeySource<'_>,
        client: &reqwest::Client,
    ) -> Result<Self, LlmError> {
        let invalid = |reason: String| LlmError::InvalidSettings {
            provider: name.to_owned(),
            reason,
        };
        let kind = settings
            .kind
            .or_else(|| ProviderKind::from_name(name))
            .ok_or_else(|| {
                invalid(
                    "`kind` is required (gemini, openai, anthropic or offline) since the name is not one of them"
                        .to_owned(),
                )
            })?;
        settings
            .check_ranges()
            .map_err(|(key, message)| invalid(format!("{key} {message}")))?;
        let timeout_seconds = settings.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS);
        let nonzero = |value: Option<u32>, field: &str| match value {
            None => Ok(None),
            Some(value) => NonZeroU32::new(value).map(Some).ok_or_else(|| {
                invalid(format!("{field} must be at least 1 (omit it for no limit)"))
            }),
        };
        let limits = RateLimits::new(
            nonzero(settings.requests_per_minute, "requests_per_minute")?,
            nonzero(settings.tokens_per_minute, "tokens_per_minute")?,
        );
        let retry = RetryPolicy {
            max_retries: settings.max_retries.unwrap_or(DEFAULT_MAX_RETRIES),
            max_backoff: Duration::from_secs(
                settings
                    .max_backoff_seconds
                    .unwrap_or(DEFAULT_MAX_BACKOFF_SECONDS),
            ),
        };

        let public_api = settings.base_url.is_none();
        let base = match settings.base_url.as_deref().or(kind.default_base_url()) {
            Some(base) if kind != ProviderKind::Offline => {
                Some(parse_base_url(base).map_err(invalid)?)
            }
            _ => None,
        };
        // The OpenAI key goes only to OpenAI: a custom base_url (Ollama, a third-party
        // compatible server) gets a key only when api_key_env says which one.
        let env_var = settings.api_key_env.clone().or_else(|| match kind {
            ProviderKind::Openai if !public_api => None,
            _ => kind.default_api_key_env().map(str::to_owned),
        });
        let key_required = match kind {
            ProviderKind::Gemini | ProviderKind::Anthropic => true,
            ProviderKind::Openai => public_api || settings.api_key_env.is_some(),
            ProviderKind::Offline => false,
        };
        let key = match (keys, &env_var) {
            (KeySource::Given(keys), _) => keys
                .get(name)
                .cloned()
                .map_or(KeyState::Missing, KeyState::Present),
            (KeySource::Environment, Some(var)) => match Secret::from_env(var) {
                Ok(Some(secret)) => KeyState::Present(secret),
                Ok(None) => KeyState::Missing,
                Err(reason) => KeyState::Unreadable(reason),
            },
            (KeySource::Environment, None) => KeyState::Missing,
        };
        let default_model = settings.default_model.clone().or_else(|| {
            (public_api || kind == ProviderKind::Offline).then(|| kind.default_model().to_owned())
        });

        let max_response_bytes = settings
            .max_response_bytes
            .unwrap_or(http::DEFAULT_MAX_RESPONSE_BYTES);
        if max_response_bytes == 0 {
            return Err(invalid("max_response_bytes must be at least 1".to_owned()));
        }
        // OpenAI's own API, whether by default or named in base_url.
        let openai_api =
            public_api || base.as_ref().and_then(Url::host_str) == Some("api.openai.com");
        let max_tokens_field =
            max_tokens_field(kind, settings.max_tokens_field, openai_api).map_err(invalid)?;
        let http = HttpTarget::new(name, client.clone(), timeout_seconds)
            .with_max_response_bytes(max_response_bytes);
        let backend = match (kind, base) {
            (ProviderKind::Gemini, Some(base)) => Backend::Gemini(GeminiClient::new(http, base)),
            (ProviderKind::Openai, Some(base)) => {
                Backend::Openai(OpenAiClient::new(http, base, max_tokens_field)?)
            }
            (ProviderKind::Anthropic, Some(base)) => {
                Backend::Anthropic(AnthropicClient::new(http, base)?)
            }
            _ => Backend::Offline(OfflineClient),
        };
        Ok(Self {
            name: name.to_owned(),
            kind,
            env_var,
            key,
            key_required,
            default_model,
            retry,
            limits,
            backend,
        })
    }

    /// The key to send, `None` when the provider needs none and has none.
    pub(super) fn key(&self) -> Result<Option<&Secret>, LlmError> {
        match &self.key {
            KeyState::Present(secret) => Ok(Some(secret)),
            KeyState::Unreadable(reason) => Err(LlmError::InvalidSettings {
                provider: self.name.clone(),
                reason: reason.clone(),
            }),
            KeyState::Missing if self.key_required => Err(self.missing_key()),
            KeyState::Missing => Ok(None),
        }
    }

    fn missing_key(&self) -> LlmError {
        LlmError::MissingApiKey {
            provider: self.name.clone(),
            env_var: self
                .env_var
                .clone()
                .unwrap_or_else(|| format!("{}_API_KEY", self.name.to_uppercase())),
        }
    }

    /// One attempt, no rate limit, no retry.
    pub(super) async fn call(
        &self,
        request: &LlmRequest,
        model: &str,
        key: Option<&Secret>,
    ) -> Result<LlmResponse, LlmError> {
        match (&self.backend, key) {
            (Backend::Gemini(client), Some(key)) => client.complete(request, model, key).await,
            (Backend::Anthropic(client), Some(key)) => client.complete(request, model, key).await,
            (Backend::Openai(client), key) => client.complete(request, model, key).await,
            (Backend::Offline(client), _) => Ok(client.complete(request, model)),
            // Not reached: these kinds always require a key, so `key()` already refused.
            (Backend::Gemini(_) | Backend::Anthropic(_), None) => Err(self.missing_key()),
        }
    }
}

/// Parses and checks a `base_url`.
fn parse_base_url(base: &str) -> Result<Url, String> {
    let url = Url::parse(base).map_err(|err| format!("base_url `{base}` is not a URL: {err}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("base_url `{base}` must be http or https"));
    }
    if url.cannot_be_a_base() {
        return Err(format!("base_url `{base}` cannot take a path"));
    }
    Ok(url)
}

/// The field an act's token limit goes in: `max_tokens_field` when set (kind openai only),
/// else `max_completion_tokens` for OpenAI's own API and `max_tokens` for compatible servers.
fn max_tokens_field(
    kind: ProviderKind,
    configured: Option<MaxTokensField>,
    openai_api: bool,
) -> Result<MaxTokensField, String> {
    match (kind, configured) {
        (ProviderKind::Openai, Some(field)) => Ok(field),
        (ProviderKind::Openai, None) if openai_api => Ok(MaxTokensField::MaxCompletionTokens),
        (_, None) => Ok(MaxTokensField::MaxTokens),
        (_, Some(_)) => Err(format!(
            "max_tokens_field is for kind openai only ({kind} has one token limit field): remove it"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_limit_field_per_provider() {
        use MaxTokensField::*;
        let field = max_tokens_field;
        assert_eq!(
            field(ProviderKind::Openai, None, true),
            Ok(MaxCompletionTokens)
        );
        assert_eq!(field(ProviderKind::Openai, None, false), Ok(MaxTokens));
        assert_eq!(
            field(ProviderKind::Openai, Some(MaxCompletionTokens), false),
            Ok(MaxCompletionTokens)
        );
        assert_eq!(
            field(ProviderKind::Openai, Some(MaxTokens), true),
            Ok(MaxTokens)
        );
        assert!(
            field(ProviderKind::Gemini, Some(MaxTokens), true)
                .unwrap_err()
                .contains("for kind openai only")
        );
    }
}
