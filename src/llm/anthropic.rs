//! [`AnthropicClient`]: Anthropic's Messages API, its request and response JSON and its error
//! bodies.
//!
//! Wire format: `POST {base}/v1/messages` with `x-api-key`, `anthropic-version: 2023-06-01`.
//! `max_tokens` is required by the API, so a request without one asks for
//! [`DEFAULT_MAX_TOKENS`]. Errors come as `{"type":"error","error":{"type","message"}}`;
//! `overloaded_error` (HTTP 529) is a retryable server error, and an `invalid_request_error`
//! about the credit balance means the account is empty.

use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use super::http::{HttpReply, HttpTarget, fallback_message, secret_header};
use super::retry::retry_after_from_headers;
use super::{LlmError, LlmRequest, LlmResponse, temperature_json};
use crate::secret::Secret;

/// The API version this client speaks.
const API_VERSION: &str = "2023-06-01";

/// `max_tokens` when the request sets none (the API requires one).
pub(crate) const DEFAULT_MAX_TOKENS: u32 = 1024;

/// An Anthropic endpoint.
#[derive(Debug, Clone)]
pub(crate) struct AnthropicClient {
    http: HttpTarget,
    endpoint: Url,
}

impl AnthropicClient {
    /// # Errors
    ///
    /// [`LlmError::InvalidSettings`] when the base URL cannot take a path.
    pub fn new(http: HttpTarget, base: Url) -> Result<Self, LlmError> {
        let mut endpoint = base.clone();
        endpoint
            .path_segments_mut()
            .map_err(|()| LlmError::InvalidSettings {
                provider: http.provider.clone(),
                reason: format!("base_url `{base}` cannot take a path"),
            })?
            .pop_if_empty()
            .extend(["v1", "messages"]);
        Ok(Self { http, endpoint })
    }

    /// One Messages call, no retry.
    ///
    /// # Errors
    ///
    /// Transport, status and decode errors as classified by this module; a refusal or a reply
    /// without text is [`LlmError::NoAnswer`].
    pub async fn complete(
        &self,
        request: &LlmRequest,
        model: &str,
        key: &Secret,
    ) -> Result<LlmResponse, LlmError> {
        let http_request = self
            .http
            .client
            .post(self.endpoint.clone())
            .header(
                "x-api-key",
                secret_header(&self.http.provider, key.expose())?,
            )
            .header("anthropic-version", API_VERSION)
            .json(&request_body(request, model));
        let reply = self.http.send(http_request).await?;
        if !reply.status.is_success() {
            return Err(classify_error(&self.http, &reply));
        }
        let body: MessagesResponse = self.http.decode(&reply.body)?;
        self.answer(body, model)
    }

    fn answer(&self, body: MessagesResponse, model: &str) -> Result<LlmResponse, LlmError> {
        let text: String = body
            .content
            .into_iter()
            .filter(|block| block.kind == "text")
            .filter_map(|block| block.text)
            .collect();
        let stop = body.stop_reason.unwrap_or_default();
        if text.is_empty() && (stop == "refusal" || stop == "max_tokens") {
            return Err(LlmError::NoAnswer {
                provider: self.http.provider.clone(),
                reason: format!("the answer stopped with stop_reason {stop} before any text"),
            });
        }
        let usage = body.usage.unwrap_or_default();
        Ok(LlmResponse {
            text,
            model: body
                .model
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| model.to_owned()),
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            retries: 0,
            rate_limit_wait: std::time::Duration::ZERO,
        })
    }
}

fn request_body(request: &LlmRequest, model: &str) -> Value {
    let mut body = json!({
        "model": model,
        "max_tokens": request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        "messages": [{"role": "user", "content": request.prompt}],
    });
    if let Some(system) = &request.system {
        body["system"] = json!(system);
    }
    if let Some(temperature) = request.temperature {
        body["temperature"] = temperature_json(temperature);
    }
    body
}

/// Maps an error reply using the error `type` of Anthropic's body.
fn classify_error(http: &HttpTarget, reply: &HttpReply) -> LlmError {
    let body: Value = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
    let kind = body["error"]["type"].as_str().unwrap_or_default();
    let message = body["error"]["message"]
        .as_str()
        .filter(|m| !m.is_empty())
        .map_or_else(
            || fallback_message(reply.status, &reply.body),
            str::to_owned,
        );
    let retry_after = retry_after_from_headers(&reply.headers);
    let provider = http.provider.clone();
    let status = reply.status.as_u16();
    match kind {
        "invalid_request_error" if message.to_lowercase().contains("credit balance") => {
            LlmError::QuotaExhausted { provider, message }
        }
        "authentication_error" | "permission_error" => LlmError::Auth {
            provider,
            status,
            message,
        },
        "rate_limit_error" => LlmError::RateLimited {
            provider,
            retry_after,
            message,
        },
        // Whatever the status a proxy put on it, an overload is worth retrying.
        "overloaded_error" | "api_error" => LlmError::Server {
            provider,
            status,
            message,
        },
        _ => http.status_error(reply.status, retry_after, message),
    }
}

#[derive(Debug, Deserialize)]
struct MessagesResponse {
    #[serde(default)]
    content: Vec<Block>,
    usage: Option<Usage>,
    model: Option<String>,
    stop_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Block {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Usage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
}

#[cfg(test)]
mod tests {
    use reqwest::StatusCode;
    use reqwest::header::HeaderMap;

    use super::*;

    fn classify(status: u16, kind: &str, message: &str) -> LlmError {
        let http = HttpTarget::new(
            "anthropic",
            HttpTarget::shared_client("anthropic").expect("client"),
            60,
        );
        let body = json!({"type": "error", "error": {"type": kind, "message": message}});
        classify_error(
            &http,
            &HttpReply {
                status: StatusCode::from_u16(status).expect("status"),
                headers: HeaderMap::new(),
                body: body.to_string(),
            },
        )
    }

    #[test]
    fn error_types_are_classified() {
        let overloaded = classify(529, "overloaded_error", "Overloaded");
        assert_eq!(overloaded.kind_label(), "server");
        assert!(overloaded.is_retryable());
        let credit = classify(
            400,
            "invalid_request_error",
            "Your credit balance is too low to access the Anthropic API.",
        );
        assert_eq!(credit.kind_label(), "quota");
        assert_eq!(
            classify(400, "invalid_request_error", "max_tokens: field required").kind_label(),
            "bad_request"
        );
        assert_eq!(
            classify(401, "authentication_error", "invalid x-api-key").kind_label(),
            "auth"
        );
        assert_eq!(
            classify(429, "rate_limit_error", "slow down").kind_label(),
            "rate_limited"
        );
    }

    #[test]
    fn max_tokens_defaults() {
        let body = request_body(
            &LlmRequest {
                model: String::new(),
                system: Some("sys".into()),
                prompt: "hi".into(),
                temperature: None,
                max_tokens: None,
                json: false,
            },
            "claude",
        );
        assert_eq!(body["max_tokens"], DEFAULT_MAX_TOKENS);
        assert_eq!(body["system"], "sys");
        assert_eq!(body["messages"][0]["role"], "user");
    }
}
