//! [`OpenAiClient`]: OpenAI's chat completions API and the servers that copy it (Ollama,
//! llama.cpp, vLLM, LM Studio...), its request and response JSON and its error bodies.
//!
//! Wire format: `POST {base}/chat/completions` (base `https://api.openai.com/v1` by default, so
//! that Ollama's `http://localhost:11434/v1` works the same way), `Authorization: Bearer KEY`
//! only when a key is configured: local servers need none.
//!
//! JSON mode is deliberately not requested: OpenAI's `response_format: json_object` only allows a
//! top-level object and requires the word "JSON" in the prompt, while narratives ask for arrays;
//! many compatible servers also reject or ignore it. The caller parses the text either way.

use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use super::http::{HttpReply, HttpTarget, fallback_message, secret_header};
use super::retry::retry_after_from_headers;
use super::settings::MaxTokensField;
use super::{LlmError, LlmRequest, LlmResponse, temperature_json};
use crate::secret::Secret;

/// An OpenAI-compatible endpoint.
#[derive(Debug, Clone)]
pub(crate) struct OpenAiClient {
    http: HttpTarget,
    endpoint: Url,
    max_tokens_field: MaxTokensField,
}

impl OpenAiClient {
    /// `base` is the API root including its version (`.../v1`); an act's token limit is sent
    /// as `max_tokens_field`.
    ///
    /// # Errors
    ///
    /// [`LlmError::InvalidSettings`] when the base URL cannot take a path.
    pub fn new(
        http: HttpTarget,
        base: Url,
        max_tokens_field: MaxTokensField,
    ) -> Result<Self, LlmError> {
        let mut endpoint = base.clone();
        endpoint
            .path_segments_mut()
            .map_err(|()| LlmError::InvalidSettings {
                provider: http.provider.clone(),
                reason: format!("base_url `{base}` cannot take a path"),
            })?
            .pop_if_empty()
            .extend(["chat", "completions"]);
        Ok(Self {
            http,
            endpoint,
            max_tokens_field,
        })
    }

    /// One chat completion, no retry.
    ///
    /// # Errors
    ///
    /// Transport, status and decode errors as classified by this module; a reply without
    /// content (a refusal) is [`LlmError::NoAnswer`].
    pub async fn complete(
        &self,
        request: &LlmRequest,
        model: &str,
        key: Option<&Secret>,
    ) -> Result<LlmResponse, LlmError> {
        let mut http_request = self
            .http
            .client
            .post(self.endpoint.clone())
            .json(&request_body(request, model, self.max_tokens_field));
        if let Some(key) = key {
            let value = format!("Bearer {}", key.expose());
            http_request =
                http_request.header("authorization", secret_header(&self.http.provider, &value)?);
        }
        let reply = self.http.send(http_request).await?;
        if !reply.status.is_success() {
            return Err(classify_error(&self.http, &reply));
        }
        let body: ChatResponse = self.http.decode(&reply.body)?;
        self.answer(body, model, &reply.body)
    }

    fn answer(&self, body: ChatResponse, model: &str, raw: &str) -> Result<LlmResponse, LlmError> {
        let provider = &self.http.provider;
        let Some(choice) = body.choices.into_iter().next() else {
            return Err(self.http.decode_error("the response has no choices", raw));
        };
        let message = choice.message.unwrap_or_default();
        let text = match (message.content, message.refusal) {
            (Some(content), _) if !content.is_empty() => content,
            (_, Some(refusal)) if !refusal.is_empty() => {
                return Err(LlmError::NoAnswer {
                    provider: provider.clone(),
                    reason: format!("the model refused: {refusal}"),
                });
            }
            (content, _) => {
                let finish = choice.finish_reason.unwrap_or_default();
                // "length" with no content: the token limit was spent (reasoning models);
                // "content_filter": blocked. A plain "stop" with empty content is an answer.
                if finish == "length" || finish == "content_filter" {
                    return Err(LlmError::NoAnswer {
                        provider: provider.clone(),
                        reason: format!(
                            "the answer stopped with finish_reason {finish} before any text"
                        ),
                    });
                }
                content.unwrap_or_default()
            }
        };
        let usage = body.usage.unwrap_or_default();
        Ok(LlmResponse {
            text,
            model: body
                .model
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| model.to_owned()),
            input_tokens: usage.prompt_tokens,
            output_tokens: usage.completion_tokens,
            retries: 0,
            rate_limit_wait: std::time::Duration::ZERO,
        })
    }
}

