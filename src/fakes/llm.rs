//! Fake LLM provider APIs: [`FakeLlm`] is an in-process HTTP server on `127.0.0.1:0` speaking
//! the wire format of Gemini (`generateContent`), OpenAI (chat completions) or Anthropic
//! (Messages): real paths, real auth headers, real success and error bodies, statuses and
//! `Retry-After` headers, so that `crate::llm` is tested against what it will meet.
//!
//! Each request is recorded ([`FakeLlm::requests`]), then checked in the provider's order:
//! route, API key (a wrong or missing key gets the provider's real auth error), request shape
//! (a missing model or message list gets the provider's real 400). Only a request that passes
//! consumes the next scripted [`Reply`]; when none is queued, the answer is the responder's text
//! ([`FakeLlm::set_responder`]). Token counts in the answers are word counts.
//!
//! The server runs on the tokio runtime that starts it, and works the same on a real or a paused
//! clock: it keeps a 10ms "pacer" timer armed so that a paused clock auto-advances in small steps
//! while a request is in flight (see [`PACER_PERIOD`]).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::llm::{ProviderKind, ProviderSettings};

/// Period of the pacer timer.
///
/// On a paused tokio clock the runtime jumps to the next timer whenever it has nothing to run,
/// even while a socket is about to become readable; with only the client's 60s timeout armed, a
/// request to this in-process server would time out at once. The pacer keeps a timer at most
/// this far away, so a round trip moves the paused clock by a few of these steps at most.
pub const PACER_PERIOD: Duration = Duration::from_millis(10);

/// One scripted answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A successful answer with this text.
    Text(String),
    /// HTTP 429 rate limit, with the provider's way of saying when to come back (Gemini: a
    /// `RetryInfo.retryDelay` in the body; OpenAI and Anthropic: a `retry-after` header).
    RateLimited { retry_after_seconds: Option<u64> },
    /// A server error with this status (Anthropic 529 is its `overloaded_error`).
    ServerError(u16),
    /// Out of quota or credit: Gemini's per-day 429, OpenAI's `insufficient_quota` 429,
    /// Anthropic's "credit balance is too low" 400.
    QuotaExhausted,
    /// Sleep (with `tokio::time::sleep`) before giving the default answer: for timeouts.
    Delay(Duration),
    /// Exactly this status, headers and body.
    Raw {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
}

/// A request as the fake received it.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeRequest {
    pub method: String,
    /// The URL path, without the query.
    pub path: String,
    pub query: Option<String>,
    /// Every header, names lowercased (test keys included: this is a fake).
    pub headers: BTreeMap<String, String>,
    /// The model named by the path (Gemini) or the body.
    pub model: Option<String>,
    /// The system prompt(s), joined by newlines.
    pub system: Option<String>,
    /// The user message text(s), joined by newlines.
    pub prompt: String,
    /// The parsed body (`Null` if it was not JSON).
    pub body: Value,
}

impl FakeRequest {
    /// A header value by (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

type Responder = Arc<dyn Fn(&FakeRequest) -> String + Send + Sync>;

struct Shared {
    kind: ProviderKind,
    api_key: String,
    state: Mutex<Script>,
}

struct Script {
    replies: VecDeque<Reply>,
    responder: Responder,
    requests: Vec<FakeRequest>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Script> {
        // A panicking test thread must not make every later call panic too.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One fake provider server; stops when dropped.
pub struct FakeLlm {
    kind: ProviderKind,
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
    pacer: JoinHandle<()>,
}

impl std::fmt::Debug for FakeLlm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeLlm")
            .field("kind", &self.kind)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.server.abort();
        self.pacer.abort();
    }
}

impl FakeLlm {
    /// Starts a fake of `kind` on `127.0.0.1:0` that accepts `api_key` (an empty key accepts
    /// any or no key, like a local Ollama). Kind offline has no wire format: that server
    /// answers 404 to everything.
    ///
    /// # Panics
    ///
    /// When no local port can be bound; use [`FakeLlm::try_start`] to handle that.
    pub async fn start(kind: ProviderKind, api_key: &str) -> FakeLlm {
        match Self::try_start(kind, api_key).await {
            Ok(fake) => fake,
            Err(err) => panic!("cannot start the fake {kind} server: {err}"),
        }
    }

