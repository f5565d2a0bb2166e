//! [`OfflineClient`]: the demo and test provider. It never touches the network and needs no key;
//! its answers are deterministic functions of the request, so demos run anywhere and tests can
//! assert on them.
//!
//! Rules:
//!
//! - The seed is the SHA-256 of model, system prompt and prompt; the same request always gets
//!   the same answer, a different one (almost surely) another.
//! - Every text is labelled: it starts with `[offline:MODEL]`, so that nobody mistakes it for a
//!   real model's output when it reaches Discord.
//! - Text mode (`json == false`): the label followed by 12 to 30 words drawn from a fixed list.
//! - JSON mode (`json == true`):
//!   - when the prompt contains JSON objects with an integer `"id"` field (a curator prompt
//!     listing `{"id": 3, "text": ".."}`), the answer is the JSON array of those ids, in order of
//!     appearance, without duplicates: the offline curator approves everything it is shown;
//!   - otherwise, a JSON array of 3 distinct short posts, each labelled and numbered
//!     (`"[offline:MODEL] Bright river ... (1/3)"`).
//! - Tokens: input = whitespace-separated words of system + prompt; output = words of the
//!   answer.
//! - Temperature and `max_tokens` are ignored.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{LlmRequest, LlmResponse};

/// The words answers are made of: 64 of them, so one byte of hash picks one uniformly.
const WORDS: [&str; 64] = [
    "amber", "bright", "calm", "daring", "early", "faint", "gentle", "hollow", "idle", "jolly",
    "keen", "lucid", "mellow", "nimble", "open", "quiet", "rapid", "silver", "tidy", "vivid",
    "warm", "young", "zesty", "ancient", "brave", "clever", "dusty", "eager", "fresh", "golden",
    "humble", "lively", "river", "mountain", "garden", "lantern", "harbor", "meadow", "comet",
    "forest", "island", "valley", "signal", "window", "bridge", "market", "castle", "orbit",
    "pebble", "thunder", "whisper", "journey", "morning", "evening", "pattern", "story", "machine",
    "kitchen", "letter", "rhythm", "shadow", "summit", "canyon", "festival",
];

/// Posts returned in JSON mode when the prompt lists no ids.
const POSTS: usize = 3;

/// The offline provider; stateless.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct OfflineClient;

impl OfflineClient {
    /// The deterministic answer to `request` (see the module doc). Never fails.
    pub fn complete(&self, request: &LlmRequest, model: &str) -> LlmResponse {
        let label = format!("[offline:{model}]");
        let mut seed = Sha256::new();
        // Length-prefix the parts so that ("ab", "c") and ("a", "bc") seed differently.
        for part in [
            model,
            request.system.as_deref().unwrap_or_default(),
            &request.prompt,
        ] {
            seed.update((part.len() as u64).to_le_bytes());
            seed.update(part.as_bytes());
        }
        let seed: [u8; 32] = seed.finalize().into();

        let text = if request.json {
            let ids = curator_ids(&request.prompt);
            if ids.is_empty() {
                let posts: Vec<String> = (0..POSTS)
                    .map(|index| {
                        let mut bytes = HashStream::new(&seed, index as u64 + 1);
                        let count = 5 + usize::from(bytes.next_byte() % 5);
                        let mut words = bytes.words(count);
                        capitalize(&mut words);
                        format!("{label} {words} ({}/{POSTS})", index + 1)
                    })
                    .collect();
                Value::from(posts).to_string()
            } else {
                Value::from(ids).to_string()
            }
        } else {
            let mut bytes = HashStream::new(&seed, 0);
            let count = 12 + usize::from(bytes.next_byte() % 19);
            format!("{label} {}", bytes.words(count))
        };

        let input_tokens =
            word_count(request.system.as_deref().unwrap_or_default()) + word_count(&request.prompt);
        LlmResponse {
            output_tokens: word_count(&text),
            text,
            model: model.to_owned(),
            input_tokens,
            retries: 0,
            rate_limit_wait: std::time::Duration::ZERO,
        }
    }
}

