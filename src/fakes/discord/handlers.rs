//! The fake's request handlers: the two message routes (create message, execute webhook), the
//! scripted failures applied around them ([`Fail`]), the messages they create and the answers
//! for unknown routes and methods.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::SecondsFormat;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::rate_limit::{BucketKey, BucketReport, Scope, rate_limited, set_header, with_bucket};
use super::reject::{Rejection, discord_error, generic_status, unauthorized};
use super::request::{MessageRequest, Route, parse_snowflake, parse_wait};
use super::{
    BOT_USER_ID, BOT_USERNAME, Fail, NONCE_WINDOW, SentMessage, Shared, StoredMessage,
    WEBHOOK_DEFAULT_USERNAME,
};

pub(super) async fn count_requests(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    next.run(request).await
}

pub(super) async fn not_found() -> Rejection {
    discord_error(StatusCode::NOT_FOUND, "404: Not Found", 0)
}

pub(super) async fn method_not_allowed() -> Rejection {
    discord_error(StatusCode::METHOD_NOT_ALLOWED, "405: Method Not Allowed", 0)
}

/// `POST /api/v10/channels/{channel_id}/messages`.
pub(super) async fn create_message(
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
            None => inner.failures.pop_front().or_else(|| inner.always.clone()),
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
pub(super) async fn execute_webhook(
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
            None => inner.failures.pop_front().or_else(|| inner.always.clone()),
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
    Garbled,
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

/// A 429 from a proxy in front of Discord (Cloudflare): `body` as it is, `Retry-After` (whole
/// seconds) when given, none of Discord's rate-limit headers.
fn proxy_rate_limited(body: &'static str, retry_after_seconds: Option<u64>) -> Response {
    let mut response = (StatusCode::TOO_MANY_REQUESTS, body).into_response();
    if let Some(seconds) = retry_after_seconds {
        set_header(response.headers_mut(), "retry-after", seconds.to_string());
    }
    // Marks the answer as not Discord's: `with_bucket` adds no headers to it.
    set_header(
        response.headers_mut(),
        "cf-ray",
        "8f0c0ffee0000-FRA".to_owned(),
    );
    response
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
            Err(proxy_rate_limited(
                "error code: 1015\nYou are being rate limited.",
                Some(retry_after_seconds),
            ))
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
        Some(Fail::GarbledAfterCreate) => Ok(AfterCreate::Garbled),
        Some(Fail::BareRateLimited) => {
            shared.rate_limited.fetch_add(1, Ordering::SeqCst);
            Err(proxy_rate_limited("<html>Too Many Requests</html>", None))
        }
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
        AfterCreate::Garbled => (StatusCode::OK, "<html>upstream</html>").into_response(),
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
