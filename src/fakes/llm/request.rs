//! Reading what a client sent into a [`FakeRequest`]: headers, query, and the model, system
//! prompt and user prompt found where each provider's body puts them.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, Method, Uri};
use serde_json::Value;

use super::{FakeRequest, gemini};
use crate::llm::ProviderKind;

pub(super) fn parse_request(
    kind: ProviderKind,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> FakeRequest {
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let headers: BTreeMap<String, String> = headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let path = uri.path().to_owned();
    let (model, system, prompt) = match kind {
        ProviderKind::Gemini => {
            let system = body["systemInstruction"]["parts"]
                .as_array()
                .map(|parts| join_texts(parts.iter().map(|p| &p["text"])));
            let prompt = body["contents"]
                .as_array()
                .map(|contents| {
                    join_texts(
                        contents
                            .iter()
                            .filter(|c| c["role"].as_str().is_none_or(|r| r == "user"))
                            .filter_map(|c| c["parts"].as_array())
                            .flatten()
                            .map(|p| &p["text"]),
                    )
                })
                .unwrap_or_default();
            (gemini::model(&path).map(str::to_owned), system, prompt)
        }
        ProviderKind::Openai | ProviderKind::Anthropic | ProviderKind::Offline => {
            let messages = body["messages"].as_array().cloned().unwrap_or_default();
            let by_role = |role: &str| {
                join_texts(
                    messages
                        .iter()
                        .filter(|m| m["role"] == role)
                        .map(|m| &m["content"]),
                )
            };
            let system = if kind == ProviderKind::Anthropic {
                (!body["system"].is_null()).then(|| join_texts([&body["system"]]))
            } else {
                Some(by_role("system")).filter(|s| !s.is_empty())
            };
            (
                body["model"].as_str().map(str::to_owned),
                system,
                by_role("user"),
            )
        }
    };
    FakeRequest {
        method: method.to_string(),
        path,
        query: uri.query().map(str::to_owned),
        headers,
        model,
        system,
        prompt,
        body,
    }
}

/// Joins texts given as strings or as content blocks (`[{"type":"text","text":..}]`).
fn join_texts<'a>(values: impl IntoIterator<Item = &'a Value>) -> String {
    let mut texts = Vec::new();
    for value in values {
        match value {
            Value::String(text) => texts.push(text.clone()),
            Value::Array(blocks) => texts.extend(
                blocks
                    .iter()
                    .filter_map(|b| b["text"].as_str().map(str::to_owned)),
            ),
            _ => {}
        }
    }
    texts.join("\n")
}
