//! [`HttpTarget`]: the HTTP plumbing shared by the network providers: one `reqwest` client per
//! provider (with its timeout), sending a request and mapping transport failures, status codes
//! and undecodable bodies to [`LlmError`].
//!
//! Provider modules build the request and interpret provider-specific error bodies; everything
//! generic lives here so that the three behave the same way.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue};
use serde::de::DeserializeOwned;

use super::LlmError;

/// How much of an unexpected body goes into an error: enough to recognise it, not a page.
const EXCERPT_CHARS: usize = 300;

/// Default bound of one response body: a long answer is tens of kilobytes.
pub(crate) const DEFAULT_MAX_RESPONSE_BYTES: u64 = 1024 * 1024;

/// One provider's HTTP client.
#[derive(Debug, Clone)]
pub(crate) struct HttpTarget {
    pub provider: String,
    pub client: reqwest::Client,
    pub timeout_seconds: u64,
    /// A longer body is not read (a runaway or hostile server must not fill memory).
    pub max_response_bytes: u64,
}

/// A complete HTTP answer, whatever its status.
#[derive(Debug)]
pub(crate) struct HttpReply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl HttpTarget {
    /// The shared HTTP client of the process: one connection pool and one TLS setup for all
    /// providers (timeouts are set per request, per provider).
    ///
    /// # Errors
    ///
    /// [`LlmError::InvalidSettings`] (attributed to `provider`) when the TLS backend cannot be
    /// initialised.
    pub fn shared_client(provider: &str) -> Result<reqwest::Client, LlmError> {
        reqwest::Client::builder()
            .user_agent(concat!("bot-server/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| LlmError::InvalidSettings {
                provider: provider.to_owned(),
                reason: format!("cannot build the HTTP client: {}", crate::error_chain(&err)),
            })
    }

    /// A provider's view of the shared client; every request (connect, send, read the whole
    /// body) is bounded by `timeout_seconds`.
    pub fn new(provider: &str, client: reqwest::Client, timeout_seconds: u64) -> Self {
        Self {
            provider: provider.to_owned(),
            client,
            timeout_seconds,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }

    /// The same client with another bound on response bodies.
    #[must_use]
    pub fn with_max_response_bytes(mut self, max_response_bytes: u64) -> Self {
        self.max_response_bytes = max_response_bytes;
        self
    }

    /// Sends the request and reads the whole body, up to `max_response_bytes`.
    ///
    /// # Errors
    ///
    /// [`LlmError::Timeout`] when the request or the body took longer than the timeout,
    /// [`LlmError::TooLarge`] when the body is longer than `max_response_bytes`,
    /// [`LlmError::Transport`] for any other failure to exchange the request.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<HttpReply, LlmError> {
        let mut response = request
            .timeout(Duration::from_secs(self.timeout_seconds))
            .send()
            .await
            .map_err(|err| self.transport_error(err))?;
        let status = response.status();
        let headers = response.headers().clone();
        let too_large = || LlmError::TooLarge {
            provider: self.provider.clone(),
            max_bytes: self.max_response_bytes,
        };
        if response
            .content_length()
            .is_some_and(|n| n > self.max_response_bytes)
        {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|err| self.transport_error(err))?
        {
            if (bytes.len() + chunk.len()) as u64 > self.max_response_bytes {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(HttpReply {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        })
    }

    /// Parses a success body.
    ///
    /// # Errors
    ///
    /// [`LlmError::Decode`] with an excerpt of the body when it does not have the expected shape.
    pub fn decode<T: DeserializeOwned>(&self, body: &str) -> Result<T, LlmError> {
        serde_json::from_str(body).map_err(|err| self.decode_error(err.to_string(), body))
    }

    /// A [`LlmError::Decode`] for this provider.
    pub fn decode_error(&self, message: impl Into<String>, body: &str) -> LlmError {
        LlmError::Decode {
            provider: self.provider.clone(),
            message: message.into(),
            body_excerpt: crate::excerpt(body, EXCERPT_CHARS),
        }
    }

    fn transport_error(&self, err: reqwest::Error) -> LlmError {
        if err.is_timeout() {
            LlmError::Timeout {
                provider: self.provider.clone(),
                seconds: self.timeout_seconds,
            }
        } else {
            LlmError::Transport {
                provider: self.provider.clone(),
                message: crate::error_chain(&err.without_url()),
            }
        }
    }

    /// The generic classification of an error status, for what the provider's error body did
    /// not settle: 401/403 → auth, 429 → rate limited, 5xx → server, other → bad request.
    pub fn status_error(
        &self,
        status: StatusCode,
        retry_after: Option<Duration>,
        message: String,
    ) -> LlmError {
        let provider = self.provider.clone();
        let code = status.as_u16();
        match code {
            401 | 403 => LlmError::Auth {
                provider,
                status: code,
                message,
            },
            429 => LlmError::RateLimited {
                provider,
                retry_after,
                message,
            },
            500..=599 => LlmError::Server {
                provider,
                status: code,
                message,
            },
            _ => LlmError::BadRequest {
                provider,
                status: code,
                message,
            },
        }
    }
}

/// A header value holding a secret, flagged sensitive so that `http`'s Debug output hides it.
///
/// # Errors
///
/// [`LlmError::InvalidSettings`] when the key contains characters HTTP headers cannot carry;
/// the message does not quote the key.
pub(crate) fn secret_header(provider: &str, value: &str) -> Result<HeaderValue, LlmError> {
    let mut header = HeaderValue::from_str(value).map_err(|_| LlmError::InvalidSettings {
        provider: provider.to_owned(),
        reason: "the API key contains characters not allowed in an HTTP header".to_owned(),
    })?;
    header.set_sensitive(true);
    Ok(header)
}

/// The message to show for an error body that we could not interpret: the body itself, cut.
pub(crate) fn fallback_message(status: StatusCode, body: &str) -> String {
    if body.trim().is_empty() {
        status
            .canonical_reason()
            .unwrap_or("no error message")
            .to_owned()
    } else {
        crate::excerpt(body, EXCERPT_CHARS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_header_is_sensitive() {
        let header = secret_header("p", "Bearer sk-1").expect("valid header");
        assert!(header.is_sensitive());
        assert!(!format!("{header:?}").contains("sk-1"));
        let err = secret_header("p", "bad\nkey").expect_err("newline is not allowed");
        assert!(!err.to_string().contains("bad"));
    }
}