fn request_body(request: &LlmRequest, model: &str, max_tokens_field: MaxTokensField) -> Value {
    let mut messages = Vec::with_capacity(2);
    if let Some(system) = &request.system {
        messages.push(json!({"role": "system", "content": system}));
    }
    messages.push(json!({"role": "user", "content": request.prompt}));
    let mut body = json!({"model": model, "messages": messages});
    if let Some(temperature) = request.temperature {
        body["temperature"] = temperature_json(temperature);
    }
    if let Some(max_tokens) = request.max_tokens {
        body[max_tokens_field.as_str()] = json!(max_tokens);
    }
    body
}

/// Maps an error reply: the `code` of OpenAI's error body tells an empty account
/// (`insufficient_quota`) from a rate limit, both sent as 429.
fn classify_error(http: &HttpTarget, reply: &HttpReply) -> LlmError {
    let body: Value = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
    let error = &body["error"];
    // `{"error": {"message": ..}}` from OpenAI; some compatible servers send `{"error": ".."}`.
    let message = error["message"]
        .as_str()
        .or_else(|| error.as_str())
        .filter(|m| !m.is_empty())
        .map_or_else(
            || fallback_message(reply.status, &reply.body),
            str::to_owned,
        );
    let code = error["code"].as_str().unwrap_or_default();
    let kind = error["type"].as_str().unwrap_or_default();
    if reply.status.as_u16() == 429
        && (code == "insufficient_quota" || kind == "insufficient_quota")
    {
        return LlmError::QuotaExhausted {
            provider: http.provider.clone(),
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
struct ChatResponse {
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<Usage>,
    model: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    message: Option<Message>,
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Message {
    content: Option<String>,
    refusal: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use reqwest::StatusCode;
    use reqwest::header::HeaderMap;

    use super::*;

    fn reply(status: u16, headers: &[(&'static str, &'static str)], body: &str) -> HttpReply {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, value.parse().expect("header value"));
        }
        HttpReply {
            status: StatusCode::from_u16(status).expect("status"),
            headers: map,
            body: body.to_owned(),
        }
    }

    #[test]
    fn quota_and_rate_limit_are_told_apart() {
        let http = HttpTarget::new(
            "openai",
            HttpTarget::shared_client("openai").expect("client"),
            60,
        );
        let quota = reply(
            429,
            &[],
            r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#,
        );
        assert_eq!(classify_error(&http, &quota).kind_label(), "quota");
        let limited = reply(
            429,
            &[("retry-after-ms", "1500"), ("retry-after", "2")],
            r#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
        );
        let err = classify_error(&http, &limited);
        assert_eq!(err.kind_label(), "rate_limited");
        assert_eq!(err.retry_after(), Some(Duration::from_millis(1500)));
    }

    #[test]
    fn string_error_bodies_are_understood() {
        let http = HttpTarget::new(
            "ollama",
            HttpTarget::shared_client("ollama").expect("client"),
            60,
        );
        let err = classify_error(
            &http,
            &reply(404, &[], r#"{"error":"model 'x' not found"}"#),
        );
        assert_eq!(err.kind_label(), "bad_request");
        assert!(err.to_string().contains("model 'x' not found"));
    }

    #[test]
    fn request_body_has_no_response_format() {
        let body = request_body(
            &LlmRequest {
                model: String::new(),
                system: Some("sys".into()),
                prompt: "hi".into(),
                temperature: Some(0.7),
                max_tokens: None,
                json: true,
            },
            "gpt",
            MaxTokensField::MaxCompletionTokens,
        );
        assert_eq!(body["model"], "gpt");
        assert_eq!(body["messages"][0]["role"], "system");
        assert_eq!(body["messages"][1]["content"], "hi");
        assert_eq!(body["temperature"], json!(0.7));
        assert!(body.get("response_format").is_none());
        assert!(body.get("max_tokens").is_none());
        assert!(body.get("max_completion_tokens").is_none());
    }

    #[test]
    fn token_limit_goes_in_the_chosen_field_only() {
        let request = LlmRequest {
            model: String::new(),
            system: None,
            prompt: "hi".into(),
            temperature: None,
            max_tokens: Some(300),
            json: false,
        };
        let body = request_body(&request, "gpt-5-mini", MaxTokensField::MaxCompletionTokens);
        assert_eq!(body["max_completion_tokens"], json!(300));
        assert!(body.get("max_tokens").is_none());
        let body = request_body(&request, "llama3", MaxTokensField::MaxTokens);
        assert_eq!(body["max_tokens"], json!(300));
        assert!(body.get("max_completion_tokens").is_none());
    }
}
