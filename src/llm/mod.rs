//! LLM providers: the request and response types, the per-provider settings of the server
//! config, and [`LlmClients`], the process-wide set of providers that every actor shares.
//!
//! This module owns the whole path of one LLM call: API keys (read once, never printed), the
//! local rate limits (requests and tokens per minute, shared by all callers), the HTTP timeout,
//! retries with exponential backoff that honour the provider's `Retry-After`, and the mapping
//! of each provider's wire format and error bodies to [`LlmResponse`] and [`LlmError`].
//!
//! Providers: Gemini ([`ProviderKind::Gemini`]), OpenAI and compatible servers such as Ollama
//! ([`ProviderKind::Openai`]), Anthropic ([`ProviderKind::Anthropic`]), and an offline
//! deterministic provider for demos and tests ([`ProviderKind::Offline`]).
//!
//! All waiting (backoff, rate limits) uses tokio's clock, so tests on a paused clock run
//! instantly.

mod anthropic;
mod error;
mod gemini;
mod http;
mod offline;
mod openai;
mod ratelimit;
mod retry;

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use serde_json::Value;
use url::Url;

use self::anthropic::AnthropicClient;
pub use self::error::LlmError;
use self::gemini::GeminiClient;
use self::http::HttpTarget;
use self::offline::OfflineClient;
use self::openai::OpenAiClient;
use self::ratelimit::RateLimits;
use self::retry::RetryPolicy;
use crate::secret::Secret;

/// One LLM call.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmRequest {
    /// The model id; empty means the provider's default model.
    pub model: String,
    pub system: Option<String>,
    pub prompt: String,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    /// The caller will parse the answer as JSON (providers that support a JSON mode may enable
    /// it; the offline provider changes its output, see its module doc).
    pub json: bool,
}

/// The answer to one [`LlmRequest`].
#[derive(Debug, Clone, PartialEq)]
pub struct LlmResponse {
    pub text: String,
    /// The model that answered, as the provider reports it (may be more specific than asked).
    pub model: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Retries this call needed.
    pub retries: u32,
    /// Total time spent waiting on the local rate limiter.
    pub rate_limit_wait: Duration,
}

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
    /// Bound of one HTTP exchange; default 60.
    pub timeout_seconds: Option<u64>,
    /// Retries after the first attempt; default 4.
    pub max_retries: Option<u32>,
    /// Local request budget; default unlimited.
    pub requests_per_minute: Option<u32>,
    /// Local token budget (estimated, see [`LlmClients::complete`]); default unlimited.
    pub tokens_per_minute: Option<u32>,
    /// Cap of one backoff wait, including a provider's `Retry-After`; default 60.
    pub max_backoff_seconds: Option<u64>,
    /// Longest response body read; a longer one fails the call; default 1 MiB.
    pub max_response_bytes: Option<u64>,
}

impl ProviderSettings {
    /// Checks the numeric keys that become durations against their ranges
    /// ([`crate::limits::PROVIDER_TIMEOUT_SECONDS`], [`crate::limits::MAX_BACKOFF_SECONDS`]).
    /// Both the config loader (which names the file and `providers.NAME.KEY`) and
    /// [`LlmClients::new`] (for `bot-server run`, which reads no more of the config) call it.
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
    fn default_model(self) -> &'static str {
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

const DEFAULT_TIMEOUT_SECONDS: u64 = 60;
const DEFAULT_MAX_RETRIES: u32 = 4;
const DEFAULT_MAX_BACKOFF_SECONDS: u64 = 60;

/// All providers of the process, shared by every actor: cloning is cheap and clones share the
/// rate limiters and HTTP connection pools, which are created once here.
#[derive(Clone)]
pub struct LlmClients {
    providers: Arc<BTreeMap<String, Provider>>,
    /// Told the provider's name at every retry (see [`LlmClients::observe_retries`]).
    on_retry: Option<RetryObserver>,
    /// Told every finished call (see [`LlmClients::observe_calls`]).
    on_call: Option<CallObserver>,
}

type RetryObserver = Arc<dyn Fn(&str) + Send + Sync>;
type CallObserver = Arc<dyn Fn(&LlmCall<'_>) + Send + Sync>;

/// One finished call, as reported to [`LlmClients::observe_calls`] (the server's metrics).
#[derive(Debug, Clone, Copy)]
pub struct LlmCall<'a> {
    pub provider: &'a str,
    /// The model asked for.
    pub model: &'a str,
    /// `success`, or the error's [`LlmError::kind_label`].
    pub outcome: &'a str,
    /// From the first attempt to the answer, retries and rate-limit waits included.
    pub duration: Duration,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Time spent waiting on the local rate limiter.
    pub rate_limit_wait: Duration,
}

impl fmt::Debug for LlmClients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.providers.iter().map(|(name, p)| (name, p.kind)))
            .finish()
    }
}

