//! `bot_server::llm` against the in-process provider fakes: wire shapes, error classification,
//! retries, Retry-After, timeouts, shared rate limits, and the offline provider.

use std::collections::BTreeMap;
use std::time::Duration;

use bot_server::fakes::llm::{FakeLlm, Reply};
use bot_server::llm::{
    LlmClients, LlmError, LlmRequest, MaxTokensField, ProviderKind, ProviderSettings,
};
use bot_server::secret::Secret;
use serde_json::json;
use tokio::time::Instant;

const KEY: &str = "test-key-5f1c2a9b7e";
const WRONG_KEY: &str = "wrong-key-77aa88bb99";

/// Clients with one provider, named after the fake's kind, pointing at the fake.
fn clients_with_key(
    fake: &FakeLlm,
    key: Option<&str>,
    tweak: impl FnOnce(&mut ProviderSettings),
) -> LlmClients {
    let name = fake.kind().as_str().to_owned();
    let mut settings = fake.provider_settings();
    tweak(&mut settings);
    let keys = key
        .map(|key| BTreeMap::from([(name.clone(), Secret::new(key))]))
        .unwrap_or_default();
    LlmClients::with_api_keys(&BTreeMap::from([(name, settings)]), &keys).expect("valid settings")
}

fn clients(fake: &FakeLlm, tweak: impl FnOnce(&mut ProviderSettings)) -> LlmClients {
    clients_with_key(fake, Some(KEY), tweak)
}

fn request(prompt: &str) -> LlmRequest {
    LlmRequest {
        model: "test-model".into(),
        system: Some("You are terse.".into()),
        prompt: prompt.into(),
        temperature: Some(0.5),
        max_tokens: Some(64),
        json: false,
    }
}

