//! Splitting a post's text into Discord-sized messages.
//!
//! Discord refuses a message longer than its limit (2,000 characters, i.e. Unicode scalar
//! values), so a long post goes out as several messages. Where the text is cut decides how
//! those messages read, so the cut follows these rules:
//!
//! - **Where.** At the last line break that fits, else the last space, else the last grapheme
//!   cluster boundary. A cut inside a cluster would separate a letter from its combining accent
//!   or an emoji from its skin-tone modifier and show a stray mark at the start of the next
//!   message. Only a single cluster longer than a whole message is cut between characters.
//! - **What is dropped.** Only blank text at the cut: the line break or space cut at, trailing
//!   blanks and blank lines. A message that starts at the start of a line keeps that line's
//!   indentation, which carries meaning in code and nested lists. (The whole text is trimmed.)
//! - **Code blocks.** Discord shows a fence left open as a code block to the end of the message
//!   and the rest of the block, in the next message, as plain text. So a message that ends
//!   inside a block gets a closing fence, and the next message starts by reopening the block
//!   with its opening line (```` ```rust ````, keeping its highlighting). These added lines count
//!   toward the limit, and take at most half a message (a long language is left out of the
//!   reopening line; under 16 characters a message has no room to repair blocks). A cut is not
//!   placed right after an opening fence or right before its closing fence when another cut
//!   fits: either would show an empty block.
//!
//! A fence line is a line that starts with three backticks, after any indentation (models nest
//! code blocks in list items). It opens a block unless the rest of the line holds a backtick
//! (```` ```x``` ```` is code within one line), and the next fence line closes the block.

use unicode_segmentation::UnicodeSegmentation;

/// Ends a message that stops inside a code block.
const CLOSE: &str = "\n```";
/// Its length in characters (it is ASCII).
const CLOSE_CHARS: usize = CLOSE.len();

/// Splits `text` into messages of at most `max_chars` characters, preferring line breaks,
/// then spaces, and never cutting inside a character (nor a grapheme cluster such as an emoji
/// with modifiers, unless one cluster alone is longer than a message). Code blocks cut in two
/// are closed and reopened; see the module documentation for the rules.
pub fn split_message(text: &str, max_chars: usize) -> Vec<String> {
    let max_chars = max_chars.max(1);
    let text = trim_blank(text);
    let fences = Fences::scan(text, max_chars);
    let mut parts = Vec::new();
    let mut start = 0;
    while start < text.len() {
        // A block the previous message closed is reopened first.
        let reopen = fences.block_at(start).and_then(|block| block.open.reopen);
        let room = max_chars - reopen.map_or(0, |line| line.chars().count() + 1);
        let cut = next_cut(text, start, room, &fences);
        let mut part = String::new();
        if let Some(line) = reopen {
            part.push_str(line);
            part.push('\n');
        }
        part.push_str(&text[cut.from..cut.to]);
        if cut.close {
            part.push_str(CLOSE);
        }
        parts.push(part);
        start = next_start(text, cut.to);
    }
    parts
}

/// One message's share of the text.
#[derive(Clone, Copy)]
struct Cut {
    /// Byte range of the text the message carries, without blanks at its end.
    from: usize,
    to: usize,
    /// Whether the message ends inside a code block, which it must then close.
    close: bool,
}

/// The best cut found so far of each kind, in order of preference.
#[derive(Default)]
struct Candidates {
    line_break: Option<Cut>,
    space: Option<Cut>,
    /// Any grapheme boundary that leaves no fence line cut in two and no empty block.
    clean: Option<Cut>,
    /// Any grapheme boundary that leaves no fence line cut in two: an empty block looks odd,
    /// a fence line cut in two breaks the formatting of the rest of the block.
    whole_fences: Option<Cut>,
    /// Any grapheme boundary at all (only when a fence line alone fills a message).
    any: Option<Cut>,
}

