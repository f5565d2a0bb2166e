//! Delivery: sending a post's text to its target (a Discord channel through the bot API, a
//! Discord webhook, or the log), and splitting long text into Discord-sized messages.
//!
//! Discord calls go through twilight-http, which tracks Discord's per-route rate-limit buckets
//! from the response headers and waits before a request would be limited. A 429 that happens
//! anyway (shared buckets, global limit) and 5xx answers are retried here, honouring
//! `retry_after`. Channel messages carry a `nonce` with `enforce_nonce: true`: Discord answers a
//! repeated nonce (within a few minutes) with the message it already created, so re-sending
//! after a crash does not post twice.

use crate::config::{DiscordSettings, Target};
use crate::secret::Secret;
use backon::{ExponentialBuilder, Retryable};
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use twilight_http::api_error::ApiError;
use twilight_http::error::ErrorType;
use twilight_http::request::Request;
use twilight_http::routing::Route;
use twilight_model::channel::Message;
use unicode_segmentation::UnicodeSegmentation;

/// Discord 429 answers seen in this process. twilight-http retries a 429 by itself after
/// the wait Discord asks for, so the only trace of it is twilight's own log event; the
/// [`RateLimitedEvents`] layer counts those. A process-wide counter because that event is
/// process-wide (the tracing subscriber is installed once, before any `App` exists).
static RATE_LIMITED: AtomicU64 = AtomicU64::new(0);

/// Discord 429 answers seen so far (see [`RateLimitedEvents`]).
pub fn rate_limited_count() -> u64 {
    RATE_LIMITED.load(Ordering::Relaxed)
}

/// A tracing layer counting twilight-http's "rate limited; retrying" events.
#[derive(Debug, Default, Clone, Copy)]
pub struct RateLimitedEvents;

impl RateLimitedEvents {
    /// The layer with its filter: only twilight-http's INFO events reach it, so it costs
    /// nothing for any other event.
    pub fn layer<S>() -> impl tracing_subscriber::Layer<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        use tracing_subscriber::Layer;
        RateLimitedEvents.with_filter(
            tracing_subscriber::filter::Targets::new()
                .with_target("twilight_http", tracing::Level::INFO),
        )
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for RateLimitedEvents {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        struct Message(bool);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}").starts_with("rate limited");
                }
            }
        }
        let mut message = Message(false);
        event.record(&mut message);
        if message.0 {
            RATE_LIMITED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Discord's limit on a message's `content`, in characters.
pub const MAX_MESSAGE_CHARS: usize = 2000;

/// A send that failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("Discord rejected the bot token (401 Unauthorized): check DISCORD_TOKEN")]
    Unauthorized,
    #[error("Discord rejected the webhook (401): its token is wrong; check the webhook URL")]
    WebhookUnauthorized,
    #[error(
        "Discord refused access to channel {channel_id} (403 Missing Access/Permissions): give the bot Send Messages there"
    )]
    Forbidden { channel_id: u64 },
    #[error("Discord does not know {what} (404): check the id")]
    NotFound { what: String },
    #[error("Discord rate limited the request for {retry_after_seconds:.1}s (global: {global})")]
    RateLimited {
        retry_after_seconds: f64,
        global: bool,
    },
    #[error("Discord answered {status}: {message}")]
    Api { status: u16, message: String },
    #[error("Discord request failed: {0}")]
    Transport(String),
    #[error("Discord request timed out")]
    Timeout,
    #[error("a Discord target needs a bot token: set DISCORD_TOKEN (or DISCORD_TOKEN_FILE)")]
    MissingToken,
    #[error("Discord's answer could not be read: {0}")]
    Decode(String),
}

impl DeliveryError {
    fn is_retryable(&self) -> bool {
        match self {
            Self::RateLimited { .. } | Self::Transport(_) | Self::Timeout => true,
            Self::Api { status, .. } => *status >= 500,
            _ => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited {
                retry_after_seconds,
                ..
            } => Some(Duration::from_secs_f64(retry_after_seconds.max(0.0))),
            _ => None,
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
            Self::Timeout => "timeout",
            Self::MissingToken => "missing_token",
            Self::Decode(_) => "decode",
        }
    }
}

