//! A located reader of JSON text (issue 9 item 7): the structural pass of a `.json` file
//! reads its entries into located nodes with this scanner instead of the YAML parser, which
//! costs about ten times serde_json's parse. Only called on text that serde_json has
//! checked for syntax (`serde::de::IgnoredAny`); any surprise is an `Err(())`, and the
//! caller falls back to the YAML parser.

use super::locate::{Entry, Node, Pos, Value};

/// A cursor over JSON text that knows its line and column (columns in characters; lines
/// ended by LF, CRLF or a lone CR, as the loader counts them).
#[derive(Clone)]
pub(crate) struct JsonScan<'t> {
    text: &'t str,
    i: usize,
    line: u32,
    /// Byte offset and column of a point on the current line at or before `i` (columns are
    /// counted from there, so that a one-line file costs one pass).
    mark: (usize, u32),
}

type R<T> = Result<T, ()>;

impl<'t> JsonScan<'t> {
    /// A scanner at the start of `text`.
    pub fn new(text: &'t str) -> Self {
        JsonScan {
            text,
            i: 0,
            line: 1,
            mark: (0, 1),
        }
    }

    fn bytes(&self) -> &'t [u8] {
        self.text.as_bytes()
    }

    /// The position of the next byte.
    pub fn pos(&mut self) -> Pos {
        let (at, col) = self.mark;
        let col = col + self.text[at..self.i].chars().count() as u32;
        self.mark = (self.i, col);
        Pos {
            line: self.line,
            column: col,
        }
    }

    /// Skip white space; the next byte, if any.
    pub fn peek(&mut self) -> Option<u8> {
        let b = self.bytes();
        while let Some(&c) = b.get(self.i) {
            match c {
                b' ' | b'\t' => self.i += 1,
                b'\n' | b'\r' => {
                    self.i += 1;
                    if c == b'\r' && b.get(self.i) == Some(&b'\n') {
                        self.i += 1;
                    }
                    self.line += 1;
                    self.mark = (self.i, 1);
                }
                _ => return Some(c),
            }
        }
        None
    }

    /// Consume `c` (after white space).
    pub fn eat(&mut self, c: u8) -> R<()> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(())
        }
    }

    /// After an entry of an object or array: `true` if another follows (a comma was eaten),
    /// `false` if `close` was eaten.
    pub fn next_item(&mut self, close: u8) -> R<bool> {
        match self.peek() {
            Some(b',') => {
                self.i += 1;
                Ok(true)
            }
            Some(c) if c == close => {
                self.i += 1;
                Ok(false)
            }
            _ => Err(()),
        }
    }

    /// Open an object or array: `true` if it has a first entry.
    pub fn open(&mut self, open: u8, close: u8) -> R<bool> {
        self.eat(open)?;
        if self.peek() == Some(close) {
            self.i += 1;
            return Ok(false);
        }
        Ok(true)
    }

    /// A string (after white space), unescaped, and where its quote is.
    pub fn string(&mut self) -> R<(String, Pos)> {
        self.peek();
        let pos = self.pos();
        self.eat(b'"')?;
        let b = self.bytes();
        let mut out = String::new();
        loop {
            let start = self.i;
            while let Some(&c) = b.get(self.i) {
                if c == b'"' || c == b'\\' {
                    break;
                }
                self.i += 1;
            }
            out.push_str(self.text.get(start..self.i).ok_or(())?);
            match b.get(self.i) {
                Some(b'"') => {
                    self.i += 1;
                    return Ok((out, pos));
                }
                Some(b'\\') => {
                    self.i += 1;
                    let e = *b.get(self.i).ok_or(())?;
                    self.i += 1;
                    out.push(match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            if (0xd800..0xdc00).contains(&hi)
                                && b.get(self.i) == Some(&b'\\')
                                && b.get(self.i + 1) == Some(&b'u')
                            {
                                let save = self.i;
                                self.i += 2;
                                let lo = self.hex4()?;
                                if (0xdc00..0xe000).contains(&lo) {
                                    let c = 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
                                    char::from_u32(c).unwrap_or('\u{fffd}')
                                } else {
                                    self.i = save;
                                    '\u{fffd}'
                                }
                            } else {
                                char::from_u32(hi).unwrap_or('\u{fffd}')
                            }
                        }
                        _ => return Err(()),
                    });
                }
                _ => return Err(()),
            }
        }
    }

    /// Step over a string (after white space) without reading it: its escapes are not
    /// decoded (serde_json checked them).
    fn skip_string(&mut self) -> R<()> {
        self.eat(b'"')?;
        let b = self.bytes();
        loop {
            let at = memchr::memchr2(b'"', b'\\', b.get(self.i..).ok_or(())?).ok_or(())?;
            self.i += at + 1;
            if b[self.i - 1] == b'"' {
                return Ok(());
            }
            // The escaped character (a `\uXXXX`'s digits are plain characters).
            self.i += 1;
        }
    }

    /// Step over the next value without building it (issue 9 item 7: the entries a fast
    /// parse read before its first error are known to be well formed and typed).
    pub fn skip(&mut self, depth: u32) -> R<()> {
        if depth > 128 {
            return Err(());
        }
        match self.peek().ok_or(())? {
            b'"' => self.skip_string(),
            open @ (b'{' | b'[') => {
                let close = if open == b'{' { b'}' } else { b']' };
                if self.open(open, close)? {
                    loop {
                        if open == b'{' {
                            self.skip_string()?;
                            self.eat(b':')?;
                        }
                        self.skip(depth + 1)?;
                        if !self.next_item(close)? {
                            break;
                        }
                    }
                }
                Ok(())
            }
            _ => {
                let b = self.bytes();
                let start = self.i;
                while let Some(&c) = b.get(self.i) {
                    if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'+' | b'.') {
                        self.i += 1;
                    } else {
                        break;
                    }
                }
                if self.i == start {
                    return Err(());
                }
                Ok(())
            }
        }
    }

    fn hex4(&mut self) -> R<u32> {
        let h = self.text.get(self.i..self.i + 4).ok_or(())?;
        self.i += 4;
        u32::from_str_radix(h, 16).map_err(|_| ())
    }

    /// The next value, located.
    pub fn value(&mut self, depth: u32) -> R<Node> {
        if depth > 128 {
            return Err(());
        }
        let c = self.peek().ok_or(())?;
        let pos = self.pos();
        let value = match c {
            b'"' => Value::Str(self.string()?.0),
            b'{' => {
                let mut entries = Vec::new();
                if self.open(b'{', b'}')? {
                    loop {
                        let (key, key_pos) = self.string()?;
                        self.eat(b':')?;
                        let value = self.value(depth + 1)?;
                        entries.push(Entry {
                            key,
                            key_pos,
                            value,
                        });
                        if !self.next_item(b'}')? {
                            break;
                        }
                    }
                }
                Value::map(entries)
            }
            b'[' => {
                let mut items = Vec::new();
                if self.open(b'[', b']')? {
                    loop {
                        items.push(self.value(depth + 1)?);
                        if !self.next_item(b']')? {
                            break;
                        }
                    }
                }
                Value::Seq(items)
            }
            b't' | b'f' | b'n' => {
                let rest = &self.text[self.i..];
                let (v, n) = if rest.starts_with("true") {
                    (Value::Bool(true), 4)
                } else if rest.starts_with("false") {
                    (Value::Bool(false), 5)
                } else if rest.starts_with("null") {
                    (Value::Null, 4)
                } else {
                    return Err(());
                };
                self.i += n;
                v
            }
            _ => {
                let start = self.i;
                let b = self.bytes();
                while let Some(&c) = b.get(self.i) {
                    if c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E') {
                        self.i += 1;
                    } else {
                        break;
                    }
                }
                let n = &self.text[start..self.i];
                if n.is_empty() {
                    return Err(());
                }
                // As the YAML parser reads it with the located tree's options: integers
                // as integers, other numbers as floats, non-finite ones (`1e400`) as the
                // canonical text `.inf` / `-.inf`.
                if let Ok(u) = n.parse::<u64>() {
                    Value::UInt(u)
                } else if let Ok(i) = n.parse::<i64>() {
                    Value::Int(i)
                } else {
                    match n.parse::<f64>().map_err(|_| ())? {
                        f if f.is_finite() => Value::Float(f),
                        f if f > 0.0 => Value::Str(".inf".into()),
                        _ => Value::Str("-.inf".into()),
                    }
                }
            }
        };
        Ok(Node { pos, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_keys_and_values_in_characters() {
        // issue 9 item 7: the JSON structural pass's positions
        let text =
            "{\r\n  \"é\": [1, -2, 1e400, \"a\\u00e9\\ud83d\\ude00\"],\n \"b\": {\"c\": null}}";
        let mut s = JsonScan::new(text);
        let root = s.value(0).unwrap();
        assert_eq!(root.pos, Pos { line: 1, column: 1 });
        let Value::Map(entries, _) = &root.value else {
            panic!("not a map")
        };
        assert_eq!(entries[0].key, "é");
        assert_eq!(entries[0].key_pos, Pos { line: 2, column: 3 });
        let Value::Seq(items) = &entries[0].value.value else {
            panic!("not a list")
        };
        assert_eq!(
            items[1].pos,
            Pos {
                line: 2,
                column: 12
            }
        );
        assert!(matches!(items[1].value, Value::Int(-2)));
        assert!(matches!(&items[2].value, Value::Str(s) if s == ".inf"));
        assert!(matches!(&items[3].value, Value::Str(s) if s == "aé😀"));
        assert_eq!(entries[1].key_pos, Pos { line: 3, column: 2 });
    }

    /// issue 9 item 7: stepping over a value ends where reading it ends (same byte, line
    /// and column), for every kind of value, escapes and line breaks included.
    #[test]
    fn skip_ends_where_value_ends() {
        let values = [
            "\"plain\"",
            "\"esc \\\" \\\\ \\u00e9 \\ud83d\\ude00 é\"",
            "{}",
            "[]",
            "{\"a\": [1, -2.5e3, true, false, null, {\"b\": \"}\"}],\r\n \"c\": {\"d\": [[]]}}",
            "[\n 1,\r 2 ,\r\n \"x\" ]",
            "-0.5E+7",
            "null",
        ];
        for v in values {
            let text = format!("{v} , 1");
            let mut read = JsonScan::new(&text);
            read.value(0).unwrap();
            let mut skipped = JsonScan::new(&text);
            skipped.skip(0).unwrap();
            assert_eq!(skipped.i, read.i, "{v}");
            assert_eq!(skipped.pos(), read.pos(), "{v}");
        }
        assert!(JsonScan::new("").skip(0).is_err());
        assert!(JsonScan::new("\"open").skip(0).is_err());
    }
}