/// Where API keys come from.
enum KeySource<'a> {
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
struct Provider {
    name: String,
    kind: ProviderKind,
    /// The variable to tell the user about when the key is missing.
    env_var: Option<String>,
    key: KeyState,
    /// Whether calls fail without a key (see [`LlmClients::check_ready`]).
    key_required: bool,
    default_model: Option<String>,
    retry: RetryPolicy,
    limits: RateLimits,
    backend: Backend,
}

#[derive(Debug)]
enum Backend {
    Gemini(GeminiClient),
    Openai(OpenAiClient),
    Anthropic(AnthropicClient),
    Offline(OfflineClient),
}

impl LlmClients {
    /// Builds clients for the configured providers plus built-in defaults: the four names
    /// `gemini`, `openai`, `anthropic` and `offline` always exist (with default settings) unless
    /// configured. Keys are read from the environment now but are not required here, so that
    /// `bot-server check` and offline demos work without keys; see [`LlmClients::check_ready`].
    ///
    /// # Errors
    ///
    /// [`LlmError::InvalidSettings`] naming the provider: no `kind` for a table whose name is
    /// not a kind, an invalid `base_url`, a timeout or backoff out of range
    /// ([`ProviderSettings::check_ranges`]), a zero rate limit.
    pub fn new(settings: &BTreeMap<String, ProviderSettings>) -> Result<Self, LlmError> {
        Self::build(settings, &KeySource::Environment)
    }

    /// Like [`LlmClients::new`], but with the API keys given by provider name instead of read
    /// from the environment (which is not consulted at all): for tests, benchmarks, and callers
    /// that get keys elsewhere.
    ///
    /// # Errors
    ///
    /// As [`LlmClients::new`].
    pub fn with_api_keys(
        settings: &BTreeMap<String, ProviderSettings>,
        keys: &BTreeMap<String, Secret>,
    ) -> Result<Self, LlmError> {
        Self::build(settings, &KeySource::Given(keys))
    }

    fn build(
        settings: &BTreeMap<String, ProviderSettings>,
        keys: &KeySource<'_>,
    ) -> Result<Self, LlmError> {
        let client = HttpTarget::shared_client("all providers")?;
        let mut providers = BTreeMap::new();
        for (name, provider_settings) in settings {
            providers.insert(
                name.clone(),
                Provider::new(name, provider_settings, keys, &client)?,
            );
        }
        for kind in ProviderKind::ALL {
            let name = kind.as_str();
            if !providers.contains_key(name) {
                let defaults = ProviderSettings::default();
                providers.insert(
                    name.to_owned(),
                    Provider::new(name, &defaults, keys, &client)?,
                );
            }
        }
        Ok(Self {
            providers: Arc::new(providers),
            on_retry: None,
            on_call: None,
        })
    }

    /// Calls `observe` with the provider's name each time a call is retried, whether the
    /// call finally succeeds or not (the server counts retries in its metrics this way).
    #[must_use]
    pub fn observe_retries(mut self, observe: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.on_retry = Some(Arc::new(observe));
        self
    }

