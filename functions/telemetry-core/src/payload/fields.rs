//! A device payload split into fields without copying: JSON objects keep
//! their values as raw slices, delimited text keeps its columns.

use std::borrow::Cow;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::json::scanner::{EscapedScanner, ObjectReader, Scan, Scanner, Unusual};
use crate::json::text::Text;

/// One payload value.
#[derive(Debug, Clone, PartialEq)]
pub enum Field<'a> {
    /// A JSON number written without fraction or exponent that fits i64
    /// (kept exact: ids beyond 2^53 survive).
    Int(i64),
    Number(f64),
    Text(Cow<'a, str>),
    Bool(bool),
    Null,
    /// An object or array, kept raw and parsed only if a pointer reaches into it.
    Nested(&'a str),
}

impl<'a> Field<'a> {
    /// A value serde_json kept raw. Its strings' escapes are decoded here,
    /// and one that does not decode (a lone surrogate) is an error, never
    /// an empty string.
    fn from_raw(raw: &'a RawValue) -> Result<Field<'a>, serde_json::Error> {
        let text = raw.get();
        Ok(match text.as_bytes().first() {
            Some(b'"') => {
                let inner = &text[1..text.len() - 1];
                if inner.contains('\\') {
                    Field::Text(Cow::Owned(serde_json::from_str::<String>(text)?))
                } else {
                    Field::Text(Cow::Borrowed(inner))
                }
            }
            Some(b't') => Field::Bool(true),
            Some(b'f') => Field::Bool(false),
            Some(b'n') => Field::Null,
            Some(b'{') | Some(b'[') => {
                check_nested_value(text)?;
                Field::Nested(text)
            }
            _ => Field::from_number_text(text),
        })
    }

    /// A JSON number's text: exact if it is an integer that fits i64.
    fn from_number_text(text: &str) -> Field<'a> {
        match text.parse::<i64>() {
            Ok(integer) => Field::Int(integer),
            Err(_) => text.parse().map(Field::Number).unwrap_or(Field::Null),
        }
    }

    /// A short rendering for error messages.
    pub fn describe(&self) -> String {
        match self {
            Field::Int(integer) => integer.to_string(),
            Field::Number(number) => number.to_string(),
            Field::Text(text) => format!("{text:?}"),
            Field::Bool(flag) => flag.to_string(),
            Field::Null => "null".to_owned(),
            Field::Nested(raw) => truncate(raw, 60).to_owned(),
        }
    }

    /// The value as a number: numbers, numeric text (trimmed: devices send
    /// `"42 "`), and booleans as 1/0.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Field::Int(integer) => Some(*integer as f64),
            Field::Number(number) => Some(*number),
            Field::Text(text) => text.trim().parse().ok(),
            Field::Bool(flag) => Some(if *flag { 1.0 } else { 0.0 }),
            Field::Null | Field::Nested(_) => None,
        }
    }

    pub fn as_text(&self) -> Option<Cow<'_, str>> {
        match self {
            Field::Text(text) => Some(Cow::Borrowed(text.as_ref())),
            Field::Int(integer) => Some(Cow::Owned(integer.to_string())),
            Field::Number(number) => Some(Cow::Owned(number.to_string())),
            Field::Bool(flag) => Some(Cow::Borrowed(if *flag { "true" } else { "false" })),
            Field::Null => None,
            Field::Nested(raw) => Some(Cow::Borrowed(raw)),
        }
    }

    pub fn into_owned(self) -> Field<'static> {
        match self {
            Field::Int(integer) => Field::Int(integer),
            Field::Number(number) => Field::Number(number),
            Field::Text(text) => Field::Text(Cow::Owned(text.into_owned())),
            Field::Bool(flag) => Field::Bool(flag),
            Field::Null => Field::Null,
            Field::Nested(raw) => Field::Text(Cow::Owned(raw.to_owned())),
        }
    }
}

pub(crate) fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The top-level fields of a JSON object, in document order, with a
/// signature of their keys: the decoder asks each message for a few dozen
/// conventional keys (device, timestamp, rule metadata), nearly all absent,
/// and the signature answers most of those without walking the fields.
/// The fields are private so the signature always matches them.
#[derive(Debug, Default)]
pub struct ObjectFields<'a> {
    fields: Vec<(Cow<'a, str>, Field<'a>)>,
    signature: KeySignature,
}

