//! A command rule's `when`: comparisons of a message's readings joined by
//! `AND`, `OR` and `NOT`, with parentheses (`light < 300`,
//! `temperature >= 30 AND (humidity > 80 OR smoke == 1)`). Names are metric
//! names; one with spaces or other characters is written in backticks
//! (`` `cpu usage (pi)` > 90 ``).

use std::fmt;

/// A parsed condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Compare {
        left: Operand,
        op: Comparison,
        right: Operand,
    },
    And(Box<Condition>, Box<Condition>),
    Or(Box<Condition>, Box<Condition>),
    Not(Box<Condition>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Metric(String),
    Number(f64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    Equal,
    NotEqual,
}

/// A condition that cannot be read; says where and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("condition {text:?}: {why} at character {at}")]
pub struct ConditionError {
    pub text: String,
    pub at: usize,
    pub why: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Name(String),
    Number(f64),
    Op(Comparison),
    And,
    Or,
    Not,
    Open,
    Close,
}

fn tokens(text: &str) -> Result<Vec<(usize, Token)>, ConditionError> {
    let fail = |at: usize, why: &str| ConditionError {
        text: text.to_owned(),
        at,
        why: why.to_owned(),
    };
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let start = at;
        let byte = bytes[at];
        let two = bytes.get(at..at + 2).unwrap_or(&[]);
        let (token, length) = match byte {
            b' ' | b'\t' | b'\n' | b'\r' => {
                at += 1;
                continue;
            }
            b'(' => (Token::Open, 1),
            b')' => (Token::Close, 1),
            _ if two == b"<=" => (Token::Op(Comparison::LessOrEqual), 2),
            _ if two == b">=" => (Token::Op(Comparison::GreaterOrEqual), 2),
            _ if two == b"==" => (Token::Op(Comparison::Equal), 2),
            _ if two == b"!=" || two == b"<>" => (Token::Op(Comparison::NotEqual), 2),
            b'<' => (Token::Op(Comparison::Less), 1),
            b'>' => (Token::Op(Comparison::Greater), 1),
            b'=' => (Token::Op(Comparison::Equal), 1),
            b'`' => {
                let end = text[at + 1..]
                    .find('`')
                    .ok_or_else(|| fail(at, "a name in backticks is not closed"))?;
                let name = &text[at + 1..at + 1 + end];
                (Token::Name(name.to_owned()), end + 2)
            }
            b'0'..=b'9' | b'-' | b'.' => {
                let length = text[at..]
                    .find(|c: char| {
                        !(c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E'))
                    })
                    .unwrap_or(text.len() - at);
                let number: f64 = text[at..at + length]
                    .parse()
                    .map_err(|_| fail(at, "not a number"))?;
                (Token::Number(number), length)
            }
            b'A'..=b'Z' | b'a'..=b'z' | b'_' => {
                let length = text[at..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                    .unwrap_or(text.len() - at);
                let word = &text[at..at + length];
                let token = match word.to_ascii_uppercase().as_str() {
                    "AND" => Token::And,
                    "OR" => Token::Or,
                    "NOT" => Token::Not,
                    "TRUE" => Token::Number(1.0),
                    "FALSE" => Token::Number(0.0),
                    _ => Token::Name(word.to_owned()),
                };
                (token, length)
            }
            _ => return Err(fail(at, "unexpected character")),
        };
        out.push((start, token));
        at += length;
    }
    Ok(out)
}

/// Recursive descent: `or := and (OR and)*`, `and := not (AND not)*`,
/// `not := NOT not | ( or ) | operand op operand`.
struct Parser<'t> {
    text: &'t str,
    tokens: Vec<(usize, Token)>,
    next: usize,
}

impl Parser<'_> {
    fn fail(&self, why: &str) -> ConditionError {
        let at = self
            .tokens
            .get(self.next)
            .map_or(self.text.len(), |(at, _)| *at);
        ConditionError {
            text: self.text.to_owned(),
            at,
            why: why.to_owned(),
        }
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.next).map(|(_, token)| token)
    }

    fn or(&mut self) -> Result<Condition, ConditionError> {
        let mut left = self.and()?;
        while self.peek() == Some(&Token::Or) {
            self.next += 1;
            left = Condition::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Condition, ConditionError> {
        let mut left = self.not()?;
        while self.peek() == Some(&Token::And) {
            self.next += 1;
            left = Condition::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Condition, ConditionError> {
        match self.peek() {
            Some(Token::Not) => {
                self.next += 1;
                Ok(Condition::Not(Box::new(self.not()?)))
            }
            Some(Token::Open) => {
                self.next += 1;
                let inner = self.or()?;
                if self.peek() != Some(&Token::Close) {
                    return Err(self.fail("expected `)`"));
                }
                self.next += 1;
                Ok(inner)
            }
            _ => {
                let left = self.operand()?;
                let op = match self.peek() {
                    Some(Token::Op(op)) => *op,
                    _ => return Err(self.fail("expected a comparison (<, <=, >, >=, ==, !=)")),
                };
                self.next += 1;
                let right = self.operand()?;
                Ok(Condition::Compare { left, op, right })
            }
        }
    }

    fn operand(&mut self) -> Result<Operand, ConditionError> {
        let operand = match self.peek() {
            Some(Token::Name(name)) => Operand::Metric(name.clone()),
            Some(Token::Number(number)) => Operand::Number(*number),
            _ => return Err(self.fail("expected a metric name or a number")),
        };
        self.next += 1;
        Ok(operand)
    }
}

impl Condition {
    pub fn parse(text: &str) -> Result<Condition, ConditionError> {
        let mut parser = Parser {
            text,
            tokens: tokens(text)?,
            next: 0,
        };
        if parser.tokens.is_empty() {
            return Err(parser.fail("the condition is empty"));
        }
        let condition = parser.or()?;
        if parser.next != parser.tokens.len() {
            return Err(parser.fail("unexpected text after the condition"));
        }
        Ok(condition)
    }

    /// The condition's value for a message's readings (`value_of(metric)`):
    /// `None` when a metric it reads is missing, so the rule does not apply
    /// (three-valued: `false AND missing` is false, `true OR missing` true).
    pub fn evaluate(&self, value_of: &impl Fn(&str) -> Option<f64>) -> Option<bool> {
        let values = value_of;
        match self {
            Condition::Compare { left, op, right } => {
                let value = |operand: &Operand| match operand {
                    Operand::Metric(name) => values(name),
                    Operand::Number(number) => Some(*number),
                };
                let (left, right) = (value(left)?, value(right)?);
                Some(match op {
                    Comparison::Less => left < right,
                    Comparison::LessOrEqual => left <= right,
                    Comparison::Greater => left > right,
                    Comparison::GreaterOrEqual => left >= right,
                    Comparison::Equal => left == right,
                    Comparison::NotEqual => left != right,
                })
            }
            Condition::And(left, right) => match (left.evaluate(values), right.evaluate(values)) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            },
            Condition::Or(left, right) => match (left.evaluate(values), right.evaluate(values)) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            },
            Condition::Not(inner) => inner.evaluate(values).map(|value| !value),
        }
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Comparison::Less => "<",
            Comparison::LessOrEqual => "<=",
            Comparison::Greater => ">",
            Comparison::GreaterOrEqual => ">=",
            Comparison::Equal => "==",
            Comparison::NotEqual => "!=",
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// A condition, the readings it sees, and what it should say.
    type Case<'a> = (&'a str, &'a [(&'a str, f64)], Option<bool>);

    fn values(pairs: &[(&'static str, f64)]) -> impl Fn(&str) -> Option<f64> {
        let map: HashMap<&str, f64> = pairs.iter().copied().collect();
        move |name| map.get(name).copied()
    }

    #[test]
    fn conditions_evaluate_as_written() {
        let cases: &[Case<'static>] = &[
            ("light < 300", &[("light", 250.0)], Some(true)),
            ("light < 300", &[("light", 300.0)], Some(false)),
            ("light <= 300", &[("light", 300.0)], Some(true)),
            ("300 > light", &[("light", 299.5)], Some(true)),
            (
                "temp >= 30 AND humidity > 80",
                &[("temp", 31.0), ("humidity", 81.0)],
                Some(true),
            ),
            (
                "temp >= 30 AND humidity > 80",
                &[("temp", 31.0), ("humidity", 80.0)],
                Some(false),
            ),
            (
                "temp >= 30 and (humidity > 80 or smoke == 1)",
                &[("temp", 30.0), ("humidity", 10.0), ("smoke", 1.0)],
                Some(true),
            ),
            ("NOT light < 300", &[("light", 250.0)], Some(false)),
            ("a != 1 OR b = 2", &[("a", 1.0), ("b", 2.0)], Some(true)),
            (
                "`cpu usage (pi)` > 90",
                &[("cpu usage (pi)", 95.0)],
                Some(true),
            ),
            ("led == true", &[("led", 1.0)], Some(true)),
            ("x > -1.5e2", &[("x", -100.0)], Some(true)),
            // A missing metric: the rule does not apply...
            ("light < 300", &[("temperature", 20.0)], None),
            ("NOT light < 300", &[], None),
            // ...unless the rest decides it.
            ("light < 300 AND temp > 50", &[("temp", 20.0)], Some(false)),
            ("light < 300 OR temp > 50", &[("temp", 60.0)], Some(true)),
            ("light < 300 OR temp > 50", &[("temp", 20.0)], None),
        ];
        for (text, pairs, expected) in cases {
            let condition = Condition::parse(text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                condition.evaluate(&values(pairs)),
                *expected,
                "{text} with {pairs:?}"
            );
        }
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let condition = Condition::parse("a == 1 OR b == 1 AND c == 1").unwrap();
        assert_eq!(
            condition.evaluate(&values(&[("a", 1.0), ("b", 0.0), ("c", 0.0)])),
            Some(true)
        );
    }

    #[test]
    fn a_mistake_says_where_and_what_was_expected() {
        for (text, fragment) in [
            ("light <", "expected a metric name or a number"),
            ("light 300", "expected a comparison"),
            ("(light < 300", "expected `)`"),
            ("light < 300 300", "unexpected text"),
            ("light ~ 3", "unexpected character"),
            ("", "empty"),
            ("`open < 3", "not closed"),
        ] {
            let error = Condition::parse(text).unwrap_err().to_string();
            assert!(
                error.contains(fragment) && error.contains("character"),
                "{text}: {error}"
            );
        }
    }
}
