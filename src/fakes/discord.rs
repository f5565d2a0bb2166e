//! Fake Discord REST API: the two message-creating operations the bot-server uses, served by axum
//! on `127.0.0.1:0` inside the current tokio runtime.
//!
//! It owns the wire behaviour of
//! - `POST /api/v10/channels/{channel_id}/messages` (create message, bot-token auth), and
//! - `POST /api/v10/webhooks/{webhook_id}/{webhook_token}` (execute webhook, `?wait=`), also
//!   served unversioned under `/api/webhooks/...` because that is the URL form Discord hands out;
//!
//! and it rejects what Discord would reject, with Discord's error bodies: content over
//! [`MAX_CONTENT_CHARS`] characters, a nonce that is neither an int64 nor a string of at most
//! [`MAX_NONCE_CHARS`] characters, bodies that are not JSON, empty messages, a wrong bot token,
//! unknown channels and webhooks. Every response of those routes carries Discord's rate-limit
//! headers (`X-RateLimit-Limit`, `-Remaining`, `-Reset`, `-Reset-After`, `-Bucket`), and the
//! limits are enforced as Discord documents them: [`RATE_LIMIT`] messages per
//! [`RATE_LIMIT_WINDOW`] per channel or webhook (429 with `X-RateLimit-Scope: user`) and
//! [`GLOBAL_LIMIT`] requests per second per bot token (429 with scope `global`); the scope
//! header is sent only on 429s, as Discord does. Tests script failures (429 from Discord or
//! from Cloudflare, 4xx, 5xx, 401, hangs) with [`FakeDiscord::push_failure`] and inspect what
//! Discord would now show with [`FakeDiscord::messages`].
//!
//! Limits come from Discord's OpenAPI spec and documentation (see `tests/it/fake_discord.rs`, which
//! checks them against `tests/data/discord-openapi/openapi.json`). Time-dependent rules (the nonce
//! window, rate-limit windows) use tokio's clock so paused-clock tests can move through them.
//!
//! Only JSON bodies are understood; multipart uploads (attachments) are out of scope and are
//! answered as invalid JSON.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

/// Longest `content` Discord accepts from a bot or webhook, in characters (Unicode scalar
/// values, not bytes). The spec's `MessageCreateRequest` says 4000, which is the Nitro *user*
/// limit; the documentation and the webhook schema say 2000, and bots have no Nitro.
pub const MAX_CONTENT_CHARS: usize = 2000;

/// Longest string `nonce` Discord accepts, in characters (integer nonces must fit an int64).
pub const MAX_NONCE_CHARS: usize = 25;

/// How long Discord remembers a nonce for `enforce_nonce` ("the past few minutes").
pub const NONCE_WINDOW: Duration = Duration::from_secs(5 * 60);

/// `X-RateLimit-Limit` of the message routes: Discord allows 5 messages per 5 s per channel.
pub const RATE_LIMIT: u32 = 5;

/// Length of one rate-limit window, per channel or webhook.
pub const RATE_LIMIT_WINDOW: Duration = Duration::from_secs(5);

/// Discord's global limit: requests per second per bot token.
pub const GLOBAL_LIMIT: u32 = 50;

/// User id of the bot that authors channel messages.
pub const BOT_USER_ID: u64 = 1_100_000_000_000_000_001;

/// Username of the bot that authors channel messages.
pub const BOT_USERNAME: &str = "fake-bot";

/// Username of webhook messages that do not override it.
pub const WEBHOOK_DEFAULT_USERNAME: &str = "Fake Webhook";

/// Bucket hashes as Discord sends them: opaque, one per route, not including the major parameter.
const CHANNEL_MESSAGES_BUCKET: &str = "80c17d2f203122d936070c88c8d10f33";
const WEBHOOK_BUCKET: &str = "5d8c7a0e1f6b4c2a9e3d7b1f0a6c4e2d";

