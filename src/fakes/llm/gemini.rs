//! Gemini's wire format as the fake speaks it (`POST /v1beta/models/{model}:generateContent`):
//! the `x-goog-api-key` (or `?key=`) check, the request shape Google rejects, and Google's
//! success and error bodies (`google.rpc.Status` with `QuotaFailure`/`RetryInfo` details).

use axum::response::Response;
use serde_json::{Value, json};

use super::FakeRequest;
use super::wire::json_response;

fn error(status: u16, grpc_status: &str, message: &str, details: Value) -> Response {
    let mut error = json!({"code": status, "message": message, "status": grpc_status});
    if details.as_array().is_some_and(|d| !d.is_empty()) {
        error["details"] = details;
    }
    json_response(status, &[], &json!({ "error": error }))
}

/// `/v1beta/models/{model}:generateContent` → `model`.
pub(super) fn model(path: &str) -> Option<&str> {
    path.strip_prefix("/v1beta/models/")?
        .strip_suffix(":generateContent")
        .filter(|model| !model.is_empty() && !model.contains('/'))
}

pub(super) fn not_found(message: &str) -> Response {
    error(404, "NOT_FOUND", message, json!([]))
}

pub(super) fn check_auth(request: &FakeRequest, expected: &str) -> Option<Response> {
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
        None => Some(error(
            403,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
            json!([]),
        )),
        Some(key) if key != expected => Some(error(
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

pub(super) fn check_shape(request: &FakeRequest) -> Option<Response> {
    let body = &request.body;
    if !body.is_object() {
        return Some(error(
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
        error(
            400,
            "INVALID_ARGUMENT",
            "* GenerateContentRequest.contents: contents is not specified\n",
            json!([]),
        )
    })
}

pub(super) fn success_body(text: &str, model: &str, input: usize, output: usize) -> Value {
    json!({
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
    })
}

pub(super) fn rate_limited(retry_after_seconds: Option<u64>) -> Response {
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
    error(
        429,
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details.",
        Value::Array(details),
    )
}

pub(super) fn server_error(status: u16) -> Response {
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
    error(status, grpc, message, json!([]))
}

pub(super) fn quota_exhausted() -> Response {
    error(
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
    )
}
