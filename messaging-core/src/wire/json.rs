//! JSON written the way Python's `json.dumps` writes it (oslo's `jsonutils.dumps`):
//! `", "` and `": "` separators, non-ASCII escaped as `\uXXXX`, keys in insertion order.
//!
//! Peers accept any JSON; writing Python's style makes our messages byte-identical to a Python
//! peer's, which keeps captures comparable and the golden tests exact.

use std::io;

use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter};
use serde_json::{Map, Value};

/// Serialize `value` as Python's `json.dumps` would.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(128);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    value.serialize(&mut ser)?;
    Ok(out)
}

/// Serialize `value` as Python's `json.dumps` would, into a `String`.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    // The formatter only ever writes ASCII.
    to_vec(value).map(|bytes| String::from_utf8(bytes).expect("ASCII output"))
}

/// A [`Formatter`] with Python's default separators and `ensure_ascii=True`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // Python escapes everything outside printable ASCII (space to `~`). Bodies are mostly
        // ASCII: scan bytes for the next one to escape (a non-ASCII character starts with a
        // byte of 0x80 or more, so the scan stops on character boundaries).
        let bytes = fragment.as_bytes();
        let mut start = 0;
        while let Some(skip) = bytes[start..]
            .iter()
            .position(|b| !(b' '..=b'~').contains(b))
        {
            let at = start + skip;
            w.write_all(&bytes[start..at])?;
            let ch = fragment[at..]
                .chars()
                .next()
                .expect("a character starts here");
            let mut units = [0u16; 2];
            for unit in ch.encode_utf16(&mut units) {
                write!(w, "\\u{unit:04x}")?;
            }
            start = at + ch.len_utf8();
        }
        w.write_all(&bytes[start..])
    }

    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        escape: CharEscape,
    ) -> io::Result<()> {
        let text: &[u8] = match escape {
            CharEscape::Quote => b"\\\"",
            CharEscape::ReverseSolidus => b"\\\\",
            CharEscape::Solidus => b"\\/",
            CharEscape::Backspace => b"\\b",
            CharEscape::FormFeed => b"\\f",
            CharEscape::LineFeed => b"\\n",
            CharEscape::CarriageReturn => b"\\r",
            CharEscape::Tab => b"\\t",
            CharEscape::AsciiControl(byte) => return write!(w, "\\u{byte:04x}"),
        };
        w.write_all(text)
    }
}

/// [`PythonFormatter`]'s output as the contents of a JSON string, written in one pass: the
/// text of the `2.0` envelope's `oslo.message`, with each `"` and `\` that Python's formatter
/// writes escaped once more.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct InsideString;

impl Formatter for InsideString {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        PythonFormatter.begin_array_value(w, first)
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        PythonFormatter.begin_object_key(w, first)
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        PythonFormatter.begin_object_value(w)
    }

    fn begin_string<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b"\\\"")
    }

    fn end_string<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b"\\\"")
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // Printable ASCII passes both levels unchanged (serde_json hands `"` and `\` to
        // `write_char_escape`, never in a fragment): the common case is one scan and a copy.
        // The scan has no early exit, so that it is vectorized.
        let printable = fragment
            .bytes()
            .fold(true, |printable, b| printable & (b' '..=b'~').contains(&b));
        if printable {
            return w.write_all(fragment.as_bytes());
        }
        PythonFormatter.write_string_fragment(&mut Escaped(w), fragment)
    }

    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        escape: CharEscape,
    ) -> io::Result<()> {
        PythonFormatter.write_char_escape(&mut Escaped(w), escape)
    }

    fn write_raw_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        io::Write::write_all(&mut Escaped(w), fragment.as_bytes())
    }
}

/// Writes what serializing through [`InsideString`] writes, for the strings and `Value`s that
/// messages are made of, in fewer instructions: a string of printable ASCII without `"`
/// or `\` (nearly every one) is copied after one vectorized check, where serde_json escapes
/// byte by byte and the formatter checks each fragment again. Every other string, and every
/// number, goes the serde_json way, so the bytes are the same (tested against it).
pub(crate) struct InsideStringWriter<'a>(pub(crate) &'a mut Vec<u8>);

impl<'a> InsideStringWriter<'a> {
    /// A JSON string.
    pub(crate) fn string(&mut self, text: &str) {
        if plain(text) {
            self.0.extend_from_slice(b"\\\"");
            self.0.extend_from_slice(text.as_bytes());
            self.0.extend_from_slice(b"\\\"");
        } else {
            self.serde(text);
        }
    }

