//! A small validating JSON scanner for the two shapes that dominate the hot
//! path: SQS batches and flat device objects. It reads exactly what those
//! need and skips the rest without building anything, where serde's derive
//! machinery would parse every key and visit every value.
//!
//! It never decides anything on its own: whatever it does not expect
//! (other shapes, escapes in keys, duplicate fields, invalid JSON) comes
//! back as [`Unusual`], and the caller hands the input to the serde path,
//! which then accepts it or explains what is wrong with it.

use std::borrow::Cow;

use crate::json::byte_classes::{copy_until_special, next_special, SpecialMask, BLOCK};

/// The input is not the plain shape this scanner reads: use the serde path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unusual;

pub(crate) type Scan<T> = Result<T, Unusual>;

/// Deeper nesting than this is left to serde_json (its own limit is 128).
const MAX_DEPTH: usize = 100;

/// A JSON string as it appears between its quotes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JsonStr<'a> {
    raw: &'a str,
    escapes: Escapes,
}

/// Which escapes a JSON string has, in increasing order of trouble.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Escapes {
    None,
    /// Only one-character escapes (`\"`, `\n`, ...).
    Simple,
    /// Some `\uXXXX` too, which may pair up as surrogates or fail to.
    Unicode,
}

impl<'a> JsonStr<'a> {
    /// The raw text, for comparing with keys that have no escapes.
    pub fn raw(&self) -> Option<&'a str> {
        (self.escapes == Escapes::None).then_some(self.raw)
    }

    /// The raw text when its only escapes are one-character ones, which
    /// cannot fail to decode: such a string may be kept as it is and
    /// unescaped later, or read in place by [`EscapedScanner`].
    pub fn simply_escaped(&self) -> Option<&'a str> {
        (self.escapes == Escapes::Simple).then_some(self.raw)
    }

    /// The string's value: borrowed unless it has escapes.
    pub fn value(&self) -> Scan<Cow<'a, str>> {
        match self.escapes {
            Escapes::None => Ok(Cow::Borrowed(self.raw)),
            Escapes::Simple | Escapes::Unicode => unescape(self.raw).map(Cow::Owned),
        }
    }
}