/// One bit per (length, first byte, last byte) class of the keys present.
/// A key whose bit is clear is certainly absent; a set bit is only a hint.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeySignature(u64);

impl KeySignature {
    #[inline]
    fn bit(key: &str) -> u64 {
        let bytes = key.as_bytes();
        let first = bytes.first().copied().unwrap_or(0) as usize;
        let last = bytes.last().copied().unwrap_or(0) as usize;
        1 << ((bytes.len() + first * 7 + last * 3) & 63)
    }

    fn of<'k>(keys: impl Iterator<Item = &'k str>) -> Self {
        KeySignature(keys.fold(0, |signature, key| signature | Self::bit(key)))
    }

    #[inline]
    fn may_contain(self, key: &str) -> bool {
        self.0 & Self::bit(key) != 0
    }
}

impl<'a> ObjectFields<'a> {
    pub fn new(fields: Vec<(Cow<'a, str>, Field<'a>)>) -> Self {
        let signature = KeySignature::of(fields.iter().map(|(key, _)| key.as_ref()));
        ObjectFields { fields, signature }
    }

    /// The fields, in document order.
    pub fn entries(&self) -> &[(Cow<'a, str>, Field<'a>)] {
        &self.fields
    }

    /// The fields, in document order, taken out.
    pub fn into_entries(self) -> Vec<(Cow<'a, str>, Field<'a>)> {
        self.fields
    }

    /// Splits a JSON object. A plain object is read by the scanner (one
    /// pass, numbers parsed once); anything else goes through serde, which
    /// also words the error.
    pub fn from_json(json: &'a [u8]) -> Result<Self, serde_json::Error> {
        if let Ok(text) = simdutf8::basic::from_utf8(json) {
            if let Ok(fields) = Self::scan(text) {
                return Ok(fields);
            }
        }
        serde_json::from_slice(json)
    }

    pub(crate) fn scan(text: &'a str) -> Scan<Self> {
        Self::read(Scanner::new(text))
    }

    /// Reads an object from the text of the JSON string that holds it (an
    /// SQS body as its event carries it) without unescaping it; `None` when
    /// that text is not a plain flat object, to be unescaped and read by
    /// [`ObjectFields::from_json`].
    pub(crate) fn from_escaped_json(text: &'a str) -> Option<Self> {
        Self::read(EscapedScanner::new(text)).ok()
    }

    fn read(mut reader: impl ObjectReader<'a>) -> Scan<Self> {
        reader.expect(b'{')?;
        let mut fields = Vec::with_capacity(8);
        let mut first = true;
        while let Some(key) = reader.next_key(&mut first)? {
            let field = match reader.peek().ok_or(Unusual)? {
                b'"' => Field::Text(reader.string_value()?),
                b'{' | b'[' => {
                    let nested = reader.nested_value()?;
                    check_nested_value(nested).map_err(|_| Unusual)?;
                    Field::Nested(nested)
                }
                b't' | b'f' | b'n' => match reader.literal()? {
                    "true" => Field::Bool(true),
                    "false" => Field::Bool(false),
                    _ => Field::Null,
                },
                _ => match Field::from_number_text(reader.number()?) {
                    // `1e400`: serde_json refuses it as out of range, and
                    // says so; the scanner must not read it as infinity.
                    Field::Number(number) if !number.is_finite() => return Err(Unusual),
                    field => field,
                },
            };
            fields.push((key, field));
        }
        reader.finish()?;
        let fields = ObjectFields::new(fields);
        if fields.repeated_key().is_some() {
            return Err(Unusual); // serde's path refuses it, naming the key
        }
        Ok(fields)
    }

    /// A key the object holds twice, if any. Such an object is refused:
    /// which of the two values the device meant cannot be known (serde_json
    /// keeps the last, this reader would have read the first). Distinct
    /// signature bits prove the keys distinct at once; otherwise pairwise
    /// for a device's few keys, sorted beyond that, never quadratic.
    pub fn repeated_key(&self) -> Option<&str> {
        let fields = &self.fields;
        if self.signature.0.count_ones() as usize == fields.len() {
            return None;
        }
        if fields.len() <= 16 {
            return fields.iter().enumerate().find_map(|(index, (key, _))| {
                fields[..index]
                    .iter()
                    .any(|(earlier, _)| earlier == key)
                    .then_some(key.as_ref())
            });
        }
        let mut keys: Vec<&str> = fields.iter().map(|(key, _)| key.as_ref()).collect();
        keys.sort_unstable();
        keys.windows(2)
            .find(|pair| pair[0] == pair[1])
            .map(|pair| pair[0])
    }

