//! Reading a message request as Discord validates it: the JSON body's fields the fake looks at
//! ([`MessageRequest`]), with Discord's limits on content, nonce, username and embeds, and the
//! path and query parameters (snowflakes, `?wait=`).

use axum::http::StatusCode;
use serde_json::{Map, Value};

use super::reject::{FieldErrors, Rejection, discord_error};
use super::{MAX_CONTENT_CHARS, MAX_NONCE_CHARS};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    CreateMessage,
    ExecuteWebhook,
}

/// A nonce as sent (echoed back) and as compared (integers in decimal).
pub(super) struct Nonce {
    pub(super) echo: Value,
    pub(super) key: String,
}

/// The request fields the fake looks at; everything else is ignored, as Discord ignores unknown
/// fields.
pub(super) struct MessageRequest {
    pub(super) content: Option<String>,
    pub(super) nonce: Option<Nonce>,
    pub(super) enforce_nonce: bool,
    pub(super) tts: bool,
    /// Webhook username override.
    pub(super) username: Option<String>,
}

impl MessageRequest {
    pub(super) fn parse(body: &[u8], route: Route) -> Result<MessageRequest, Rejection> {
        // An empty body is an empty form, hence an empty message, not invalid JSON.
        let value: Value = if body.iter().all(u8::is_ascii_whitespace) {
            Value::Object(Map::new())
        } else {
            serde_json::from_slice(body).map_err(|_| {
                discord_error(
                    StatusCode::BAD_REQUEST,
                    "The request body contains invalid JSON.",
                    50109,
                )
            })?
        };
        let Value::Object(fields) = value else {
            let mut errors = FieldErrors::default();
            errors.top_level(
                "DICT_TYPE_CONVERT",
                "Only dictionaries may be used in a DictType",
            );
            return Err(errors.into_rejection());
        };

        let mut errors = FieldErrors::default();
        let content = match fields.get("content") {
            None | Some(Value::Null) => None,
            Some(Value::String(content)) => {
                if content.chars().count() > MAX_CONTENT_CHARS {
                    errors.add(
                        "content",
                        "BASE_TYPE_MAX_LENGTH",
                        format!("Must be {MAX_CONTENT_CHARS} or fewer in length."),
                    );
                }
                Some(content.clone())
            }
            Some(_) => {
                errors.add(
                    "content",
                    "BASE_TYPE_STRING",
                    "Must be a string.".to_owned(),
                );
                None
            }
        };
        let nonce = if route == Route::CreateMessage {
            parse_nonce(fields.get("nonce"), &mut errors)
        } else {
            // Execute webhook has no nonce in the spec: an unknown field, ignored.
            None
        };
        let enforce_nonce = if route == Route::CreateMessage {
            parse_bool("enforce_nonce", fields.get("enforce_nonce"), &mut errors)
        } else {
            false
        };
        let tts = parse_bool("tts", fields.get("tts"), &mut errors);
        let username = if route == Route::ExecuteWebhook {
            match fields.get("username") {
                None | Some(Value::Null) => None,
                Some(Value::String(name)) => {
                    if !(1..=80).contains(&name.chars().count()) {
                        errors.add(
                            "username",
                            "BASE_TYPE_BAD_LENGTH",
                            "Must be between 1 and 80 in length.".to_owned(),
                        );
                    }
                    Some(name.clone())
                }
                Some(_) => {
                    errors.add(
                        "username",
                        "BASE_TYPE_STRING",
                        "Must be a string.".to_owned(),
                    );
                    None
                }
            }
        } else {
            None
        };
        if let Some(Value::Array(embeds)) = fields.get("embeds")
            && embeds.len() > 10
        {
            errors.add(
                "embeds",
                "BASE_TYPE_MAX_LENGTH",
                "Must be 10 or fewer in length.".to_owned(),
            );
        }
        if !errors.is_empty() {
            return Err(errors.into_rejection());
        }

        // Discord strips content, so whitespace alone is empty; the other payload fields a JSON
        // body can carry count when non-empty.
        let has_text = content.as_deref().is_some_and(|c| !c.trim().is_empty());
        let non_empty_list =
            |name: &str| matches!(fields.get(name), Some(Value::Array(items)) if !items.is_empty());
        let has_other = non_empty_list("embeds")
            || non_empty_list("components")
            || (route == Route::CreateMessage && non_empty_list("sticker_ids"))
            || matches!(fields.get("poll"), Some(poll) if !poll.is_null());
        if !has_text && !has_other {
            return Err(discord_error(
                StatusCode::BAD_REQUEST,
                "Cannot send an empty message",
                50006,
            ));
        }

        Ok(MessageRequest {
            content,
            nonce,
            enforce_nonce,
            tts,
            username,
        })
    }
}

/// `nonce`: an int64, a string of at most [`MAX_NONCE_CHARS`] characters, or null.
fn parse_nonce(value: Option<&Value>, errors: &mut FieldErrors) -> Option<Nonce> {
    match value {
        None | Some(Value::Null) => None,
        Some(Value::String(nonce)) => {
            if nonce.chars().count() > MAX_NONCE_CHARS {
                errors.add(
                    "nonce",
                    "BASE_TYPE_MAX_LENGTH",
                    format!("Must be {MAX_NONCE_CHARS} or fewer in length."),
                );
                return None;
            }
            Some(Nonce {
                echo: Value::String(nonce.clone()),
                key: nonce.clone(),
            })
        }
        Some(Value::Number(number)) => {
            if let Some(nonce) = number.as_i64() {
                Some(Nonce {
                    echo: Value::Number(number.clone()),
                    key: nonce.to_string(),
                })
            } else if number.is_u64() {
                // twilight's `nonce(u64)` can produce these; the spec says int64.
                errors.add(
                    "nonce",
                    "NUMBER_TYPE_MAX",
                    format!("int value should be less than or equal to {}.", i64::MAX),
                );
                None
            } else {
                errors.add(
                    "nonce",
                    "NONCE_TYPE_INVALID",
                    "Must be a string or an integer.".to_owned(),
                );
                None
            }
        }
        Some(_) => {
            errors.add(
                "nonce",
                "NONCE_TYPE_INVALID",
                "Must be a string or an integer.".to_owned(),
            );
            None
        }
    }
}

fn parse_bool(field: &str, value: Option<&Value>, errors: &mut FieldErrors) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Bool(flag)) => *flag,
        Some(_) => {
            errors.add(
                field,
                "BASE_TYPE_BOOLEAN",
                "Must be either true or false.".to_owned(),
            );
            false
        }
    }
}

/// The `wait` query parameter of execute webhook (absent means false).
pub(super) fn parse_wait(query: Option<&str>) -> Result<bool, Rejection> {
    let mut wait = false;
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if key != "wait" {
            continue;
        }
        wait = match value.to_ascii_lowercase().as_str() {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => {
                let mut errors = FieldErrors::default();
                errors.add(
                    "wait",
                    "BOOLEAN_TYPE_COERCE",
                    format!("Value \"{value}\" is not a valid boolean."),
                );
                return Err(errors.into_rejection());
            }
        };
    }
    Ok(wait)
}

pub(super) fn parse_snowflake(field: &str, raw: &str) -> Result<u64, Rejection> {
    raw.parse::<u64>().map_err(|_| {
        let mut errors = FieldErrors::default();
        errors.add(
            field,
            "NUMBER_TYPE_COERCE",
            format!("Value \"{raw}\" is not snowflake."),
        );
        errors.into_rejection()
    })
}