pub(crate) struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    pub fn new(text: &'a str) -> Self {
        Scanner {
            text,
            bytes: text.as_bytes(),
            pos: 0,
        }
    }

    #[inline]
    fn skip_whitespace(&mut self) {
        // Compact JSON (every AWS event) has none: one comparison says so.
        if self.bytes.get(self.pos).is_some_and(|&byte| byte > b' ') {
            return;
        }
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    /// The next significant byte, not consumed.
    #[inline]
    pub fn peek(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.bytes.get(self.pos).copied()
    }

    #[inline]
    pub fn expect(&mut self, byte: u8) -> Scan<()> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(Unusual)
        }
    }

    /// Only whitespace is left.
    pub fn finish(&mut self) -> Scan<()> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(Unusual),
        }
    }

    /// The next key of an object whose `{` has been read, with its `:`
    /// consumed; `None` once the closing `}` is read.
    #[inline]
    pub fn next_key(&mut self, first: &mut bool) -> Scan<Option<JsonStr<'a>>> {
        match self.peek() {
            Some(b'}') => {
                self.pos += 1;
                return Ok(None);
            }
            Some(b',') if !*first => self.pos += 1,
            Some(b'"') if *first => {}
            _ => return Err(Unusual),
        }
        *first = false;
        let key = self.string()?;
        self.expect(b':')?;
        Ok(Some(key))
    }

    /// Whether another element follows in an array whose `[` has been read;
    /// `false` once the closing `]` is read.
    #[inline]
    pub fn next_element(&mut self, first: &mut bool) -> Scan<bool> {
        match self.peek() {
            Some(b']') => {
                self.pos += 1;
                Ok(false)
            }
            Some(b',') if !*first => {
                self.pos += 1;
                Ok(true)
            }
            Some(_) if *first => {
                *first = false;
                Ok(true)
            }
            _ => Err(Unusual),
        }
    }

    /// A string value (the next significant byte must be its `"`).
    #[inline]
    pub fn string(&mut self) -> Scan<JsonStr<'a>> {
        self.expect(b'"')?;
        let start = self.pos;
        // Most strings (keys, ids, ARNs) have no escape: that case is small
        // enough to inline where it is used.
        let mut pos = start;
        while let Some(block) = self.bytes.get(pos..pos + BLOCK) {
            let block = block.try_into().unwrap_or(&[0; BLOCK]);
            match SpecialMask::of(block).first() {
                None => pos += BLOCK,
                Some(offset) if block[offset] == b'"' => {
                    let end = pos + offset;
                    self.pos = end + 1;
                    return Ok(JsonStr {
                        raw: &self.text[start..end],
                        escapes: Escapes::None,
                    });
                }
                Some(_) => break,
            }
        }
        self.string_from(start, pos)
    }

    /// [`Scanner::string`] of the string that starts at `start`, from the
    /// block at `pos` on (the blocks before it have no special byte),
    /// whatever its length and escapes.
    #[inline(never)]
    fn string_from(&mut self, start: usize, mut pos: usize) -> Scan<JsonStr<'a>> {
        let mut escapes = Escapes::None;
        // Block by block: every special byte of a block comes from one
        // mask, so an escape-dense string (an SQS body) is not searched
        // again after each escape.
        let end = 'search: loop {
            let Some(block) = self.bytes.get(pos..pos + BLOCK) else {
                break self.string_end_in_tail(pos, &mut escapes)?;
            };
            let mut mask = SpecialMask::of(block.try_into().unwrap_or(&[0; BLOCK]));
            while let Some(offset) = mask.first() {
                let at = pos + offset;
                match self.bytes[at] {
                    b'"' => break 'search at,
                    b'\\' => {
                        // The escape's own second byte may be `"` or `\`.
                        let after = at + escape_length(self.bytes, at, &mut escapes)?;
                        if after - pos >= BLOCK {
                            pos = after;
                            continue 'search;
                        }
                        mask = mask.skipping_to(after - pos);
                    }
                    // A raw control character: not allowed inside a JSON string.
                    _ => return Err(Unusual),
                }
            }
            pos += BLOCK;
        };
        let raw = &self.text[start..end];
        self.pos = end + 1;
        Ok(JsonStr { raw, escapes })
    }

    /// The end of a string found from `pos` once less than a block is
    /// left. Searching the whole remaining input, not just the string, lets
    /// every string end inside an 8-byte word: no byte-wise tail.
    fn string_end_in_tail(&self, mut pos: usize, escapes: &mut Escapes) -> Scan<usize> {
        loop {
            pos = next_special(self.bytes, pos).ok_or(Unusual)?;
            match self.bytes[pos] {
                b'"' => return Ok(pos),
                b'\\' => pos += escape_length(self.bytes, pos, escapes)?,
                _ => return Err(Unusual),
            }
        }
    }

    /// A string value, unescaped in the same pass that finds its end
    /// (borrowed when it has no escapes), for values that are kept: ids,
    /// timestamps, a payload's strings. (SQS bodies are not unescaped at all
    /// when they can be read in place: see [`EscapedScanner`].)
    #[inline]
    pub fn string_value(&mut self) -> Scan<Cow<'a, str>> {
        self.expect(b'"')?;
        let start = self.pos;
        self.pos = next_special(self.bytes, self.pos).ok_or(Unusual)?;
        if self.bytes[self.pos] == b'"' {
            let value = &self.text[start..self.pos];
            self.pos += 1;
            return Ok(Cow::Borrowed(value));
        }
        // Escapes in kept values are rare; room for a few of them.
        let mut out = Vec::with_capacity(self.pos - start + 64);
        out.extend_from_slice(&self.bytes[start..self.pos]);
        loop {
            match self.bytes[self.pos] {
                b'"' => break,
                b'\\' => {
                    self.pos = unescape_one(self.bytes, self.pos, &mut out)?;
                    self.pos = copy_until_special(self.bytes, self.pos, &mut out).ok_or(Unusual)?;
                }
                _ => return Err(Unusual),
            }
        }
        self.pos += 1;
        // Plain runs end at ASCII bytes and escapes decode to whole
        // characters, so this cannot fail on text the event's check passed.
        let out = String::from_utf8(out).map_err(|_| Unusual)?;
        Ok(Cow::Owned(out))
    }

    /// The raw text of the next value, whatever it is, validated.
    pub fn value_text(&mut self) -> Scan<&'a str> {
        self.skip_whitespace();
        let start = self.pos;
        self.skip_value()?;
        Ok(&self.text[start..self.pos])
    }

    /// A number's text, validated against JSON's grammar.
    pub fn number(&mut self) -> Scan<&'a str> {
        self.skip_whitespace();
        let start = self.pos;
        let bytes = self.bytes;
        let digits = |pos: &mut usize| {
            let from = *pos;
            while bytes.get(*pos).is_some_and(u8::is_ascii_digit) {
                *pos += 1;
            }
            *pos > from
        };
        let mut pos = self.pos;
        if bytes.get(pos) == Some(&b'-') {
            pos += 1;
        }
        match bytes.get(pos) {
            Some(b'0') => pos += 1,
            Some(b'1'..=b'9') => {
                digits(&mut pos);
            }
            _ => return Err(Unusual),
        }
        if bytes.get(pos) == Some(&b'.') {
            pos += 1;
            if !digits(&mut pos) {
                return Err(Unusual);
            }
        }
        if let Some(b'e' | b'E') = bytes.get(pos) {
            pos += 1;
            if let Some(b'+' | b'-') = bytes.get(pos) {
                pos += 1;
            }
            if !digits(&mut pos) {
                return Err(Unusual);
            }
        }
        self.pos = pos;
        Ok(&self.text[start..pos])
    }

    /// `true`, `false` or `null`, as the literal's text.
    pub fn literal(&mut self) -> Scan<&'static str> {
        self.skip_whitespace();
        let rest = &self.bytes[self.pos..];
        for literal in ["true", "false", "null"] {
            if rest.starts_with(literal.as_bytes()) {
                self.pos += literal.len();
                return Ok(literal);
            }
        }
        Err(Unusual)
    }

    /// Skips one value of any kind, checking it is valid JSON.
    #[inline]
    pub fn skip_value(&mut self) -> Scan<()> {
        // Most skipped values are strings: no recursion for them.
        if self.peek() == Some(b'"') {
            return self.string().map(drop);
        }
        self.skip_nested(0)
    }

    fn skip_nested(&mut self, depth: usize) -> Scan<()> {
        if depth > MAX_DEPTH {
            return Err(Unusual);
        }
        match self.peek().ok_or(Unusual)? {
            b'"' => self.string().map(drop),
            b'{' => {
                self.pos += 1;
                let mut first = true;
                while self.next_key(&mut first)?.is_some() {
                    self.skip_nested(depth + 1)?;
                }
                Ok(())
            }
            b'[' => {
                self.pos += 1;
                let mut first = true;
                while self.next_element(&mut first)? {
                    self.skip_nested(depth + 1)?;
                }
                Ok(())
            }
            b't' | b'f' | b'n' => self.literal().map(drop),
            _ => self.number().map(drop),
        }
    }
}

