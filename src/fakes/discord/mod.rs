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
//! from Cloudflare, 4xx, 5xx, 401, hangs) with [`FakeDiscord::push_failure`], or one for every
//! request with [`FakeDiscord::fail_always`] (a Discord that hangs), and inspect what Discord
//! would now show with [`FakeDiscord::messages`].
//!
//! Limits come from Discord's OpenAPI spec and documentation (see `tests/it/fake_discord.rs`, which
//! checks them against `tests/data/discord-openapi/openapi.json`). Time-dependent rules (the nonce
//! window, rate-limit windows) use tokio's clock so paused-clock tests can move through them.
//!
//! Only JSON bodies are understood; multipart uploads (attachments) are out of scope and are
//! answered as invalid JSON.

mod handlers;
mod rate_limit;
mod reject;
mod request;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::middleware;
use axum::routing::post;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use self::handlers::{
    count_requests, create_message, execute_webhook, method_not_allowed, not_found,
};
use self::rate_limit::{BucketKey, Window};

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
    /// Create the message and answer 200 with a body that is not the message's JSON (a proxy
    /// rewrote it, or it was cut): Discord holds the message, the client cannot tell.
    GarbledAfterCreate,
    /// Answer 429 with no hint of how long to wait: no body JSON, no `Retry-After`, no
    /// rate-limit headers (some proxies do this).
    BareRateLimited,
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
        let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("fake Discord: bind 127.0.0.1:0");
        Self::serve(listener, bot_token)
    }

    /// [`FakeDiscord::start`] on a listener the caller bound (a stand-in serving another
    /// address).
    ///
    /// # Panics
    ///
    /// If the listener has no local address.
    pub fn serve(listener: tokio::net::TcpListener, bot_token: &str) -> FakeDiscord {
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

    /// Applies `f` to every request to a message route that finds no queued failure (`None`
    /// ends it): `Fail::Hang` makes a Discord that never answers.
    pub fn fail_always(&self, f: Option<Fail>) {
        self.shared.lock().always = f;
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
    /// The failure of every request without a queued one ([`FakeDiscord::fail_always`]).
    always: Option<Fail>,
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

impl Inner {
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