/// Chooses where the message starting at `start` ends, with `room` characters for the text
/// (the limit less the reopening line).
fn next_cut(text: &str, start: usize, room: usize, fences: &Fences) -> Cut {
    let mut found = Candidates::default();
    let mut chars = 0;
    // The end (byte offset, characters) of the text so far without its trailing blanks, which
    // a cut drops: what a message cut there would carry.
    let (mut content_end, mut content_chars) = (start, 0);
    for (offset, grapheme) in text[start..].grapheme_indices(true) {
        if content_chars > 0 {
            // Cutting right before this grapheme: the message ends at `content_end`, so that
            // is where the cut is judged (every cut in a run of blanks is the same cut).
            let to = content_end;
            let block = fences.block_at(to);
            let close = block.is_some_and(|b| b.open.reopen.is_some());
            if content_chars + if close { CLOSE_CHARS } else { 0 } <= room {
                let cut = Cut {
                    from: start,
                    to,
                    close,
                };
                // Whether the message would end with the block's opening line, or the next
                // one would hold nothing before the block's closing line.
                let empty_block = block.is_some_and(|b| {
                    to <= b.open.end || b.close.is_some_and(|c| to >= c.text_before)
                });
                if !fences.inside_line(to) {
                    if !empty_block {
                        if grapheme == "\n" || grapheme == "\r\n" {
                            found.line_break = Some(cut);
                        } else if grapheme == " " || grapheme == "\t" {
                            found.space = Some(cut);
                        }
                        found.clean = Some(cut);
                    }
                    found.whole_fences = Some(cut);
                }
                found.any = Some(cut);
            }
        }
        chars += grapheme.chars().count();
        if !is_blank(grapheme) {
            (content_end, content_chars) = (start + offset + grapheme.len(), chars);
            if content_chars > room {
                // No later cut fits either: choose among those found.
                let best = (found.line_break)
                    .or(found.space)
                    .or(found.clean)
                    .or(found.whole_fences)
                    .or(found.any);
                return best.unwrap_or_else(|| cut_without_candidate(text, start, room, fences));
            }
        }
    }
    // The rest of the text fits (it ends with content: the text is trimmed).
    Cut {
        from: start,
        to: text.len(),
        close: false,
    }
}

/// The cut when nothing before the first too-long piece fits: indentation wider than the room
/// is dropped (the text matters more than its indentation), else the first grapheme cluster
/// alone is too long and is cut between characters.
fn cut_without_candidate(text: &str, start: usize, room: usize, fences: &Fences) -> Cut {
    let content = skip_blank(text, start);
    if content > start {
        return next_cut(text, content, room, fences);
    }
    // A fence line starts after a line break, which always ends a cluster: the whole cluster
    // is in the block (or not) that its first character is in.
    let first_len = text[start..].chars().next().map_or(0, char::len_utf8);
    let close = fences
        .block_at(start + first_len)
        .is_some_and(|b| b.open.reopen.is_some());
    let keep = room - if close { CLOSE_CHARS } else { 0 };
    let to = text[start..]
        .char_indices()
        .nth(keep)
        .map_or(text.len(), |(i, _)| start + i);
    Cut {
        from: start,
        to,
        close,
    }
}

/// Where the next message's text starts after one that ends at `end`: past the blanks there,
/// but a line that starts there keeps its indentation.
fn next_start(text: &str, end: usize) -> usize {
    let mut next = end;
    let mut line_start = None;
    for grapheme in text[end..].graphemes(true) {
        if !is_blank(grapheme) {
            break;
        }
        next += grapheme.len();
        if grapheme.contains('\n') {
            line_start = Some(next);
        }
    }
    line_start.unwrap_or(next)
}

/// The offset of the first grapheme cluster at or after `at` that is not blank.
fn skip_blank(text: &str, at: usize) -> usize {
    text[at..]
        .grapheme_indices(true)
        .find(|(_, g)| !is_blank(g))
        .map_or(text.len(), |(i, _)| at + i)
}

