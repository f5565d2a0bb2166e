//! Delivery: sending a post's text to its target (a Discord channel through the bot API, a
//! Discord webhook, or the log), and splitting long text into Discord-sized messages.
//!
//! Discord is called with our own `reqwest` client (the process's one HTTP stack and the OS
//! trust store, as for the LLM providers) rather than twilight-http, because twilight-http 0.18
//! retries a global or header-less 429 at once inside the client, out of our reach, and learns a
//! bucket's state only from 429s. Here every request waits for its turn in its bucket
//! ([`ratelimit`]), paced from the documented `X-RateLimit-*` headers, so a steady load draws no
//! 429; a 429 that happens anyway is honoured (`retry_after` from the body, or the `Retry-After`
//! header when Discord's headers are missing, as in a Cloudflare answer) and counted. 5xx
//! answers and network errors are retried with backoff.
//!
//! Channel messages carry a `nonce` with `enforce_nonce: true`: Discord answers a repeated nonce
//! (within a few minutes) with the message it already created, so re-sending after a crash does
//! not post twice. A webhook takes no nonce: after a failure that may have come after Discord
//! accepted the message (5xx, a timeout, a dropped connection) it is not sent again but set
//! aside for an operator ([`DeliveryError::Uncertain`]); a refused connection or a 429 is retried.
//! Webhook URLs carry a token: no URL, path or request is ever logged or put in an error
//! (errors name the webhook id only).
//!
//! At the end of the shutdown budget ([`crate::shutdown`]) requests still in flight are cut
//! ([`Delivery::cut_in_flight`]): the channel message keeps its nonce and is re-sent at the
//! next start; the webhook message may have been posted, so it is set aside
//! ([`DeliveryError::Uncertain`]), as after a timeout.

pub mod ratelimit;
mod split;

pub use split::split_message;

use crate::secret::Secret;
use ratelimit::{BucketHeaders, GLOBAL_PER_SECOND, RateLimiter, Turn};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// `[discord]` of the config (owned here, as `llm` owns `[providers.NAME]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DiscordSettings {
    /// Discord's API host; anything else (a fake, a proxy) is reached as `scheme://host:port`.
    pub base_url: String,
    /// Longest one Discord request may take (seconds, or a string with a unit: `"30s"`).
    #[serde(deserialize_with = "crate::duration::seconds")]
    pub timeout_seconds: u64,
}

impl Default for DiscordSettings {
    fn default() -> Self {
        Self {
            base_url: "https://discord.com".to_owned(),
            timeout_seconds: 30,
        }
    }
}

/// A delivery target, resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Discord { channel_id: u64 },
    Webhook { url: crate::secret::Secret },
    Log,
}

impl Target {
    /// `discord`, `webhook` or `log`: a bounded label.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Discord { .. } => "discord",
            Self::Webhook { .. } => "webhook",
            Self::Log => "log",
        }
    }

    /// A stable key for the post queue and dedup: `discord:123`, `webhook:ID`, `log`.
    /// Never the webhook token.
    pub fn key(&self) -> String {
        match self {
            Self::Discord { channel_id } => format!("discord:{channel_id}"),
            Self::Webhook { url } => {
                let id = webhook_id(url.expose()).unwrap_or(0);
                format!("webhook:{id}")
            }
            Self::Log => "log".to_owned(),
        }
    }
}

/// Discord's limit on a message's `content`, in characters.
pub const MAX_MESSAGE_CHARS: usize = 2000;