/// The length of the valid escape at `bytes[at]` (a `\\`), noting its kind.
/// Inlined: as a call it costs as much as the check itself.
#[inline(always)]
fn escape_length(bytes: &[u8], at: usize, escapes: &mut Escapes) -> Scan<usize> {
    match bytes.get(at + 1) {
        Some(&escape) if SIMPLE_ESCAPES[usize::from(escape)] != 0 => {
            *escapes = (*escapes).max(Escapes::Simple);
            Ok(2)
        }
        Some(b'u') => {
            *escapes = Escapes::Unicode;
            let hex = bytes.get(at + 2..at + 6).ok_or(Unusual)?;
            if hex.iter().all(u8::is_ascii_hexdigit) {
                Ok(6)
            } else {
                Err(Unusual)
            }
        }
        _ => Err(Unusual),
    }
}

/// What [`crate::payload::fields::ObjectFields`] needs to read a flat object: from
/// JSON text ([`Scanner`]) or from the text of a JSON string that holds it
/// ([`EscapedScanner`]).
pub(crate) trait ObjectReader<'a> {
    fn expect(&mut self, byte: u8) -> Scan<()>;
    /// The next significant byte, not consumed.
    fn peek(&mut self) -> Option<u8>;
    /// As [`Scanner::next_key`], with the key's value.
    fn next_key(&mut self, first: &mut bool) -> Scan<Option<Cow<'a, str>>>;
    fn string_value(&mut self) -> Scan<Cow<'a, str>>;
    /// An object's or array's text.
    fn nested_value(&mut self) -> Scan<&'a str>;
    fn literal(&mut self) -> Scan<&'static str>;
    fn number(&mut self) -> Scan<&'a str>;
    fn finish(&mut self) -> Scan<()>;
}