/// `text` without blank grapheme clusters at either end. Trimming by clusters rather than
/// characters keeps a space that carries a combining mark.
fn trim_blank(text: &str) -> &str {
    let start = skip_blank(text, 0);
    let end = text[start..]
        .grapheme_indices(true)
        .rfind(|(_, g)| !is_blank(g))
        .map_or(start, |(i, g)| start + i + g.len());
    &text[start..end]
}

/// Whether a grapheme cluster is all whitespace (a space, a tab, a line break...).
fn is_blank(grapheme: &str) -> bool {
    grapheme.chars().all(char::is_whitespace)
}

/// A fence line of the text.
struct FenceLine<'a> {
    /// Byte offset of the line's start.
    start: usize,
    /// Byte offset of the end of the line's text (before trailing blanks and the line break).
    end: usize,
    /// Byte offset of the end of the text before this line: a message ending there leaves
    /// this line first in the next one.
    text_before: usize,
    /// Whether the line opens a block (else it closes one).
    opens: bool,
    /// For an opening line, what reopens its block in the next message; `None` when the added
    /// fence lines would take more than half a message (then the block is not repaired).
    reopen: Option<&'a str>,
}

/// A code block: its opening line and, unless it is left open to the end, its closing line.
#[derive(Clone, Copy)]
struct Block<'b, 'a> {
    open: &'b FenceLine<'a>,
    close: Option<&'b FenceLine<'a>>,
}

/// The fence lines of a text, in order: opening and closing lines alternate.
struct Fences<'a> {
    lines: Vec<FenceLine<'a>>,
}

impl<'a> Fences<'a> {
    fn scan(text: &'a str, max_chars: usize) -> Self {
        let mut lines = Vec::new();
        let mut open = false;
        let mut start = 0;
        for line in text.split('\n') {
            let visible = line.trim();
            if let Some(info) = visible.strip_prefix("```")
                && (open || !info.contains('`'))
            {
                let indent = line.len() - line.trim_start().len();
                open = !open;
                lines.push(FenceLine {
                    start,
                    end: start + indent + visible.len(),
                    text_before: text[..start].trim_end().len(),
                    opens: open,
                    reopen: open
                        .then(|| reopening_line(visible, info, max_chars))
                        .flatten(),
                });
            }
            start += line.len() + 1;
        }
        Self { lines }
    }

    /// The code block that a message ending at `at` ends inside: the one opened by the last
    /// fence line starting before `at`, if that line opens one.
    fn block_at(&self, at: usize) -> Option<Block<'_, 'a>> {
        let next = self.lines.partition_point(|line| line.start < at);
        let last = next.checked_sub(1)?;
        self.lines[last].opens.then(|| Block {
            open: &self.lines[last],
            close: self.lines.get(next),
        })
    }

    /// Whether a message ending at `at` ends within the text of a fence line.
    fn inside_line(&self, at: usize) -> bool {
        let next = self.lines.partition_point(|line| line.start < at);
        next.checked_sub(1)
            .is_some_and(|last| at < self.lines[last].end)
    }
}