/// A 429 asking for a longer wait than this is logged as an error (and shown on `/readyz`
/// while it lasts): it is honoured in full, but an operator should know.
pub const LONG_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The longest wait taken from a 429 (a nonsensical `retry_after` such as 1e30 is taken as
/// this): a day, far beyond any wait Discord documents.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);

/// A send that failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("Discord rejected the bot token (401 Unauthorized): check DISCORD_TOKEN")]
    Unauthorized,
    #[error("Discord rejected the webhook (401): its token is wrong; check the webhook URL")]
    WebhookUnauthorized,
    #[error("Discord refused access to {what} (403 Missing Access/Permissions): {fix}")]
    Forbidden { what: String, fix: &'static str },
    #[error("Discord does not know {what} (404): check the id")]
    NotFound { what: String },
    #[error("Discord rate limited the request for {retry_after_seconds:.1}s (global: {global})")]
    RateLimited {
        retry_after_seconds: f64,
        global: bool,
    },
    #[error("Discord answered {status} for {what}: {message}")]
    Api {
        what: String,
        status: u16,
        message: String,
    },
    #[error("Discord request failed: {0}")]
    Transport(String),
    /// The connection could not be made: nothing was sent, so sending again is safe.
    #[error("Discord cannot be reached: {0}")]
    Connect(String),
    /// A webhook request failed after it was sent (5xx, timeout, a dropped connection):
    /// Discord may have posted the message, and a webhook takes no nonce, so sending again
    /// could post it twice.
    #[error(
        "{what}: Discord may have posted the message (webhooks take no nonce, so it is not sent again blindly): check the channel, then `bot-server posts retry ID` or `bot-server posts reject ID`"
    )]
    Uncertain {
        what: String,
        #[source]
        source: Box<DeliveryError>,
    },
    #[error("Discord request timed out")]
    Timeout,
    #[error("a Discord target needs a bot token: set DISCORD_TOKEN (or DISCORD_TOKEN_FILE)")]
    MissingToken,
    #[error("Discord's answer could not be read: {0}")]
    Decode(String),
    #[error("the send was not started: the server is shutting down")]
    Cancelled,
    #[error("cannot set up the HTTP client for Discord: {0}")]
    Client(String),
    /// The request went out but its answer had not come when the shutdown budget ended.
    #[error("the request was cut at shutdown before Discord answered (the shutdown budget ended)")]
    Cut,
}

