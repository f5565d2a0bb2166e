//! Tests of the fake Discord (`bot_server::fakes::discord`): that it speaks Discord's wire format
//! and rejects what Discord rejects, so tests built on it mean something.

use std::time::Duration;

use bot_server::fakes::discord::{
    Fail, FakeDiscord, MAX_CONTENT_CHARS, MAX_NONCE_CHARS, NONCE_WINDOW,
};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

const TOKEN: &str = "fake-bot-token";
const CHANNEL: u64 = 1_200_000_000_000_000_001;

async fn started() -> FakeDiscord {
    let fake = FakeDiscord::start(TOKEN).await;
    fake.add_channel(CHANNEL);
    fake
}

/// POSTs a raw body with an optional `Authorization` header; returns status, headers and the
/// JSON body (`Value::Null` when there is none).
async fn post_raw(
    url: &str,
    authorization: Option<&str>,
    body: &str,
) -> (StatusCode, HeaderMap, Value) {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    let response = request.send().await.expect("request to the fake");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("response body");
    let json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("fake answers JSON")
    };
    (status, headers, json)
}

/// POSTs a create-message body to `channel` with the right bot token.
async fn create(fake: &FakeDiscord, channel: u64, body: &Value) -> (StatusCode, HeaderMap, Value) {
    let url = format!("{}/api/v10/channels/{channel}/messages", fake.base_url());
    post_raw(&url, Some(&format!("Bot {TOKEN}")), &body.to_string()).await
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> &'h str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("missing header {name}: {headers:?}"))
        .to_str()
        .expect("ASCII header")
}

