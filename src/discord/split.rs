//! Splitting a post's text into Discord-sized messages.

use unicode_segmentation::UnicodeSegmentation;

/// Splits `text` into messages of at most `max_chars` characters, preferring line breaks,
/// then spaces, and never cutting inside a character (nor a grapheme cluster such as an emoji
/// with modifiers, unless one cluster alone is longer than a message).
pub fn split_message(text: &str, max_chars: usize) -> Vec<String> {
    let max_chars = max_chars.max(1);
    let mut parts = Vec::new();
    let mut rest = text.trim();
    while rest.chars().count() > max_chars {
        // Byte offset just past the last whole grapheme that fits.
        let mut fit = 0;
        let mut chars = 0;
        for (offset, grapheme) in rest.grapheme_indices(true) {
            let n = grapheme.chars().count();
            if chars + n > max_chars {
                break;
            }
            chars += n;
            fit = offset + grapheme.len();
        }
        if fit == 0 {
            // One grapheme longer than a message: cut it on a char boundary.
            fit = rest
                .char_indices()
                .nth(max_chars)
                .map_or(rest.len(), |(i, _)| i);
        }
        let window = &rest[..fit];
        let cut = window
            .rfind('\n')
            .filter(|&i| i > 0)
            .or_else(|| window.rfind(' ').filter(|&i| i > 0))
            .unwrap_or(fit);
        let (head, tail) = rest.split_at(cut);
        let head = head.trim_end();
        if !head.is_empty() {
            parts.push(head.to_owned());
        }
        rest = tail.trim_start();
    }
    if !rest.is_empty() {
        parts.push(rest.to_owned());
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_one_message() {
        assert_eq!(split_message("hello", 2000), vec!["hello"]);
        assert!(split_message("   ", 2000).is_empty());
    }

    #[test]
    fn splits_on_lines_then_words() {
        let text = "aaaa bbbb\ncccc dddd";
        assert_eq!(split_message(text, 12), vec!["aaaa bbbb", "cccc dddd"]);
        assert_eq!(
            split_message("aaaa bbbb cccc", 10),
            vec!["aaaa bbbb", "cccc"]
        );
    }

    #[test]
    fn never_cuts_inside_an_emoji() {
        let text = "👍🏽".repeat(700); // each is 2 chars, one grapheme
        let parts = split_message(&text, 2000);
        assert!(parts.iter().all(|p| p.chars().count() <= 2000));
        assert_eq!(parts.concat(), text);
        assert!(parts.iter().all(|p| p.graphemes(true).all(|g| g == "👍🏽")));
    }

    #[test]
    fn long_word_is_cut_on_char_boundary() {
        let text = "é".repeat(4500);
        let parts = split_message(&text, 2000);
        assert_eq!(
            parts.iter().map(|p| p.chars().count()).collect::<Vec<_>>(),
            vec![2000, 2000, 500]
        );
    }
}