fn word_count(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

fn capitalize(text: &mut String) {
    if let Some(first) = text.get(..1) {
        let upper = first.to_uppercase();
        text.replace_range(..1, &upper);
    }
}

/// An endless stream of bytes: SHA-256(seed, stream, block counter), block after block.
struct HashStream {
    seed: [u8; 32],
    stream: u64,
    counter: u64,
    block: [u8; 32],
    used: usize,
}

impl HashStream {
    fn new(seed: &[u8; 32], stream: u64) -> Self {
        Self {
            seed: *seed,
            stream,
            counter: 0,
            block: [0; 32],
            used: 32,
        }
    }

    fn next_byte(&mut self) -> u8 {
        if self.used == self.block.len() {
            let mut hasher = Sha256::new();
            hasher.update(self.seed);
            hasher.update(self.stream.to_le_bytes());
            hasher.update(self.counter.to_le_bytes());
            self.block = hasher.finalize().into();
            self.counter += 1;
            self.used = 0;
        }
        let byte = self.block[self.used];
        self.used += 1;
        byte
    }

    fn words(&mut self, count: usize) -> String {
        (0..count)
            .map(|_| WORDS[usize::from(self.next_byte()) % WORDS.len()])
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The integer `"id"`s of the JSON objects embedded in `prompt`, in order, without duplicates.
///
/// Every `{` or `[` is tried as the start of a JSON value; a value that parses is searched
/// (objects with an integer `id` count, arrays and id-less objects are searched further) and
/// skipped as a whole.
fn curator_ids(prompt: &str) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut position = 0;
    while let Some(offset) = prompt[position..].find(['{', '[']) {
        let start = position + offset;
        let mut values = serde_json::Deserializer::from_str(&prompt[start..]).into_iter::<Value>();
        match values.next() {
            Some(Ok(value)) => {
                collect_ids(&value, &mut ids);
                position = start + values.byte_offset().max(1);
            }
            _ => position = start + 1,
        }
    }
    ids
}

fn collect_ids(value: &Value, ids: &mut Vec<i64>) {
    match value {
        Value::Object(object) => match object.get("id").and_then(Value::as_i64) {
            Some(id) => {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            None => object.values().for_each(|v| collect_ids(v, ids)),
        },
        Value::Array(items) => items.iter().for_each(|v| collect_ids(v, ids)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(prompt: &str, json: bool) -> LlmRequest {
        LlmRequest {
            model: "m".into(),
            system: None,
            prompt: prompt.into(),
            temperature: None,
            max_tokens: None,
            json,
        }
    }

    #[test]
    fn ids_are_found_in_lines_and_arrays() {
        let prompt = "Pick the best posts.\n{\"id\": 3, \"text\": \"a {brace}\"}\n{\"id\": 7, \"text\": \"b\"}\n[{\"id\": 9}, {\"id\": 3}]\n{\"id\": \"x\"} {not json";
        assert_eq!(curator_ids(prompt), vec![3, 7, 9]);
        assert!(curator_ids("no json here [1, 2]").is_empty());
    }

    #[test]
    fn text_mode_is_labelled_and_deterministic() {
        let a = OfflineClient.complete(&request("hello world", false), "m");
        let b = OfflineClient.complete(&request("hello world", false), "m");
        assert_eq!(a, b);
        assert!(a.text.starts_with("[offline:m] "));
        assert_eq!(a.input_tokens, 2);
        assert_eq!(a.output_tokens, a.text.split_whitespace().count() as u64);
        let c = OfflineClient.complete(&request("hello world!", false), "m");
        assert_ne!(a.text, c.text);
    }

    #[test]
    fn json_mode_posts_are_distinct() {
        let answer = OfflineClient.complete(&request("write posts", true), "m");
        let posts: Vec<String> = serde_json::from_str(&answer.text).expect("json array");
        assert_eq!(posts.len(), 3);
        assert!(posts.iter().all(|p| p.starts_with("[offline:m] ")));
        assert_ne!(posts[0], posts[1]);
        assert_ne!(posts[1], posts[2]);
    }
}