    /// Like [`FakeLlm::start`].
    ///
    /// # Errors
    ///
    /// When `127.0.0.1:0` cannot be bound.
    pub async fn try_start(kind: ProviderKind, api_key: &str) -> std::io::Result<FakeLlm> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            kind,
            api_key: api_key.to_owned(),
            state: Mutex::new(Script {
                replies: VecDeque::new(),
                responder: Arc::new(default_responder),
                requests: Vec::new(),
            }),
        });
        let router = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, router).await {
                tracing::error!(%err, "fake LLM server stopped");
            }
        });
        let pacer = tokio::spawn(async {
            loop {
                tokio::time::sleep(PACER_PERIOD).await;
            }
        });
        Ok(FakeLlm {
            kind,
            addr,
            shared,
            server,
            pacer,
        })
    }

    /// The kind this fake speaks.
    pub fn kind(&self) -> ProviderKind {
        self.kind
    }

    /// The socket address the fake listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What to put in `ProviderSettings.base_url` (for openai with the `/v1` suffix).
    pub fn base_url(&self) -> String {
        match self.kind {
            ProviderKind::Openai => format!("http://{}/v1", self.addr),
            _ => format!("http://{}", self.addr),
        }
    }

    /// Settings pointing at this fake: `kind` and `base_url` set, the rest default.
    pub fn provider_settings(&self) -> ProviderSettings {
        ProviderSettings {
            kind: Some(self.kind),
            base_url: Some(self.base_url()),
            ..ProviderSettings::default()
        }
    }

    /// Queues a scripted reply; queued replies are consumed in order by valid requests.
    pub fn push(&self, reply: Reply) {
        self.shared.lock().replies.push_back(reply);
    }

    /// Sets the default answer, used when no reply is queued. The default responder answers
    /// `fake reply to: <first 60 chars of the prompt>`.
    pub fn set_responder(&self, f: impl Fn(&FakeRequest) -> String + Send + Sync + 'static) {
        self.shared.lock().responder = Arc::new(f);
    }

    /// Every request received so far, valid or not, in order.
    pub fn requests(&self) -> Vec<FakeRequest> {
        self.shared.lock().requests.clone()
    }

    /// How many requests were received.
    pub fn request_count(&self) -> usize {
        self.shared.lock().requests.len()
    }

    /// How many scripted replies are still queued.
    pub fn pending_replies(&self) -> usize {
        self.shared.lock().replies.len()
    }
}

fn default_responder(request: &FakeRequest) -> String {
    let start: String = request.prompt.chars().take(60).collect();
    format!("fake reply to: {start}")
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = parse_request(shared.kind, &method, &uri, &headers, &body);
    shared.lock().requests.push(request.clone());
    let wire = Wire { kind: shared.kind };

    let route_ok = method == Method::POST
        && match shared.kind {
            ProviderKind::Gemini => gemini_model(&request.path).is_some(),
            ProviderKind::Openai => request.path == "/v1/chat/completions",
            ProviderKind::Anthropic => request.path == "/v1/messages",
            ProviderKind::Offline => false,
        };
    if !route_ok {
        return wire.not_found(&request);
    }
    if let Some(rejection) = wire.check_auth(&request, &shared.api_key) {
        return rejection;
    }
    if let Some(rejection) = wire.check_shape(&request) {
        return rejection;
    }

    let (reply, responder) = {
        let mut script = shared.lock();
        (script.replies.pop_front(), Arc::clone(&script.responder))
    };
    match reply {
        None => wire.success(&request, &responder(&request)),
        Some(Reply::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            wire.success(&request, &responder(&request))
        }
        Some(Reply::Text(text)) => wire.success(&request, &text),
        Some(Reply::RateLimited {
            retry_after_seconds,
        }) => wire.rate_limited(retry_after_seconds),
        Some(Reply::ServerError(status)) => wire.server_error(status),
        Some(Reply::QuotaExhausted) => wire.quota_exhausted(),
        Some(Reply::Raw {
            status,
            headers,
            body,
        }) => raw(status, &headers, body),
    }
}

/// `/v1beta/models/{model}:generateContent` → `model`.
fn gemini_model(path: &str) -> Option<&str> {
    path.strip_prefix("/v1beta/models/")?
        .strip_suffix(":generateContent")
        .filter(|model| !model.is_empty() && !model.contains('/'))
}