    /// Calls `observe` once per finished call (success or final failure), so the server can
    /// count calls, tokens and durations without `llm` knowing about metrics.
    #[must_use]
    pub fn observe_calls(mut self, observe: impl Fn(&LlmCall<'_>) + Send + Sync + 'static) -> Self {
        self.on_call = Some(Arc::new(observe));
        self
    }

    /// Whether `provider` is configured (or built in).
    pub fn contains(&self, provider: &str) -> bool {
        self.providers.contains_key(provider)
    }

    /// The provider names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.providers.keys().map(String::as_str)
    }

    /// The kind of `provider`, if it exists.
    pub fn kind(&self, provider: &str) -> Option<ProviderKind> {
        self.providers.get(provider).map(|p| p.kind)
    }

    /// The model used when a request names none: the configured `default_model`, else a
    /// built-in one for the public APIs (for kind openai only when `base_url` is unset: a
    /// local server's models cannot be guessed). `None` for an unknown provider.
    pub fn default_model(&self, provider: &str) -> Option<String> {
        self.providers
            .get(provider)
            .and_then(|p| p.default_model.clone())
    }

    /// Checks the provider can be called: it exists, its key file (if any) is readable, and its
    /// API key is present when it needs one (gemini and anthropic always; openai when it talks
    /// to the public API or `api_key_env` is set; offline never).
    ///
    /// # Errors
    ///
    /// [`LlmError::UnknownProvider`]; [`LlmError::MissingApiKey`] naming the variable to set;
    /// [`LlmError::InvalidSettings`] for an unreadable key file.
    pub fn check_ready(&self, provider: &str) -> Result<(), LlmError> {
        self.get(provider)?.key().map(|_| ())
    }

    /// Runs one request: waits for the local rate limits, sends it with the provider's
    /// timeout, and retries retryable failures with exponential backoff and jitter (or the
    /// delay the provider asked for), at most `max_retries` times. Every attempt, retries
    /// included, goes through the rate limiter, since each is a real request to the provider.
    ///
    /// The token budget is charged an estimate made before the call: prompt and system
    /// characters / 4 (a common rule of thumb for English text) plus `max_tokens`, since
    /// providers count the requested output against their own token limits too.
    ///
    /// # Errors
    ///
    /// [`LlmError::UnknownProvider`], [`LlmError::MissingApiKey`] and settings errors at once;
    /// otherwise the last attempt's error: at once for non-retryable ones (auth, quota, bad
    /// request, decode, no answer), after the retries for retryable ones. API keys are
    /// scrubbed from every message.
    pub async fn complete(
        &self,
        provider: &str,
        request: &LlmRequest,
    ) -> Result<LlmResponse, LlmError> {
        let model = match (request.model.trim(), self.get(provider)) {
            ("", Ok(p)) => p.default_model.clone().unwrap_or_default(),
            (model, _) => model.to_owned(),
        };
        // The GenAI semantic conventions' client span; never the prompt text.
        let span = tracing::info_span!(
            "llm.chat",
            otel.kind = "client",
            gen_ai.operation.name = "chat",
            gen_ai.provider.name = %provider,
            gen_ai.request.model = %model,
            gen_ai.request.temperature = request.temperature.map(f64::from),
            gen_ai.request.max_tokens = request.max_tokens,
            gen_ai.response.model = tracing::field::Empty,
            gen_ai.usage.input_tokens = tracing::field::Empty,
            gen_ai.usage.output_tokens = tracing::field::Empty,
            llm.retries = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            error.message = tracing::field::Empty,
        );
        let started = tokio::time::Instant::now();
        let result = self
            .complete_unobserved(provider, request)
            .instrument(span.clone())
            .await;
        let (outcome, input_tokens, output_tokens, rate_limit_wait) = match &result {
            Ok(r) => {
                span.record("gen_ai.response.model", r.model.as_str());
                span.record("gen_ai.usage.input_tokens", r.input_tokens);
                span.record("gen_ai.usage.output_tokens", r.output_tokens);
                span.record("llm.retries", r.retries);
                (
                    "success",
                    r.input_tokens,
                    r.output_tokens,
                    r.rate_limit_wait,
                )
            }
            Err(err) => {
                span.record("otel.status_code", "ERROR");
                span.record("error.message", err.to_string());
                (err.kind_label(), 0, 0, Duration::ZERO)
            }
        };
        if let Some(observe) = &self.on_call {
            observe(&LlmCall {
                provider,
                model: &model,
                outcome,
                duration: started.elapsed(),
                input_tokens,
                output_tokens,
                rate_limit_wait,
            });
        }
        result
    }

