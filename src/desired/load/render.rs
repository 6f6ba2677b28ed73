//! Diagnostics rendered like rustc's: the place, the message and its rule, the source line
//! with a caret underline, the hint and the path.

use std::fmt::Write as _;

use super::{source_lines, Source};
use crate::diag::{Diagnostic, Severity};

/// How wide the token at `col` (1-based, in characters) of `line` is, for the underline.
fn token_width(line: &str, col: usize) -> usize {
    let rest: Vec<char> = line.chars().skip(col.saturating_sub(1)).collect();
    let Some(&first) = rest.first() else { return 1 };
    if first == '"' || first == '\'' {
        let mut i = 1;
        while i < rest.len() {
            if rest[i] == first && !(first == '"' && rest[i - 1] == '\\') {
                return i + 1;
            }
            i += 1;
        }
        return rest.len().max(1);
    }
    if matches!(first, '[' | '{') || (first == '-' && rest.get(1).is_none_or(|c| *c == ' ')) {
        return 1;
    }
    let mut end = 0;
    while end < rest.len() {
        let c = rest[end];
        let next = rest.get(end + 1).copied();
        if matches!(c, ',' | ']' | '}')
            || (c == ':' && next.is_none_or(|n| n == ' ' || n == '\t'))
            || (c == ' ' && next == Some('#'))
        {
            break;
        }
        end += 1;
    }
    let token: String = rest[..end].iter().collect();
    token.trim_end().chars().count().max(1)
}

/// Most characters of a source line echoed under a diagnostic.
const ECHO_WIDTH: usize = 120;

/// How many characters of a long line are left out before the window shown for a
/// diagnostic at `col` (1-based, characters).
fn window_skip(col: usize) -> usize {
    col.saturating_sub(1 + ECHO_WIDTH / 4)
}

/// The part of `line` echoed for a diagnostic at `col` (1-based, characters), and the
/// column within it: a long line (a minified JSON file is one line) is shown as a window
/// of [`ECHO_WIDTH`] characters around the column, with `...` where it was cut (issue 9
/// item 7: 100 diagnostics on a 10 MB line printed 550 MB and took seconds).
#[cfg(test)]
fn line_window(line: &str, col: usize) -> (std::borrow::Cow<'_, str>, usize) {
    let start = line.char_indices().nth(window_skip(col)).map(|(i, _)| i);
    line_window_from(line, col, start)
}

/// [`line_window`] given the byte offset of the window's first character (`None`: the line
/// has no character there). Finding that offset means reading the line up to it: for many
/// diagnostics on one long line, [`window_starts`] finds them all in one pass.
fn line_window_from(
    line: &str,
    col: usize,
    start: Option<usize>,
) -> (std::borrow::Cow<'_, str>, usize) {
    if line.len() <= ECHO_WIDTH {
        return (line.into(), col);
    }
    let skip = window_skip(col);
    let Some(start) = start else {
        return (line.into(), col);
    };
    let end = line[start..]
        .char_indices()
        .nth(ECHO_WIDTH - 1)
        .map_or(line.len(), |(i, _)| start + i);
    if start == 0 && end == line.len() {
        return (line.into(), col);
    }
    let mut out = String::with_capacity(end - start + 6);
    let mut col = col - skip;
    if start > 0 {
        out.push_str("...");
        col += 3;
    }
    out.push_str(&line[start..end]);
    if end < line.len() {
        out.push_str("...");
    }
    (out.into(), col)
}

/// The byte offsets of the given character indices of `line` (those it has), in one pass
/// (issue 9 item 7: 100 diagnostics on a 10 MB one-line JSON file each read the line up to
/// their column, 3 s of an 8 s run). Runs of ASCII, where a character is a byte, are
/// skipped whole (the slice check reads a word at a time): the columns of the users of a
/// one-line JSON file lie megabytes into the line.
fn window_starts(
    line: &str,
    wanted: &std::collections::BTreeSet<usize>,
) -> std::collections::HashMap<usize, usize> {
    let bytes = line.as_bytes();
    let mut out = std::collections::HashMap::new();
    // `b` is the byte offset of character `n`.
    let (mut b, mut n) = (0, 0);
    for &w in wanted {
        while n < w && b < bytes.len() {
            let end = (b + (w - n)).min(bytes.len());
            let run = &bytes[b..end];
            let ascii = if run.is_ascii() {
                run.len()
            } else {
                run.iter().position(|x| !x.is_ascii()).unwrap_or(run.len())
            };
            b += ascii;
            n += ascii;
            if n < w && b < bytes.len() {
                // One character that is not ASCII: its first byte and its continuations.
                b += 1;
                while b < bytes.len() && bytes[b] & 0xC0 == 0x80 {
                    b += 1;
                }
                n += 1;
            }
        }
        if b >= bytes.len() {
            break;
        }
        if n == w {
            out.insert(w, b);
        }
    }
    out
}