fn parse_request(
    kind: ProviderKind,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> FakeRequest {
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let headers: BTreeMap<String, String> = headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let path = uri.path().to_owned();
    let (model, system, prompt) = match kind {
        ProviderKind::Gemini => {
            let system = body["systemInstruction"]["parts"]
                .as_array()
                .map(|parts| join_texts(parts.iter().map(|p| &p["text"])));
            let prompt = body["contents"]
                .as_array()
                .map(|contents| {
                    join_texts(
                        contents
                            .iter()
                            .filter(|c| c["role"].as_str().is_none_or(|r| r == "user"))
                            .filter_map(|c| c["parts"].as_array())
                            .flatten()
                            .map(|p| &p["text"]),
                    )
                })
                .unwrap_or_default();
            (gemini_model(&path).map(str::to_owned), system, prompt)
        }
        ProviderKind::Openai | ProviderKind::Anthropic | ProviderKind::Offline => {
            let messages = body["messages"].as_array().cloned().unwrap_or_default();
            let by_role = |role: &str| {
                join_texts(
                    messages
                        .iter()
                        .filter(|m| m["role"] == role)
                        .map(|m| &m["content"]),
                )
            };
            let system = if kind == ProviderKind::Anthropic {
                (!body["system"].is_null()).then(|| join_texts([&body["system"]]))
            } else {
                Some(by_role("system")).filter(|s| !s.is_empty())
            };
            (
                body["model"].as_str().map(str::to_owned),
                system,
                by_role("user"),
            )
        }
    };
    FakeRequest {
        method: method.to_string(),
        path,
        query: uri.query().map(str::to_owned),
        headers,
        model,
        system,
        prompt,
        body,
    }
}

/// Joins texts given as strings or as content blocks (`[{"type":"text","text":..}]`).
fn join_texts<'a>(values: impl IntoIterator<Item = &'a Value>) -> String {
    let mut texts = Vec::new();
    for value in values {
        match value {
            Value::String(text) => texts.push(text.clone()),
            Value::Array(blocks) => texts.extend(
                blocks
                    .iter()
                    .filter_map(|b| b["text"].as_str().map(str::to_owned)),
            ),
            _ => {}
        }
    }
    texts.join("\n")
}

fn word_count(text: &str) -> usize {
    text.split_whitespace().count()
}

fn json_response(status: u16, headers: &[(&str, String)], body: &Value) -> Response {
    let owned: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| ((*name).to_owned(), value.clone()))
        .collect();
    raw(status, &owned, body.to_string())
}

fn raw(status: u16, headers: &[(String, String)], body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, body).into_response();
    let map = response.headers_mut();
    map.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            map.insert(name, value);
        }
    }
    response
}

/// The provider-specific bodies.
struct Wire {
    kind: ProviderKind,
}

impl Wire {
    fn google_error(status: u16, grpc_status: &str, message: &str, details: Value) -> Response {
        let mut error = json!({"code": status, "message": message, "status": grpc_status});
        if details.as_array().is_some_and(|d| !d.is_empty()) {
            error["details"] = details;
        }
        json_response(status, &[], &json!({ "error": error }))
    }

    fn openai_error(status: u16, message: &str, kind: &str, code: Option<&str>) -> Response {
        Self::openai_error_with(status, &[], message, kind, code)
    }

    fn openai_error_with(
        status: u16,
        headers: &[(&str, String)],
        message: &str,
        kind: &str,
        code: Option<&str>,
    ) -> Response {
        json_response(
            status,
            headers,
            &json!({"error": {"message": message, "type": kind, "param": null, "code": code}}),
        )
    }

    fn anthropic_error(
        status: u16,
        headers: &[(&str, String)],
        kind: &str,
        message: &str,
    ) -> Response {
        json_response(
            status,
            headers,
            &json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_fake"}),
        )
    }

    fn not_found(&self, request: &FakeRequest) -> Response {
        let message = format!(
            "{} {} is not a route of this fake",
            request.method, request.path
        );
        match self.kind {
            ProviderKind::Gemini => Self::google_error(404, "NOT_FOUND", &message, json!([])),
            ProviderKind::Openai => {
                Self::openai_error(404, &message, "invalid_request_error", None)
            }
            ProviderKind::Anthropic => Self::anthropic_error(404, &[], "not_found_error", &message),
            ProviderKind::Offline => json_response(404, &[], &json!({"error": message})),
        }
    }

