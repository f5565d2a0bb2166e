//! Anthropic's wire format as the fake speaks it (`POST /v1/messages`): the `x-api-key` check,
//! the request shape Anthropic rejects (including a missing `anthropic-version` header), and
//! Anthropic's message and error bodies (529 `overloaded_error` among them).

use axum::response::Response;
use serde_json::{Value, json};

use super::FakeRequest;
use super::wire::json_response;

fn error(status: u16, headers: &[(&str, String)], kind: &str, message: &str) -> Response {
    json_response(
        status,
        headers,
        &json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_fake"}),
    )
}

pub(super) fn not_found(message: &str) -> Response {
    error(404, &[], "not_found_error", message)
}

pub(super) fn check_auth(request: &FakeRequest, expected: &str) -> Option<Response> {
    match request.header("x-api-key") {
        None => Some(error(
            401,
            &[],
            "authentication_error",
            "x-api-key header is required",
        )),
        Some(key) if key != expected => {
            Some(error(401, &[], "authentication_error", "invalid x-api-key"))
        }
        Some(_) => None,
    }
}

pub(super) fn check_shape(request: &FakeRequest) -> Option<Response> {
    let body = &request.body;
    let reject = |message: &str| Some(error(400, &[], "invalid_request_error", message));
    if request.header("anthropic-version").is_none() {
        return reject("anthropic-version: header is required");
    }
    if !body.is_object() {
        return reject("There was an issue with your request body: invalid JSON");
    }
    if !body["model"].is_string() {
        return reject("model: Field required");
    }
    if !body["max_tokens"].is_u64() {
        return reject("max_tokens: Field required");
    }
    let messages_ok = body["messages"]
        .as_array()
        .is_some_and(|m| !m.is_empty() && m.iter().all(|m| m["role"].is_string()));
    if !messages_ok {
        return reject("messages: Field required");
    }
    None
}

pub(super) fn success_body(text: &str, model: &str, input: usize, output: usize) -> Value {
    json!({
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {"input_tokens": input, "output_tokens": output}
    })
}

pub(super) fn rate_limited(headers: &[(&str, String)]) -> Response {
    error(
        429,
        headers,
        "rate_limit_error",
        "This request would exceed the rate limit for your organization of 50 requests per minute.",
    )
}

pub(super) fn server_error(status: u16) -> Response {
    if status == 529 {
        error(status, &[], "overloaded_error", "Overloaded")
    } else {
        error(status, &[], "api_error", "Internal server error")
    }
}

pub(super) fn quota_exhausted() -> Response {
    error(
        400,
        &[],
        "invalid_request_error",
        "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.",
    )
}
