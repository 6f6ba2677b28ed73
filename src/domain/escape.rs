//! Terminal safety (issue 9 item 6): every printer shows names, keys, descriptions and
//! messages through [`escape`], so that no text from a file or from the observed tenant can
//! move the cursor, rewrite a line or the window title (ESC, CR, ...) or reorder what the
//! reader sees (bidi overrides).
//!
//! What is escaped ([`is_unsafe`]): every control character (C0 incl. NUL, TAB, LF, CR and
//! ESC; DEL; C1), the bidi embeddings and overrides U+202A-U+202E, the bidi isolates
//! U+2066-U+2069, and the line and paragraph separators U+2028/U+2029. C0 and DEL are
//! written `\x1b` (`\t`, `\n`, `\r` for the usual three), everything else `\u{202e}`. A
//! backslash is not doubled: names with backslashes read as written, at the cost of an
//! (unlikely, and harmless) ambiguity with a name that spells an escape itself.
//!
//! The same predicate decides what validation refuses in name-like fields
//! (`desired::validate`). JSON output (`plan --format json`, `show --format json`) writes
//! these characters as `\uXXXX` escapes (serde_json does C0 itself), and `show`'s YAML as
//! escapes of a double-quoted scalar: the same strings for a program, and what `show`
//! prints imports back unchanged.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not reach a terminal as it is.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}'
        )
}

/// The first unsafe character of `s`, if any (ASCII-printable text is checked by bytes).
pub fn first_unsafe(s: &str) -> Option<char> {
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return None;
    }
    s.chars().find(|&c| is_unsafe(c))
}

/// `c` as its escape (`\x1b`, `\t`, `\u{202e}`).
pub fn escape_char(c: char) -> String {
    let mut out = String::new();
    push_escaped(&mut out, c);
    out
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\t' => out.push_str("\\t"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        c if (c as u32) < 0x20 || c == '\u{7f}' => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
}

/// `s` with every unsafe character escaped visibly; borrowed when there is none (the usual
/// case costs one scan of the bytes).
pub fn escape(s: &str) -> Cow<'_, str> {
    escape_keeping(s, |_| false)
}

/// [`escape`], keeping tabs (for echoed source lines and diff lines, where a tab is layout).
pub fn escape_keep_tabs(s: &str) -> Cow<'_, str> {
    escape_keeping(s, |c| c == '\t')
}

fn escape_keeping(s: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if first_unsafe(s).is_none_or(|_| !s.chars().any(|c| is_unsafe(c) && !keep(c))) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe(c) && !keep(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_controls_and_bidi_visibly() {
        // issue 9 item 6
        assert_eq!(escape("Ana Díaz ✓"), "Ana Díaz ✓");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
        assert_eq!(
            escape("a\u{1b}]0;pwned\u{7}b\rc\0d\u{7f}"),
            "a\\x1b]0;pwned\\x07b\\rc\\x00d\\x7f"
        );
        assert_eq!(
            escape("x\u{202e}y\u{2066}z\u{85}"),
            "x\\u{202e}y\\u{2066}z\\u{85}"
        );
        assert_eq!(escape("a\tb\nc"), "a\\tb\\nc");
        assert_eq!(escape_keep_tabs("a\tb\u{1b}"), "a\tb\\x1b");
        assert_eq!(first_unsafe("ok\u{202d}"), Some('\u{202d}'));
        assert_eq!(first_unsafe("é"), None);
    }
}