impl<'a> ObjectReader<'a> for Scanner<'a> {
    #[inline]
    fn expect(&mut self, byte: u8) -> Scan<()> {
        Scanner::expect(self, byte)
    }
    #[inline]
    fn peek(&mut self) -> Option<u8> {
        Scanner::peek(self)
    }
    #[inline]
    fn next_key(&mut self, first: &mut bool) -> Scan<Option<Cow<'a, str>>> {
        Scanner::next_key(self, first)?
            .map(|key| key.value())
            .transpose()
    }
    #[inline]
    fn string_value(&mut self) -> Scan<Cow<'a, str>> {
        Scanner::string_value(self)
    }
    fn nested_value(&mut self) -> Scan<&'a str> {
        self.value_text()
    }
    fn literal(&mut self) -> Scan<&'static str> {
        Scanner::literal(self)
    }
    fn number(&mut self) -> Scan<&'a str> {
        Scanner::number(self)
    }
    fn finish(&mut self) -> Scan<()> {
        Scanner::finish(self)
    }
}

/// Reads an object from the text of a JSON string that holds it, as an SQS
/// body sits in its event (`{\"temp\": 17.9}`), without unescaping it:
/// the strings it returns borrow from the event. It knows the escapes such
/// an object has when its own keys and strings have none: `\"` around them
/// and `\n`, `\r`, `\t` between tokens. Anything else (an escape inside a
/// key or a string, a nested value) is [`Unusual`]: the caller unescapes
/// the text and reads it the ordinary way.
pub(crate) struct EscapedScanner<'a> {
    inner: Scanner<'a>,
}

impl<'a> EscapedScanner<'a> {
    /// `text` must be the content of a JSON string checked by
    /// [`Scanner::string`]: raw control characters and quotes cannot occur.
    pub fn new(text: &'a str) -> Self {
        EscapedScanner {
            inner: Scanner::new(text),
        }
    }

    #[inline]
    fn skip_whitespace(&mut self) {
        let scanner = &mut self.inner;
        loop {
            match scanner.bytes.get(scanner.pos) {
                Some(b' ') => scanner.pos += 1,
                Some(b'\\')
                    if matches!(scanner.bytes.get(scanner.pos + 1), Some(b'n' | b'r' | b't')) =>
                {
                    scanner.pos += 2
                }
                _ => return,
            }
        }
    }

    /// The text up to the closing `\"` of a string whose opening one has
    /// been read.
    #[inline(always)]
    fn string(&mut self) -> Scan<&'a str> {
        let scanner = &mut self.inner;
        let start = scanner.pos;
        let end = next_special(scanner.bytes, start).ok_or(Unusual)?;
        if scanner.bytes[end] != b'\\' || scanner.bytes.get(end + 1) != Some(&b'"') {
            return Err(Unusual);
        }
        scanner.pos = end + 2;
        Ok(&scanner.text[start..end])
    }
}