impl DeliveryError {
    fn is_retryable(&self) -> bool {
        match self {
            // A channel message goes again with its nonce, so Discord answers a resend of an
            // accepted one (`Decode`) with the message it holds.
            Self::RateLimited { .. }
            | Self::Transport(_)
            | Self::Connect(_)
            | Self::Timeout
            | Self::Decode(_) => true,
            Self::Api { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// Whether the post must not be sent again by itself: Discord refused it for good (400
    /// e.g. AutoMod or invalid content, 403, 404, 413 and other 4xx but 401, 408 and 429), or a
    /// webhook may have posted it ([`DeliveryError::Uncertain`]). A 401 is the token's fault,
    /// not the post's: the post stays queued.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Forbidden { .. } | Self::NotFound { .. } | Self::Uncertain { .. } => true,
            Self::Api { status, .. } => {
                (400..500).contains(status) && !matches!(status, 401 | 408 | 429)
            }
            _ => false,
        }
    }

    /// Whether Discord may have accepted the request: it was sent and the answer was a 5xx, or
    /// never came (a timeout, a dropped connection).
    fn may_have_been_accepted(&self) -> bool {
        match self {
            // A 2xx whose body could not be read: Discord took the request.
            Self::Transport(_) | Self::Timeout | Self::Decode(_) | Self::Cut => true,
            Self::Api { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// A short, bounded label for metrics.
    pub fn kind_label(&self) -> &'static str {
        match self {
            Self::Unauthorized | Self::WebhookUnauthorized => "unauthorized",
            Self::Forbidden { .. } => "forbidden",
            Self::NotFound { .. } => "not_found",
            Self::RateLimited { .. } => "rate_limited",
            Self::Api { .. } => "api_error",
            Self::Transport(_) => "transport",
            Self::Connect(_) => "connect",
            Self::Uncertain { .. } => "uncertain",
            Self::Timeout => "timeout",
            Self::MissingToken => "missing_token",
            Self::Decode(_) => "decode",
            Self::Cancelled => "cancelled",
            Self::Client(_) => "client",
            Self::Cut => "cut",
        }
    }
}

/// Called once for every 429 answer Discord sends.
type RateLimitObserver = Arc<dyn Fn() + Send + Sync>;

/// Called once per message sent to Discord (not the log) with `success` or the error's
/// [`DeliveryError::kind_label`].
type MessageObserver = Arc<dyn Fn(&str) + Send + Sync>;

/// Sends messages to targets. Cheap to clone; one per process, so the rate-limit state is
/// shared by every actor.
#[derive(Clone)]
pub struct Delivery {
    http: reqwest::Client,
    api: String,
    token: Option<Secret>,
    bot_limits: Arc<RateLimiter>,
    webhook_limits: Arc<RateLimiter>,
    max_retries: usize,
    on_rate_limited: RateLimitObserver,
    on_message: MessageObserver,
    /// Fired at the end of the shutdown budget: requests in flight are dropped.
    cut: CancellationToken,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("api", &self.api)
            .field("bot", &self.token.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct CreateMessage<'a> {
    content: &'a str,
    nonce: &'a str,
    enforce_nonce: bool,
    allowed_mentions: AllowedMentions,
}

#[derive(Serialize)]
struct ExecuteWebhook<'a> {
    content: &'a str,
    allowed_mentions: AllowedMentions,
}

/// Posts never ping anyone: model output must not be able to `@everyone`.
#[derive(Serialize)]
struct AllowedMentions {
    parse: [&'static str; 0],
}

/// The part of Discord's message object we keep.
#[derive(Deserialize)]
struct CreatedMessage {
    id: String,
}

/// Discord's 429 body.
#[derive(Deserialize)]
struct RateLimitBody {
    retry_after: f64,
    #[serde(default)]
    global: bool,
}

/// Discord's error body.
#[derive(Deserialize)]
struct ErrorBody {
    message: String,
}

/// Where one request goes.
struct Endpoint<'a> {
    /// Whether sending the same request again cannot post twice (a channel message with its
    /// nonce); a webhook request is not.
    idempotent: bool,
    /// The rate-limit bucket: the route's major parameter.
    bucket: String,
    /// Names the endpoint in errors, without secrets.
    what: String,
    url: String,
    auth: Option<&'a Secret>,
    channel_id: Option<u64>,
    limiter: &'a RateLimiter,
}

impl Delivery {
    /// Builds the client. `token` is the bot token (`DISCORD_TOKEN`), needed only by channel
    /// targets.
    ///
    /// # Errors
    ///
    /// When the HTTP client cannot be built (the system's TLS roots cannot be loaded).
    pub fn new(settings: &DiscordSettings, token: Option<Secret>) -> Result<Self, DeliveryError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.timeout_seconds.max(1)))
            .user_agent(concat!(
                "DiscordBot (https://github.com/botticelli/bot-server, ",
                env!("CARGO_PKG_VERSION"),
                ")"
            ))
            .build()
            // Not a default client in its place: that would drop the timeout and the agent.
            .map_err(|err| DeliveryError::Client(crate::error_chain(&err)))?;
        Ok(Self {
            http,
            api: format!("{}/api/v10", settings.base_url.trim_end_matches('/')),
            token,
            bot_limits: Arc::new(RateLimiter::new(GLOBAL_PER_SECOND)),
            // Webhooks are limited per webhook, not by the bot's global limit.
            webhook_limits: Arc::new(RateLimiter::new(0)),
            max_retries: 4,
            on_rate_limited: Arc::new(|| {}),
            on_message: Arc::new(|_| {}),
            cut: CancellationToken::new(),
        })
    }

    /// Ends every request in flight, now and later, with [`DeliveryError::Cut`]: the end of
    /// the shutdown budget. (The sends' own `cancel` only stops waits and new requests.)
    pub fn cut_in_flight(&self) {
        self.cut.cancel();
    }

    /// Calls `observer` for every 429 Discord answers (for the rate-limited counter).
    #[must_use]
    pub fn observe_rate_limits(mut self, observer: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_rate_limited = Arc::new(observer);
        self
    }

    /// Calls `observer` once per message sent to Discord, with `success` or the error kind
    /// (for the messages counter).
    #[must_use]
    /// How long Discord's global rate limit still holds every request of the bot (or of the
    /// webhooks), if it does: for `/readyz`, which shows a long one.
    pub fn global_pause(&self) -> Option<Duration> {
        self.bot_limits
            .paused_for()
            .max(self.webhook_limits.paused_for())
    }