/// Sends messages to targets. Cheap to clone; one per process, so twilight's rate-limit
/// buckets are shared by every actor.
#[derive(Clone)]
pub struct Delivery {
    bot: Option<Arc<twilight_http::Client>>,
    webhooks: Arc<twilight_http::Client>,
    max_retries: usize,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("bot", &self.bot.is_some())
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

impl Delivery {
    /// Builds the clients. `token` is the bot token (`DISCORD_TOKEN`), needed only by channel
    /// targets.
    pub fn new(settings: &DiscordSettings, token: Option<Secret>) -> Self {
        let build = |token: Option<&Secret>| {
            let mut builder = twilight_http::Client::builder()
                .timeout(Duration::from_secs(settings.timeout_seconds.max(1)))
                // Report every 401 as it happens instead of refusing all later requests.
                .remember_invalid_token(false);
            if let Some((host, use_http)) = proxy_of(&settings.base_url) {
                builder = builder.proxy(host, use_http);
            }
            if let Some(token) = token {
                builder = builder.token(token.expose().to_owned());
            }
            Arc::new(builder.build())
        };
        Self {
            bot: token.as_ref().map(|t| build(Some(t))),
            webhooks: build(None),
            max_retries: 4,
        }
    }

    /// Whether a bot token is configured.
    pub fn has_token(&self) -> bool {
        self.bot.is_some()
    }

    /// Sends one message (at most [`MAX_MESSAGE_CHARS`]) and returns its message id.
    /// `nonce` (at most 25 characters) makes a repeated send of the same part return the
    /// message Discord already created instead of a second one.
    ///
    /// # Errors
    ///
    /// When Discord refuses the message, after retrying rate limits, 5xx and network errors.
    pub async fn send(
        &self,
        target: &Target,
        content: &str,
        nonce: &str,
    ) -> Result<String, DeliveryError> {
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
                let client = self.bot.as_ref().ok_or(DeliveryError::MissingToken)?;
                let channel_id = *channel_id;
                let attempt = || async move {
                    let body = CreateMessage {
                        content,
                        nonce,
                        enforce_nonce: true,
                        allowed_mentions: AllowedMentions { parse: [] },
                    };
                    let request = Request::builder(&Route::CreateMessage { channel_id })
                        .json(&body)
                        .build()
                        .map_err(|e| DeliveryError::Transport(e.to_string()))?;
                    let message: Message = client
                        .request::<Message>(request)
                        .await
                        .map_err(|e| {
                            map_error(e, &format!("channel {channel_id}"), Some(channel_id))
                        })?
                        .model()
                        .await
                        .map_err(|e| DeliveryError::Decode(e.to_string()))?;
                    Ok(message.id.get().to_string())
                };
                self.retrying(attempt).await
            }
            Target::Webhook { url } => {
                let (webhook_id, token) =
                    parse_webhook(url.expose()).ok_or_else(|| DeliveryError::NotFound {
                        what: "the webhook URL".into(),
                    })?;
                let client = &self.webhooks;
                let token = token.as_str();
                let attempt = || async move {
                    let body = ExecuteWebhook {
                        content,
                        allowed_mentions: AllowedMentions { parse: [] },
                    };
                    let route = Route::ExecuteWebhook {
                        thread_id: None,
                        token,
                        wait: Some(true),
                        with_components: None,
                        webhook_id,
                    };
                    let request = Request::builder(&route)
                        .use_authorization_token(false)
                        .json(&body)
                        .build()
                        .map_err(|e| DeliveryError::Transport(e.to_string()))?;
                    let message: Message = client
                        .request::<Message>(request)
                        .await
                        .map_err(|e| map_error(e, &format!("webhook {webhook_id}"), None))?
                        .model()
                        .await
                        .map_err(|e| DeliveryError::Decode(e.to_string()))?;
                    Ok(message.id.get().to_string())
                };
                self.retrying(attempt).await
            }
        }
    }

    async fn retrying<F, Fut>(&self, attempt: F) -> Result<String, DeliveryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<String, DeliveryError>>,
    {
        attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(500))
                    .with_max_delay(Duration::from_secs(60))
                    .with_max_times(self.max_retries)
                    .with_jitter(),
            )
            .when(DeliveryError::is_retryable)
            .adjust(|err, backoff| match err.retry_after() {
                Some(after) => Some(after.min(Duration::from_secs(60))),
                None => backoff,
            })
            .notify(|err, wait| tracing::warn!(cause = %err, wait_ms = wait.as_millis() as u64, "discord send will be retried"))
            .await
    }
}

