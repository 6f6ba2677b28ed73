//! The fast path's own error (the first the YAML or JSON library met), located as the
//! loader counts positions, with a hint for each kind of syntax error.

use super::{error_at, FastError, Pos, Source};
use serde_saphyr::MessageFormatter;

use crate::diag::Diagnostic;

/// The message of a serde-saphyr error, without location or snippet.
pub(super) fn yaml_message(e: &serde_saphyr::Error) -> String {
    serde_saphyr::UserMessageFormatter
        .format_message(e.without_snippet())
        .into_owned()
}

/// A hint for a YAML syntax error, from its message.
fn syntax_hint(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    if m.contains("unsupported tag") {
        "crmctl reads plain YAML data: remove the tag (`!name` or `!!name`) before the value"
    } else if m.contains("plain decimal digits") {
        "write the count as digits only, e.g. `1000`"
    } else if m.contains("tab") {
        "indent with spaces: YAML does not allow tabs for indentation"
    } else if m.contains("budget") || m.contains("limit") || m.contains("exceeded") {
        "the file is larger or more deeply nested than crmctl accepts; split it or remove anchors/aliases"
    } else if m.contains("block mapping")
        || m.contains("indent")
        || m.contains("mapping values are not allowed")
        || m.contains("did not find expected")
    {
        "check the indentation of this line against the lines above it"
    } else if m.contains("duplicate") {
        "each key may appear once in a mapping; remove or merge the repeated one"
    } else if m.contains("unexpected character") || m.contains("control character") {
        "remove the character: a desired-state file holds printable text only (names refuse control characters too)"
    } else {
        // issue 9 item 8: every diagnostic says what to do.
        "check the YAML syntax here: quotes and brackets closed, `key: value` with a space after the colon"
    }
}

/// A hint for a JSON syntax error, from serde_json's message (issue 9 item 8: every
/// diagnostic says what to do).
fn json_hint(message: &str) -> &'static str {
    if message.contains("trailing comma") {
        "remove the comma after the last entry"
    } else if message.contains("control character") {
        "write control characters in strings as escapes (`\\n`, `\\u001b`), or remove them"
    } else if message.contains("EOF") {
        "the file ends early: close every `{`, `[` and `\"`"
    } else if message.contains("trailing characters") {
        "remove what follows the closing `}` of the document"
    } else {
        "check the JSON syntax here: commas between entries, keys in double quotes, brackets closed"
    }
}

/// The fast path's own error, located as its library reports it.
pub(super) fn fast_error(src: &Source, fast: &FastError) -> Diagnostic {
    match fast {
        FastError::Yaml(e) => {
            let message = yaml_message(e);
            let pos = e.location().map(|l| Pos {
                line: l.line() as u32,
                column: l.column() as u32,
            });
            let hint = syntax_hint(&message);
            let mut pos = pos.filter(|p| p.line > 0);
            if message.to_ascii_lowercase().contains("tab") {
                pos = pos.map(|p| tab_at_or_after(&src.text, p));
            }
            error_at(src, message, None, pos).hint(hint)
        }
        FastError::Json(e) => {
            let mut message = e.to_string();
            // serde_json appends " at line L column C"; the location says it already.
            if let Some(i) = message.rfind(" at line ") {
                message.truncate(i);
            }
            let pos = (e.line() > 0).then(|| json_pos(&src.text, e.line(), e.column()));
            let hint = if e.is_data() {
                "compare the value with what `crmctl schema` says this field takes"
            } else {
                json_hint(&message)
            };
            error_at(src, message, None, pos).hint(hint)
        }
    }
}

/// The YAML library reports some tabs at the end of the line before them: the position of
/// the first tab at or after `p` on `p`'s line, else the first tab of the next line, else `p` (issue 9 item 8: a tab
/// is reported on its own line).
fn tab_at_or_after(text: &str, p: Pos) -> Pos {
    let mut lines = super::super::source_lines(text).skip(p.line as usize - 1);
    let here: Vec<char> = lines.next().unwrap_or("").chars().collect();
    let col = p.column as usize;
    if let Some(i) = here
        .iter()
        .skip(col.saturating_sub(1))
        .position(|&c| c == '\t')
    {
        return Pos {
            line: p.line,
            column: (col.max(1) + i) as u32,
        };
    }
    if let Some(i) = lines.next().and_then(|l| l.chars().position(|c| c == '\t')) {
        return Pos {
            line: p.line + 1,
            column: i as u32 + 1,
        };
    }
    p
}

/// serde_json's position (lines ended by LF only, columns in bytes) as the loader counts
/// positions (LF, CRLF or CR; columns in characters), clamped to the text.
fn json_pos(text: &str, line: usize, column: usize) -> Pos {
    let mut start = 0;
    for _ in 1..line {
        match text[start..].find('\n') {
            Some(i) => start += i + 1,
            None => break,
        }
    }
    let mut end = (start + column.saturating_sub(1)).min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let (line, column) = super::super::end_position(&text[..end]);
    Pos { line, column }
}