    pub fn observe_messages(mut self, observer: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.on_message = Arc::new(observer);
        self
    }

    /// Whether a bot token is configured.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Sends one message (at most [`MAX_MESSAGE_CHARS`]) and returns its message id.
    /// `nonce` (at most 25 characters) makes a repeated send of the same part return the
    /// message Discord already created instead of a second one. Waiting for a rate limit ends
    /// when `cancel` fires (the request is then not sent); a request that has gone out is
    /// completed, unless [`Delivery::cut_in_flight`] cuts it.
    ///
    /// # Errors
    ///
    /// When Discord refuses the message, after retrying rate limits, 5xx and network errors.
    pub async fn send(
        &self,
        target: &Target,
        content: &str,
        nonce: &str,
        cancel: &CancellationToken,
    ) -> Result<String, DeliveryError> {
        let span = tracing::info_span!(
            "discord.message",
            otel.kind = "client",
            target.kind = target.kind(),
            chars = content.chars().count(),
            otel.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
            error.message = tracing::field::Empty,
        );
        let result = self
            .send_uncounted(target, content, nonce, cancel)
            .instrument(span.clone())
            .await;
        if let Err(err) = &result {
            span.record("otel.status_code", "ERROR");
            span.record("error.type", err.kind_label());
            span.record("error.message", crate::error_chain(err));
        }
        if !matches!(target, Target::Log) {
            (self.on_message)(match &result {
                Ok(_) => "success",
                Err(err) => err.kind_label(),
            });
        }
        result
    }

    /// [`Delivery::send`] without reporting the outcome.
    async fn send_uncounted(
        &self,
        target: &Target,
        content: &str,
        nonce: &str,
        cancel: &CancellationToken,
    ) -> Result<String, DeliveryError> {
        let allowed_mentions = || AllowedMentions { parse: [] };
        match target {
            Target::Log => {
                println!("── post (nonce {nonce}) ──\n{content}\n──");
                tracing::info!(
                    target_kind = "log",
                    nonce,
                    chars = content.chars().count(),
                    "post delivered to the log"
                );
                Ok(format!("log-{nonce}"))
            }
            Target::Discord { channel_id } => {
                let token = self.token.as_ref().ok_or(DeliveryError::MissingToken)?;
                let endpoint = Endpoint {
                    idempotent: true,
                    bucket: format!("channel:{channel_id}"),
                    what: format!("channel {channel_id}"),
                    url: format!("{}/channels/{channel_id}/messages", self.api),
                    auth: Some(token),
                    channel_id: Some(*channel_id),
                    limiter: &self.bot_limits,
                };
                let body = CreateMessage {
                    content,
                    nonce,
                    enforce_nonce: true,
                    allowed_mentions: allowed_mentions(),
                };
                self.retrying(&endpoint, &body, cancel).await
            }
            Target::Webhook { url } => {
                let (webhook_id, token) =
                    parse_webhook(url.expose()).ok_or_else(|| DeliveryError::NotFound {
                        what: "the webhook URL".into(),
                    })?;
                let endpoint = Endpoint {
                    idempotent: false,
                    bucket: format!("webhook:{webhook_id}"),
                    what: format!("webhook {webhook_id}"),
                    url: format!("{}/webhooks/{webhook_id}/{token}?wait=true", self.api),
                    auth: None,
                    channel_id: None,
                    limiter: &self.webhook_limits,
                };
                let body = ExecuteWebhook {
                    content,
                    allowed_mentions: allowed_mentions(),
                };
                self.retrying(&endpoint, &body, cancel).await
            }
        }
    }