/// Discord's snowflake epoch (2015-01-01T00:00:00Z) in Unix milliseconds.
const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// A scripted failure, consumed by the next request to a message route (in push order).
#[derive(Clone, Debug, PartialEq)]
pub enum Fail {
    /// Answer 429 with Discord's rate-limit headers and body, without looking at the request.
    RateLimited {
        /// `retry_after` of the body (seconds, fractional).
        retry_after_seconds: f64,
        /// Whether it is the global limit (`X-RateLimit-Global`, scope `global`).
        global: bool,
    },
    /// Answer this status with Discord's generic `{"message": "500: Internal Server Error",
    /// "code": 0}` body, without creating anything. (For a 429 use `RateLimited`, which adds
    /// the headers and counts in [`FakeDiscord::rate_limited_count`].)
    Status(u16),
    /// Answer 401 `{"message": "401: Unauthorized", "code": 0}` whatever the token.
    Unauthorized,
    /// Answer 429 as Cloudflare does in front of Discord: only a `Retry-After` header (whole
    /// seconds), no `X-RateLimit-*` headers, a body that is not Discord's JSON.
    CloudflareRateLimited { retry_after_seconds: u64 },
    /// Refuse the message with Discord's 400 for content AutoMod blocks
    /// (`{"message": "Message was blocked by AutoMod", "code": 200000}`), creating nothing.
    BlockedByAutoMod,
    /// Never answer and create nothing (until the client gives up or the fake is dropped).
    Hang,
    /// Take this long (tokio time) before handling the request as usual.
    Slow(Duration),
    /// Start a 200 answer and break the connection in its body, creating nothing.
    ResetBeforeCreate,
    /// Create the message, then break the connection in the answer's body.
    ResetAfterCreate,
    /// Create the message (Discord accepted it) and then never answer: the client dies or times
    /// out between "Discord accepted" and "recorded as posted".
    HangAfterCreate,
    /// Create the message and then answer this error status, as a proxy in front of Discord
    /// sometimes does.
    StatusAfterCreate(u16),
}

/// A message as Discord now holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentMessage {
    /// Snowflake id Discord gave it.
    pub id: u64,
    /// The channel; for webhook messages the webhook id (the fake does not model the webhook's
    /// channel).
    pub channel_id: u64,
    pub content: String,
    /// The nonce as a string (integer nonces in decimal), if one was sent. Webhooks take none.
    pub nonce: Option<String>,
    pub via_webhook: bool,
}

/// A running fake Discord. Dropping it stops the server and releases hung requests.
pub struct FakeDiscord {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
}

impl FakeDiscord {
    /// Starts the fake on `127.0.0.1` (a free port) on the current tokio runtime; requests to
    /// channel routes must carry `Authorization: Bot {bot_token}` (a token already starting with
    /// `Bot ` is taken as is).
    ///
    /// # Panics
    ///
    /// If no loopback port can be bound: a test fake has no better answer.
    pub async fn start(bot_token: &str) -> FakeDiscord {
        let expected_authorization = if bot_token.starts_with("Bot ") {
            bot_token.to_owned()
        } else {
            format!("Bot {bot_token}")
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            expected_authorization,
            state: Mutex::new(Inner::default()),
            requests: AtomicUsize::new(0),
            rate_limited: AtomicUsize::new(0),
            shutdown: shutdown_rx.clone(),
        });
        let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("fake Discord: bind 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("fake Discord: local address of a bound listener");

        let router = Router::new()
            .route(
                "/api/v10/channels/{channel_id}/messages",
                post(create_message),
            )
            .route(
                "/api/v10/webhooks/{webhook_id}/{webhook_token}",
                post(execute_webhook),
            )
            .route(
                "/api/webhooks/{webhook_id}/{webhook_token}",
                post(execute_webhook),
            )
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(middleware::from_fn_with_state(
                shared.clone(),
                count_requests,
            ))
            .with_state(shared.clone());

        let mut stop = shutdown_rx;
        tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    // An error means the sender is gone, which is a shutdown too.
                    let _ = stop.wait_for(|stop| *stop).await;
                })
                .await;
            if let Err(error) = served {
                tracing::warn!(%error, "fake Discord server stopped");
            }
        });

        FakeDiscord {
            addr,
            shared,
            shutdown,
        }
    }

    /// `127.0.0.1:PORT`, for twilight-http's `proxy(host, true)` setting.
    pub fn proxy_host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Makes a channel exist (messages to unregistered channels get 404 Unknown Channel).
    pub fn add_channel(&self, channel_id: u64) {
        self.shared.lock().channels.insert(channel_id);
    }

    /// Registers a webhook and returns its URL as Discord gives it, on the fake's base:
    /// `http://127.0.0.1:PORT/api/webhooks/ID/TOKEN`.
    pub fn add_webhook(&self, webhook_id: u64, token: &str) -> String {
        self.shared
            .lock()
            .webhooks
            .insert(webhook_id, token.to_owned());
        format!("{}/api/webhooks/{webhook_id}/{token}", self.base_url())
    }

    /// Queues a failure for the next request to a message route; queued failures are consumed
    /// one per request, in order.
    pub fn push_failure(&self, f: Fail) {
        self.shared.lock().failures.push_back(f);
    }

    /// Every message created, in creation order (a deduplicated nonce creates nothing).
    pub fn messages(&self) -> Vec<SentMessage> {
        self.shared
            .lock()
            .messages
            .iter()
            .map(|stored| stored.sent.clone())
            .collect()
    }

    /// The messages created in one channel (or by one webhook: its id), in creation order.
    pub fn messages_in(&self, channel_id: u64) -> Vec<SentMessage> {
        self.shared
            .lock()
            .messages
            .iter()
            .filter(|stored| stored.sent.channel_id == channel_id)
            .map(|stored| stored.sent.clone())
            .collect()
    }

    /// Every HTTP request received, on any path, whatever its outcome.
    pub fn request_count(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// How many 429 responses were sent.
    pub fn rate_limited_count(&self) -> usize {
        self.shared.rate_limited.load(Ordering::SeqCst)
    }

    /// When each request to a message route arrived (tokio time), in arrival order.
    pub fn arrivals(&self) -> Vec<Instant> {
        self.shared.lock().arrivals.clone()
    }
}