    /// A JSON string of `prefix` then `text`, without building it.
    pub(crate) fn prefixed_string(&mut self, prefix: &str, text: &str) {
        if plain(prefix) && plain(text) {
            self.0.extend_from_slice(b"\\\"");
            self.0.extend_from_slice(prefix.as_bytes());
            self.0.extend_from_slice(text.as_bytes());
            self.0.extend_from_slice(b"\\\"");
        } else {
            self.serde(&format!("{prefix}{text}"));
        }
    }

    /// Any JSON value, its maps' keys in their order.
    pub(crate) fn value(&mut self, value: &Value) {
        match value {
            Value::String(text) => self.string(text),
            Value::Array(items) => {
                self.0.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.0.extend_from_slice(b", ");
                    }
                    self.value(item);
                }
                self.0.push(b']');
            }
            Value::Object(map) => self.map(map),
            Value::Null | Value::Bool(_) | Value::Number(_) => self.serde(value),
        }
    }

    /// A JSON object, its keys in their order.
    pub(crate) fn map(&mut self, map: &Map<String, Value>) {
        let mut object = self.object();
        for (key, value) in map {
            object.key(key).value(value);
        }
        object.end();
    }

    /// Begin a JSON object; write its entries with [`ObjectWriter::key`], then end it.
    pub(crate) fn object(&mut self) -> ObjectWriter<'_, 'a> {
        self.0.push(b'{');
        ObjectWriter {
            writer: self,
            first: true,
        }
    }

    fn serde<T: Serialize + ?Sized>(&mut self, value: &T) {
        let mut ser = serde_json::Serializer::with_formatter(&mut *self.0, InsideString);
        value
            .serialize(&mut ser)
            .expect("strings and JSON values serialize into a Vec");
    }
}

/// An object being written by an [`InsideStringWriter`].
pub(crate) struct ObjectWriter<'w, 'a> {
    writer: &'w mut InsideStringWriter<'a>,
    first: bool,
}

impl<'a> ObjectWriter<'_, 'a> {
    /// Write the next key: its value follows, through the writer returned.
    pub(crate) fn key(&mut self, key: &str) -> &mut InsideStringWriter<'a> {
        self.separator();
        self.writer.string(key);
        self.writer.0.extend_from_slice(b": ");
        self.writer
    }

    /// Write the next key as `prefix` then `key`.
    pub(crate) fn prefixed_key(&mut self, prefix: &str, key: &str) -> &mut InsideStringWriter<'a> {
        self.separator();
        self.writer.prefixed_string(prefix, key);
        self.writer.0.extend_from_slice(b": ");
        self.writer
    }

    fn separator(&mut self) {
        if !std::mem::take(&mut self.first) {
            self.writer.0.extend_from_slice(b", ");
        }
    }

    /// Close the object.
    pub(crate) fn end(self) {
        self.writer.0.push(b'}');
    }
}

/// Whether `text` is written as is inside both levels of quotes: printable ASCII but `"` and
/// `\`. No early exit, so that the check is vectorized.
fn plain(text: &str) -> bool {
    text.bytes().fold(true, |plain, b| {
        plain & (b' '..=b'~').contains(&b) & (b != b'"') & (b != b'\\')
    })
}

/// Writes text as the contents of a JSON string, for text that is printable ASCII, in which
/// `"` and `\` are the only characters to escape.
struct Escaped<'a, W: ?Sized>(&'a mut W);

impl<W: ?Sized + io::Write> io::Write for Escaped<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        for part in buf.split_inclusive(|&b| b == b'"' || b == b'\\') {
            match part.split_last() {
                Some((&last, head)) if last == b'"' || last == b'\\' => {
                    self.0.write_all(head)?;
                    self.0.write_all(&[b'\\', last])?;
                }
                _ => self.0.write_all(part)?,
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn matches_python_json_dumps() {
        let value = json!({"a": 1, "b": [1, 2, 3], "c": {"nested": "\u{fc}"}, "d": null, "e": 1.5, "f": true});
        assert_eq!(
            super::to_string(&value).unwrap(),
            r#"{"a": 1, "b": [1, 2, 3], "c": {"nested": "\u00fc"}, "d": null, "e": 1.5, "f": true}"#
        );
        // Astral characters become surrogate pairs, control characters \u00XX, DEL is escaped.
        assert_eq!(
            super::to_string("\u{1F600}\u{1}\u{7f}\n\"").unwrap(),
            r#""\ud83d\ude00\u0001\u007f\n\"""#
        );
        assert_eq!(
            super::to_string(&json!([3.0, "x"])).unwrap(),
            r#"[3.0, "x"]"#
        );
        // Runs of ASCII around escapes are kept whole.
        assert_eq!(
            super::to_string("ab\u{e9}cd\u{1F600}e~\u{7f}").unwrap(),
            r#""ab\u00e9cd\ud83d\ude00e~\u007f""#
        );
    }
}