    /// Sends with retries: a 429 waits what Discord asked for (its bucket or, when global,
    /// every request of the client waits), 5xx and network errors back off exponentially.
    async fn retrying(
        &self,
        endpoint: &Endpoint<'_>,
        body: &impl Serialize,
        cancel: &CancellationToken,
    ) -> Result<String, DeliveryError> {
        let mut backoff = Duration::from_millis(500);
        let mut attempt = 0;
        // The send keeps its place in its bucket through its retries: a post answered 429
        // goes out before the posts queued behind it.
        let mut turn = tokio::select! {
            turn = endpoint.limiter.lane(&endpoint.bucket) => turn,
            () = cancel.cancelled() => return Err(DeliveryError::Cancelled),
            () = self.cut.cancelled() => return Err(DeliveryError::Cancelled),
        };
        loop {
            let err = match self.attempt(endpoint, &mut turn, body, cancel).await {
                Ok(id) => return Ok(id),
                Err(err) => err,
            };
            attempt += 1;
            if !endpoint.idempotent && err.may_have_been_accepted() {
                return Err(DeliveryError::Uncertain {
                    what: endpoint.what.clone(),
                    source: Box::new(err),
                });
            }
            if !err.is_retryable() || attempt > self.max_retries {
                return Err(err);
            }
            let wait = match err {
                // The limiter holds the next attempt until then.
                DeliveryError::RateLimited { .. } => Duration::ZERO,
                _ => {
                    let wait = backoff.mul_f64(1.0 + rand::random::<f64>() * 0.5);
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                    wait
                }
            };
            tracing::warn!(cause = %err, wait_ms = wait.as_millis() as u64, attempt, "discord send will be retried");
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = cancel.cancelled() => return Err(err),
            }
        }
    }

    /// One request of the send holding `turn`, once the limits allow it.
    async fn attempt(
        &self,
        endpoint: &Endpoint<'_>,
        turn: &mut Turn,
        body: &impl Serialize,
        cancel: &CancellationToken,
    ) -> Result<String, DeliveryError> {
        // Once the server stops, no new request goes out, even when a turn is free.
        tokio::select! {
            biased;
            () = cancel.cancelled() => return Err(DeliveryError::Cancelled),
            () = self.cut.cancelled() => return Err(DeliveryError::Cancelled),
            () = endpoint.limiter.ready(turn) => {}
        }
        let mut request = self.http.post(&endpoint.url).json(body);
        if let Some(token) = endpoint.auth {
            request = request.header("authorization", format!("Bot {}", token.expose()));
        }
        let exchange = async {
            let response = request.send().await.map_err(transport_error)?;
            let answer = Answer::of(&response);
            let bytes = response.bytes().await.map_err(transport_error)?;
            Ok::<_, DeliveryError>((answer, bytes))
        };
        let (answer, bytes) = tokio::select! {
            exchange = exchange => exchange?,
            () = self.cut.cancelled() => return Err(DeliveryError::Cut),
        };
        let Answer {
            status,
            headers,
            scope,
            global_header,
            retry_after_header,
        } = answer;
        turn.record(headers);
        if status != 429 {
            endpoint.limiter.answered();
        }
        match status {
            200..=299 => serde_json::from_slice::<CreatedMessage>(&bytes)
                .map(|m| m.id)
                .map_err(|e| DeliveryError::Decode(e.to_string())),
            429 => {
                (self.on_rate_limited)();
                let parsed = serde_json::from_slice::<RateLimitBody>(&bytes).ok();
                let hint = parsed
                    .as_ref()
                    .map(|b| b.retry_after)
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .or(retry_after_header)
                    .or(headers.reset_after);
                // Without Discord's bucket headers the 429 came from in front of Discord
                // (Cloudflare): it holds the whole client, as a global limit does.
                let global = parsed.as_ref().is_some_and(|b| b.global)
                    || scope.as_deref() == Some("global")
                    || global_header.as_deref() == Some("true")
                    || headers == BucketHeaders::default();
                // Honoured in full: cutting a wait short draws another 429.
                let wait = match hint {
                    Some(seconds) => {
                        let wait = Duration::try_from_secs_f64(seconds)
                            .unwrap_or(MAX_RETRY_AFTER)
                            .min(MAX_RETRY_AFTER);
                        if global {
                            endpoint.limiter.pause_all(wait);
                        } else {
                            turn.exhausted_for(wait);
                        }
                        wait
                    }
                    // No hint at all: back off exponentially, for the whole client.
                    None => endpoint.limiter.hintless_pause(),
                };
                if wait > LONG_RETRY_AFTER {
                    tracing::error!(
                        what = %endpoint.what,
                        retry_after_seconds = wait.as_secs_f64(),
                        global,
                        "discord asked to wait more than a minute before the next request; waiting (a long global wait can mean the bot's IP is restricted)"
                    );
                } else {
                    tracing::warn!(
                        what = %endpoint.what,
                        retry_after_seconds = wait.as_secs_f64(),
                        global,
                        scope = scope.as_deref().unwrap_or("none"),
                        "discord rate limited a request"
                    );
                }
                Err(DeliveryError::RateLimited {
                    retry_after_seconds: wait.as_secs_f64(),
                    global,
                })
            }
            401 if endpoint.channel_id.is_some() => Err(DeliveryError::Unauthorized),
            401 => Err(DeliveryError::WebhookUnauthorized),
            403 => Err(DeliveryError::Forbidden {
                what: endpoint.what.clone(),
                fix: if endpoint.channel_id.is_some() {
                    "give the bot View Channel and Send Messages there"
                } else {
                    "the webhook lost access to its channel; check it in the channel's Integrations settings, or make a new one"
                },
            }),
            404 => Err(DeliveryError::NotFound {
                what: endpoint.what.clone(),
            }),
            _ => {
                let message = serde_json::from_slice::<ErrorBody>(&bytes)
                    .map(|b| b.message)
                    .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
                Err(DeliveryError::Api {
                    what: endpoint.what.clone(),
                    status,
                    message: crate::excerpt(&message, 300),
                })
            }
        }
    }
}

