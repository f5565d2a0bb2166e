//! What the fake answers, per provider: [`Wire`] picks the provider's route check, auth check,
//! request-shape check, success body and scripted failures ([`Reply`](super::Reply)) from its
//! wire-format module, and builds the JSON responses they all send.

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{FakeRequest, anthropic, gemini, openai};
use crate::llm::ProviderKind;

/// The provider-specific bodies.
pub(super) struct Wire {
    pub(super) kind: ProviderKind,
}

impl Wire {
    /// Whether `request` is a call of the provider's generate operation.
    pub(super) fn route_ok(&self, request: &FakeRequest) -> bool {
        match self.kind {
            ProviderKind::Gemini => gemini::model(&request.path).is_some(),
            ProviderKind::Openai => request.path == "/v1/chat/completions",
            ProviderKind::Anthropic => request.path == "/v1/messages",
            ProviderKind::Offline => false,
        }
    }

    pub(super) fn not_found(&self, request: &FakeRequest) -> Response {
        let message = format!(
            "{} {} is not a route of this fake",
            request.method, request.path
        );
        match self.kind {
            ProviderKind::Gemini => gemini::not_found(&message),
            ProviderKind::Openai => openai::not_found(&message),
            ProviderKind::Anthropic => anthropic::not_found(&message),
            ProviderKind::Offline => json_response(404, &[], &json!({"error": message})),
        }
    }

    pub(super) fn check_auth(&self, request: &FakeRequest, expected: &str) -> Option<Response> {
        if expected.is_empty() {
            return None;
        }
        match self.kind {
            ProviderKind::Gemini => gemini::check_auth(request, expected),
            ProviderKind::Openai => openai::check_auth(request, expected),
            ProviderKind::Anthropic => anthropic::check_auth(request, expected),
            ProviderKind::Offline => None,
        }
    }

    pub(super) fn check_shape(&self, request: &FakeRequest) -> Option<Response> {
        match self.kind {
            ProviderKind::Gemini => gemini::check_shape(request),
            ProviderKind::Openai => openai::check_shape(request),
            ProviderKind::Anthropic => anthropic::check_shape(request),
            ProviderKind::Offline => None,
        }
    }

    pub(super) fn success(&self, request: &FakeRequest, text: &str) -> Response {
        let input =
            word_count(request.system.as_deref().unwrap_or_default()) + word_count(&request.prompt);
        let output = word_count(text);
        let model = request.model.clone().unwrap_or_default();
        let body = match self.kind {
            ProviderKind::Gemini => gemini::success_body(text, &model, input, output),
            ProviderKind::Openai => openai::success_body(text, &model, input, output),
            ProviderKind::Anthropic => anthropic::success_body(text, &model, input, output),
            ProviderKind::Offline => json!({"text": text}),
        };
        json_response(200, &[], &body)
    }

    pub(super) fn rate_limited(&self, retry_after_seconds: Option<u64>) -> Response {
        let headers: Vec<(&str, String)> = retry_after_seconds
            .map(|seconds| ("retry-after", seconds.to_string()))
            .into_iter()
            .collect();
        match self.kind {
            ProviderKind::Gemini => gemini::rate_limited(retry_after_seconds),
            ProviderKind::Openai => openai::rate_limited(&headers),
            ProviderKind::Anthropic => anthropic::rate_limited(&headers),
            ProviderKind::Offline => {
                json_response(429, &headers, &json!({"error": "rate limited"}))
            }
        }
    }

    pub(super) fn server_error(&self, status: u16) -> Response {
        match self.kind {
            ProviderKind::Gemini => gemini::server_error(status),
            ProviderKind::Openai => openai::server_error(status),
            ProviderKind::Anthropic => anthropic::server_error(status),
            ProviderKind::Offline => json_response(status, &[], &json!({"error": "server error"})),
        }
    }

    pub(super) fn quota_exhausted(&self) -> Response {
        match self.kind {
            ProviderKind::Gemini => gemini::quota_exhausted(),
            ProviderKind::Openai => openai::quota_exhausted(),
            ProviderKind::Anthropic => anthropic::quota_exhausted(),
            ProviderKind::Offline => json_response(429, &[], &json!({"error": "quota exhausted"})),
        }
    }
}

fn word_count(text: &str) -> usize {
    text.split_whitespace().count()
}

pub(super) fn json_response(status: u16, headers: &[(&str, String)], body: &Value) -> Response {
    let owned: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| ((*name).to_owned(), value.clone()))
        .collect();
    raw(status, &owned, body.to_string())
}

pub(super) fn raw(status: u16, headers: &[(String, String)], body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, body).into_response();
    let map = response.headers_mut();
    map.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            map.insert(name, value);
        }
    }
    response
}