impl Drop for FakeDiscord {
    fn drop(&mut self) {
        // Stops accepting, closes idle connections and wakes the hung handlers, so the serve
        // task ends instead of outliving the test.
        self.shutdown.send_replace(true);
    }
}

impl std::fmt::Debug for FakeDiscord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never prints the token.
        f.debug_struct("FakeDiscord")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

struct Shared {
    /// The whole `Authorization` header value channel routes must carry.
    expected_authorization: String,
    state: Mutex<Inner>,
    requests: AtomicUsize,
    rate_limited: AtomicUsize,
    shutdown: watch::Receiver<bool>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread must not hide the state from the others.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until the fake is dropped.
    async fn hang(&self) {
        let mut shutdown = self.shutdown.clone();
        let _ = shutdown.wait_for(|stop| *stop).await;
    }
}

#[derive(Default)]
struct Inner {
    channels: HashSet<u64>,
    /// Webhook id → token.
    webhooks: HashMap<u64, String>,
    failures: VecDeque<Fail>,
    messages: Vec<StoredMessage>,
    /// (channel, author, nonce) → when and which message last used it.
    nonces: HashMap<(u64, u64, String), (Instant, usize)>,
    buckets: HashMap<BucketKey, Window>,
    /// The global limit's one-second window (bot-token requests only).
    global: Option<Window>,
    /// When each request to a message route arrived (tokio time).
    arrivals: Vec<Instant>,
    last_snowflake: u64,
}

struct StoredMessage {
    sent: SentMessage,
    /// The body Discord answered with, returned again for a deduplicated nonce.
    body: Value,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum BucketKey {
    /// Raw path segment, so malformed ids are counted too, as Discord does.
    Channel(String),
    Webhook(String),
}

impl BucketKey {
    fn hash(&self) -> &'static str {
        match self {
            BucketKey::Channel(_) => CHANNEL_MESSAGES_BUCKET,
            BucketKey::Webhook(_) => WEBHOOK_BUCKET,
        }
    }
}

struct Window {
    started: Instant,
    used: u32,
}

/// Rate-limit state to report on one response.
struct BucketReport {
    hash: &'static str,
    remaining: u32,
    reset_after: Duration,
    /// The request is over a limit: 429 with this scope.
    over: Option<Scope>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    User,
    Global,
}

impl Inner {
    /// Counts a request against its bucket and, for the bot's routes, the global limit, and
    /// says whether it is over either. A request over a limit does not
    /// use the window up further, as with Discord.
    fn touch_bucket(&mut self, key: BucketKey) -> BucketReport {
        let now = Instant::now();
        self.arrivals.push(now);
        let hash = key.hash();
        let global_over = matches!(key, BucketKey::Channel(_)) && {
            let global = self.global.get_or_insert(Window {
                started: now,
                used: 0,
            });
            if now >= global.started + Duration::from_secs(1) {
                global.started = now;
                global.used = 0;
            }
            global.used += 1;
            global.used > GLOBAL_LIMIT
        };
        let window = self.buckets.entry(key).or_insert(Window {
            started: now,
            used: 0,
        });
        if now >= window.started + RATE_LIMIT_WINDOW {
            window.started = now;
            window.used = 0;
        }
        let reset_after = (window.started + RATE_LIMIT_WINDOW).saturating_duration_since(now);
        let over = if global_over {
            Some(Scope::Global)
        } else if window.used >= RATE_LIMIT {
            Some(Scope::User)
        } else {
            window.used += 1;
            None
        };
        BucketReport {
            hash,
            remaining: RATE_LIMIT.saturating_sub(window.used),
            reset_after,
            over,
        }
    }