/// The line that reopens a block whose opening line is `visible`, `info` being its text after
/// the backticks. A lone language word is kept, for its highlighting. Other text there is not
/// repeated (Discord reads a language only when it is all the line holds, and would show the
/// text a second time as code): a bare fence reopens such a block. The added lines take at
/// most half a message, so a long language falls back to the bare fence and a tiny limit to
/// no repair at all.
fn reopening_line<'a>(visible: &'a str, info: &str, max_chars: usize) -> Option<&'a str> {
    let with_language = if info.contains(char::is_whitespace) {
        &visible[..3]
    } else {
        visible
    };
    [with_language, &visible[..3]]
        .into_iter()
        .find(|line| line.chars().count() + 1 + CLOSE_CHARS <= max_chars / 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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

    /// A code block cut in two is closed where one message ends and reopened, with its
    /// language, where the next begins; the added fence lines count toward the limit.
    #[test]
    fn code_block_cut_in_two_is_closed_and_reopened() {
        let text = "Code:\n```rust\nlet a = 1;\nlet b = 2;\nlet c = 3;\n```\nDone.";
        assert_eq!(
            split_message(text, 40),
            vec![
                "Code:\n```rust\nlet a = 1;\nlet b = 2;\n```",
                "```rust\nlet c = 3;\n```\nDone."
            ]
        );
        // At 38 the closing fence would not fit after `let b`: the cut moves up a line.
        assert_eq!(
            split_message(text, 38),
            vec![
                "Code:\n```rust\nlet a = 1;\n```",
                "```rust\nlet b = 2;\nlet c = 3;\n```",
                "Done."
            ]
        );
    }

    /// A message that starts at the start of a line keeps that line's indentation.
    #[test]
    fn indentation_is_kept_where_a_message_starts() {
        let list = "Steps:\n  - first item here\n  - second item here";
        assert_eq!(
            split_message(list, 40),
            vec!["Steps:\n  - first item here", "  - second item here"]
        );
        let code = "```py\ndef f():\n    return 1\n```";
        assert_eq!(
            split_message(code, 24),
            vec!["```py\ndef f():\n```", "```py\n    return 1\n```"]
        );
    }

    /// A cut never falls inside a grapheme cluster, so no message starts with a combining mark.
    #[test]
    fn no_message_starts_with_a_combining_mark() {
        // " \u{301}" is one cluster (an acute accent on a space): its space is no place to cut.
        let text = "abc \u{301}def ghi";
        assert_eq!(split_message(text, 8), vec!["abc \u{301}def", "ghi"]);
    }

    /// No message ends right after an opening fence, nor starts with the closing fence of the
    /// block it reopens, when another cut fits: either would show an empty code block.
    #[test]
    fn no_message_holds_an_empty_code_block() {
        let text = "Intro line here.\n```rust\nlet a = 1;\n```";
        assert_eq!(
            split_message(text, 30),
            vec!["Intro line here.", "```rust\nlet a = 1;\n```"]
        );
        // Cutting before the indented closing fence fits, after it does not.
        let text = "```rust\nlet a = 1;\nlet b = 2;\n   ```\nDone.";
        assert_eq!(
            split_message(text, 34),
            vec![
                "```rust\nlet a = 1;\n```",
                "```rust\nlet b = 2;\n   ```\nDone."
            ]
        );
    }

    /// With no room for a block's code after its opening line, the message ends with an empty
    /// block rather than a fence line cut in two (found by `any_text_is_split_faithfully`).
    #[test]
    fn fence_line_is_not_cut_in_two() {
        assert_eq!(
            split_message("```typescript\n   a\n```", 20),
            vec!["```typescript\n```", "```\n   a\n```"]
        );
    }

    /// A single grapheme cluster longer than a message is the one thing cut between characters.
    #[test]
    fn cluster_longer_than_a_message_is_cut_between_characters() {
        let cluster = format!("e{}", "\u{301}".repeat(24)); // 25 chars, one cluster
        let parts = split_message(&format!("ab {cluster}"), 10);
        assert_eq!(parts[0], "ab");
        assert_eq!(
            parts[1..]
                .iter()
                .map(|p| p.chars().count())
                .collect::<Vec<_>>(),
            vec![10, 10, 5]
        );
        assert_eq!(parts[1..].concat(), cluster);
    }

    /// Lines of the text that are fence lines, as the module documentation defines them.
    fn fence_lines(text: &str) -> usize {
        text.lines()
            .filter(|line| line.trim_start().starts_with("```"))
            .count()
    }

    /// For each fence line of `text`: its start and, for an opening line, its language.
    fn fences_of(text: &str) -> Vec<(usize, Option<&str>)> {
        let mut fences = Vec::new();
        let mut open = false;
        let mut start = 0;
        for line in text.split('\n') {
            if let Some(info) = line.trim().strip_prefix("```") {
                open = !open;
                fences.push((start, open.then_some(info)));
            }
            start += line.len() + 1;
        }
        fences
    }

    /// The language of the block `text[..at]` ends inside, if it does.
    fn open_block<'a>(fences: &[(usize, Option<&'a str>)], at: usize) -> Option<&'a str> {
        let next = fences.partition_point(|&(start, _)| start < at);
        next.checked_sub(1).and_then(|last| fences[last].1)
    }

    /// Checks what every split must guarantee, whatever cuts it chose: each message fits, has
    /// text, starts a grapheme cluster, and has balanced fences when the text has; and the
    /// messages, without the fence lines the split added, are the text in order, cut only on
    /// cluster boundaries and missing only blanks at the cuts, with the indentation kept at
    /// every message that starts on a new line.
    fn assert_split_is_faithful(text: &str, max_chars: usize, parts: &[String]) {
        let balanced = fence_lines(text).is_multiple_of(2);
        let fences = fences_of(text);
        let boundaries: Vec<usize> = text.grapheme_indices(true).map(|(i, _)| i).collect();
        for part in parts {
            assert!(part.chars().count() <= max_chars, "too long: {part:?}");
            assert!(!part.trim().is_empty(), "empty message");
            let glued = format!("x{part}");
            assert_eq!(
                glued.graphemes(true).next(),
                Some("x"),
                "starts mid-cluster: {part:?}"
            );
            if balanced {
                assert!(
                    fence_lines(part).is_multiple_of(2),
                    "unbalanced fences: {part:?}"
                );
            }
        }
        let walk = Walk {
            text,
            fences: &fences,
            boundaries: &boundaries,
            parts,
        };
        if let Err(problem) = walk.from(0, 0) {
            panic!("{problem}");
        }
    }

    /// Reads the messages back into the text they carry.
    struct Walk<'t> {
        text: &'t str,
        fences: &'t [(usize, Option<&'t str>)],
        boundaries: &'t [usize],
        parts: &'t [String],
    }

    impl Walk<'_> {
        /// Checks the messages from `index` on, the previous ones having carried the text up
        /// to `done`. A message ending with a fence line may carry it from the text or have
        /// had it added to close a block (the text's next line can start with backticks too):
        /// both readings are followed, and the split is faithful if one of them reads the
        /// whole text.
        fn from(&self, index: usize, done: usize) -> Result<(), String> {
            let text = self.text;
            let Some(part) = self.parts.get(index) else {
                return if text[done..].trim().is_empty() {
                    Ok(())
                } else {
                    Err(format!("text left out: {:?}", &text[done..]))
                };
            };
            let last = index + 1 == self.parts.len();
            // The message reopens the block the previous one ended inside.
            let mut body = part.as_str();
            if let Some(language) = open_block(self.fences, done) {
                let (first, rest) = body
                    .split_once('\n')
                    .ok_or_else(|| format!("no reopening line: {part:?}"))?;
                if first != "```" && first != format!("```{language}") {
                    return Err(format!("reopened with {first:?}"));
                }
                body = rest;
            }
            // `body` is the text from `from` on, after the blanks dropped at the cut; the split
            // added a closing fence when its end is inside a block.
            let gap = text[done..].len() - text[done..].trim_start().len();
            let find = |body: &str| {
                (done..=done + gap)
                    .find(|&from| text.is_char_boundary(from) && text[from..].starts_with(body))
            };
            let mut readings = Vec::new();
            if let Some(from) = find(body)
                && (last || open_block(self.fences, from + body.len()).is_none())
            {
                readings.push((from, body));
            }
            if !last
                && let Some(inner) = body.strip_suffix(CLOSE)
                && let Some(from) = find(inner)
                && open_block(self.fences, from + inner.len()).is_some()
            {
                readings.push((from, inner));
            }
            let mut problem = format!("not a slice of the text after {done}: {part:?}");
            for (from, body) in readings {
                match self.check(index, done, from, body) {
                    Ok(()) => return Ok(()),
                    Err(other) => problem = other,
                }
            }
            Err(problem)
        }

        /// Checks message `index` read as the text's `body` at `from`, then the ones after it.
        fn check(&self, index: usize, done: usize, from: usize, body: &str) -> Result<(), String> {
            let part = &self.parts[index];
            let to = from + body.len();
            let is_boundary =
                |at: usize| at == self.text.len() || self.boundaries.binary_search(&at).is_ok();
            if body.trim().is_empty() {
                return Err(format!("no text besides fences: {part:?}"));
            }
            if !is_boundary(from) || !is_boundary(to) {
                return Err(format!("cut in a cluster: {part:?}"));
            }
            let dropped = &self.text[done..from];
            if index > 0 && dropped.contains('\n') && !dropped.ends_with('\n') {
                return Err(format!("indentation dropped: {part:?}"));
            }
            self.from(index + 1, to)
        }
    }

    /// A word: mostly short ones, some longer than a message, some with clusters of several
    /// characters (letters with combining marks, emoji with skin-tone modifiers, an accent on a
    /// space, whose space is no place to cut).
    fn word() -> impl Strategy<Value = String> {
        let cluster =
            || prop::sample::select(vec!["e\u{301}", "a\u{308}\u{301}", "👍🏽", "👋🏿", " \u{301}"]);
        prop_oneof![
            6 => "[a-z]{1,8}".boxed(),
            1 => "[a-z]{30,90}".boxed(),
            2 => ("[a-z]{1,4}", cluster(), "[a-z]{0,4}")
                .prop_map(|(a, c, b)| format!("{a}{c}{b}"))
                .boxed(),
            1 => ("[a-z]{10,40}", prop::collection::vec(cluster(), 1..20), "[a-z]{1,40}")
                .prop_map(|(a, c, b)| format!("{a}{}{b}", c.concat()))
                .boxed(),
        ]
    }

    /// A line of prose: indentation, then words between runs of spaces (or nothing).
    fn prose_line() -> impl Strategy<Value = String> {
        let words = prop::collection::vec((word(), 1..=3usize), 0..10);
        (0..=4usize, words).prop_map(|(indent, words)| {
            let mut line = " ".repeat(indent);
            for (i, (word, spaces)) in words.into_iter().enumerate() {
                if i > 0 {
                    line.push_str(&" ".repeat(spaces));
                }
                line.push_str(&word);
            }
            line
        })
    }

    /// Some lines of prose, or a code block (with or without a language, now and then left
    /// open).
    fn block() -> impl Strategy<Value = Vec<String>> {
        let language = prop::sample::select(vec!["", "rust", "py", "sh", "typescript"]);
        let code = (
            0..=3usize,
            language,
            prop::collection::vec(prose_line(), 0..8),
            prop::bool::weighted(0.9),
        )
            .prop_map(|(indent, language, body, closed)| {
                let fence = " ".repeat(indent) + "```";
                let mut lines = vec![format!("{fence}{language}")];
                lines.extend(body);
                if closed {
                    lines.push(fence);
                }
                lines
            });
        prop_oneof![3 => prop::collection::vec(prose_line(), 1..6), 1 => code]
    }

    /// Markdown-ish text: up to 40 blocks of prose lines and code blocks.
    fn markdown() -> impl Strategy<Value = String> {
        prop::collection::vec(block(), 0..40).prop_map(|blocks| blocks.concat().join("\n"))
    }

    proptest! {
        /// Any markdown-ish text is split faithfully (see `assert_split_is_faithful`), at
        /// small limits and at Discord's.
        #[test]
        fn any_text_is_split_faithfully(
            text in markdown(),
            max_chars in prop_oneof![20..200usize, Just(2000usize)],
        ) {
            let parts = split_message(&text, max_chars);
            assert_split_is_faithful(&text, max_chars, &parts);
        }
    }
}
