//! Discord's error answers: [`Rejection`] (a status and Discord's JSON error body), the
//! 50035 "Invalid Form Body" tree of field errors, and the generic bodies (401, `500: Internal
//! Server Error`, ...).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// The `errors` tree of a 50035 "Invalid Form Body".
#[derive(Default)]
pub(super) struct FieldErrors(Map<String, Value>);

impl FieldErrors {
    pub(super) fn add(&mut self, field: &str, code: &str, message: String) {
        let entry = self
            .0
            .entry(field.to_owned())
            .or_insert_with(|| json!({ "_errors": [] }));
        if let Some(Value::Array(list)) = entry.get_mut("_errors") {
            list.push(json!({ "code": code, "message": message }));
        }
    }

    /// An error about the body as a whole (`errors._errors`).
    pub(super) fn top_level(&mut self, code: &str, message: &str) {
        self.0.insert(
            "_errors".to_owned(),
            json!([{ "code": code, "message": message }]),
        );
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn into_rejection(self) -> Rejection {
        Rejection {
            status: StatusCode::BAD_REQUEST,
            body: json!({
                "message": "Invalid Form Body",
                "code": 50035,
                "errors": Value::Object(self.0),
            }),
        }
    }
}

/// An error answer: a status and Discord's JSON error body. A `Response` is too big to pass
/// around in `Result`s, so errors travel as this until they are sent.
pub(super) struct Rejection {
    status: StatusCode,
    body: Value,
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}

/// Discord's plain error body `{"message": ..., "code": ...}`.
pub(super) fn discord_error(status: StatusCode, message: &str, code: u32) -> Rejection {
    Rejection {
        status,
        body: json!({ "message": message, "code": code }),
    }
}

pub(super) fn unauthorized() -> Rejection {
    discord_error(StatusCode::UNAUTHORIZED, "401: Unauthorized", 0)
}

/// A status with Discord's generic body, e.g. `{"message": "500: Internal Server Error",
/// "code": 0}`.
pub(super) fn generic_status(status: u16) -> Rejection {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let reason = status.canonical_reason().unwrap_or("Unknown");
    discord_error(status, &format!("{}: {reason}", status.as_u16()), 0)
}
