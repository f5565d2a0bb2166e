//! [`GeminiClient`]: Google's Gemini API (`generateContent`), its request and response JSON and
//! its error bodies.
//!
//! Wire format: `POST {base}/v1beta/models/{model}:generateContent` with the key in the
//! `x-goog-api-key` header (never in the URL, where it would end up in error messages).
//! Errors come as `{"error":{"code","message","status","details":[...]}}`; the details tell a
//! daily quota (`QuotaFailure` with a `...PerDay...` quota id: not worth retrying today) from a
//! per-minute rate limit, and carry the wait the server asks for (`RetryInfo.retryDelay`).

use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use super::http::{HttpReply, HttpTarget, fallback_message, secret_header};
use super::retry::{parse_google_duration, retry_after_from_headers};
use super::{LlmError, LlmRequest, LlmResponse};
use crate::secret::Secret;

/// A Gemini endpoint.
#[derive(Debug, Clone)]
pub(crate) struct GeminiClient {
    http: HttpTarget,
    base: Url,
}

impl GeminiClient {
    pub fn new(http: HttpTarget, base: Url) -> Self {
        Self { http, base }
    }

    /// One `generateContent` call, no retry.
    ///
    /// # Errors
    ///
    /// Transport, status and decode errors as classified by this module; a response without
    /// text is [`LlmError::NoAnswer`] naming the block or finish reason.
    pub async fn complete(
        &self,
        request: &LlmRequest,
        model: &str,
        key: &Secret,
    ) -> Result<LlmResponse, LlmError> {
        let url = self.endpoint(model)?;
        let http_request = self
            .http
            .client
            .post(url)
            .header(
                "x-goog-api-key",
                secret_header(&self.http.provider, key.expose())?,
            )
            .json(&request_body(request));
        let reply = self.http.send(http_request).await?;
        if !reply.status.is_success() {
            return Err(self.error(&reply));
        }
        let body: GenerateResponse = self.http.decode(&reply.body)?;
        self.answer(body, model)
    }

    fn endpoint(&self, model: &str) -> Result<Url, LlmError> {
        // Accept the resource name form ("models/gemini-2.5-flash") as well as the bare id.
        let model = model.strip_prefix("models/").unwrap_or(model);
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| LlmError::InvalidSettings {
                provider: self.http.provider.clone(),
                reason: format!("base_url `{}` cannot take a path", self.base),
            })?
            .pop_if_empty()
            .extend(["v1beta", "models", &format!("{model}:generateContent")]);
        Ok(url)
    }

    fn answer(&self, body: GenerateResponse, model: &str) -> Result<LlmResponse, LlmError> {
        let provider = &self.http.provider;
        let Some(candidate) = body.candidates.into_iter().next() else {
            let reason = match body.prompt_feedback.and_then(|f| f.block_reason) {
                Some(reason) => format!("the prompt was blocked ({reason})"),
                None => "the response has no candidates".to_owned(),
            };
            return Err(LlmError::NoAnswer {
                provider: provider.clone(),
                reason,
            });
        };
        let text: String = candidate
            .content
            .map(|content| {
                content
                    .parts
                    .into_iter()
                    // Thought summaries (thinking models with includeThoughts) are not the answer.
                    .filter(|part| !part.thought)
                    .filter_map(|part| part.text)
                    .collect()
            })
            .unwrap_or_default();
        let finish = candidate.finish_reason.unwrap_or_default();
        // An empty text that ended normally is an (odd) answer; an empty text cut by a safety
        // filter or the token limit (thinking models can spend it all on thoughts) is not.
        if text.is_empty() && !finish.is_empty() && finish != "STOP" {
            return Err(LlmError::NoAnswer {
                provider: provider.clone(),
                reason: format!("the answer stopped with finishReason {finish} before any text"),
            });
        }
        let usage = body.usage_metadata.unwrap_or_default();
        Ok(LlmResponse {
            text,
            model: body.model_version.unwrap_or_else(|| model.to_owned()),
            input_tokens: usage.prompt_token_count,
            // Thinking tokens are billed as output; count them so that cost figures hold.
            output_tokens: usage.candidates_token_count + usage.thoughts_token_count,
            retries: 0,
            rate_limit_wait: std::time::Duration::ZERO,
        })
    }

    fn error(&self, reply: &HttpReply) -> LlmError {
        classify_error(&self.http, reply)
    }
}

fn request_body(request: &LlmRequest) -> Value {
    let mut generation_config = serde_json::Map::new();
    if let Some(temperature) = request.temperature {
        generation_config.insert("temperature".into(), json!(temperature));
    }
    if let Some(max_tokens) = request.max_tokens {
        generation_config.insert("maxOutputTokens".into(), json!(max_tokens));
    }
    if request.json {
        // Gemini's JSON mode accepts any JSON value (arrays too), unlike OpenAI's.
        generation_config.insert("responseMimeType".into(), json!("application/json"));
    }
    let mut body = json!({
        "contents": [{"role": "user", "parts": [{"text": request.prompt}]}],
    });
    if let Some(system) = &request.system {
        body["systemInstruction"] = json!({"parts": [{"text": system}]});
    }
    if !generation_config.is_empty() {
        body["generationConfig"] = Value::Object(generation_config);
    }
    body
}