impl<'a> ObjectReader<'a> for EscapedScanner<'a> {
    /// `b'"'` stands for `\"`.
    #[inline]
    fn expect(&mut self, byte: u8) -> Scan<()> {
        if self.peek() != Some(byte) {
            return Err(Unusual);
        }
        self.inner.pos += if byte == b'"' { 2 } else { 1 };
        Ok(())
    }

    /// `b'"'` for `\"`; `b'\\'` for any other escape.
    #[inline]
    fn peek(&mut self) -> Option<u8> {
        self.skip_whitespace();
        let scanner = &self.inner;
        match scanner.bytes.get(scanner.pos)? {
            b'\\' if scanner.bytes.get(scanner.pos + 1) == Some(&b'"') => Some(b'"'),
            &byte => Some(byte),
        }
    }

    #[inline]
    fn next_key(&mut self, first: &mut bool) -> Scan<Option<Cow<'a, str>>> {
        match self.peek() {
            Some(b'}') => {
                self.inner.pos += 1;
                return Ok(None);
            }
            Some(b',') if !*first => self.inner.pos += 1,
            Some(b'"') if *first => {}
            _ => return Err(Unusual),
        }
        *first = false;
        self.expect(b'"')?;
        let key = self.string()?;
        self.expect(b':')?;
        Ok(Some(Cow::Borrowed(key)))
    }

    #[inline]
    fn string_value(&mut self) -> Scan<Cow<'a, str>> {
        self.expect(b'"')?;
        self.string().map(Cow::Borrowed)
    }

    fn nested_value(&mut self) -> Scan<&'a str> {
        Err(Unusual)
    }

    fn literal(&mut self) -> Scan<&'static str> {
        self.skip_whitespace();
        self.inner.literal()
    }

    fn number(&mut self) -> Scan<&'a str> {
        self.skip_whitespace();
        self.inner.number()
    }

    fn finish(&mut self) -> Scan<()> {
        self.skip_whitespace();
        self.inner.finish()
    }
}

/// Whether the object held in `text` (see [`EscapedScanner`]) has `key`
/// (plain text, no escapes) as its first key: a look at its first bytes.
pub(crate) fn escaped_object_starts_with_key(text: &str, key: &str) -> bool {
    let mut scanner = EscapedScanner::new(text);
    if scanner.expect(b'{').is_err() || scanner.peek() != Some(b'"') {
        return false;
    }
    let first_key = &text.as_bytes()[scanner.inner.pos + 2..];
    first_key
        .strip_prefix(key.as_bytes())
        .is_some_and(|rest| rest.starts_with(b"\\\""))
}

/// The value of a string's escaped text (already checked by the scanner).
pub(crate) fn unescape(raw: &str) -> Scan<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(raw.len());
    let mut plain_from = 0;
    while let Some(found) = bytes[plain_from..].iter().position(|&byte| byte == b'\\') {
        out.extend_from_slice(&bytes[plain_from..plain_from + found]);
        plain_from = unescape_one(bytes, plain_from + found, &mut out)?;
    }
    out.extend_from_slice(&bytes[plain_from..]);
    String::from_utf8(out).map_err(|_| Unusual)
}

/// What a one-character escape (`\\n`, `\\"`, ...) stands for, by the
/// byte after the backslash; 0 for `u` and for bytes that are no escape.
const SIMPLE_ESCAPES: [u8; 256] = {
    let mut table = [0; 256];
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table[b'/' as usize] = b'/';
    table[b'b' as usize] = 0x08;
    table[b'f' as usize] = 0x0c;
    table[b'n' as usize] = b'\n';
    table[b'r' as usize] = b'\r';
    table[b't' as usize] = b'\t';
    table
};

/// Decodes the escape starting at `bytes[pos]` (a `\\`) onto `out` as
/// UTF-8; returns the position after it.
#[inline(always)]
fn unescape_one(bytes: &[u8], pos: usize, out: &mut Vec<u8>) -> Scan<usize> {
    let escape = *bytes.get(pos + 1).ok_or(Unusual)?;
    match SIMPLE_ESCAPES[usize::from(escape)] {
        0 if escape == b'u' => unescape_unicode(bytes, pos + 2, out),
        0 => Err(Unusual),
        decoded => {
            out.push(decoded);
            Ok(pos + 2)
        }
    }
}