    fn check_auth(&self, request: &FakeRequest, expected: &str) -> Option<Response> {
        if expected.is_empty() {
            return None;
        }
        match self.kind {
            ProviderKind::Gemini => {
                let query_key = request.query.as_deref().and_then(|query| {
                    url::form_urlencoded::parse(query.as_bytes())
                        .find(|(name, _)| name == "key")
                        .map(|(_, value)| value.into_owned())
                });
                let sent = request
                    .header("x-goog-api-key")
                    .map(str::to_owned)
                    .or(query_key);
                match sent {
                    None => Some(Self::google_error(
                        403,
                        "PERMISSION_DENIED",
                        "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
                        json!([]),
                    )),
                    Some(key) if key != expected => Some(Self::google_error(
                        400,
                        "INVALID_ARGUMENT",
                        "API key not valid. Please pass a valid API key.",
                        json!([{
                            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                            "reason": "API_KEY_INVALID",
                            "domain": "googleapis.com",
                            "metadata": {"service": "generativelanguage.googleapis.com"}
                        }]),
                    )),
                    Some(_) => None,
                }
            }
            ProviderKind::Openai => match request
                .header("authorization")
                .and_then(|value| value.strip_prefix("Bearer "))
            {
                None => Some(Self::openai_error(
                    401,
                    "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                    "invalid_request_error",
                    None,
                )),
                Some(key) if key != expected => Some(Self::openai_error(
                    401,
                    &format!(
                        "Incorrect API key provided: {}. You can find your API key at https://platform.openai.com/account/api-keys.",
                        mask_key(key)
                    ),
                    "invalid_request_error",
                    Some("invalid_api_key"),
                )),
                Some(_) => None,
            },
            ProviderKind::Anthropic => match request.header("x-api-key") {
                None => Some(Self::anthropic_error(
                    401,
                    &[],
                    "authentication_error",
                    "x-api-key header is required",
                )),
                Some(key) if key != expected => Some(Self::anthropic_error(
                    401,
                    &[],
                    "authentication_error",
                    "invalid x-api-key",
                )),
                Some(_) => None,
            },
            ProviderKind::Offline => None,
        }
    }

    fn check_shape(&self, request: &FakeRequest) -> Option<Response> {
        let body = &request.body;
        match self.kind {
            ProviderKind::Gemini => {
                if !body.is_object() {
                    return Some(Self::google_error(
                        400,
                        "INVALID_ARGUMENT",
                        "Invalid JSON payload received.",
                        json!([]),
                    ));
                }
                let contents_ok = body["contents"].as_array().is_some_and(|contents| {
                    !contents.is_empty()
                        && contents
                            .iter()
                            .all(|c| c["parts"].as_array().is_some_and(|p| !p.is_empty()))
                });
                (!contents_ok).then(|| {
                    Self::google_error(
                        400,
                        "INVALID_ARGUMENT",
                        "* GenerateContentRequest.contents: contents is not specified\n",
                        json!([]),
                    )
                })
            }
            ProviderKind::Openai => {
                if !body.is_object() {
                    return Some(Self::openai_error(
                        400,
                        "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
                        "invalid_request_error",
                        None,
                    ));
                }
                if !body["model"].is_string() {
                    return Some(Self::openai_error(
                        400,
                        "you must provide a model parameter",
                        "invalid_request_error",
                        None,
                    ));
                }
                let messages_ok = body["messages"]
                    .as_array()
                    .is_some_and(|m| !m.is_empty() && m.iter().all(|m| m["role"].is_string()));
                (!messages_ok).then(|| {
                    Self::openai_error(
                        400,
                        "[] is too short - 'messages'",
                        "invalid_request_error",
                        None,
                    )
                })
            }
            ProviderKind::Anthropic => {
                let error = |message: &str| {
                    Some(Self::anthropic_error(
                        400,
                        &[],
                        "invalid_request_error",
                        message,
                    ))
                };
                if request.header("anthropic-version").is_none() {
                    return error("anthropic-version: header is required");
                }
                if !body.is_object() {
                    return error("There was an issue with your request body: invalid JSON");
                }
                if !body["model"].is_string() {
                    return error("model: Field required");
                }
                if !body["max_tokens"].is_u64() {
                    return error("max_tokens: Field required");
                }
                let messages_ok = body["messages"]
                    .as_array()
                    .is_some_and(|m| !m.is_empty() && m.iter().all(|m| m["role"].is_string()));
                if !messages_ok {
                    return error("messages: Field required");
                }
                None
            }
            ProviderKind::Offline => None,
        }
    }

