//! Reading a model's answer: the JSON an act asked for ([`extract_json`]).

/// Extracts JSON from a model's answer: a fenced ```json block, or the outermost array or
/// object in the text.
///
/// # Errors
///
/// A description of why nothing in the text parses as JSON.
pub fn extract_json(text: &str) -> Result<serde_json::Value, String> {
    let mut candidates = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("```") {
        let after = &rest[start + 3..];
        let body_start = after.find('\n').map_or(0, |i| i + 1);
        let Some(end) = after[body_start..].find("```") else {
            break;
        };
        candidates.push(after[body_start..body_start + end].trim());
        rest = &after[body_start + end + 3..];
    }
    for (open, close) in [('[', ']'), ('{', '}')] {
        if let (Some(s), Some(e)) = (text.find(open), text.rfind(close))
            && s < e
        {
            candidates.push(&text[s..=e]);
        }
    }
    let mut first_error = None;
    for candidate in candidates {
        match serde_json::from_str::<serde_json::Value>(candidate) {
            Ok(value) => return Ok(value),
            Err(e) => {
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    Err(first_error.unwrap_or_else(|| "no JSON array or object found".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_extracted_from_fences_and_prose() {
        assert_eq!(
            extract_json("Sure!\n```json\n[1, 2]\n```\nDone").unwrap(),
            serde_json::json!([1, 2])
        );
        assert_eq!(
            extract_json("Here: [\"a\", \"b\"] ok").unwrap(),
            serde_json::json!(["a", "b"])
        );
        assert_eq!(
            extract_json("{\"a\": 1}").unwrap(),
            serde_json::json!({"a": 1})
        );
        assert!(extract_json("no json here").is_err());
        assert!(extract_json("[1, 2").is_err());
    }
}