/// The created message's JSON deserializes into twilight's `Message` with the right fields.
#[tokio::test]
async fn response_deserializes_into_twilight_message() {
    let fake = started().await;
    let (status, headers, body) =
        create(&fake, CHANNEL, &json!({"content": "hello", "nonce": "n-1"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let message: twilight_model::channel::Message =
        serde_json::from_value(body.clone()).expect("twilight Message");
    let stored = fake.messages();
    assert_eq!(stored.len(), 1);
    assert_eq!(message.id.get(), stored[0].id);
    assert_eq!(message.channel_id.get(), CHANNEL);
    assert_eq!(message.content, "hello");
    assert!(message.author.bot);
    assert_eq!(body["nonce"], "n-1");
    assert_eq!(stored[0].nonce.as_deref(), Some("n-1"));
    // Successful responses carry the bucket headers twilight reads.
    assert_eq!(header(&headers, "x-ratelimit-limit"), "5");
    assert_eq!(header(&headers, "x-ratelimit-remaining"), "4");
    header(&headers, "x-ratelimit-reset");
    header(&headers, "x-ratelimit-reset-after");
    header(&headers, "x-ratelimit-bucket");
}

/// With `enforce_nonce`, a repeated nonce within 5 minutes returns the first message; after
/// the window it creates a new one.
#[tokio::test(start_paused = true)]
async fn enforce_nonce_deduplicates_within_window() {
    let fake = started().await;
    let body = json!({"content": "once", "nonce": 42, "enforce_nonce": true});
    let (status, _, first) = create(&fake, CHANNEL, &body).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (status, _, again) = create(&fake, CHANNEL, &body).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(fake.messages_in(CHANNEL).len(), 1);

    // The string form of the same nonce is the same nonce.
    let as_string = json!({"content": "once", "nonce": "42", "enforce_nonce": true});
    let (_, _, same) = create(&fake, CHANNEL, &as_string).await;
    assert_eq!(same["id"], first["id"]);

    tokio::time::advance(NONCE_WINDOW - Duration::from_secs(1)).await;
    let (_, _, still) = create(&fake, CHANNEL, &body).await;
    assert_eq!(still["id"], first["id"], "still inside the window");
    assert_eq!(fake.messages_in(CHANNEL).len(), 1);

    tokio::time::advance(Duration::from_secs(2)).await;
    let (status, _, later) = create(&fake, CHANNEL, &body).await;
    assert_eq!(status, StatusCode::OK, "{later}");
    assert_ne!(later["id"], first["id"]);
    assert_eq!(fake.messages_in(CHANNEL).len(), 2);
}

/// Without `enforce_nonce` the same nonce creates a second message; in another channel too.
#[tokio::test]
async fn nonce_without_enforce_creates_duplicates() {
    let fake = started().await;
    let body = json!({"content": "twice", "nonce": "same"});
    let (_, _, first) = create(&fake, CHANNEL, &body).await;
    let (_, _, second) = create(&fake, CHANNEL, &body).await;
    assert_ne!(first["id"], second["id"]);
    assert_eq!(fake.messages_in(CHANNEL).len(), 2);

    let other = CHANNEL + 1;
    fake.add_channel(other);
    let enforced = json!({"content": "twice", "nonce": "same", "enforce_nonce": true});
    let (_, _, elsewhere) = create(&fake, other, &enforced).await;
    assert_ne!(elsewhere["id"], second["id"], "nonces are per channel");
    assert_eq!(fake.messages().len(), 3);
}

/// Content is limited to 2000 characters, not bytes: 2001 ASCII chars fail, 2000 emoji pass.
#[tokio::test]
async fn content_limit_counts_characters() {
    let fake = started().await;
    let too_long = "a".repeat(MAX_CONTENT_CHARS + 1);
    let (status, _, body) = create(&fake, CHANNEL, &json!({ "content": too_long })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({
            "message": "Invalid Form Body",
            "code": 50035,
            "errors": {"content": {"_errors": [
                {"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}
            ]}}
        })
    );

    let emoji = "🦀".repeat(MAX_CONTENT_CHARS);
    assert_eq!(emoji.len(), 4 * MAX_CONTENT_CHARS);
    let (status, _, body) = create(&fake, CHANNEL, &json!({ "content": emoji })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        fake.messages()[0].content.chars().count(),
        MAX_CONTENT_CHARS
    );
}

/// Nonces longer than 25 chars, or integers beyond int64 (twilight's `u64` nonce can produce
/// them), are rejected with 50035.
#[tokio::test]
async fn nonce_limits_are_enforced() {
    let fake = started().await;
    let ok = "n".repeat(MAX_NONCE_CHARS);
    let (status, _, body) = create(&fake, CHANNEL, &json!({"content": "x", "nonce": ok})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let long = "n".repeat(MAX_NONCE_CHARS + 1);
    let (status, _, body) = create(&fake, CHANNEL, &json!({"content": "x", "nonce": long})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], 50035);
    assert_eq!(
        body["errors"]["nonce"]["_errors"][0]["code"],
        "BASE_TYPE_MAX_LENGTH"
    );

    let (status, _, body) =
        create(&fake, CHANNEL, &json!({"content": "x", "nonce": u64::MAX})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["errors"]["nonce"]["_errors"][0]["code"],
        "NUMBER_TYPE_MAX"
    );

    let (status, _, body) = create(
        &fake,
        CHANNEL,
        &json!({"content": "x", "enforce_nonce": "yes"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["errors"]["enforce_nonce"]["_errors"][0]["code"],
        "BASE_TYPE_BOOLEAN"
    );
    assert_eq!(fake.messages().len(), 1);
}

/// Bodies that are not JSON get 50109, empty messages 50006, unknown fields are ignored.
#[tokio::test]
async fn bad_bodies_and_empty_messages_are_rejected() {
    let fake = started().await;
    let url = format!("{}/api/v10/channels/{CHANNEL}/messages", fake.base_url());
    let auth = format!("Bot {TOKEN}");
    let (status, _, body) = post_raw(&url, Some(&auth), "content=hello").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"message": "The request body contains invalid JSON.", "code": 50109})
    );

    for empty in [
        json!({}),
        json!({"content": ""}),
        json!({"content": "  \n"}),
    ] {
        let (status, _, body) = create(&fake, CHANNEL, &empty).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{empty}");
        assert_eq!(
            body,
            json!({"message": "Cannot send an empty message", "code": 50006})
        );
    }

    let (status, _, body) = create(
        &fake,
        CHANNEL,
        &json!({"content": "hi", "no_such_field": [1, 2]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(fake.messages().len(), 1);
}

/// A wrong or missing bot token gets Discord's 401 and creates nothing.
#[tokio::test]
async fn bad_token_is_401() {
    let fake = started().await;
    let url = format!("{}/api/v10/channels/{CHANNEL}/messages", fake.base_url());
    let body = r#"{"content": "hi"}"#;
    for authorization in [Some("Bot wrong-token"), Some(TOKEN), None] {
        let (status, _, json) = post_raw(&url, authorization, body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{authorization:?}");
        assert_eq!(json, json!({"message": "401: Unauthorized", "code": 0}));
    }
    assert!(fake.messages().is_empty());
    assert_eq!(fake.request_count(), 3);
}

/// A channel that was not added is 404 Unknown Channel (10003).
#[tokio::test]
async fn unknown_channel_is_404() {
    let fake = started().await;
    let (status, headers, body) = create(&fake, CHANNEL + 7, &json!({"content": "hi"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, json!({"message": "Unknown Channel", "code": 10003}));
    // Error responses of the route carry the rate-limit headers too.
    assert_eq!(header(&headers, "x-ratelimit-limit"), "5");
    assert!(fake.messages().is_empty());
}

/// A scripted 429 carries Discord's headers and body and is consumed by one request.
#[tokio::test]
async fn scripted_rate_limit_has_discord_headers_and_body() {
    let fake = started().await;
    fake.push_failure(Fail::RateLimited {
        retry_after_seconds: 0.5,
        global: false,
    });
    let (status, headers, body) = create(&fake, CHANNEL, &json!({"content": "hi"})).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        body,
        json!({"message": "You are being rate limited.", "retry_after": 0.5, "global": false})
    );
    assert_eq!(header(&headers, "x-ratelimit-limit"), "5");
    assert_eq!(header(&headers, "x-ratelimit-remaining"), "0");
    assert_eq!(header(&headers, "x-ratelimit-reset-after"), "0.500");
    assert_eq!(header(&headers, "retry-after"), "1");
    assert_eq!(header(&headers, "x-ratelimit-scope"), "user");
    assert!(!header(&headers, "x-ratelimit-bucket").is_empty());
    let reset: f64 = header(&headers, "x-ratelimit-reset")
        .parse()
        .expect("unix seconds");
    assert!(reset > 1.7e9, "{reset}");
    assert!(fake.messages().is_empty());

    let (status, _, _) = create(&fake, CHANNEL, &json!({"content": "hi"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fake.rate_limited_count(), 1);
    assert_eq!(fake.request_count(), 2);
    assert_eq!(fake.messages().len(), 1);
}

/// `HangAfterCreate` records the message but the client never gets an answer.
#[tokio::test]
async fn hang_after_create_records_but_never_answers() {
    let fake = started().await;
    fake.push_failure(Fail::HangAfterCreate);
    let url = format!("{}/api/v10/channels/{CHANNEL}/messages", fake.base_url());
    let answer = tokio::time::timeout(
        Duration::from_millis(300),
        post_raw(
            &url,
            Some(&format!("Bot {TOKEN}")),
            r#"{"content": "lost ack"}"#,
        ),
    )
    .await;
    assert!(answer.is_err(), "expected no answer, got {answer:?}");
    let messages = fake.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].content, "lost ack");
}

/// `fail_always(Hang)` is a Discord that never answers: every request, on a channel or a
/// webhook, hangs and creates nothing, queued failures still come first, and `fail_always(None)`
/// ends it.
#[tokio::test]
async fn fail_always_hang_never_answers_any_request() {
    let fake = started().await;
    let hook = fake.add_webhook(9, "tok");
    fake.fail_always(Some(Fail::Hang));
    fake.push_failure(Fail::Status(500));
    let channel = format!("{}/api/v10/channels/{CHANNEL}/messages", fake.base_url());
    let bot = format!("Bot {TOKEN}");
    let (status, _, _) = post_raw(&channel, Some(&bot), r#"{"content": "a"}"#).await;
    assert_eq!(
        status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "the queued failure first"
    );
    for (url, auth) in [(&channel, Some(bot.as_str())), (&hook, None)] {
        for _ in 0..2 {
            let answer = tokio::time::timeout(
                Duration::from_millis(300),
                post_raw(url, auth, r#"{"content": "b"}"#),
            )
            .await;
            assert!(answer.is_err(), "expected no answer, got {answer:?}");
        }
    }
    assert!(fake.messages().is_empty());
    fake.fail_always(None);
    let (status, _, _) = post_raw(&channel, Some(&bot), r#"{"content": "c"}"#).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fake.messages().len(), 1);
}

/// Execute webhook: `wait=true` returns the message, no wait returns 204, bad id/token fail.
#[tokio::test]
async fn webhook_wait_true_returns_message() {
    let fake = started().await;
    let webhook_id = 1_300_000_000_000_000_001;
    let url = fake.add_webhook(webhook_id, "hook-token");
    assert_eq!(
        url,
        format!("{}/api/webhooks/{webhook_id}/hook-token", fake.base_url())
    );

    let (status, headers, body) = post_raw(
        &format!("{url}?wait=true"),
        None,
        r#"{"content": "via hook"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(header(&headers, "x-ratelimit-limit"), "5");
    let message: twilight_model::channel::Message =
        serde_json::from_value(body).expect("twilight Message");
    assert_eq!(message.content, "via hook");
    assert_eq!(message.webhook_id.map(|id| id.get()), Some(webhook_id));

    let versioned = format!(
        "{}/api/v10/webhooks/{webhook_id}/hook-token",
        fake.base_url()
    );
    let (status, _, body) = post_raw(&versioned, None, r#"{"content": "no wait"}"#).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(body, Value::Null);

    let messages = fake.messages_in(webhook_id);
    assert_eq!(messages.len(), 2);
    assert!(messages.iter().all(|m| m.via_webhook));
    assert_eq!(messages[0].id, message.id.get());

    let wrong_token = format!("{}/api/webhooks/{webhook_id}/nope", fake.base_url());
    let (status, _, body) = post_raw(&wrong_token, None, r#"{"content": "x"}"#).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        json!({"message": "Invalid Webhook Token", "code": 50027})
    );

    let unknown = format!(
        "{}/api/webhooks/{}/hook-token",
        fake.base_url(),
        webhook_id + 1
    );
    let (status, _, body) = post_raw(&unknown, None, r#"{"content": "x"}"#).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, json!({"message": "Unknown Webhook", "code": 10015}));
    assert_eq!(fake.messages().len(), 2);
}

/// twilight-http, pointed at the fake with `proxy(host, true)`, retries a 429, posts and gets
/// twilight models; `enforce_nonce` (absent from twilight's builder) goes through `payload_json`.
#[tokio::test]
async fn twilight_client_works_against_the_fake() {
    let fake = started().await;
    let client = twilight_http::Client::builder()
        .proxy(fake.proxy_host(), true)
        .token(TOKEN.to_owned())
        .build();
    let channel = twilight_model::id::Id::new(CHANNEL);

    // A 429 is retried by twilight itself after the advertised reset.
    fake.push_failure(Fail::RateLimited {
        retry_after_seconds: 0.1,
        global: false,
    });
    let sent = client
        .create_message(channel)
        .content("from twilight")
        .await
        .expect("create message")
        .model()
        .await
        .expect("message model");
    assert_eq!(sent.content, "from twilight");
    assert_eq!(fake.rate_limited_count(), 1);

    let payload = br#"{"content": "idempotent", "nonce": "run-7-part-1", "enforce_nonce": true}"#;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let message = client
            .create_message(channel)
            .payload_json(payload)
            .await
            .expect("create message")
            .model()
            .await
            .expect("message model");
        ids.push(message.id);
    }
    assert_eq!(ids[0], ids[1]);
    assert_eq!(fake.messages_in(CHANNEL).len(), 2);

    let webhook_id = twilight_model::id::Id::new(1_300_000_000_000_000_002);
    fake.add_webhook(webhook_id.get(), "tok");
    let hooked = client
        .execute_webhook(webhook_id, "tok")
        .content("hooked")
        .wait()
        .await
        .expect("execute webhook")
        .model()
        .await
        .expect("message model");
    assert_eq!(hooked.webhook_id, Some(webhook_id));
}

/// The limits the fake enforces are the ones in Discord's OpenAPI spec (and the spec still
/// says what we think it says where it differs from the docs). The spec ships in the repository
/// (tests/data/discord-openapi, MIT): a missing file fails the test.
#[test]
fn limits_match_openapi_spec() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/discord-openapi/openapi.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!("{path}: {e} (Discord's OpenAPI spec belongs in the repository)")
    });
    let spec: Value = serde_json::from_str(&text).expect("spec is JSON");
    let schemas = &spec["components"]["schemas"];
    let create = &schemas["MessageCreateRequest"]["properties"];
    let webhook = &schemas["IncomingWebhookRequestPartial"]["properties"];

    // Bots get the documented 2000; the webhook schema says so. MessageCreateRequest says 4000,
    // the Nitro user limit, which bots do not have (the docs say 2000).
    assert_eq!(webhook["content"]["maxLength"], json!(MAX_CONTENT_CHARS));
    assert_eq!(create["content"]["maxLength"], json!(4000));

    let nonce_string = create["nonce"]["oneOf"]
        .as_array()
        .expect("nonce is a oneOf")
        .iter()
        .find(|choice| choice["type"] == "string")
        .expect("a string nonce");
    assert_eq!(nonce_string["maxLength"], json!(MAX_NONCE_CHARS));
    let nonce_int = create["nonce"]["oneOf"]
        .as_array()
        .expect("nonce is a oneOf")
        .iter()
        .find(|choice| choice["type"] == "integer")
        .expect("an integer nonce");
    assert_eq!(nonce_int["format"], "int64");
    assert_eq!(create["enforce_nonce"]["type"], json!(["boolean", "null"]));
    // Webhooks take no nonce, so a webhook post cannot be made idempotent that way.
    assert!(webhook.get("nonce").is_none());
}