/// What a response's status and headers say, read before its body.
struct Answer {
    status: u16,
    headers: BucketHeaders,
    scope: Option<String>,
    global_header: Option<String>,
    retry_after_header: Option<f64>,
}

impl Answer {
    fn of(response: &reqwest::Response) -> Self {
        Self {
            status: response.status().as_u16(),
            headers: BucketHeaders::from_headers(response.headers()),
            scope: header(response.headers(), "x-ratelimit-scope"),
            global_header: header(response.headers(), "x-ratelimit-global"),
            retry_after_header: header(response.headers(), "retry-after")
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0),
        }
    }
}

fn header(headers: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A transport error without its URL (a webhook URL carries the webhook's token).
fn transport_error(err: reqwest::Error) -> DeliveryError {
    if err.is_timeout() {
        return DeliveryError::Timeout;
    }
    let connect = err.is_connect();
    let message = crate::error_chain(&err.without_url());
    if connect {
        DeliveryError::Connect(message)
    } else {
        DeliveryError::Transport(message)
    }
}

fn parse_webhook(url: &str) -> Option<(u64, String)> {
    let url = url::Url::parse(url).ok()?;
    let segments: Vec<&str> = url.path_segments()?.filter(|s| !s.is_empty()).collect();
    let at = segments.iter().position(|s| *s == "webhooks")?;
    let id = segments.get(at + 1)?.parse().ok()?;
    let token = segments.get(at + 2)?;
    (!token.is_empty()).then(|| (id, (*token).to_owned()))
}

/// The id of a webhook URL (`.../api/webhooks/ID/TOKEN`), the non-secret part.
pub fn webhook_id(url: &str) -> Option<u64> {
    parse_webhook(url).map(|(id, _)| id)
}

/// The span of one post on its way (every part of it, each a `discord.message` span inside).
pub fn post_span(post_id: i64, target: &Target, parts: usize) -> tracing::Span {
    tracing::info_span!(
        "discord.post",
        post.id = post_id,
        target.kind = target.kind(),
        parts = parts,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_url_is_parsed() {
        assert_eq!(
            parse_webhook("https://discord.com/api/webhooks/123/abc-DEF"),
            Some((123, "abc-DEF".into()))
        );
        assert_eq!(
            webhook_id("http://127.0.0.1:9/api/v10/webhooks/7/t"),
            Some(7)
        );
        assert_eq!(webhook_id("https://example.com/nope"), None);
    }
}