/// Render diagnostics like rustc: `FILE:LINE:COL: error: MESSAGE [RULE]`, the source line
/// with an underline at the column, then `= hint:` and `= path:` lines. Without a location:
/// `FILE: error: MESSAGE [RULE]`. ANSI colors only when `color` is true.
pub fn render_diagnostics(diagnostics: &[Diagnostic], source: &Source, color: bool) -> String {
    use anstyle::{AnsiColor, Style};
    let paint = |style: Style, text: &str| {
        if color {
            format!("{}{text}{}", style.render(), style.render_reset())
        } else {
            text.to_string()
        }
    };
    let bold = Style::new().bold();
    let blue = Style::new().bold().fg_color(Some(AnsiColor::Blue.into()));
    let cyan = Style::new().bold().fg_color(Some(AnsiColor::Cyan.into()));
    use crate::domain::escape::{escape, escape_keep_tabs, is_unsafe};
    // Only the lines shown, found in one pass that stops at the last one (a large file is
    // not split into lines to show a few; issue 9 item 7).
    let wanted: std::collections::BTreeSet<usize> = diagnostics
        .iter()
        .filter_map(|d| d.location.as_ref())
        .filter(|l| l.file == source.path && l.line >= 1)
        .map(|l| l.line as usize - 1)
        .collect();
    let mut lines: std::collections::HashMap<usize, &str> = std::collections::HashMap::new();
    // The number of lines, when the pass read the whole text.
    let mut total = None;
    if let Some(&last) = wanted.last() {
        let mut n = 0;
        for (i, line) in source_lines(&source.text).enumerate() {
            n = i + 1;
            if wanted.contains(&i) {
                lines.insert(i, line);
            }
            if i >= last {
                break;
            }
        }
        if n <= last {
            total = Some(n);
        }
    }
    // Where each window starts on a long line: one pass over the line for all of them.
    let mut skips: std::collections::BTreeMap<usize, std::collections::BTreeSet<usize>> =
        std::collections::BTreeMap::new();
    for l in diagnostics.iter().filter_map(|d| d.location.as_ref()) {
        let i = (l.line as usize).wrapping_sub(1);
        if l.file == source.path && lines.get(&i).is_some_and(|t| t.len() > ECHO_WIDTH) {
            skips
                .entry(i)
                .or_default()
                .insert(window_skip(l.column.max(1) as usize));
        }
    }
    let starts: std::collections::HashMap<usize, std::collections::HashMap<usize, usize>> = skips
        .into_iter()
        .map(|(i, want)| (i, window_starts(lines[&i], &want)))
        .collect();
    let mut out = String::new();
    for d in diagnostics {
        let (label, tone) = match d.severity {
            Severity::Error => (
                "error",
                Style::new().bold().fg_color(Some(AnsiColor::Red.into())),
            ),
            Severity::Warning => (
                "warning",
                Style::new().bold().fg_color(Some(AnsiColor::Yellow.into())),
            ),
        };
        let rule = d
            .rule
            .as_ref()
            .map(|r| format!(" [{r}]"))
            .unwrap_or_default();
        let place = match &d.location {
            Some(l) => format!("{}:{}:{}", escape(&l.file), l.line, l.column),
            None => escape(&source.path).into_owned(),
        };
        let _ = writeln!(
            out,
            "{}: {}: {}{}",
            paint(bold, &place),
            paint(tone, label),
            paint(bold, &escape(&d.message)),
            escape(&rule)
        );
        let source_line = d
            .location
            .as_ref()
            .filter(|l| l.file == source.path && l.line >= 1)
            .and_then(|l| {
                // One past the last line: the end of the file (an empty file, a missing end).
                let i = l.line as usize - 1;
                let text = if total == Some(i) {
                    Some("")
                } else {
                    lines.get(&i).copied()
                };
                text.map(|t| (l, t))
            });
        let gutter = match &source_line {
            Some((l, _)) => l.line.to_string().len(),
            None => 1,
        };
        let pad = " ".repeat(gutter);
        if let Some((l, text)) = source_line {
            let col = l.column.max(1) as usize;
            let start = starts
                .get(&(l.line as usize - 1))
                .and_then(|s| s.get(&window_skip(col)))
                .copied();
            let (window, col) = line_window_from(text, col, start);
            let text = &*window;
            // Mirror tabs so that the underline lines up with the text; an escaped
            // character (issue 9 item 6) is as wide as its escape.
            let mut lead = String::new();
            for c in text.chars().take(col - 1) {
                match c {
                    '\t' => lead.push('\t'),
                    c if is_unsafe(c) => {
                        let w = crate::domain::escape::escape_char(c).len();
                        lead.extend(std::iter::repeat_n(' ', w));
                    }
                    _ => lead.push(' '),
                }
            }
            let marks = "^".repeat(token_width(text, col));
            let text = escape_keep_tabs(text);
            let _ = writeln!(out, "{pad} {}", paint(blue, "|"));
            let _ = writeln!(
                out,
                "{} {} {text}",
                paint(blue, &l.line.to_string()),
                paint(blue, "|")
            );
            let _ = writeln!(
                out,
                "{pad} {} {lead}{}",
                paint(blue, "|"),
                paint(tone, &marks)
            );
        }
        if let Some(h) = &d.hint {
            let _ = writeln!(out, "{pad} {} {}", paint(cyan, "= hint:"), escape(h));
        }
        if let Some(a) = d.address.as_ref().filter(|a| !a.is_empty()) {
            let _ = writeln!(out, "{pad} {} {}", paint(cyan, "= path:"), escape(a));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::locate::Pos;
    use super::super::{loc, locate_diagnostics};
    use super::*;

    #[test]
    fn a_long_line_is_echoed_as_a_window_around_the_column() {
        // issue 9 item 7: a minified JSON file is one line; each diagnostic shows a part.
        let line = format!("{}\"license\": 1,{}", "x".repeat(5000), "y".repeat(5000));
        let col = 5001 + "\"license\": ".len();
        let (shown, c) = line_window(&line, col);
        assert!(shown.len() <= ECHO_WIDTH + 6, "{}", shown.len());
        assert!(shown.starts_with("...") && shown.ends_with("..."));
        assert_eq!(shown.chars().nth(c - 1), Some('1'));
        assert_eq!(line_window("short", 2), ("short".into(), 2));
        let src = Source {
            path: "f.json".into(),
            text: line.clone(),
        };
        let mut d = Diagnostic::error("x", "bad");
        d.location = Some(loc(
            &src,
            Pos {
                line: 1,
                column: col as u32,
            },
        ));
        let out = render_diagnostics(&[d], &src, false);
        assert!(out.len() < 600, "{out}");
        assert!(
            out.contains("\n  |           ") && out.contains("^"),
            "{out}"
        );
    }

    /// issue 9 item 7: the windows of many diagnostics on one long line are found in one
    /// pass over the line, and are the windows found one at a time (multi-byte characters
    /// before and inside them).
    #[test]
    fn windows_found_in_one_pass_match_those_found_one_at_a_time() {
        let line: String = (0..3000)
            .map(|i| if i % 7 == 0 { "é€" } else { "ab" })
            .collect();
        let cols: Vec<usize> = vec![1, 2, 30, 31, 32, 33, 500, 2999, 5999, 6000, 6001, 9000];
        let wanted = cols.iter().map(|&c| window_skip(c)).collect();
        let starts = window_starts(&line, &wanted);
        for col in cols {
            let one = line_window(&line, col);
            let start = starts.get(&window_skip(col)).copied();
            assert_eq!(line_window_from(&line, col, start), one, "column {col}");
        }
    }

    /// issue 9 item 7: the ASCII runs skipped whole give each character's byte offset, as
    /// reading the line a character at a time does, on ASCII, mixed and multi-byte lines,
    /// for indices inside and past the line.
    #[test]
    fn window_starts_are_the_byte_offsets_of_the_characters() {
        let mixed: String = (0..500)
            .map(|i| match i % 5 {
                0 => "é",
                1 => "€x",
                2 => "😀",
                _ => "abc",
            })
            .collect();
        let lines = [String::new(), "a".repeat(1000), mixed, "é€😀".repeat(300)];
        for line in &lines {
            let chars: Vec<usize> = line.char_indices().map(|(b, _)| b).collect();
            for step in [1, 3, 7, 64, 997] {
                let wanted: std::collections::BTreeSet<usize> =
                    (0..chars.len() + 5).step_by(step).collect();
                let got = window_starts(line, &wanted);
                let expected: std::collections::HashMap<usize, usize> = wanted
                    .iter()
                    .filter(|&&w| w < chars.len())
                    .map(|&w| (w, chars[w]))
                    .collect();
                assert_eq!(
                    got,
                    expected,
                    "step {step} on a line of {} chars",
                    chars.len()
                );
            }
        }
    }

    #[test]
    fn underline_covers_the_token() {
        assert_eq!(token_width("    curency: USD", 5), 7);
        assert_eq!(token_width("  url: \"a b\" # c", 8), 5);
        assert_eq!(token_width("  name: Ana Diaz  # x", 9), 8);
        assert_eq!(token_width("  - ana@x.com", 3), 1);
        assert_eq!(token_width("  language: -1", 13), 2);
        assert_eq!(token_width("", 1), 1);
    }

    #[test]
    fn colors_only_when_asked() {
        let src = Source {
            path: "f.yaml".into(),
            text: "tenant: x\n".into(),
        };
        let d = vec![Diagnostic::error("tenant", "bad").rule("T1").hint("fix it")];
        let mut located = d.clone();
        locate_diagnostics(&src, &mut located);
        assert_eq!(
            located[0].location.as_ref().map(|l| (l.line, l.column)),
            Some((1, 1))
        );
        let plain = render_diagnostics(&located, &src, false);
        assert_eq!(
            plain,
            "f.yaml:1:1: error: bad [T1]\n  |\n1 | tenant: x\n  | ^^^^^^\n  = hint: fix it\n  = path: tenant\n"
        );
        let colored = render_diagnostics(&located, &src, true);
        assert!(colored.contains("\u{1b}[") && !plain.contains('\u{1b}'));
        // Without a location: `FILE: error: ...`.
        assert!(render_diagnostics(&d, &src, false).starts_with("f.yaml: error: bad [T1]\n"));
    }
}