    /// A fresh snowflake (time-ordered and unique even if the wall clock stalls) and the
    /// creation time it encodes.
    fn next_snowflake(&mut self) -> (u64, DateTime<Utc>) {
        let now_ms = u64::try_from(Utc::now().timestamp_millis()).unwrap_or(DISCORD_EPOCH_MS);
        // Worker 1, process 1, increment 0; the max() bumps the increment bits when needed.
        let candidate = (now_ms.saturating_sub(DISCORD_EPOCH_MS) << 22) | (1 << 17) | (1 << 12);
        let id = candidate.max(self.last_snowflake + 1);
        self.last_snowflake = id;
        let created_ms = i64::try_from((id >> 22) + DISCORD_EPOCH_MS).unwrap_or(i64::MAX);
        let created = DateTime::from_timestamp_millis(created_ms).unwrap_or_default();
        (id, created)
    }
}

async fn count_requests(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    next.run(request).await
}

async fn not_found() -> Rejection {
    discord_error(StatusCode::NOT_FOUND, "404: Not Found", 0)
}

async fn method_not_allowed() -> Rejection {
    discord_error(StatusCode::METHOD_NOT_ALLOWED, "405: Method Not Allowed", 0)
}

/// `POST /api/v10/channels/{channel_id}/messages`.
async fn create_message(
    State(shared): State<Arc<Shared>>,
    Path(channel_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (bucket, failure) = {
        let mut inner = shared.lock();
        let bucket = inner.touch_bucket(BucketKey::Channel(channel_id.clone()));
        // A request over a limit is refused before anything else: a scripted failure waits.
        let failure = match bucket.over {
            None => inner.failures.pop_front(),
            Some(_) => None,
        };
        (bucket, failure)
    };
    let after_create = match before_request(&shared, failure, &bucket).await {
        Ok(after_create) => after_create,
        Err(response) => return with_bucket(response, &bucket),
    };
    let outcome = create_in_channel(&shared, &channel_id, &headers, &body);
    let response = finish(&shared, outcome, after_create, true).await;
    with_bucket(response, &bucket)
}

/// `POST /api/v10/webhooks/{webhook_id}/{webhook_token}` and the unversioned form.
async fn execute_webhook(
    State(shared): State<Arc<Shared>>,
    Path((webhook_id, webhook_token)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let (bucket, failure) = {
        let mut inner = shared.lock();
        let bucket = inner.touch_bucket(BucketKey::Webhook(webhook_id.clone()));
        // A request over a limit is refused before anything else: a scripted failure waits.
        let failure = match bucket.over {
            None => inner.failures.pop_front(),
            Some(_) => None,
        };
        (bucket, failure)
    };
    let after_create = match before_request(&shared, failure, &bucket).await {
        Ok(after_create) => after_create,
        Err(response) => return with_bucket(response, &bucket),
    };
    let wait = match parse_wait(query.as_deref()) {
        Ok(wait) => wait,
        Err(rejection) => return with_bucket(rejection.into_response(), &bucket),
    };
    let outcome = create_by_webhook(&shared, &webhook_id, &webhook_token, &body);
    let response = finish(&shared, outcome, after_create, wait).await;
    with_bucket(response, &bucket)
}

/// What to do once the message exists.
enum AfterCreate {
    Answer,
    Hang,
    Status(u16),
    Reset,
}

/// A 200 whose body breaks off: the client sees the connection fail mid-answer.
fn broken_answer() -> Response {
    let body = futures_util::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection reset by the fake",
        ))
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

/// Applies a scripted failure that happens before Discord looks at the request: `Err` is the
/// response to send instead.
async fn before_request(
    shared: &Shared,
    failure: Option<Fail>,
    bucket: &BucketReport,
) -> Result<AfterCreate, Response> {
    if let Some(scope) = bucket.over {
        shared.rate_limited.fetch_add(1, Ordering::SeqCst);
        let retry_after = match scope {
            Scope::User => bucket.reset_after.as_secs_f64(),
            Scope::Global => 1.0,
        };
        return Err(rate_limited(
            retry_after,
            scope == Scope::Global,
            bucket.hash,
        ));
    }
    match failure {
        None => Ok(AfterCreate::Answer),
        Some(Fail::HangAfterCreate) => Ok(AfterCreate::Hang),
        Some(Fail::StatusAfterCreate(status)) => Ok(AfterCreate::Status(status)),
        Some(Fail::RateLimited {
            retry_after_seconds,
            global,
        }) => {
            shared.rate_limited.fetch_add(1, Ordering::SeqCst);
            Err(rate_limited(retry_after_seconds, global, bucket.hash))
        }
        Some(Fail::Status(status)) => Err(generic_status(status).into_response()),
        Some(Fail::CloudflareRateLimited {
            retry_after_seconds,
        }) => {
            shared.rate_limited.fetch_add(1, Ordering::SeqCst);
            let mut response = (
                StatusCode::TOO_MANY_REQUESTS,
                "error code: 1015\nYou are being rate limited.",
            )
                .into_response();
            set_header(
                response.headers_mut(),
                "retry-after",
                retry_after_seconds.to_string(),
            );
            // Marks the answer as not Discord's: `with_bucket` adds no headers to it.
            set_header(
                response.headers_mut(),
                "cf-ray",
                "8f0c0ffee0000-FRA".to_owned(),
            );
            Err(response)
        }
        Some(Fail::BlockedByAutoMod) => Err(discord_error(
            StatusCode::BAD_REQUEST,
            "Message was blocked by AutoMod",
            200_000,
        )
        .into_response()),
        Some(Fail::Unauthorized) => Err(unauthorized().into_response()),
        Some(Fail::Hang) => {
            shared.hang().await;
            Err(generic_status(503).into_response())
        }
        Some(Fail::Slow(wait)) => {
            tokio::time::sleep(wait).await;
            Ok(AfterCreate::Answer)
        }
        Some(Fail::ResetBeforeCreate) => Err(broken_answer()),
        Some(Fail::ResetAfterCreate) => Ok(AfterCreate::Reset),
    }
}

/// Turns the outcome of a create into the response, applying an after-create failure to a
/// success (including a deduplicated nonce: Discord holds the message either way).
async fn finish(
    shared: &Shared,
    outcome: Result<Value, Rejection>,
    after_create: AfterCreate,
    with_body: bool,
) -> Response {
    let message = match outcome {
        Ok(message) => message,
        Err(rejection) => return rejection.into_response(),
    };
    match after_create {
        AfterCreate::Answer if with_body => (StatusCode::OK, axum::Json(message)).into_response(),
        AfterCreate::Answer => StatusCode::NO_CONTENT.into_response(),
        AfterCreate::Hang => {
            shared.hang().await;
            generic_status(503).into_response()
        }
        AfterCreate::Status(status) => generic_status(status).into_response(),
        AfterCreate::Reset => broken_answer(),
    }
}

fn create_in_channel(
    shared: &Shared,
    raw_channel_id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, Rejection> {
    // Discord checks the token before anything else.
    let authorized = headers
        .get(header::AUTHORIZATION)
        .is_some_and(|value| value.as_bytes() == shared.expected_authorization.as_bytes());
    if !authorized {
        return Err(unauthorized());
    }
    let channel_id = parse_snowflake("channel_id", raw_channel_id)?;
    if !shared.lock().channels.contains(&channel_id) {
        return Err(discord_error(
            StatusCode::NOT_FOUND,
            "Unknown Channel",
            10003,
        ));
    }
    let request = MessageRequest::parse(body, Route::CreateMessage)?;

    let mut inner = shared.lock();
    let now = Instant::now();
    if request.enforce_nonce
        && let Some(nonce) = &request.nonce
        && let Some(&(created, index)) =
            inner
                .nonces
                .get(&(channel_id, BOT_USER_ID, nonce.key.clone()))
        && now.saturating_duration_since(created) < NONCE_WINDOW
    {
        return Ok(inner.messages[index].body.clone());
    }

    let (id, created_at) = inner.next_snowflake();
    let content = request.content.unwrap_or_default();
    let mut body = json!({
        "type": 0,
        "content": content,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "timestamp": created_at.to_rfc3339_opts(SecondsFormat::Micros, false),
        "edited_timestamp": null,
        "flags": 0,
        "components": [],
        "id": id.to_string(),
        "channel_id": channel_id.to_string(),
        "author": user_json(BOT_USER_ID, BOT_USERNAME),
        "pinned": false,
        "mention_everyone": false,
        "tts": request.tts,
    });
    if let Some(nonce) = &request.nonce {
        body["nonce"] = nonce.echo.clone();
        // Every nonce is remembered, enforced or not: Discord compares against any earlier
        // message with that nonce, and the latest one decides the window.
        let index = inner.messages.len();
        inner
            .nonces
            .insert((channel_id, BOT_USER_ID, nonce.key.clone()), (now, index));
    }
    inner.messages.push(StoredMessage {
        sent: SentMessage {
            id,
            channel_id,
            content,
            nonce: request.nonce.map(|nonce| nonce.key),
            via_webhook: false,
        },
        body: body.clone(),
    });
    Ok(body)
}

fn create_by_webhook(
    shared: &Shared,
    raw_webhook_id: &str,
    token: &str,
    body: &[u8],
) -> Result<Value, Rejection> {
    let webhook_id = parse_snowflake("webhook_id", raw_webhook_id)?;
    match shared.lock().webhooks.get(&webhook_id) {
        None => {
            return Err(discord_error(
                StatusCode::NOT_FOUND,
                "Unknown Webhook",
                10015,
            ));
        }
        Some(expected) if expected != token => {
            return Err(discord_error(
                StatusCode::UNAUTHORIZED,
                "Invalid Webhook Token",
                50027,
            ));
        }
        Some(_) => {}
    }
    let request = MessageRequest::parse(body, Route::ExecuteWebhook)?;

    let mut inner = shared.lock();
    let (id, created_at) = inner.next_snowflake();
    let content = request.content.unwrap_or_default();
    let username = request
        .username
        .unwrap_or_else(|| WEBHOOK_DEFAULT_USERNAME.to_owned());
    let body = json!({
        "type": 0,
        "content": content,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "timestamp": created_at.to_rfc3339_opts(SecondsFormat::Micros, false),
        "edited_timestamp": null,
        "flags": 0,
        "components": [],
        "id": id.to_string(),
        "channel_id": webhook_id.to_string(),
        "author": user_json(webhook_id, &username),
        "pinned": false,
        "mention_everyone": false,
        "tts": request.tts,
        "webhook_id": webhook_id.to_string(),
    });
    inner.messages.push(StoredMessage {
        sent: SentMessage {
            id,
            channel_id: webhook_id,
            content,
            nonce: None,
            via_webhook: true,
        },
        body: body.clone(),
    });
    Ok(body)
}

/// A user object as the spec's `UserResponse` requires it (and twilight's `User` reads it).
fn user_json(id: u64, username: &str) -> Value {
    json!({
        "id": id.to_string(),
        "username": username,
        "avatar": null,
        "discriminator": "0000",
        "public_flags": 0,
        "flags": 0,
        "bot": true,
        "banner": null,
        "accent_color": null,
        "global_name": null,
        "avatar_decoration_data": null,
        "collectibles": null,
        "primary_guild": null,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    CreateMessage,
    ExecuteWebhook,
}

/// A nonce as sent (echoed back) and as compared (integers in decimal).
struct Nonce {
    echo: Value,
    key: String,
}

/// The request fields the fake looks at; everything else is ignored, as Discord ignores unknown
/// fields.
struct MessageRequest {
    content: Option<String>,
    nonce: Option<Nonce>,
    enforce_nonce: bool,
    tts: bool,
    /// Webhook username override.
    username: Option<String>,
}

impl MessageRequest {
    fn parse(body: &[u8], route: Route) -> Result<MessageRequest, Rejection> {
        // An empty body is an empty form, hence an empty message, not invalid JSON.
        let value: Value = if body.iter().all(u8::is_ascii_whitespace) {
            Value::Object(Map::new())
        } else {
            serde_json::from_slice(body).map_err(|_| {
                discord_error(
                    StatusCode::BAD_REQUEST,
                    "The request body contains invalid JSON.",
                    50109,
                )
            })?
        };
        let Value::Object(fields) = value else {
            let mut errors = FieldErrors::default();
            errors.top_level(
                "DICT_TYPE_CONVERT",
                "Only dictionaries may be used in a DictType",
            );
            return Err(errors.into_rejection());
        };

        let mut errors = FieldErrors::default();
        let content = match fields.get("content") {
            None | Some(Value::Null) => None,
            Some(Value::String(content)) => {
                if content.chars().count() > MAX_CONTENT_CHARS {
                    errors.add(
                        "content",
                        "BASE_TYPE_MAX_LENGTH",
                        format!("Must be {MAX_CONTENT_CHARS} or fewer in length."),
                    );
                }
                Some(content.clone())
            }
            Some(_) => {
                errors.add(
                    "content",
                    "BASE_TYPE_STRING",
                    "Must be a string.".to_owned(),
                );
                None
            }
        };
        let nonce = if route == Route::CreateMessage {
            parse_nonce(fields.get("nonce"), &mut errors)
        } else {
            // Execute webhook has no nonce in the spec: an unknown field, ignored.
            None
        };
        let enforce_nonce = if route == Route::CreateMessage {
            parse_bool("enforce_nonce", fields.get("enforce_nonce"), &mut errors)
        } else {
            false
        };
        let tts = parse_bool("tts", fields.get("tts"), &mut errors);
        let username = if route == Route::ExecuteWebhook {
            match fields.get("username") {
                None | Some(Value::Null) => None,
                Some(Value::String(name)) => {
                    if !(1..=80).contains(&name.chars().count()) {
                        errors.add(
                            "username",
                            "BASE_TYPE_BAD_LENGTH",
                            "Must be between 1 and 80 in length.".to_owned(),
                        );
                    }
                    Some(name.clone())
                }
                Some(_) => {
                    errors.add(
                        "username",
                        "BASE_TYPE_STRING",
                        "Must be a string.".to_owned(),
                    );
                    None
                }
            }
        } else {
            None
        };
        if let Some(Value::Array(embeds)) = fields.get("embeds")
            && embeds.len() > 10
        {
            errors.add(
                "embeds",
                "BASE_TYPE_MAX_LENGTH",
                "Must be 10 or fewer in length.".to_owned(),
            );
        }
        if !errors.is_empty() {
            return Err(errors.into_rejection());
        }

        // Discord strips content, so whitespace alone is empty; the other payload fields a JSON
        // body can carry count when non-empty.
        let has_text = content.as_deref().is_some_and(|c| !c.trim().is_empty());
        let non_empty_list =
            |name: &str| matches!(fields.get(name), Some(Value::Array(items)) if !items.is_empty());
        let has_other = non_empty_list("embeds")
            || non_empty_list("components")
            || (route == Route::CreateMessage && non_empty_list("sticker_ids"))
            || matches!(fields.get("poll"), Some(poll) if !poll.is_null());
        if !has_text && !has_other {
            return Err(discord_error(
                StatusCode::BAD_REQUEST,
                "Cannot send an empty message",
                50006,
            ));
        }

        Ok(MessageRequest {
            content,
            nonce,
            enforce_nonce,
            tts,
            username,
        })
    }
}

/// `nonce`: an int64, a string of at most [`MAX_NONCE_CHARS`] characters, or null.
fn parse_nonce(value: Option<&Value>, errors: &mut FieldErrors) -> Option<Nonce> {
    match value {
        None | Some(Value::Null) => None,
        Some(Value::String(nonce)) => {
            if nonce.chars().count() > MAX_NONCE_CHARS {
                errors.add(
                    "nonce",
                    "BASE_TYPE_MAX_LENGTH",
                    format!("Must be {MAX_NONCE_CHARS} or fewer in length."),
                );
                return None;
            }
            Some(Nonce {
                echo: Value::String(nonce.clone()),
                key: nonce.clone(),
            })
        }
        Some(Value::Number(number)) => {
            if let Some(nonce) = number.as_i64() {
                Some(Nonce {
                    echo: Value::Number(number.clone()),
                    key: nonce.to_string(),
                })
            } else if number.is_u64() {
                // twilight's `nonce(u64)` can produce these; the spec says int64.
                errors.add(
                    "nonce",
                    "NUMBER_TYPE_MAX",
                    format!("int value should be less than or equal to {}.", i64::MAX),
                );
                None
            } else {
                errors.add(
                    "nonce",
                    "NONCE_TYPE_INVALID",
                    "Must be a string or an integer.".to_owned(),
                );
                None
            }
        }
        Some(_) => {
            errors.add(
                "nonce",
                "NONCE_TYPE_INVALID",
                "Must be a string or an integer.".to_owned(),
            );
            None
        }
    }
}

fn parse_bool(field: &str, value: Option<&Value>, errors: &mut FieldErrors) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Bool(flag)) => *flag,
        Some(_) => {
            errors.add(
                field,
                "BASE_TYPE_BOOLEAN",
                "Must be either true or false.".to_owned(),
            );
            false
        }
    }
}

/// The `wait` query parameter of execute webhook (absent means false).
fn parse_wait(query: Option<&str>) -> Result<bool, Rejection> {
    let mut wait = false;
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if key != "wait" {
            continue;
        }
        wait = match value.to_ascii_lowercase().as_str() {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => {
                let mut errors = FieldErrors::default();
                errors.add(
                    "wait",
                    "BOOLEAN_TYPE_COERCE",
                    format!("Value \"{value}\" is not a valid boolean."),
                );
                return Err(errors.into_rejection());
            }
        };
    }
    Ok(wait)
}

