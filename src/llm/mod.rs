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
mod provider;
mod ratelimit;
mod retry;
mod settings;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use serde_json::Value;

pub use self::error::LlmError;
use self::http::HttpTarget;
use self::provider::{KeySource, Provider};
pub use self::settings::{MaxTokensField, ProviderKind, ProviderSettings};
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
        // Named `chat {model}` as OpenTelemetry's GenAI conventions ask (`otel.name` sets the
        // exported name; `llm.chat` stays the name in logs).
        let span = tracing::info_span!(
            "llm.chat",
            otel.name = format!("chat {model}"),
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
            error.type = tracing::field::Empty,
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
                span.record("error.type", err.kind_label());
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