/// Maps an error reply: Gemini's error body refines the generic status classification.
fn classify_error(http: &HttpTarget, reply: &HttpReply) -> LlmError {
    let provider = http.provider.clone();
    let status = reply.status.as_u16();
    let Ok(ErrorBody { error }) = serde_json::from_str::<ErrorBody>(&reply.body) else {
        return http.status_error(
            reply.status,
            retry_after_from_headers(&reply.headers),
            fallback_message(reply.status, &reply.body),
        );
    };
    let message = if error.message.is_empty() {
        fallback_message(reply.status, &reply.body)
    } else {
        error.message.clone()
    };
    if status == 400
        && (error.message.contains("API key not valid")
            || error.detail_reasons().any(|r| r == "API_KEY_INVALID"))
    {
        return LlmError::Auth {
            provider,
            status,
            message,
        };
    }
    if status == 429 {
        if error.quota_ids().any(|id| id.contains("PerDay")) {
            return LlmError::QuotaExhausted { provider, message };
        }
        let retry_after = error
            .retry_delay()
            .or_else(|| retry_after_from_headers(&reply.headers));
        return LlmError::RateLimited {
            provider,
            retry_after,
            message,
        };
    }
    http.status_error(
        reply.status,
        retry_after_from_headers(&reply.headers),
        message,
    )
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateResponse {
    #[serde(default)]
    candidates: Vec<Candidate>,
    prompt_feedback: Option<PromptFeedback>,
    usage_metadata: Option<UsageMetadata>,
    model_version: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    content: Option<Content>,
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Content {
    #[serde(default)]
    parts: Vec<Part>,
}

#[derive(Debug, Deserialize)]
struct Part {
    text: Option<String>,
    #[serde(default)]
    thought: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    block_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    thoughts_token_count: u64,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: String,
    #[serde(default)]
    details: Vec<Value>,
}

impl ErrorDetail {
    /// The details whose `@type` ends with `suffix` (e.g. `google.rpc.RetryInfo`).
    fn details_of<'a>(&'a self, suffix: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.details.iter().filter(move |detail| {
            detail
                .get("@type")
                .and_then(Value::as_str)
                .is_some_and(|kind| kind.ends_with(suffix))
        })
    }

    fn quota_ids(&self) -> impl Iterator<Item = &str> {
        self.details_of("google.rpc.QuotaFailure")
            .filter_map(|detail| detail.get("violations").and_then(Value::as_array))
            .flatten()
            .filter_map(|violation| violation.get("quotaId").and_then(Value::as_str))
    }

    fn detail_reasons(&self) -> impl Iterator<Item = &str> {
        self.details_of("google.rpc.ErrorInfo")
            .filter_map(|detail| detail.get("reason").and_then(Value::as_str))
    }

    fn retry_delay(&self) -> Option<std::time::Duration> {
        self.details_of("google.rpc.RetryInfo")
            .filter_map(|detail| detail.get("retryDelay").and_then(Value::as_str))
            .find_map(parse_google_duration)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use reqwest::StatusCode;
    use reqwest::header::HeaderMap;

    use super::*;

    fn http() -> HttpTarget {
        HttpTarget::new(
            "gemini",
            HttpTarget::shared_client("gemini").expect("client"),
            60,
        )
    }

    fn reply(status: u16, body: &Value) -> HttpReply {
        HttpReply {
            status: StatusCode::from_u16(status).expect("status"),
            headers: HeaderMap::new(),
            body: body.to_string(),
        }
    }

    fn resource_exhausted(quota_id: &str) -> Value {
        json!({"error": {"code": 429, "message": "You exceeded your current quota", "status": "RESOURCE_EXHAUSTED",
        "details": [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
             "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests", "quotaId": quota_id}]},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12s"}
        ]}})
    }

    #[test]
    fn per_minute_429_is_rate_limited_with_retry_delay() {
        let err = classify_error(
            &http(),
            &reply(
                429,
                &resource_exhausted("GenerateRequestsPerMinutePerProjectPerModel-FreeTier"),
            ),
        );
        assert_eq!(err.kind_label(), "rate_limited");
        assert_eq!(err.retry_after(), Some(Duration::from_secs(12)));
    }

    #[test]
    fn per_day_429_is_quota_exhausted() {
        let err = classify_error(
            &http(),
            &reply(
                429,
                &resource_exhausted("GenerateRequestsPerDayPerProjectPerModel-FreeTier"),
            ),
        );
        assert_eq!(err.kind_label(), "quota");
        assert!(!err.is_retryable());
    }

    #[test]
    fn invalid_key_400_is_auth() {
        let body = json!({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT"}});
        assert_eq!(
            classify_error(&http(), &reply(400, &body)).kind_label(),
            "auth"
        );
        let other = json!({"error": {"code": 400, "message": "Invalid JSON payload", "status": "INVALID_ARGUMENT"}});
        assert_eq!(
            classify_error(&http(), &reply(400, &other)).kind_label(),
            "bad_request"
        );
    }

    #[test]
    fn non_json_error_body_falls_back_to_status() {
        let err = classify_error(
            &http(),
            &HttpReply {
                status: StatusCode::BAD_GATEWAY,
                headers: HeaderMap::new(),
                body: "<html>bad gateway</html>".into(),
            },
        );
        assert_eq!(err.kind_label(), "server");
        assert!(err.to_string().contains("bad gateway"));
    }

    #[test]
    fn request_body_shape() {
        let body = request_body(&LlmRequest {
            model: "m".into(),
            system: Some("be brief".into()),
            prompt: "hi".into(),
            temperature: Some(0.5),
            max_tokens: Some(100),
            json: true,
        });
        assert_eq!(body["contents"][0]["parts"][0]["text"], "hi");
        assert_eq!(body["systemInstruction"]["parts"][0]["text"], "be brief");
        assert_eq!(body["generationConfig"]["maxOutputTokens"], 100);
        assert_eq!(
            body["generationConfig"]["responseMimeType"],
            "application/json"
        );
    }
}