    /// The field under `key`, if any.
    pub fn get(&self, key: &str) -> Option<&Field<'a>> {
        if !self.signature.may_contain(key) {
            return None;
        }
        self.fields
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, field)| field)
    }

    /// Resolves an RFC 6901 JSON pointer (`/a/b/0`).
    pub fn pointer(&self, pointer: &str) -> Option<Field<'static>> {
        let rest = pointer.strip_prefix('/')?;
        let (first, deeper) = match rest.split_once('/') {
            Some((first, deeper)) => (first, Some(deeper)),
            None => (rest, None),
        };
        let first = unescape_pointer_token(first);
        let field = self.get(&first)?;
        match deeper {
            None => Some(field.clone().into_owned()),
            Some(deeper) => {
                let Field::Nested(raw) = field else {
                    return None;
                };
                let value: serde_json::Value = serde_json::from_str(raw).ok()?;
                let found = value.pointer(&format!("/{deeper}"))?;
                Some(field_from_value(found))
            }
        }
    }
}

/// A nested value is kept raw, but must still be JSON as serde_json reads
/// it: skipping a value checks neither a `\u` escape's surrogate pairing
/// nor an exponent's range, so a value that holds either is parsed once
/// (a lone surrogate or `1e400` is refused, as serde_json's full parse
/// refuses it).
fn check_nested_value(raw: &str) -> Result<(), serde_json::Error> {
    let bytes = raw.as_bytes();
    let suspicious = bytes.windows(2).any(|pair| {
        matches!(pair, [b'\\', b'u'])
            || (pair[0].is_ascii_digit() && matches!(pair[1], b'e' | b'E'))
    });
    if suspicious {
        serde_json::from_str::<serde_json::Value>(raw)?;
    }
    Ok(())
}

fn unescape_pointer_token(token: &str) -> Cow<'_, str> {
    if token.contains('~') {
        Cow::Owned(token.replace("~1", "/").replace("~0", "~"))
    } else {
        Cow::Borrowed(token)
    }
}

fn field_from_value(value: &serde_json::Value) -> Field<'static> {
    match value {
        serde_json::Value::Null => Field::Null,
        serde_json::Value::Bool(flag) => Field::Bool(*flag),
        serde_json::Value::Number(number) => {
            number.as_f64().map(Field::Number).unwrap_or(Field::Null)
        }
        serde_json::Value::String(text) => Field::Text(Cow::Owned(text.clone())),
        other => Field::Text(Cow::Owned(other.to_string())),
    }
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for ObjectFields<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = ObjectFields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut fields = Vec::with_capacity(8);
                while let Some(key) = map.next_key::<Text<'de>>()? {
                    let raw: &'de RawValue = map.next_value()?;
                    let field = Field::from_raw(raw).map_err(|error| {
                        de::Error::custom(format!("field `{}`: {error}", key.0))
                    })?;
                    if matches!(field, Field::Number(number) if !number.is_finite()) {
                        return Err(de::Error::custom(format!(
                            "field `{}` = {} is out of range for a 64-bit number",
                            key.0,
                            raw.get()
                        )));
                    }
                    fields.push((key.0, field));
                }
                let fields = ObjectFields::new(fields);
                if let Some(key) = fields.repeated_key() {
                    return Err(de::Error::custom(format!(
                        "field `{key}` appears twice in one object"
                    )));
                }
                Ok(fields)
            }
        }
        deserializer
            .deserialize_map(FieldsVisitor)
            .map_err(de::Error::custom)
    }
}

/// Splits delimited text into trimmed columns.
pub fn split_columns(text: &str, delimiter: char) -> Vec<&str> {
    text.trim().split(delimiter).map(str::trim).collect()
}