    /// [`LlmClients::complete`] without its span and report.
    async fn complete_unobserved(
        &self,
        provider: &str,
        request: &LlmRequest,
    ) -> Result<LlmResponse, LlmError> {
        let provider = self.get(provider)?;
        let key = provider.key()?;
        let model = if request.model.trim().is_empty() {
            provider
                .default_model
                .clone()
                .ok_or_else(|| LlmError::InvalidSettings {
                    provider: provider.name.clone(),
                    reason: "the request names no model and the provider has no default_model"
                        .to_owned(),
                })?
        } else {
            request.model.clone()
        };
        let tokens = estimate_tokens(request);
        let mut backoff = provider.retry.backoff();
        let mut retries = 0_u32;
        let mut rate_limit_wait = Duration::ZERO;
        loop {
            rate_limit_wait += provider.limits.acquire(tokens).await;
            let result = provider
                .call(request, &model, key)
                .await
                .map_err(|err| match key {
                    Some(key) => err.redact(key.expose()),
                    None => err,
                });
            let err = match result {
                Ok(mut response) => {
                    response.retries = retries;
                    response.rate_limit_wait = rate_limit_wait;
                    tracing::debug!(
                        provider = %provider.name,
                        model = %response.model,
                        input_tokens = response.input_tokens,
                        output_tokens = response.output_tokens,
                        retries,
                        "llm call done"
                    );
                    return Ok(response);
                }
                Err(err) => err,
            };
            if !err.is_retryable() {
                return Err(err);
            }
            let Some(backoff_delay) = backoff.next() else {
                tracing::warn!(provider = %provider.name, error = %err, retries, "llm call failed, no retries left");
                return Err(err);
            };
            let delay = provider.retry.delay_for(&err, backoff_delay);
            tracing::warn!(
                provider = %provider.name,
                error = %err,
                kind = err.kind_label(),
                retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                attempt = retries + 1,
                "llm call failed, retrying"
            );
            if let Some(observe) = &self.on_retry {
                observe(&provider.name);
            }
            tokio::time::sleep(delay).await;
            retries += 1;
        }
    }

    fn get(&self, provider: &str) -> Result<&Provider, LlmError> {
        self.providers
            .get(provider)
            .ok_or_else(|| LlmError::UnknownProvider {
                name: provider.to_owned(),
            })
    }
}

