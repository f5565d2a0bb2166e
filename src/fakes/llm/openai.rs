//! OpenAI's wire format as the fake speaks it (`POST /v1/chat/completions`): the `Bearer` key
//! check (with OpenAI's masked quote of a wrong key), the request shape OpenAI rejects (with
//! `max_tokens` refused for reasoning and GPT-5 models, as OpenAI does), and
//! OpenAI's chat-completion and error bodies.

use axum::response::Response;
use serde_json::{Value, json};

use super::FakeRequest;
use super::wire::json_response;

fn error(status: u16, message: &str, kind: &str, code: Option<&str>) -> Response {
    error_with(status, &[], message, kind, code)
}

fn error_with(
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

pub(super) fn not_found(message: &str) -> Response {
    error(404, message, "invalid_request_error", None)
}

pub(super) fn check_auth(request: &FakeRequest, expected: &str) -> Option<Response> {
    match request
        .header("authorization")
        .and_then(|value| value.strip_prefix("Bearer "))
    {
        None => Some(error(
            401,
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            "invalid_request_error",
            None,
        )),
        Some(key) if key != expected => Some(error(
            401,
            &format!(
                "Incorrect API key provided: {}. You can find your API key at https://platform.openai.com/account/api-keys.",
                mask_key(key)
            ),
            "invalid_request_error",
            Some("invalid_api_key"),
        )),
        Some(_) => None,
    }
}

pub(super) fn check_shape(request: &FakeRequest) -> Option<Response> {
    let body = &request.body;
    if !body.is_object() {
        return Some(error(
            400,
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
            "invalid_request_error",
            None,
        ));
    }
    if !body["model"].is_string() {
        return Some(error(
            400,
            "you must provide a model parameter",
            "invalid_request_error",
            None,
        ));
    }
    // OpenAI's reasoning models (o-series) and GPT-5 take only `max_completion_tokens`.
    let model = body["model"].as_str().unwrap_or_default();
    let reasoning = ["o1", "o3", "o4", "gpt-5"]
        .iter()
        .any(|prefix| model.starts_with(prefix));
    if reasoning && body.get("max_tokens").is_some() {
        return Some(json_response(
            400,
            &[],
            &json!({"error": {
                "message": "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
                "type": "invalid_request_error",
                "param": "max_tokens",
                "code": "unsupported_parameter"
            }}),
        ));
    }
    let messages_ok = body["messages"]
        .as_array()
        .is_some_and(|m| !m.is_empty() && m.iter().all(|m| m["role"].is_string()));
    (!messages_ok).then(|| {
        error(
            400,
            "[] is too short - 'messages'",
            "invalid_request_error",
            None,
        )
    })
}

pub(super) fn success_body(text: &str, model: &str, input: usize, output: usize) -> Value {
    json!({
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
    })
}

pub(super) fn rate_limited(headers: &[(&str, String)]) -> Response {
    error_with(
        429,
        headers,
        "Rate limit reached for gpt-4o-mini in organization org-fake on requests per min (RPM): Limit 3, Used 3, Requested 1.",
        "requests",
        Some("rate_limit_exceeded"),
    )
}

pub(super) fn server_error(status: u16) -> Response {
    let message = if status == 503 {
        "The engine is currently overloaded, please try again later"
    } else {
        "The server had an error while processing your request. Sorry about that!"
    };
    error(status, message, "server_error", None)
}

pub(super) fn quota_exhausted() -> Response {
    error(
        429,
        "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
        "insufficient_quota",
        Some("insufficient_quota"),
    )
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