    fn success(&self, request: &FakeRequest, text: &str) -> Response {
        let input =
            word_count(request.system.as_deref().unwrap_or_default()) + word_count(&request.prompt);
        let output = word_count(text);
        let model = request.model.clone().unwrap_or_default();
        let body = match self.kind {
            ProviderKind::Gemini => json!({
                "candidates": [{
                    "content": {"parts": [{"text": text}], "role": "model"},
                    "finishReason": "STOP",
                    "index": 0
                }],
                "usageMetadata": {
                    "promptTokenCount": input,
                    "candidatesTokenCount": output,
                    "totalTokenCount": input + output
                },
                "modelVersion": model,
                "responseId": "fake-response"
            }),
            ProviderKind::Openai => json!({
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": null},
                    "logprobs": null,
                    "finish_reason": "stop"
                }],
                "usage": {
                    "prompt_tokens": input,
                    "completion_tokens": output,
                    "total_tokens": input + output
                }
            }),
            ProviderKind::Anthropic => json!({
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "stop_sequence": null,
                "usage": {"input_tokens": input, "output_tokens": output}
            }),
            ProviderKind::Offline => json!({"text": text}),
        };
        json_response(200, &[], &body)
    }

    fn rate_limited(&self, retry_after_seconds: Option<u64>) -> Response {
        let headers: Vec<(&str, String)> = retry_after_seconds
            .map(|seconds| ("retry-after", seconds.to_string()))
            .into_iter()
            .collect();
        match self.kind {
            ProviderKind::Gemini => {
                let mut details = vec![json!({
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [{
                        "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                        "quotaDimensions": {"location": "global", "model": "gemini-2.5-flash"},
                        "quotaValue": "10"
                    }]
                })];
                if let Some(seconds) = retry_after_seconds {
                    details.push(json!({
                        "@type": "type.googleapis.com/google.rpc.RetryInfo",
                        "retryDelay": format!("{seconds}s")
                    }));
                }
                Self::google_error(
                    429,
                    "RESOURCE_EXHAUSTED",
                    "You exceeded your current quota, please check your plan and billing details.",
                    Value::Array(details),
                )
            }
            ProviderKind::Openai => Self::openai_error_with(
                429,
                &headers,
                "Rate limit reached for gpt-4o-mini in organization org-fake on requests per min (RPM): Limit 3, Used 3, Requested 1.",
                "requests",
                Some("rate_limit_exceeded"),
            ),
            ProviderKind::Anthropic => Self::anthropic_error(
                429,
                &headers,
                "rate_limit_error",
                "This request would exceed the rate limit for your organization of 50 requests per minute.",
            ),
            ProviderKind::Offline => {
                json_response(429, &headers, &json!({"error": "rate limited"}))
            }
        }
    }

    fn server_error(&self, status: u16) -> Response {
        match self.kind {
            ProviderKind::Gemini => {
                let (grpc, message) = match status {
                    503 => (
                        "UNAVAILABLE",
                        "The model is overloaded. Please try again later.",
                    ),
                    504 => (
                        "DEADLINE_EXCEEDED",
                        "Deadline expired before operation could complete.",
                    ),
                    _ => (
                        "INTERNAL",
                        "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
                    ),
                };
                Self::google_error(status, grpc, message, json!([]))
            }
            ProviderKind::Openai => {
                let message = if status == 503 {
                    "The engine is currently overloaded, please try again later"
                } else {
                    "The server had an error while processing your request. Sorry about that!"
                };
                Self::openai_error(status, message, "server_error", None)
            }
            ProviderKind::Anthropic => {
                if status == 529 {
                    Self::anthropic_error(status, &[], "overloaded_error", "Overloaded")
                } else {
                    Self::anthropic_error(status, &[], "api_error", "Internal server error")
                }
            }
            ProviderKind::Offline => json_response(status, &[], &json!({"error": "server error"})),
        }
    }

    fn quota_exhausted(&self) -> Response {
        match self.kind {
            ProviderKind::Gemini => Self::google_error(
                429,
                "RESOURCE_EXHAUSTED",
                "You exceeded your current quota, please check your plan and billing details.",
                json!([
                    {
                        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                        "violations": [{
                            "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                            "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
                            "quotaDimensions": {"location": "global", "model": "gemini-2.5-flash"},
                            "quotaValue": "250"
                        }]
                    },
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "41s"}
                ]),
            ),
            ProviderKind::Openai => Self::openai_error(
                429,
                "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
                "insufficient_quota",
                Some("insufficient_quota"),
            ),
            ProviderKind::Anthropic => Self::anthropic_error(
                400,
                &[],
                "invalid_request_error",
                "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.",
            ),
            ProviderKind::Offline => json_response(429, &[], &json!({"error": "quota exhausted"})),
        }
    }
}

/// OpenAI's way of quoting a wrong key: a few characters at each end, the rest starred.
fn mask_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 7))
}