fn parse_snowflake(field: &str, raw: &str) -> Result<u64, Rejection> {
    raw.parse::<u64>().map_err(|_| {
        let mut errors = FieldErrors::default();
        errors.add(
            field,
            "NUMBER_TYPE_COERCE",
            format!("Value \"{raw}\" is not snowflake."),
        );
        errors.into_rejection()
    })
}

/// The `errors` tree of a 50035 "Invalid Form Body".
#[derive(Default)]
struct FieldErrors(Map<String, Value>);

impl FieldErrors {
    fn add(&mut self, field: &str, code: &str, message: String) {
        let entry = self
            .0
            .entry(field.to_owned())
            .or_insert_with(|| json!({ "_errors": [] }));
        if let Some(Value::Array(list)) = entry.get_mut("_errors") {
            list.push(json!({ "code": code, "message": message }));
        }
    }

    /// An error about the body as a whole (`errors._errors`).
    fn top_level(&mut self, code: &str, message: &str) {
        self.0.insert(
            "_errors".to_owned(),
            json!([{ "code": code, "message": message }]),
        );
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn into_rejection(self) -> Rejection {
        Rejection {
            status: StatusCode::BAD_REQUEST,
            body: json!({
                "message": "Invalid Form Body",
                "code": 50035,
                "errors": Value::Object(self.0),
            }),
        }
    }
}

/// An error answer: a status and Discord's JSON error body. A `Response` is too big to pass
/// around in `Result`s, so errors travel as this until they are sent.
struct Rejection {
    status: StatusCode,
    body: Value,
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}

/// Discord's plain error body `{"message": ..., "code": ...}`.
fn discord_error(status: StatusCode, message: &str, code: u32) -> Rejection {
    Rejection {
        status,
        body: json!({ "message": message, "code": code }),
    }
}

fn unauthorized() -> Rejection {
    discord_error(StatusCode::UNAUTHORIZED, "401: Unauthorized", 0)
}

/// A status with Discord's generic body, e.g. `{"message": "500: Internal Server Error",
/// "code": 0}`.
fn generic_status(status: u16) -> Rejection {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let reason = status.canonical_reason().unwrap_or("Unknown");
    discord_error(status, &format!("{}: {reason}", status.as_u16()), 0)
}

fn rate_limited(retry_after: f64, global: bool, bucket: &'static str) -> Response {
    let retry_after = (retry_after.max(0.0) * 1000.0).ceil() / 1000.0;
    let body = json!({
        "message": "You are being rate limited.",
        "retry_after": retry_after,
        "global": global,
    });
    let mut response = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    set_header(headers, "x-ratelimit-limit", RATE_LIMIT.to_string());
    set_header(headers, "x-ratelimit-remaining", "0".to_owned());
    set_header(
        headers,
        "x-ratelimit-reset",
        unix_seconds_after(retry_after),
    );
    set_header(
        headers,
        "x-ratelimit-reset-after",
        seconds_ceil_ms(retry_after),
    );
    set_header(headers, "x-ratelimit-bucket", bucket.to_owned());
    // Retry-After is whole seconds, rounded up so a client that honours it is never early.
    set_header(headers, "retry-after", format!("{}", retry_after.ceil()));
    // Discord sends the scope only on 429s.
    set_header(
        headers,
        "x-ratelimit-scope",
        if global { "global" } else { "user" }.to_owned(),
    );
    if global {
        set_header(headers, "x-ratelimit-global", "true".to_owned());
    }
    response
}

/// Adds the bucket headers to a response that does not have them yet (429s carry their own).
fn with_bucket(mut response: Response, bucket: &BucketReport) -> Response {
    let headers = response.headers_mut();
    if headers.contains_key("x-ratelimit-bucket") || headers.contains_key("cf-ray") {
        return response;
    }
    let reset_after = bucket.reset_after.as_secs_f64();
    set_header(headers, "x-ratelimit-limit", RATE_LIMIT.to_string());
    set_header(
        headers,
        "x-ratelimit-remaining",
        bucket.remaining.to_string(),
    );
    set_header(
        headers,
        "x-ratelimit-reset",
        unix_seconds_after(reset_after),
    );
    set_header(
        headers,
        "x-ratelimit-reset-after",
        seconds_ceil_ms(reset_after),
    );
    set_header(headers, "x-ratelimit-bucket", bucket.hash.to_owned());
    response
}

fn set_header(headers: &mut HeaderMap, name: &'static str, value: String) {
    if let Ok(value) = HeaderValue::try_from(value) {
        headers.insert(HeaderName::from_static(name), value);
    }
}

/// Seconds with 3 decimals, rounded up, so a client that waits that long is never early.
fn seconds_ceil_ms(seconds: f64) -> String {
    format!("{:.3}", (seconds * 1000.0).ceil() / 1000.0)
}

/// Unix time `seconds` from now, as Discord writes `X-RateLimit-Reset` (seconds, 3 decimals).
fn unix_seconds_after(seconds: f64) -> String {
    let after = chrono::Duration::from_std(Duration::from_secs_f64(seconds.clamp(0.0, 1e9)))
        .unwrap_or_default();
    let millis = (Utc::now() + after).timestamp_millis();
    format!("{}.{:03}", millis / 1000, millis % 1000)
}