/// The rest of a `\\u` escape, from its first hex digit at `pos`. Lone
/// surrogates are left to serde_json.
#[cold]
fn unescape_unicode(bytes: &[u8], mut pos: usize, out: &mut Vec<u8>) -> Scan<usize> {
    let high = hex4(bytes, pos)?;
    pos += 4;
    let decoded = if (0xD800..0xDC00).contains(&high) {
        // A surrogate pair: the low half must follow at once.
        if bytes.get(pos..pos + 2) != Some(b"\\u") {
            return Err(Unusual);
        }
        let low = hex4(bytes, pos + 2)?;
        if !(0xDC00..0xE000).contains(&low) {
            return Err(Unusual);
        }
        pos += 6;
        char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)).ok_or(Unusual)?
    } else {
        char::from_u32(high).ok_or(Unusual)?
    };
    out.extend_from_slice(decoded.encode_utf8(&mut [0; 4]).as_bytes());
    Ok(pos)
}

fn hex4(bytes: &[u8], pos: usize) -> Scan<u32> {
    let digits = bytes.get(pos..pos + 4).ok_or(Unusual)?;
    // from_str_radix would also take a sign.
    if !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err(Unusual);
    }
    let text = std::str::from_utf8(digits).map_err(|_| Unusual)?;
    u32::from_str_radix(text, 16).map_err(|_| Unusual)
}

