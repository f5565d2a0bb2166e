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

mod anthropic;
mod gemini;
mod openai;
mod request;
mod wire;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use serde_json::Value;
use tokio::task::JoinHandle;

use self::request::parse_request;
use self::wire::{Wire, raw};
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

    let route_ok = method == Method::POST && wire.route_ok(&request);
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