fn server_error_status(kind: ProviderKind) -> u16 {
    // Anthropic's "overloaded" is its own status.
    if kind == ProviderKind::Anthropic {
        529
    } else {
        503
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios shared by the three network providers.

async fn success_reads_text_tokens_and_model(kind: ProviderKind) -> FakeLlm {
    let fake = FakeLlm::start(kind, KEY).await;
    let clients = clients(&fake, |_| {});
    let response = clients
        .complete(kind.as_str(), &request("hello there"))
        .await
        .expect("success");
    assert_eq!(response.text, "fake reply to: hello there");
    assert_eq!(response.model, "test-model");
    // The fake counts words: 3 of system + 2 of prompt in, 5 out.
    assert_eq!(response.input_tokens, 5);
    assert_eq!(response.output_tokens, 5);
    assert_eq!(response.retries, 0);
    assert_eq!(response.rate_limit_wait, Duration::ZERO);
    assert_eq!(fake.request_count(), 1);
    let seen = &fake.requests()[0];
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.model.as_deref(), Some("test-model"));
    assert_eq!(seen.system.as_deref(), Some("You are terse."));
    assert_eq!(seen.prompt, "hello there");
    assert_eq!(seen.header("content-type"), Some("application/json"));
    fake
}

async fn rate_limited_then_ok(kind: ProviderKind) {
    let fake = FakeLlm::start(kind, KEY).await;
    fake.push(Reply::RateLimited {
        retry_after_seconds: Some(7),
    });
    let clients = clients(&fake, |_| {});
    let start = Instant::now();
    let response = clients
        .complete(kind.as_str(), &request("hi"))
        .await
        .expect("success after one retry");
    let elapsed = start.elapsed();
    assert_eq!(response.retries, 1);
    assert_eq!(fake.request_count(), 2);
    // The provider's 7s, not the 0.5-1s backoff, and not much more.
    assert!(elapsed >= Duration::from_secs(7), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(7500), "{elapsed:?}");
}

async fn server_error_then_ok(kind: ProviderKind) {
    let fake = FakeLlm::start(kind, KEY).await;
    fake.push(Reply::ServerError(server_error_status(kind)));
    let clients = clients(&fake, |_| {});
    let start = Instant::now();
    let response = clients
        .complete(kind.as_str(), &request("hi"))
        .await
        .expect("success after one retry");
    assert_eq!(response.retries, 1);
    assert_eq!(fake.request_count(), 2);
    assert!(start.elapsed() >= Duration::from_millis(500));
}

async fn wrong_key_fails_at_once(kind: ProviderKind) {
    let fake = FakeLlm::start(kind, KEY).await;
    let clients = clients_with_key(&fake, Some(WRONG_KEY), |_| {});
    let err = clients
        .complete(kind.as_str(), &request("hi"))
        .await
        .expect_err("wrong key");
    assert!(matches!(err, LlmError::Auth { .. }), "{err:?}");
    assert_eq!(err.kind_label(), "auth");
    assert!(!err.is_retryable());
    assert_eq!(fake.request_count(), 1);
    for text in [err.to_string(), format!("{err:?}"), format!("{clients:?}")] {
        assert!(!text.contains(WRONG_KEY), "{text}");
        assert!(!text.contains(KEY), "{text}");
    }
}

async fn quota_exhausted_fails_at_once(kind: ProviderKind) {
    let fake = FakeLlm::start(kind, KEY).await;
    fake.push(Reply::QuotaExhausted);
    let clients = clients(&fake, |_| {});
    let err = clients
        .complete(kind.as_str(), &request("hi"))
        .await
        .expect_err("quota");
    assert!(matches!(err, LlmError::QuotaExhausted { .. }), "{err:?}");
    assert_eq!(fake.request_count(), 1);
}

async fn timeout_is_retried_then_fails(kind: ProviderKind) {
    let fake = FakeLlm::start(kind, KEY).await;
    for _ in 0..3 {
        fake.push(Reply::Delay(Duration::from_secs(5)));
    }
    let clients = clients(&fake, |s| {
        s.timeout_seconds = Some(1);
        s.max_retries = Some(2);
    });
    let start = Instant::now();
    let err = clients
        .complete(kind.as_str(), &request("hi"))
        .await
        .expect_err("timeout");
    assert_eq!(
        err,
        LlmError::Timeout {
            provider: kind.as_str().into(),
            seconds: 1
        }
    );
    assert!(err.is_retryable());
    assert_eq!(fake.request_count(), 3);
    // Three 1s attempts plus two backoffs.
    assert!(
        start.elapsed() >= Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// Gemini

/// Gemini: a call returns text, tokens and model, sent as a real generateContent request.
#[tokio::test]
async fn gemini_success() {
    let fake = success_reads_text_tokens_and_model(ProviderKind::Gemini).await;
    let seen = &fake.requests()[0];
    assert_eq!(seen.path, "/v1beta/models/test-model:generateContent");
    assert_eq!(seen.header("x-goog-api-key"), Some(KEY));
    assert_eq!(seen.query, None, "the key must not travel in the URL");
    assert_eq!(seen.body["contents"][0]["role"], "user");
    assert_eq!(seen.body["contents"][0]["parts"][0]["text"], "hello there");
    assert_eq!(
        seen.body["systemInstruction"]["parts"][0]["text"],
        "You are terse."
    );
    assert_eq!(seen.body["generationConfig"]["temperature"], json!(0.5));
    assert_eq!(seen.body["generationConfig"]["maxOutputTokens"], 64);
    assert!(
        seen.body["generationConfig"]
            .get("responseMimeType")
            .is_none()
    );
}

/// Gemini: json requests enable JSON mode, and `modelVersion` is read back as the model.
#[tokio::test]
async fn gemini_json_mode_and_model_version() {
    let fake = FakeLlm::start(ProviderKind::Gemini, KEY).await;
    fake.push(Reply::Raw {
        status: 200,
        headers: vec![],
        body: json!({
            "candidates": [{"content": {"parts": [{"text": "[\"a\","}, {"text": "\"b\"]"}], "role": "model"}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 11, "candidatesTokenCount": 4, "thoughtsTokenCount": 6},
            "modelVersion": "gemini-2.5-flash-001"
        })
        .to_string(),
    });
    let clients = clients(&fake, |_| {});
    let mut json_request = request("give me posts");
    json_request.json = true;
    let response = clients
        .complete("gemini", &json_request)
        .await
        .expect("success");
    assert_eq!(response.text, r#"["a","b"]"#);
    assert_eq!(response.model, "gemini-2.5-flash-001");
    assert_eq!(response.input_tokens, 11);
    assert_eq!(
        response.output_tokens, 10,
        "thinking tokens count as output"
    );
    assert_eq!(
        fake.requests()[0].body["generationConfig"]["responseMimeType"],
        "application/json"
    );
}

/// Gemini: a blocked prompt (no candidates) is a NoAnswer error naming the block reason.
#[tokio::test]
async fn gemini_blocked_prompt_is_no_answer() {
    let fake = FakeLlm::start(ProviderKind::Gemini, KEY).await;
    fake.push(Reply::Raw {
        status: 200,
        headers: vec![],
        body: json!({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 5}})
            .to_string(),
    });
    let clients = clients(&fake, |_| {});
    let err = clients
        .complete("gemini", &request("hi"))
        .await
        .expect_err("blocked");
    assert_eq!(err.kind_label(), "no_answer");
    assert!(err.to_string().contains("SAFETY"), "{err}");
    assert_eq!(fake.request_count(), 1);
}

/// Gemini: a 429 is retried once, after the RetryInfo delay of the error body.
#[tokio::test(start_paused = true)]
async fn gemini_rate_limited_then_ok() {
    rate_limited_then_ok(ProviderKind::Gemini).await;
}

/// Gemini: a 503 is retried once with backoff, then succeeds.
#[tokio::test(start_paused = true)]
async fn gemini_server_error_then_ok() {
    server_error_then_ok(ProviderKind::Gemini).await;
}

/// Gemini: an invalid key (400 API_KEY_INVALID) fails at once, as Auth, without the key in the error.
#[tokio::test(start_paused = true)]
async fn gemini_wrong_key_fails_at_once() {
    wrong_key_fails_at_once(ProviderKind::Gemini).await;
}

/// Gemini: a per-day quota 429 fails at once as QuotaExhausted.
#[tokio::test(start_paused = true)]
async fn gemini_quota_exhausted_fails_at_once() {
    quota_exhausted_fails_at_once(ProviderKind::Gemini).await;
}

/// Gemini: a reply slower than timeout_seconds is retried, then fails as Timeout.
#[tokio::test(start_paused = true)]
async fn gemini_timeout_is_retried_then_fails() {
    timeout_is_retried_then_fails(ProviderKind::Gemini).await;
}

// ---------------------------------------------------------------------------------------------
// OpenAI

/// OpenAI: a call returns text, tokens and model, sent as a real chat completion request.
#[tokio::test]
async fn openai_success() {
    let fake = success_reads_text_tokens_and_model(ProviderKind::Openai).await;
    let seen = &fake.requests()[0];
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(seen.body["model"], "test-model");
    assert_eq!(
        seen.body["messages"],
        json!([
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "hello there"}
        ])
    );
    assert_eq!(seen.body["temperature"], json!(0.5));
    assert_eq!(seen.body["max_tokens"], 64);
}

/// OpenAI: json requests send no response_format (json_object mode would forbid arrays).
#[tokio::test]
async fn openai_json_request_has_no_response_format() {
    let fake = FakeLlm::start(ProviderKind::Openai, KEY).await;
    let clients = clients(&fake, |_| {});
    let mut json_request = request("give me posts");
    json_request.json = true;
    clients
        .complete("openai", &json_request)
        .await
        .expect("success");
    assert!(fake.requests()[0].body.get("response_format").is_none());
}

/// OpenAI's reasoning and GPT-5 models refuse `max_tokens` (400 `unsupported_parameter`, not
/// retried); with `max_tokens_field = "max_completion_tokens"` the limit goes in the field they
/// take. A compatible server (base_url set) gets `max_tokens` by default.
#[tokio::test]
async fn openai_token_limit_field_is_chosen_per_provider() {
    let fake = FakeLlm::start(ProviderKind::Openai, KEY).await;
    let mut gpt5 = request("hi");
    gpt5.model = "gpt-5-mini".into();

    let compatible = clients(&fake, |_| {});
    let err = compatible.complete("openai", &gpt5).await.unwrap_err();
    assert_eq!(err.kind_label(), "bad_request", "{err}");
    assert!(err.to_string().contains("max_completion_tokens"), "{err}");
    assert_eq!(fake.request_count(), 1, "a 400 is not retried");
    assert_eq!(fake.requests()[0].body["max_tokens"], 64);

    let current = clients(&fake, |s| {
        s.max_tokens_field = Some(MaxTokensField::MaxCompletionTokens);
    });
    current.complete("openai", &gpt5).await.expect("success");
    let seen = &fake.requests()[1];
    assert_eq!(seen.body["max_completion_tokens"], 64);
    assert!(seen.body.get("max_tokens").is_none(), "{:?}", seen.body);
}

/// OpenAI-compatible local server (Ollama): no key configured, no Authorization header sent.
#[tokio::test]
async fn openai_compatible_server_needs_no_key() {
    let fake = FakeLlm::start(ProviderKind::Openai, "").await;
    let mut settings = fake.provider_settings();
    settings.default_model = Some("llama3.2".into());
    let clients = LlmClients::with_api_keys(
        &BTreeMap::from([("ollama".to_owned(), settings)]),
        &BTreeMap::new(),
    )
    .expect("valid settings");
    clients.check_ready("ollama").expect("no key needed");
    let mut no_model = request("hi");
    no_model.model = String::new();
    let response = clients
        .complete("ollama", &no_model)
        .await
        .expect("success");
    assert_eq!(response.model, "llama3.2", "the default model is used");
    let seen = &fake.requests()[0];
    assert_eq!(seen.header("authorization"), None);
    assert_eq!(seen.body["model"], "llama3.2");
}

/// OpenAI: a 429 is retried once, after its retry-after header.
#[tokio::test(start_paused = true)]
async fn openai_rate_limited_then_ok() {
    rate_limited_then_ok(ProviderKind::Openai).await;
}

/// OpenAI: a 503 is retried once with backoff, then succeeds.
#[tokio::test(start_paused = true)]
async fn openai_server_error_then_ok() {
    server_error_then_ok(ProviderKind::Openai).await;
}

/// OpenAI: a wrong key (401 invalid_api_key) fails at once, as Auth, without the key in the error.
#[tokio::test(start_paused = true)]
async fn openai_wrong_key_fails_at_once() {
    wrong_key_fails_at_once(ProviderKind::Openai).await;
}

/// OpenAI: a 429 insufficient_quota fails at once as QuotaExhausted.
#[tokio::test(start_paused = true)]
async fn openai_quota_exhausted_fails_at_once() {
    quota_exhausted_fails_at_once(ProviderKind::Openai).await;
}

/// OpenAI: a reply slower than timeout_seconds is retried, then fails as Timeout.
#[tokio::test(start_paused = true)]
async fn openai_timeout_is_retried_then_fails() {
    timeout_is_retried_then_fails(ProviderKind::Openai).await;
}

// ---------------------------------------------------------------------------------------------
// Anthropic

/// Anthropic: a call returns text, tokens and model, sent as a real Messages request.
#[tokio::test]
async fn anthropic_success() {
    let fake = success_reads_text_tokens_and_model(ProviderKind::Anthropic).await;
    let seen = &fake.requests()[0];
    assert_eq!(seen.path, "/v1/messages");
    assert_eq!(seen.header("x-api-key"), Some(KEY));
    assert_eq!(seen.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(seen.body["model"], "test-model");
    assert_eq!(seen.body["max_tokens"], 64);
    assert_eq!(seen.body["system"], "You are terse.");
    assert_eq!(seen.body["temperature"], json!(0.5));
    assert_eq!(
        seen.body["messages"],
        json!([{"role": "user", "content": "hello there"}])
    );
}

/// Anthropic: max_tokens, required by the API, defaults to 1024.
#[tokio::test]
async fn anthropic_max_tokens_defaults() {
    let fake = FakeLlm::start(ProviderKind::Anthropic, KEY).await;
    let clients = clients(&fake, |_| {});
    let mut no_limit = request("hi");
    no_limit.max_tokens = None;
    clients
        .complete("anthropic", &no_limit)
        .await
        .expect("success");
    assert_eq!(fake.requests()[0].body["max_tokens"], 1024);
}

/// Anthropic: a 429 is retried once, after its retry-after header.
#[tokio::test(start_paused = true)]
async fn anthropic_rate_limited_then_ok() {
    rate_limited_then_ok(ProviderKind::Anthropic).await;
}

/// Anthropic: a 529 overloaded is retried once with backoff, then succeeds.
#[tokio::test(start_paused = true)]
async fn anthropic_overloaded_then_ok() {
    server_error_then_ok(ProviderKind::Anthropic).await;
}

/// Anthropic: a wrong key (401 authentication_error) fails at once, as Auth, without the key in the error.
#[tokio::test(start_paused = true)]
async fn anthropic_wrong_key_fails_at_once() {
    wrong_key_fails_at_once(ProviderKind::Anthropic).await;
}

/// Anthropic: "credit balance is too low" fails at once as QuotaExhausted.
#[tokio::test(start_paused = true)]
async fn anthropic_quota_exhausted_fails_at_once() {
    quota_exhausted_fails_at_once(ProviderKind::Anthropic).await;
}

/// Anthropic: a reply slower than timeout_seconds is retried, then fails as Timeout.
#[tokio::test(start_paused = true)]
async fn anthropic_timeout_is_retried_then_fails() {
    timeout_is_retried_then_fails(ProviderKind::Anthropic).await;
}

// ---------------------------------------------------------------------------------------------
// Shared behaviour

/// requests_per_minute is shared by every clone of LlmClients: with 2/min the third call waits ~30s.
#[tokio::test(start_paused = true)]
async fn rate_limit_is_shared_between_callers() {
    let fake = FakeLlm::start(ProviderKind::Gemini, KEY).await;
    let clients = clients(&fake, |s| s.requests_per_minute = Some(2));
    let start = Instant::now();
    let (a, b, c) = {
        let (c1, c2, c3) = (clients.clone(), clients.clone(), clients.clone());
        let (r1, r2, r3) = (request("one"), request("two"), request("three"));
        tokio::join!(
            async move { c1.complete("gemini", &r1).await },
            async move { c2.complete("gemini", &r2).await },
            async move { c3.complete("gemini", &r3).await },
        )
    };
    let mut waits: Vec<Duration> = [a, b, c]
        .into_iter()
        .map(|r| r.expect("success").rate_limit_wait)
        .collect();
    waits.sort();
    assert_eq!(waits[0], Duration::ZERO);
    assert_eq!(waits[1], Duration::ZERO);
    assert!(waits[2] >= Duration::from_secs(29), "{waits:?}");
    assert!(waits[2] <= Duration::from_secs(31), "{waits:?}");
    assert!(start.elapsed() >= Duration::from_secs(29));
    assert_eq!(fake.request_count(), 3);
}

/// A refused connection is a retryable Transport error, returned after the retries.
#[tokio::test(start_paused = true)]
async fn connection_refused_is_transport_error() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = closed.local_addr().expect("addr");
    drop(closed);
    let settings = ProviderSettings {
        base_url: Some(format!("http://{addr}/v1")),
        max_retries: Some(1),
        ..ProviderSettings::default()
    };
    let clients = LlmClients::with_api_keys(
        &BTreeMap::from([("openai".to_owned(), settings)]),
        &BTreeMap::from([("openai".to_owned(), Secret::new(KEY))]),
    )
    .expect("valid settings");
    let err = clients
        .complete("openai", &request("hi"))
        .await
        .expect_err("nothing listens");
    assert!(matches!(err, LlmError::Transport { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert!(!err.to_string().contains(KEY));
}

/// A provider that needs a key and has none fails before any request, naming the variable to set.
#[tokio::test]
async fn missing_key_fails_before_sending() {
    let fake = FakeLlm::start(ProviderKind::Gemini, KEY).await;
    let clients = clients_with_key(&fake, None, |_| {});
    let expected = LlmError::MissingApiKey {
        provider: "gemini".into(),
        env_var: "GEMINI_API_KEY".into(),
    };
    assert_eq!(clients.check_ready("gemini"), Err(expected.clone()));
    assert_eq!(
        clients.complete("gemini", &request("hi")).await,
        Err(expected)
    );
    assert_eq!(fake.request_count(), 0);
}

/// An unknown provider name is an UnknownProvider error; the four built-in names always exist.
#[tokio::test]
async fn unknown_provider_is_reported() {
    let clients =
        LlmClients::with_api_keys(&BTreeMap::new(), &BTreeMap::new()).expect("defaults build");
    for name in ["gemini", "openai", "anthropic", "offline"] {
        assert!(clients.contains(name));
    }
    let err = clients
        .complete("mistral", &request("hi"))
        .await
        .expect_err("unknown");
    assert_eq!(
        err,
        LlmError::UnknownProvider {
            name: "mistral".into()
        }
    );
}

/// The fakes answer malformed requests with the provider's 400, classified as BadRequest.
#[tokio::test]
async fn fake_rejects_malformed_requests() {
    let fake = FakeLlm::start(ProviderKind::Anthropic, KEY).await;
    let client = reqwest::Client::new();
    let reply = client
        .post(format!("{}/v1/messages", fake.base_url()))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}))
        .send()
        .await
        .expect("fake answers");
    assert_eq!(reply.status().as_u16(), 400);
    let body: serde_json::Value = reply.json().await.expect("json");
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["message"], "model: Field required");
    // A rejected request is recorded but consumes no scripted reply.
    assert_eq!(fake.request_count(), 1);
}

// ---------------------------------------------------------------------------------------------
// Offline

fn offline_clients() -> LlmClients {
    LlmClients::with_api_keys(&BTreeMap::new(), &BTreeMap::new()).expect("defaults build")
}

/// Offline: no key, no network, and the same request always gets the same labelled answer.
#[tokio::test]
async fn offline_is_deterministic() {
    let clients = offline_clients();
    clients.check_ready("offline").expect("no key needed");
    let mut req = request("Tell me about rivers");
    req.model = String::new();
    let first = clients.complete("offline", &req).await.expect("offline");
    let second = clients.complete("offline", &req).await.expect("offline");
    assert_eq!(first, second);
    assert!(
        first.text.starts_with("[offline:offline] "),
        "{}",
        first.text
    );
    assert_eq!(first.input_tokens, 3 + 4);
    assert_eq!(
        first.output_tokens,
        first.text.split_whitespace().count() as u64
    );
    req.prompt.push('!');
    let other = clients.complete("offline", &req).await.expect("offline");
    assert_ne!(first.text, other.text);
}

/// Offline: in json mode without ids, the answer is a JSON array of 3 distinct posts.
#[tokio::test]
async fn offline_json_mode_returns_posts() {
    let mut req = request("Write three posts about autumn.");
    req.model = "demo".into();
    req.json = true;
    let response = offline_clients()
        .complete("offline", &req)
        .await
        .expect("offline");
    let posts: Vec<String> = serde_json::from_str(&response.text).expect("a JSON array of strings");
    assert_eq!(posts.len(), 3);
    assert!(posts.iter().all(|p| p.starts_with("[offline:demo] ")));
    let mut unique = posts.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 3, "{posts:?}");
}

/// Offline: in json mode, a curator prompt listing {"id": N} objects gets the array of those ids.
#[tokio::test]
async fn offline_curator_approves_listed_ids() {
    let mut req = request(
        "Approve the good posts. Answer with a JSON array of ids.\n\
         {\"id\": 3, \"text\": \"first post\"}\n\
         {\"id\": 8, \"text\": \"second {post}\"}\n\
         {\"id\": 12, \"text\": \"third\"}\n",
    );
    req.json = true;
    let response = offline_clients()
        .complete("offline", &req)
        .await
        .expect("offline");
    let ids: Vec<i64> = serde_json::from_str(&response.text).expect("a JSON array of ids");
    assert_eq!(ids, vec![3, 8, 12]);
}

/// LlmClients can be shared across tasks: it is Send + Sync and `complete` is a Send future.
#[tokio::test]
async fn clients_are_shareable_across_tasks() {
    fn assert_send_sync<T: Send + Sync>(_: &T) {}
    let clients = offline_clients();
    assert_send_sync(&clients);
    let handle = tokio::spawn({
        let clients = clients.clone();
        async move { clients.complete("offline", &request("from a task")).await }
    });
    let response = handle.await.expect("task").expect("offline");
    assert!(response.text.starts_with("[offline:test-model] "));
}