/// Deterministic damaged copies of `text` (bytes deleted, doubled or
/// replaced by JSON punctuation), for checking that the scanner never
/// accepts what serde refuses, nor reads it differently.
#[cfg(test)]
pub(crate) fn mutations(text: &str, count: usize) -> Vec<String> {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

    const REPLACEMENTS: &[u8] = b"\"\\{}[],: 0a-.e\nu";
    if text.is_empty() {
        return Vec::new();
    }
    // One byte removed, doubled or replaced by one that matters to JSON.
    let edit = (
        0..text.len(),
        0..3u8,
        proptest::sample::select(REPLACEMENTS),
    );
    let mutated = edit.prop_map(|(at, kind, replacement)| {
        let mut bytes = text.as_bytes().to_vec();
        match kind {
            0 => {
                bytes.remove(at);
            }
            1 => bytes.insert(at, bytes[at]),
            _ => bytes[at] = replacement,
        }
        String::from_utf8(bytes).ok()
    });
    // A fixed seed: the same damaged copies every run, so a failure repeats.
    let rng = TestRng::deterministic_rng(RngAlgorithm::ChaCha);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    std::iter::repeat_with(|| mutated.new_tree(&mut runner).expect("a mutation").current())
        .flatten()
        .take(count)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skip_all(text: &str) -> Scan<()> {
        let mut scanner = Scanner::new(text);
        scanner.skip_value()?;
        scanner.finish()
    }

    #[test]
    fn accepts_what_serde_json_accepts_and_nothing_else() {
        let cases = [
            r#"{"a": [1, -2.5e+3, 0, true, false, null, "x\"y\\u00e9\ud83d\ude00"], "b": {}}"#,
            "[]",
            " \"plain\" ",
            "-0.0",
            "[1,]",
            "{\"a\" 1}",
            "{\"a\":1,}",
            "01",
            "1.",
            "-",
            "1e",
            "tru",
            "\"a\u{1}b\"",
            "\"bad \\x escape\"",
            "\"\\u12G4\"",
            "[1 2]",
            "{} {}",
            "\"unterminated",
            "nulls",
        ];
        for case in cases {
            let serde = serde_json::from_str::<serde_json::Value>(case).is_ok();
            assert_eq!(skip_all(case).is_ok(), serde, "{case}");
        }
    }

    #[test]
    fn strings_decode_like_serde_json() {
        for case in [
            r#""plain""#,
            r#""tab\tquote\" slash\/ back\\ nl\n""#,
            r#""\u00e9\u4e2d\ud83d\ude00 \b\f\r""#,
            r#""long text long text long text \"with\" escapes near the end""#,
        ] {
            let mut scanner = Scanner::new(case);
            let ours = scanner.string().unwrap().value().unwrap();
            assert_eq!(ours, serde_json::from_str::<String>(case).unwrap());
        }
        // A lone surrogate is left to serde_json (which rejects it).
        let mut scanner = Scanner::new(r#""\ud83d x""#);
        assert_eq!(scanner.string().unwrap().value(), Err(Unusual));
    }

    /// Escapes and bad bytes at every offset from a block boundary, with
    /// and without a block's worth of input after them: the block walk and
    /// the tail find the same end and judge alike.
    #[test]
    fn strings_end_in_the_right_place_wherever_their_escapes_fall() {
        let pieces = [
            r#"\""#,
            r#"\\"#,
            r#"\n"#,
            r#"\u00e9"#,
            r#"\ud83d\ude00"#,
            r#"\\\""#,
        ];
        for prefix in 0..40 {
            for piece in pieces {
                for second in ["", piece, "b"] {
                    for (suffix, after) in [("", ""), ("", &" ".repeat(40)[..]), ("tail", "  ")] {
                        let case =
                            format!("\"{}{piece}{second}{suffix}\"{after}", "a".repeat(prefix));
                        let mut scanner = Scanner::new(&case);
                        let string = scanner.string().unwrap_or_else(|_| panic!("{case:?}"));
                        assert_eq!(scanner.finish(), Ok(()), "{case:?}");
                        assert_eq!(string.raw(), None, "{case:?}");
                        assert_eq!(
                            string.value().unwrap(),
                            serde_json::from_str::<String>(&case).unwrap(),
                            "{case:?}"
                        );
                    }
                }
            }
            for bad in [r#"\x"#, "\t", "\u{1}", r#"\u12g4"#, r#"\u12"#] {
                for after in ["", &" ".repeat(40)[..]] {
                    let case = format!("\"{}{bad}\"{after}", "a".repeat(prefix));
                    assert!(Scanner::new(&case).string().is_err(), "{case:?}");
                }
            }
        }
    }

    #[test]
    fn an_escaped_object_is_recognised_by_its_first_key() {
        for (text, starts) in [
            (r#"{\"Type\" : \"Notification\"}"#, true),
            (r#"\n { \n\t\"Type\":1}"#, true),
            (r#"{\"Types\": 1}"#, false),
            (r#"{\"Typ\": 1}"#, false),
            (r#"{\"device\": 1, \"Type\": 2}"#, false),
            (r#"{\"\\\"Type\": 1}"#, false),
            (r#"[{\"Type\": 1}]"#, false),
            (r#"{\"Ty"#, false),
            ("", false),
        ] {
            assert_eq!(
                escaped_object_starts_with_key(text, "Type"),
                starts,
                "{text}"
            );
        }
    }

    /// The one-pass `string_value` and `string().value()` against serde_json,
    /// on good strings and damaged copies of them.
    #[test]
    fn string_value_reads_and_refuses_like_serde_json() {
        let good = [
            r#""plain""#,
            r#""{\n    \"timestamp\": 1645938000,\n    \"device\": \"temp-sensor-000\"\n}""#,
            r#""\u00e9\u4e2d\ud83d\ude00 \b\f\r\/ a long tail after the escapes""#,
            r#""\\\\ \"\"""#,
        ];
        let mut cases: Vec<String> = good.iter().map(|case| case.to_string()).collect();
        cases.push(r#""\u+123""#.into());
        cases.push("\"tab\tinside\"".into());
        for case in good {
            cases.extend(mutations(case, 300));
        }
        for case in &cases {
            let serde = serde_json::from_str::<String>(case).ok();
            let one_pass = {
                let mut scanner = Scanner::new(case);
                scanner
                    .string_value()
                    .and_then(|value| scanner.finish().map(|()| value))
            };
            let two_pass = {
                let mut scanner = Scanner::new(case);
                scanner
                    .string()
                    .and_then(|string| string.value())
                    .and_then(|value| scanner.finish().map(|()| value))
            };
            // Unusual is allowed where serde accepts (it then decides), never
            // the other way round, and both scanner paths agree.
            if let Ok(value) = &one_pass {
                assert_eq!(Some(value.as_ref()), serde.as_deref(), "{case:?}");
            }
            assert_eq!(one_pass, two_pass, "{case:?}");
        }
    }
}