fn map_error(err: twilight_http::Error, what: &str, channel_id: Option<u64>) -> DeliveryError {
    match err.kind() {
        ErrorType::Unauthorized => DeliveryError::Unauthorized,
        ErrorType::RequestTimedOut => DeliveryError::Timeout,
        ErrorType::Response {
            error,
            status,
            body,
        } => {
            let status = status.get();
            match (status, error) {
                (429, ApiError::Ratelimited(r)) => DeliveryError::RateLimited {
                    retry_after_seconds: r.retry_after,
                    global: r.global,
                },
                (401, _) if channel_id.is_some() => DeliveryError::Unauthorized,
                (401, _) => DeliveryError::WebhookUnauthorized,
                (403, _) => DeliveryError::Forbidden {
                    channel_id: channel_id.unwrap_or_default(),
                },
                (404, _) => DeliveryError::NotFound {
                    what: what.to_owned(),
                },
                _ => DeliveryError::Api {
                    status,
                    message: crate::narrative::excerpt(&String::from_utf8_lossy(body), 300),
                },
            }
        }
        ErrorType::Parsing { body } => DeliveryError::Decode(crate::narrative::excerpt(
            &String::from_utf8_lossy(body),
            300,
        )),
        // Transport errors from hyper never contain the token (it is a header), but webhook
        // paths do: describe the kind, not the request.
        _ => DeliveryError::Transport(format!("{:?}", err.kind()).chars().take(200).collect()),
    }
}

/// `(host:port, use_http)` for twilight's proxy setting, or `None` for Discord itself.
fn proxy_of(base_url: &str) -> Option<(String, bool)> {
    let url = url::Url::parse(base_url).ok()?;
    let host = url.host_str()?;
    if host == "discord.com" && url.scheme() == "https" {
        return None;
    }
    let host = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    Some((host, url.scheme() == "http"))
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

/// Splits `text` into messages of at most `max_chars` characters, preferring line breaks,
/// then spaces, and never cutting inside a character (nor a grapheme cluster such as an emoji
/// with modifiers, unless one cluster alone is longer than a message).
pub fn split_message(text: &str, max_chars: usize) -> Vec<String> {
    let max_chars = max_chars.max(1);
    let mut parts = Vec::new();
    let mut rest = text.trim();
    while rest.chars().count() > max_chars {
        // Byte offset just past the last whole grapheme that fits.
        let mut fit = 0;
        let mut chars = 0;
        for (offset, grapheme) in rest.grapheme_indices(true) {
            let n = grapheme.chars().count();
            if chars + n > max_chars {
                break;
            }
            chars += n;
            fit = offset + grapheme.len();
        }
        if fit == 0 {
            // One grapheme longer than a message: cut it on a char boundary.
            fit = rest
                .char_indices()
                .nth(max_chars)
                .map_or(rest.len(), |(i, _)| i);
        }
        let window = &rest[..fit];
        let cut = window
            .rfind('\n')
            .filter(|&i| i > 0)
            .or_else(|| window.rfind(' ').filter(|&i| i > 0))
            .unwrap_or(fit);
        let (head, tail) = rest.split_at(cut);
        let head = head.trim_end();
        if !head.is_empty() {
            parts.push(head.to_owned());
        }
        rest = tail.trim_start();
    }
    if !rest.is_empty() {
        parts.push(rest.to_owned());
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_one_message() {
        assert_eq!(split_message("hello", 2000), vec!["hello"]);
        assert!(split_message("   ", 2000).is_empty());
    }

    #[test]
    fn splits_on_lines_then_words() {
        let text = "aaaa bbbb\ncccc dddd";
        assert_eq!(split_message(text, 12), vec!["aaaa bbbb", "cccc dddd"]);
        assert_eq!(
            split_message("aaaa bbbb cccc", 10),
            vec!["aaaa bbbb", "cccc"]
        );
    }

    #[test]
    fn never_cuts_inside_an_emoji() {
        let text = "👍🏽".repeat(700); // each is 2 chars, one grapheme
        let parts = split_message(&text, 2000);
        assert!(parts.iter().all(|p| p.chars().count() <= 2000));
        assert_eq!(parts.concat(), text);
        assert!(parts.iter().all(|p| p.graphemes(true).all(|g| g == "👍🏽")));
    }

    #[test]
    fn long_word_is_cut_on_char_boundary() {
        let text = "é".repeat(4500);
        let parts = split_message(&text, 2000);
        assert_eq!(
            parts.iter().map(|p| p.chars().count()).collect::<Vec<_>>(),
            vec![2000, 2000, 500]
        );
    }

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

    #[test]
    fn proxy_only_when_not_discord() {
        assert_eq!(proxy_of("https://discord.com"), None);
        assert_eq!(
            proxy_of("http://127.0.0.1:4000"),
            Some(("127.0.0.1:4000".into(), true))
        );
    }
}
