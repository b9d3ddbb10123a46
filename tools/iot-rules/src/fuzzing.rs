//! The check the rule SQL's fuzz target (`fuzz/fuzz_targets/rule_sql.rs`)
//! runs on arbitrary bytes, and `cargo test` on its saved inputs: a rule
//! parses or is refused with an error, and a parsed rule evaluates every
//! kind of message (JSON, text, nested) to an output, nothing, or an
//! error, never a panic.

use serde_json::Value;

use crate::sql::{parse_rule, Message};

pub fn rule_sql(data: &[u8]) {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(rule) = parse_rule(sql) else {
        return;
    };
    let json: Value = serde_json::json!({
        "device": "t-1", "temperature": 17.5, "led": true, "name": null,
        "nested": {"a": [1, 2.5, "x", {"b": -3}]}, "readings": [{"t": 1}]
    });
    let array = serde_json::json!([1, 2, 3]);
    let text = b"2020-7-13 22:43:23|3500";
    for (topic, payload, json) in [
        ("devices/t-1/telemetry", &b"{}"[..], Some(&json)),
        ("devices/t-1/text", &text[..], None),
        ("a/b/c/d/e/f", &b"[1,2,3]"[..], Some(&array)),
        ("", &b""[..], None),
    ] {
        let message = Message {
            topic,
            client_id: "t-1",
            timestamp_ms: 1_645_938_300_000,
            payload,
            json,
        };
        let _ = rule.evaluate(&message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_saved_fuzz_inputs_still_pass() {
        let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
        let mut inputs = Vec::new();
        for kind in ["corpus", "regressions"] {
            if let Ok(entries) = std::fs::read_dir(fuzz.join(kind).join("rule_sql")) {
                inputs.extend(entries.filter_map(Result::ok).map(|entry| entry.path()));
            }
        }
        assert!(!inputs.is_empty(), "fuzz/corpus/rule_sql is empty");
        for input in inputs {
            let data = std::fs::read(&input).unwrap();
            let outcome = std::panic::catch_unwind(|| rule_sql(&data));
            assert!(outcome.is_ok(), "{} fails again", input.display());
        }
    }

    /// SQL-shaped text: the template's rules with pieces cut, doubled or
    /// swapped for SQL punctuation and functions.
    fn sql_text() -> impl Strategy<Value = String> {
        let pieces = prop_oneof![
            Just("SELECT ".to_owned()),
            Just("*, ".to_owned()),
            Just("topic(2) AS t".to_owned()),
            Just(" FROM 'devices/+/telemetry'".to_owned()),
            Just(" WHERE ".to_owned()),
            Just("temperature > 20 AND NOT led".to_owned()),
            Just("cast(temperature AS Int)".to_owned()),
            Just("encode(*, 'base64') AS data".to_owned()),
            Just("get(nested.a, 3).b".to_owned()),
            Just("concat(device, '-', upper(name))".to_owned()),
            Just("(((1 + 2) * 3) / 0)".to_owned()),
            Just(" IS NOT NULL".to_owned()),
            "[a-z_(),.*'+#/ 0-9<>=!-]{0,12}",
        ];
        proptest::collection::vec(pieces, 0..12).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn rules_never_panic(sql in sql_text()) {
            rule_sql(sql.as_bytes());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            rule_sql(&bytes);
        }
    }
}