impl Provider {
    fn new(
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
        let http = HttpTarget::new(name, client.clone(), timeout_seconds)
            .with_max_response_bytes(max_response_bytes);
        let backend = match (kind, base) {
            (ProviderKind::Gemini, Some(base)) => Backend::Gemini(GeminiClient::new(http, base)),
            (ProviderKind::Openai, Some(base)) => Backend::Openai(OpenAiClient::new(http, base)?),
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
    fn key(&self) -> Result<Option<&Secret>, LlmError> {
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
    async fn call(
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

/// The token budget charged for a request (see [`LlmClients::complete`]).
fn estimate_tokens(request: &LlmRequest) -> u32 {
    let chars =
        request.prompt.chars().count() + request.system.as_deref().map_or(0, |s| s.chars().count());
    u32::try_from(chars / 4)
        .unwrap_or(u32::MAX)
        .saturating_add(request.max_tokens.unwrap_or(0))
        .max(1)
}

/// A temperature as JSON with its short decimal form (`0.7`, not `0.699999988079071` as a
/// plain `f32` to `f64` conversion would give).
pub(crate) fn temperature_json(temperature: f32) -> Value {
    temperature
        .to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(toml_text: &str) -> BTreeMap<String, ProviderSettings> {
        #[derive(serde::Deserialize)]
        struct File {
            providers: BTreeMap<String, ProviderSettings>,
        }
        toml::from_str::<File>(toml_text)
            .expect("valid toml")
            .providers
    }

    #[test]
    fn defaults_exist_and_need_no_keys_to_build() {
        let clients =
            LlmClients::with_api_keys(&BTreeMap::new(), &BTreeMap::new()).expect("builds");
        for name in ["gemini", "openai", "anthropic", "offline"] {
            assert!(clients.contains(name), "{name}");
        }
        assert_eq!(
            clients.default_model("gemini").as_deref(),
            Some("gemini-2.5-flash")
        );
        assert!(clients.check_ready("offline").is_ok());
        let err = clients.check_ready("anthropic").expect_err("no key");
        assert_eq!(
            err.to_string(),
            "provider `anthropic` needs an API key: set ANTHROPIC_API_KEY (or ANTHROPIC_API_KEY_FILE)"
        );
        assert_eq!(
            clients.check_ready("nope"),
            Err(LlmError::UnknownProvider {
                name: "nope".into()
            })
        );
    }

    #[test]
    fn kind_comes_from_the_name_or_must_be_given() {
        let ok = settings(
            "[providers.gemini]\ndefault_model = \"g\"\n[providers.ollama]\nkind = \"openai\"\nbase_url = \"http://localhost:11434/v1\"\n",
        );
        let clients = LlmClients::with_api_keys(&ok, &BTreeMap::new()).expect("builds");
        assert_eq!(clients.kind("ollama"), Some(ProviderKind::Openai));
        // A local OpenAI-compatible server needs no key and has no guessed model.
        assert!(clients.check_ready("ollama").is_ok());
        assert_eq!(clients.default_model("ollama"), None);
        assert_eq!(clients.default_model("gemini").as_deref(), Some("g"));

        let missing_kind = settings("[providers.local]\nbase_url = \"http://localhost:1/v1\"\n");
        let err = LlmClients::with_api_keys(&missing_kind, &BTreeMap::new()).expect_err("no kind");
        assert_eq!(err.kind_label(), "invalid_settings");
        assert!(err.to_string().contains("`local`"), "{err}");
    }

    #[test]
    fn bad_settings_are_refused() {
        let unknown_field = toml::from_str::<ProviderSettings>("kindd = \"openai\"");
        assert!(unknown_field.is_err());
        for bad in [
            "[providers.gemini]\nbase_url = \"not a url\"\n",
            "[providers.gemini]\nbase_url = \"ftp://example.com\"\n",
            "[providers.gemini]\ntimeout_seconds = 0\n",
            "[providers.gemini]\ntimeout_seconds = 86401\n",
            "[providers.gemini]\nmax_backoff_seconds = 86401\n",
            "[providers.gemini]\nrequests_per_minute = 0\n",
        ] {
            let err = LlmClients::with_api_keys(&settings(bad), &BTreeMap::new()).expect_err(bad);
            assert_eq!(err.kind_label(), "invalid_settings", "{bad}");
        }
        let huge = settings("[providers.offline]\ntimeout_seconds = 9223372036854775807\n");
        let err = LlmClients::with_api_keys(&huge, &BTreeMap::new()).expect_err("huge");
        assert!(
            err.to_string().contains(
                "timeout_seconds must be between 1 and 86400 (a day), not 9223372036854775807"
            ),
            "{err}"
        );
    }

    #[test]
    fn token_estimate() {
        let request = LlmRequest {
            model: String::new(),
            system: Some("abcd".into()),
            prompt: "abcdefgh".into(),
            temperature: None,
            max_tokens: Some(100),
            json: false,
        };
        assert_eq!(estimate_tokens(&request), 103);
    }

    #[test]
    fn temperature_is_sent_as_written() {
        assert_eq!(temperature_json(0.7).to_string(), "0.7");
        assert_eq!(temperature_json(1.0).to_string(), "1.0");
    }
}