/// The delimiter a text payload most likely uses, if any.
pub fn guess_delimiter(text: &str) -> Option<char> {
    ['|', ',', ';', '\t']
        .into_iter()
        .find(|d| text.contains(*d))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key given twice, or a number beyond f64, is refused by name on
    /// both paths (the scanner's and serde's), never read one way here and
    /// another way elsewhere; the check stays fast for wide objects.
    #[test]
    fn repeated_keys_and_out_of_range_numbers_are_refused_by_name() {
        for (json, expected) in [
            (
                r#"{"temperature": 1, "temperature": 2}"#.to_owned(),
                "field `temperature` appears twice",
            ),
            (
                r#"{"t": 1, "x": {"a": 1}, "t": 2}"#.to_owned(),
                "field `t` appears twice",
            ),
            (
                r#"{"temperature": 1e400}"#.to_owned(),
                "field `temperature` = 1e400 is out of range",
            ),
            (
                r#"{"temperature": -1e999}"#.to_owned(),
                "= -1e999 is out of range",
            ),
        ] {
            let error = ObjectFields::from_json(json.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{json}: {error}");
        }
        let wide: Vec<String> = (0..5000)
            .map(|index| format!("\"k{index}\": {index}"))
            .collect();
        let wide = format!("{{{}}}", wide.join(","));
        let fields = ObjectFields::from_json(wide.as_bytes()).unwrap();
        assert_eq!(fields.entries().len(), 5000);
        assert_eq!(fields.repeated_key(), None);
        let repeated = wide.replace("\"k4999\"", "\"k17\"");
        let error = ObjectFields::from_json(repeated.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(error.contains("field `k17` appears twice"), "{error}");
    }

    /// An object read in place from its escaped form (an SQS body as its
    /// event carries it) has the fields it has once unescaped; what the
    /// in-place reader does not know is left to the ordinary path.
    #[test]
    fn objects_read_in_place_from_their_escaped_text_match_the_unescaped_read() {
        let payloads = [
            "{\n    \"timestamp\": 1645938000,\n    \"device\": \"temp-sensor-001\",\n    \"temperature\": 17.013\n}",
            "{\n\"name\": \"cpu usage (raspberrypi-001)\",\n\"unit\": \"Percent\",\n\"value\": \"1 \",\n\"client_id\": \"raspberrypi-001\"\n}",
            "{\"co2\":415,\"ok\":true,\"bad\":false,\"none\":null,\"t\":-1.5e-3}",
            "\t{ \"a\" :\r\n 1 , \"b\":\"x y\" }\n",
            "{}",
            "{\"nested\": {\"a\": [1, 2]}, \"b\": 2}",
            "{\"quote\": \"say \\\"hi\\\"\", \"path\": \"a/b\"}",
            "{\"accent\": \"température\", \"é\": 1}",
            "[{\"a\": 1}]",
            "17.5",
        ];
        let mut read_in_place = 0;
        let mut checked = 0;
        for payload in payloads {
            for text in std::iter::once(payload.to_owned())
                .chain(crate::json::scanner::mutations(payload, 300))
            {
                let quoted = serde_json::to_string(&text).unwrap();
                let escaped = &quoted[1..quoted.len() - 1];
                let plain = ObjectFields::from_json(text.as_bytes());
                checked += 1;
                match (ObjectFields::from_escaped_json(escaped), plain) {
                    (None, _) => {}
                    (Some(in_place), Ok(plain)) => {
                        assert_eq!(in_place.entries(), plain.entries(), "{text:?}");
                        read_in_place += 1;
                    }
                    (Some(in_place), Err(error)) => {
                        panic!("{text:?}: read in place as {in_place:?}, refused once unescaped: {error}")
                    }
                }
            }
        }
        // The reference shapes and harmless damage take the in-place path.
        for payload in &payloads[..5] {
            let quoted = serde_json::to_string(payload).unwrap();
            assert!(
                ObjectFields::from_escaped_json(&quoted[1..quoted.len() - 1]).is_some(),
                "{payload:?}"
            );
        }
        assert!(
            read_in_place > 300,
            "{read_in_place} of {checked} read in place"
        );
    }

    /// The key signature only ever skips a walk that would find nothing:
    /// `get` answers like a plain search, for keys present and absent.
    #[test]
    fn get_answers_like_a_plain_search() {
        let mut keys: Vec<String> = [
            "device",
            "device_id",
            "deviceId",
            "ts",
            "time",
            "timestamp",
            "topic",
            "client_id",
            "clientid",
            "received_at",
            "data",
            "name",
            "value",
            "unit",
            "",
            "t\u{e9}xt",
            "x",
        ]
        .iter()
        .map(|key| key.to_string())
        .collect();
        keys.extend((0..200).map(|i| format!("k{i}")));
        keys.extend((b'a'..=b'z').map(|letter| String::from(letter as char).repeat(3)));
        for present in [0, 1, 3, 9, 40, keys.len()] {
            let fields = ObjectFields::new(
                keys.iter()
                    .step_by(keys.len() / present.max(1))
                    .take(present)
                    .enumerate()
                    .map(|(i, key)| (Cow::Owned(key.clone()), Field::Int(i as i64)))
                    .collect(),
            );
            for key in &keys {
                let plain = fields
                    .entries()
                    .iter()
                    .find(|(name, _)| name == key)
                    .map(|(_, f)| f);
                assert_eq!(fields.get(key), plain, "{key:?} among {present} keys");
            }
        }
    }

    #[test]
    fn scanned_objects_equal_serde_ones_even_when_damaged() {
        let payloads = [
            "{\n    \"timestamp\": 1645938000,\n    \"device\": \"temp-sensor-001\",\n    \"temperature\": 17.25\n}",
            r#"{"name":"cpu","unit":"Percent","value":"42 ","ok":true,"none":null,"n":{"a":[1,2]},"big":12345678901234567890,"e":-1.5e3,"t\u00e9xt":"\"q\""}"#,
        ];
        let mut accepted = 0;
        for payload in payloads {
            let mut cases = crate::json::scanner::mutations(payload, 1500);
            cases.push(payload.to_owned());
            for case in cases {
                let Ok(scanned) = ObjectFields::scan(&case) else {
                    continue;
                };
                accepted += 1;
                let serde: ObjectFields = serde_json::from_str(&case)
                    .unwrap_or_else(|error| panic!("{case}: scanned, serde says {error}"));
                assert_eq!(format!("{scanned:?}"), format!("{serde:?}"), "{case}");
            }
        }
        assert!(accepted > 200, "only {accepted} payloads scanned");
    }

    #[test]
    fn splits_an_object_without_copying_plain_strings() {
        let payload = br#"{"device":"t-1","temperature":17.5,"ok":true,"meta":{"fw":"1.2"},"n":null,"q":"a\"b"}"#;
        let fields: ObjectFields = serde_json::from_slice(payload).unwrap();
        assert!(matches!(
            fields.get("device"),
            Some(Field::Text(Cow::Borrowed("t-1")))
        ));
        assert_eq!(fields.get("temperature"), Some(&Field::Number(17.5)));
        let ids: ObjectFields =
            serde_json::from_slice(br#"{"id": 1419657712345678848, "n": 3, "e": 1e3}"#).unwrap();
        assert_eq!(ids.get("id"), Some(&Field::Int(1_419_657_712_345_678_848)));
        assert_eq!(ids.get("n").unwrap().as_number(), Some(3.0));
        assert_eq!(ids.get("e"), Some(&Field::Number(1000.0)));
        assert_eq!(fields.get("ok"), Some(&Field::Bool(true)));
        assert_eq!(fields.get("n"), Some(&Field::Null));
        assert_eq!(fields.get("q").unwrap().as_text().unwrap(), "a\"b");
        assert_eq!(
            fields.pointer("/meta/fw"),
            Some(Field::Text(Cow::Owned("1.2".into())))
        );
        assert_eq!(fields.pointer("/missing"), None);
    }

    #[test]
    fn numeric_text_is_trimmed() {
        assert_eq!(Field::Text(Cow::Borrowed("42 ")).as_number(), Some(42.0));
        assert_eq!(Field::Text(Cow::Borrowed("n/a")).as_number(), None);
    }

    #[test]
    fn columns_and_delimiters() {
        assert_eq!(
            split_columns("2020-7-13 22:43:23|3500\n", '|'),
            vec!["2020-7-13 22:43:23", "3500"]
        );
        assert_eq!(guess_delimiter("a,b"), Some(','));
        assert_eq!(guess_delimiter("3500"), None);
    }
}
