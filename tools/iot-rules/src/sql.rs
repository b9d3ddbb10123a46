//! AWS IoT SQL (version 2016-03-23), the part rule authors write most:
//! `SELECT` of `*`, fields, nested paths and aliases; `FROM` a topic filter
//! with `+` and `#`; `WHERE` with comparisons, `AND`/`OR`/`NOT` and
//! parentheses; the functions `topic()`, `topic(n)`, `clientid()`,
//! `timestamp()`, `encode(*, 'base64')`, `newuuid()`, `get()`, `cast()`,
//! `lower()`, `upper()`, `concat()`. Parsing is `sqlparser`'s; anything it
//! accepts that is not in that list is refused here, by name, when the rule
//! is loaded, never guessed at.
//!
//! Values follow AWS IoT's rules: a field that is not there is *Undefined*,
//! which a `SELECT` leaves out of its result and a `WHERE` treats as false.

use base64::Engine;
use serde_json::{Map, Number, Value};
use sqlparser::ast::{
    self, BinaryOperator, CastKind, DataType, FunctionArg, FunctionArgExpr, FunctionArguments,
    SelectItem, SetExpr, Statement, TableFactor, UnaryOperator,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

/// A rule's query, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleQuery {
    pub projections: Vec<Projection>,
    pub topic_filter: String,
    pub condition: Option<Expr>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Projection {
    /// `*`: every field of the JSON payload (or the payload itself).
    All,
    Field {
        expr: Expr,
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Literal(Value),
    /// `a.b.c` in the payload.
    Path(Vec<String>),
    /// `*` as a function's argument: the whole payload.
    Payload,
    Not(Box<Expr>),
    Negate(Box<Expr>),
    Binary(Box<Expr>, BinaryOp, Box<Expr>),
    IsNull {
        expr: Box<Expr>,
        negated: bool,
    },
    Call(Function, Vec<Expr>),
    Cast(Box<Expr>, CastType),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BinaryOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    And,
    Or,
    Plus,
    Minus,
    Multiply,
    Divide,
    Modulo,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Function {
    Topic,
    ClientId,
    Timestamp,
    Encode,
    NewUuid,
    Get,
    Lower,
    Upper,
    Concat,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CastType {
    Int,
    Decimal,
    String,
    Bool,
}

/// What a rule sees of one MQTT message.
pub struct Message<'a> {
    pub topic: &'a str,
    pub client_id: &'a str,
    pub timestamp_ms: i64,
    pub payload: &'a [u8],
    /// The payload parsed as JSON, when it is JSON.
    pub json: Option<&'a Value>,
}

const SUPPORTED: &str = "SELECT of *, fields, nested paths and aliases; FROM '<topic filter>'; WHERE with comparisons, AND/OR/NOT, parentheses; topic(), topic(n), clientid(), timestamp(), encode(*, 'base64'), newuuid(), get(), cast(), lower(), upper(), concat()";

/// Parses and checks a rule's SQL; the error names the unsupported piece.
pub fn parse_rule(sql: &str) -> Result<RuleQuery, String> {
    let (sql, topic_filter) = take_topic_filter(sql)?;
    let statements =
        Parser::parse_sql(&GenericDialect {}, &sql).map_err(|error| error.to_string())?;
    let [Statement::Query(query)] = statements.as_slice() else {
        return Err("one SELECT statement".into());
    };
    if query.with.is_some() || query.order_by.is_some() || query.limit_clause.is_some() {
        return Err(format!(
            "unsupported clause in {query}; supported: {SUPPORTED}"
        ));
    }
    let SetExpr::Select(select) = query.body.as_ref() else {
        return Err(format!("unsupported query {query}; supported: {SUPPORTED}"));
    };
    let extra = select.distinct.is_some()
        || select.top.is_some()
        || select.having.is_some()
        || !select.lateral_views.is_empty()
        || !matches!(&select.group_by, ast::GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty());
    if extra || select.from.len() != 1 || !select.from[0].joins.is_empty() {
        return Err(format!(
            "unsupported clause in {select}; supported: {SUPPORTED}"
        ));
    }
    match &select.from[0].relation {
        TableFactor::Table {
            name,
            alias: None,
            args: None,
            ..
        } if name.to_string() == TOPIC_PLACEHOLDER => {}
        other => {
            return Err(format!(
                "FROM {other}: give a topic filter in single quotes"
            ))
        }
    }
    let projections = select
        .projection
        .iter()
        .map(projection)
        .collect::<Result<Vec<_>, _>>()?;
    let condition = select.selection.as_ref().map(expression).transpose()?;
    Ok(RuleQuery {
        projections,
        topic_filter,
        condition,
    })
}

const TOPIC_PLACEHOLDER: &str = "iotpipe_rule_topic";

/// AWS IoT writes `FROM 'a/+/b'`; standard SQL wants a name there. The
/// quoted filter is taken out and a placeholder name put in its place.
fn take_topic_filter(sql: &str) -> Result<(String, String), String> {
    let bytes = sql.as_bytes();
    let mut index = 0;
    let mut in_quote = false;
    while index < bytes.len() {
        match bytes[index] {
            b'\'' => in_quote = !in_quote,
            // Bytes, not `str` slices: `index` may sit inside a multi-byte
            // character (found by the rule_sql fuzz target).
            _ if !in_quote
                && bytes.len() - index >= 4
                && bytes[index..index + 4].eq_ignore_ascii_case(b"from")
                && (index == 0 || !is_word(bytes[index - 1]))
                && bytes.get(index + 4).is_some_and(|b| !is_word(*b)) =>
            {
                let rest = sql[index + 4..].trim_start();
                let start = sql.len() - rest.len();
                let Some(quoted) = rest.strip_prefix('\'') else {
                    return Err("FROM must name a topic filter in single quotes, e.g. FROM 'devices/+/telemetry'".into());
                };
                let end = quoted
                    .find('\'')
                    .ok_or_else(|| "FROM: the topic filter's quote is not closed".to_owned())?;
                let filter = quoted[..end].to_owned();
                check_filter(&filter)?;
                let after = start + 1 + end + 1;
                let rewritten =
                    format!("{}FROM {TOPIC_PLACEHOLDER}{}", &sql[..index], &sql[after..]);
                return Ok((rewritten, filter));
            }
            _ => {}
        }
        index += 1;
    }
    Err("no FROM '<topic filter>'".into())
}

fn is_word(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

fn check_filter(filter: &str) -> Result<(), String> {
    let levels: Vec<&str> = filter.split('/').collect();
    for (position, level) in levels.iter().enumerate() {
        let wildcard_misused = (level.contains('+') && *level != "+")
            || (level.contains('#') && (*level != "#" || position + 1 != levels.len()));
        if wildcard_misused {
            return Err(format!(
                "topic filter {filter:?}: '+' stands alone in a level, '#' only as the last level"
            ));
        }
    }
    if filter.is_empty() {
        return Err("an empty topic filter".into());
    }
    Ok(())
}

/// MQTT topic filter matching: `+` one level, `#` the rest.
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        match (level, topic_levels.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (expected, Some(actual)) if expected == actual => {}
            _ => return false,
        }
    }
    topic_levels.next().is_none()
}

fn projection(item: &SelectItem) -> Result<Projection, String> {
    match item {
        SelectItem::Wildcard(options) if options.to_string().trim().is_empty() => {
            Ok(Projection::All)
        }
        SelectItem::ExprWithAlias { expr, alias } => Ok(Projection::Field {
            expr: expression(expr)?,
            name: alias.value.clone(),
        }),
        SelectItem::UnnamedExpr(expr) => {
            let checked = expression(expr)?;
            let name = match &checked {
                Expr::Path(path) => path.last().cloned().unwrap_or_default(),
                // AWS names an unnamed function by the function.
                Expr::Call(function, _) => format!("{function:?}").to_lowercase(),
                _ => return Err(format!("SELECT {expr}: give it a name with AS")),
            };
            Ok(Projection::Field {
                expr: checked,
                name,
            })
        }
        other => Err(format!(
            "SELECT {other}: not supported; supported: {SUPPORTED}"
        )),
    }
}

fn expression(expr: &ast::Expr) -> Result<Expr, String> {
    use ast::Expr as E;
    Ok(match expr {
        E::Identifier(ident) => Expr::Path(vec![ident.value.clone()]),
        E::CompoundIdentifier(idents) => {
            Expr::Path(idents.iter().map(|i| i.value.clone()).collect())
        }
        E::Value(value) => Expr::Literal(literal(&value.value)?),
        E::Nested(inner) => expression(inner)?,
        E::UnaryOp {
            op: UnaryOperator::Not,
            expr,
        } => Expr::Not(Box::new(expression(expr)?)),
        E::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => Expr::Negate(Box::new(expression(expr)?)),
        E::BinaryOp { left, op, right } => {
            let op = match op {
                BinaryOperator::Eq => BinaryOp::Eq,
                BinaryOperator::NotEq => BinaryOp::NotEq,
                BinaryOperator::Lt => BinaryOp::Lt,
                BinaryOperator::LtEq => BinaryOp::LtEq,
                BinaryOperator::Gt => BinaryOp::Gt,
                BinaryOperator::GtEq => BinaryOp::GtEq,
                BinaryOperator::And => BinaryOp::And,
                BinaryOperator::Or => BinaryOp::Or,
                BinaryOperator::Plus => BinaryOp::Plus,
                BinaryOperator::Minus => BinaryOp::Minus,
                BinaryOperator::Multiply => BinaryOp::Multiply,
                BinaryOperator::Divide => BinaryOp::Divide,
                BinaryOperator::Modulo => BinaryOp::Modulo,
                other => {
                    return Err(format!(
                        "operator {other} in {expr}: not supported; supported: {SUPPORTED}"
                    ))
                }
            };
            Expr::Binary(
                Box::new(expression(left)?),
                op,
                Box::new(expression(right)?),
            )
        }
        E::IsNull(inner) => Expr::IsNull {
            expr: Box::new(expression(inner)?),
            negated: false,
        },
        E::IsNotNull(inner) => Expr::IsNull {
            expr: Box::new(expression(inner)?),
            negated: true,
        },
        E::Cast {
            kind: CastKind::Cast,
            expr: inner,
            data_type,
            format: None,
        } => {
            let target = match data_type {
                DataType::Int(_) | DataType::Integer(_) | DataType::BigInt(_) => CastType::Int,
                DataType::Decimal(_)
                | DataType::Double(_)
                | DataType::Float(_)
                | DataType::Real => CastType::Decimal,
                DataType::String(_) | DataType::Varchar(_) | DataType::Text => CastType::String,
                DataType::Boolean | DataType::Bool => CastType::Bool,
                other => return Err(format!("cast to {other}: use Int, Decimal, String or Bool")),
            };
            Expr::Cast(Box::new(expression(inner)?), target)
        }
        E::Function(function) => call(function, expr)?,
        other => return Err(format!("{other}: not supported; supported: {SUPPORTED}")),
    })
}

fn literal(value: &ast::Value) -> Result<Value, String> {
    Ok(match value {
        ast::Value::Number(number, _) => serde_json::from_str::<Number>(number)
            .map(Value::Number)
            .map_err(|_| format!("the number {number}"))?,
        ast::Value::SingleQuotedString(text) | ast::Value::DoubleQuotedString(text) => {
            Value::String(text.clone())
        }
        ast::Value::Boolean(boolean) => Value::Bool(*boolean),
        ast::Value::Null => Value::Null,
        other => return Err(format!("the literal {other}: not supported")),
    })
}

fn call(function: &ast::Function, whole: &ast::Expr) -> Result<Expr, String> {
    let name = function.name.to_string().to_ascii_lowercase();
    let known = match name.as_str() {
        "topic" => Function::Topic,
        "clientid" => Function::ClientId,
        "timestamp" => Function::Timestamp,
        "encode" => Function::Encode,
        "newuuid" => Function::NewUuid,
        "get" => Function::Get,
        "lower" => Function::Lower,
        "upper" => Function::Upper,
        "concat" => Function::Concat,
        _ => {
            return Err(format!(
                "function {name}(): not supported; supported: {SUPPORTED}"
            ))
        }
    };
    let arguments = match &function.args {
        FunctionArguments::None => Vec::new(),
        FunctionArguments::List(list)
            if list.duplicate_treatment.is_none() && list.clauses.is_empty() =>
        {
            list.args
                .iter()
                .map(|argument| match argument {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)) => expression(expr),
                    FunctionArg::Unnamed(FunctionArgExpr::Wildcard) => Ok(Expr::Payload),
                    other => Err(format!("argument {other} in {whole}: not supported")),
                })
                .collect::<Result<Vec<_>, _>>()?
        }
        _ => return Err(format!("{whole}: not supported")),
    };
    let count = arguments.len();
    let arity_ok = match known {
        Function::Topic => count <= 1,
        Function::ClientId | Function::Timestamp | Function::NewUuid => count == 0,
        Function::Encode | Function::Get => count == 2,
        Function::Lower | Function::Upper => count == 1,
        Function::Concat => count >= 2,
    };
    if !arity_ok {
        return Err(format!("{whole}: wrong number of arguments for {name}()"));
    }
    if known == Function::Encode && arguments[1] != Expr::Literal(Value::String("base64".into())) {
        return Err(format!("{whole}: encode() supports only 'base64'"));
    }
    if arguments.contains(&Expr::Payload) && known != Function::Encode {
        return Err(format!("{whole}: * is an argument of encode() only"));
    }
    Ok(Expr::Call(known, arguments))
}

impl RuleQuery {
    /// The rule's output for `message`, `Ok(None)` when its topic does not
    /// match or its `WHERE` is not true, and an error when `SELECT *` with
    /// other fields meets a payload that is not a JSON object: there is
    /// nothing to merge the fields into, and dropping the payload would lose
    /// it, so the message is dead-lettered with that reason instead.
    pub fn evaluate(&self, message: &Message<'_>) -> Result<Option<Value>, String> {
        if !topic_matches(&self.topic_filter, message.topic) {
            return Ok(None);
        }
        if let Some(condition) = &self.condition {
            if evaluate(condition, message) != Some(Value::Bool(true)) {
                return Ok(None);
            }
        }
        // `SELECT *` alone of a payload that is not a JSON object passes the
        // payload on as it is.
        if let [Projection::All] = self.projections.as_slice() {
            return Ok(Some(match message.json {
                Some(json) => json.clone(),
                None => Value::String(String::from_utf8_lossy(message.payload).into_owned()),
            }));
        }
        if self.projections.contains(&Projection::All)
            && !matches!(message.json, Some(Value::Object(_)))
        {
            let kind = match message.json {
                None => "not JSON",
                Some(Value::Array(_)) => "a JSON array",
                Some(_) => "a JSON value that is not an object",
            };
            return Err(format!(
                "SELECT * with other fields needs a JSON object payload; this one is {kind}, which has no fields to merge them with"
            ));
        }
        let mut output = Map::new();
        for projection in &self.projections {
            match projection {
                Projection::All => {
                    if let Some(Value::Object(fields)) = message.json {
                        output.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
                    }
                }
                Projection::Field { expr, name } => {
                    if let Some(value) = evaluate(expr, message) {
                        output.insert(name.clone(), value);
                    }
                }
            }
        }
        Ok(Some(Value::Object(output)))
    }
}

/// One expression's value; `None` is AWS IoT's Undefined.
pub fn evaluate(expr: &Expr, message: &Message<'_>) -> Option<Value> {
    match expr {
        Expr::Literal(value) => Some(value.clone()),
        Expr::Path(path) => {
            let mut value = message.json?;
            for key in path {
                value = value.get(key)?;
            }
            Some(value.clone())
        }
        Expr::Payload => message.json.cloned(),
        Expr::Not(inner) => match evaluate(inner, message)? {
            Value::Bool(boolean) => Some(Value::Bool(!boolean)),
            _ => None,
        },
        Expr::Negate(inner) => number(-evaluate(inner, message)?.as_f64()?),
        Expr::IsNull { expr, negated } => {
            let is_null = matches!(evaluate(expr, message), Some(Value::Null));
            Some(Value::Bool(is_null != *negated))
        }
        Expr::Binary(left, op, right) => {
            binary(*op, evaluate(left, message), evaluate(right, message))
        }
        Expr::Cast(inner, target) => cast(evaluate(inner, message)?, *target),
        Expr::Call(function, arguments) => call_function(*function, arguments, message),
    }
}

fn number(value: f64) -> Option<Value> {
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        Some(Value::from(value as i64))
    } else {
        Number::from_f64(value).map(Value::Number)
    }
}

fn binary(op: BinaryOp, left: Option<Value>, right: Option<Value>) -> Option<Value> {
    let truth = |value: &Option<Value>| value.as_ref().and_then(Value::as_bool);
    match op {
        BinaryOp::And => match (truth(&left), truth(&right)) {
            (Some(false), _) | (_, Some(false)) => Some(Value::Bool(false)),
            (Some(true), Some(true)) => Some(Value::Bool(true)),
            _ => None,
        },
        BinaryOp::Or => match (truth(&left), truth(&right)) {
            (Some(true), _) | (_, Some(true)) => Some(Value::Bool(true)),
            (Some(false), Some(false)) => Some(Value::Bool(false)),
            _ => None,
        },
        _ => {
            let (left, right) = (left?, right?);
            let ordering = match (&left, &right) {
                (Value::Number(a), Value::Number(b)) => a.as_f64()?.partial_cmp(&b.as_f64()?),
                (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
                _ => None,
            };
            use std::cmp::Ordering::*;
            let compared =
                |accept: &[std::cmp::Ordering]| ordering.map(|o| Value::Bool(accept.contains(&o)));
            match op {
                BinaryOp::Eq => Some(Value::Bool(
                    ordering == Some(Equal) || (ordering.is_none() && left == right),
                )),
                BinaryOp::NotEq => Some(Value::Bool(
                    !(ordering == Some(Equal) || (ordering.is_none() && left == right)),
                )),
                BinaryOp::Lt => compared(&[Less]),
                BinaryOp::LtEq => compared(&[Less, Equal]),
                BinaryOp::Gt => compared(&[Greater]),
                BinaryOp::GtEq => compared(&[Greater, Equal]),
                arithmetic => {
                    let (a, b) = (left.as_f64()?, right.as_f64()?);
                    number(match arithmetic {
                        BinaryOp::Plus => a + b,
                        BinaryOp::Minus => a - b,
                        BinaryOp::Multiply => a * b,
                        BinaryOp::Divide if b != 0.0 => a / b,
                        BinaryOp::Modulo if b != 0.0 => a % b,
                        _ => return None,
                    })
                }
            }
        }
    }
}

fn cast(value: Value, target: CastType) -> Option<Value> {
    match target {
        CastType::Int => match &value {
            Value::Number(n) => number(n.as_f64()?.trunc()),
            Value::String(s) => number(s.trim().parse::<f64>().ok()?.trunc()),
            Value::Bool(b) => Some(Value::from(i64::from(*b))),
            _ => None,
        },
        CastType::Decimal => match &value {
            Value::Number(_) => Some(value),
            Value::String(s) => Number::from_f64(s.trim().parse().ok()?).map(Value::Number),
            Value::Bool(b) => Some(Value::from(f64::from(u8::from(*b)))),
            _ => None,
        },
        CastType::String => Some(Value::String(match value {
            Value::String(s) => s,
            other => other.to_string(),
        })),
        CastType::Bool => match &value {
            Value::Bool(_) => Some(value),
            Value::Number(n) => Some(Value::Bool(n.as_f64()? != 0.0)),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Some(Value::Bool(true)),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Some(Value::Bool(false)),
            _ => None,
        },
    }
}

fn call_function(function: Function, arguments: &[Expr], message: &Message<'_>) -> Option<Value> {
    let argument = |index: usize| evaluate(&arguments[index], message);
    match function {
        Function::Topic => match arguments.first() {
            None => Some(Value::from(message.topic)),
            Some(_) => {
                let level = argument(0)?.as_u64()? as usize;
                message
                    .topic
                    .split('/')
                    .nth(level.checked_sub(1)?)
                    .map(Value::from)
            }
        },
        Function::ClientId => Some(Value::from(message.client_id)),
        Function::Timestamp => Some(Value::from(message.timestamp_ms)),
        Function::Encode => {
            let bytes = match &arguments[0] {
                Expr::Payload => message.payload.to_vec(),
                _ => match argument(0)? {
                    Value::String(text) => text.into_bytes(),
                    other => other.to_string().into_bytes(),
                },
            };
            Some(Value::from(
                base64::engine::general_purpose::STANDARD.encode(bytes),
            ))
        }
        Function::NewUuid => {
            let bits: u128 = rand::random();
            // Version 4, variant 1.
            let bits = (bits & !(0xF << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
            let hex = format!("{bits:032x}");
            Some(Value::from(format!(
                "{}-{}-{}-{}-{}",
                &hex[0..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..32]
            )))
        }
        Function::Get => {
            let container = argument(0)?;
            match (container, argument(1)?) {
                (Value::Array(items), Value::Number(index)) => {
                    items.get(index.as_u64()? as usize).cloned()
                }
                (Value::Object(fields), Value::String(key)) => fields.get(&key).cloned(),
                _ => None,
            }
        }
        Function::Lower => Some(Value::from(argument(0)?.as_str()?.to_lowercase())),
        Function::Upper => Some(Value::from(argument(0)?.as_str()?.to_uppercase())),
        Function::Concat => {
            let values: Vec<Value> = (0..arguments.len()).map(argument).collect::<Option<_>>()?;
            if values.iter().any(Value::is_array) {
                let mut items = Vec::new();
                for value in values {
                    match value {
                        Value::Array(more) => items.extend(more),
                        other => items.push(other),
                    }
                }
                Some(Value::Array(items))
            } else {
                Some(Value::from(
                    values
                        .into_iter()
                        .map(|value| match value {
                            Value::String(text) => text,
                            other => other.to_string(),
                        })
                        .collect::<String>(),
                ))
            }
        }
    }
}

/// An expression inside `${...}` of an action's substitution template
/// (e.g. Kinesis `PartitionKey: "${topic(2)}"`).
pub fn parse_expression(text: &str) -> Result<Expr, String> {
    let mut parser = Parser::new(&GenericDialect {})
        .try_with_sql(text)
        .map_err(|error| error.to_string())?;
    let expr = parser.parse_expr().map_err(|error| error.to_string())?;
    expression(&expr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(sql: &str, topic: &str, payload: &str) -> Option<Value> {
        let query = parse_rule(sql).unwrap_or_else(|error| panic!("{sql}: {error}"));
        let json: Option<Value> = serde_json::from_str(payload).ok();
        query
            .evaluate(&Message {
                topic,
                client_id: "pi-1",
                timestamp_ms: 1_645_938_060_000,
                payload: payload.as_bytes(),
                json: json.as_ref(),
            })
            .unwrap_or_else(|error| Some(Value::String(format!("refused: {error}"))))
    }

    #[test]
    fn topic_filters_match_as_mqtt_does() {
        for (filter, topic, expected) in [
            ("devices/+/telemetry", "devices/pi-1/telemetry", true),
            ("devices/+/telemetry", "devices/pi-1/status", false),
            ("devices/+/telemetry", "devices/a/b/telemetry", false),
            ("devices/#", "devices/a/b/telemetry", true),
            ("devices/#", "devices", true),
            ("+/telemetry", "nightlight-1/telemetry", true),
            ("a/b", "a/b/c", false),
        ] {
            assert_eq!(topic_matches(filter, topic), expected, "{filter} {topic}");
        }
    }

    #[test]
    fn the_templates_select_star_with_topic_clientid_and_timestamp() {
        let sql = "SELECT *, topic() AS topic, clientid() AS client_id, timestamp() AS received_at FROM 'devices/+/telemetry'";
        assert_eq!(
            run(sql, "devices/pi-1/telemetry", r#"{"light": 250}"#),
            Some(
                json!({"light": 250, "topic": "devices/pi-1/telemetry", "client_id": "pi-1", "received_at": 1_645_938_060_000i64})
            )
        );
        assert_eq!(run(sql, "devices/pi-1/status", r#"{"light": 250}"#), None);
    }

    #[test]
    fn the_templates_base64_rule_for_text_payloads() {
        let sql = "SELECT encode(*, 'base64') AS data, topic() AS topic FROM 'devices/+/text'";
        assert_eq!(
            run(sql, "devices/co2-1/text", "2020-7-13 22:43:23|3500"),
            Some(
                json!({"data": "MjAyMC03LTEzIDIyOjQzOjIzfDM1MDA=", "topic": "devices/co2-1/text"})
            )
        );
    }

    #[test]
    fn fields_paths_aliases_and_where() {
        let payload = r#"{"state": {"reported": {"temp": 31.5, "mode": "Auto"}}, "light": 120, "tags": ["a", "b"]}"#;
        let cases: &[(&str, Option<Value>)] = &[
            ("SELECT light FROM 't'", Some(json!({"light": 120}))),
            ("SELECT state.reported.temp AS t FROM 't'", Some(json!({"t": 31.5}))),
            ("SELECT state.reported.temp FROM 't'", Some(json!({"temp": 31.5}))),
            ("SELECT missing, light FROM 't'", Some(json!({"light": 120}))),
            ("SELECT light FROM 't' WHERE light < 300", Some(json!({"light": 120}))),
            ("SELECT light FROM 't' WHERE light >= 300", None),
            ("SELECT light FROM 't' WHERE NOT (light > 300) AND state.reported.mode = 'Auto'", Some(json!({"light": 120}))),
            ("SELECT light FROM 't' WHERE light > 300 OR state.reported.temp > 30", Some(json!({"light": 120}))),
            ("SELECT light FROM 't' WHERE missing > 3", None),
            ("SELECT light FROM 't' WHERE missing > 3 OR light = 120", Some(json!({"light": 120}))),
            ("SELECT light FROM 't' WHERE light <> 120", None),
            ("SELECT light * 2 + 1 AS x FROM 't'", Some(json!({"x": 241}))),
            ("SELECT lower(state.reported.mode) AS m, upper('x') AS u FROM 't'", Some(json!({"m": "auto", "u": "X"}))),
            ("SELECT concat('id-', light) AS id FROM 't'", Some(json!({"id": "id-120"}))),
            ("SELECT concat(tags, 'c') AS all FROM 't'", Some(json!({"all": ["a", "b", "c"]}))),
            ("SELECT get(tags, 1) AS second, get(state, 'reported') AS r FROM 't'", Some(json!({"second": "b", "r": {"temp": 31.5, "mode": "Auto"}}))),
            ("SELECT cast(state.reported.temp AS Int) AS i, cast(light AS String) AS s, cast('2.5' AS Decimal) AS d, cast(1 AS Bool) AS b FROM 't'",
                Some(json!({"i": 31, "s": "120", "d": 2.5, "b": true}))),
            ("SELECT topic(1) AS first, topic(2) AS second, topic(9) AS none FROM 't/#'", Some(json!({"first": "t", "second": "x"}))),
            ("SELECT light FROM 't' WHERE missing IS NULL", None),
            ("SELECT light FROM 't' WHERE light IS NOT NULL", Some(json!({"light": 120}))),
        ];
        for (sql, expected) in cases {
            let topic = if sql.contains("'t/#'") { "t/x" } else { "t" };
            assert_eq!(&run(sql, topic, payload), expected, "{sql}");
        }
    }

    #[test]
    fn aws_documented_examples() {
        // https://docs.aws.amazon.com/iot/latest/developerguide/iot-sql-functions.html
        assert_eq!(
            run("SELECT topic(3) AS t FROM 'a/b/c'", "a/b/c", "{}"),
            Some(json!({"t": "c"}))
        );
        assert_eq!(
            run("SELECT concat('hello', 'world') AS c FROM 'a'", "a", "{}"),
            Some(json!({"c": "helloworld"}))
        );
        let uuid = run("SELECT newuuid() AS id FROM 'a'", "a", "{}").unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "4", "{uuid}");
        assert_eq!(
            run("SELECT encode(*, 'base64') AS b FROM 'a'", "a", "hello"),
            Some(json!({"b": "aGVsbG8="}))
        );
        assert_eq!(
            run("SELECT * FROM 'a'", "a", "not json"),
            Some(json!("not json"))
        );
        assert_eq!(run("SELECT * FROM 'a'", "a", "[1, 2]"), Some(json!([1, 2])));
    }

    #[test]
    fn star_with_fields_refuses_what_it_cannot_merge_rather_than_drop_it() {
        let sql = "SELECT *, topic() AS topic FROM 'a'";
        for (payload, kind) in [
            (r#"[{"t": 1}, {"t": 2}]"#, "a JSON array"),
            ("not json", "not JSON"),
            ("42", "not an object"),
        ] {
            let answer = run(sql, "a", payload).unwrap();
            let text = answer.as_str().unwrap_or_default();
            assert!(
                text.starts_with("refused:") && text.contains(kind),
                "{payload}: {answer}"
            );
        }
    }

    #[test]
    fn anything_else_is_refused_by_name() {
        for (sql, named) in [
            ("SELECT * FROM 'a' WHERE sqrt(x) > 1", "sqrt"),
            ("SELECT x FROM 'a' GROUP BY x", "unsupported clause"),
            ("SELECT x FROM 'a' ORDER BY x", "unsupported clause"),
            ("SELECT x FROM 'a' WHERE x LIKE 'y%'", "LIKE"),
            ("SELECT x FROM a", "single quotes"),
            ("SELECT x FROM 'a/b+'", "'+' stands alone"),
            ("SELECT x FROM 'a/#/b'", "'#' only as the last level"),
            ("SELECT encode(*, 'hex') AS h FROM 'a'", "only 'base64'"),
            (
                "SELECT lower(*) AS l FROM 'a'",
                "* is an argument of encode() only",
            ),
            ("SELECT cast(x AS Date) AS d FROM 'a'", "cast to DATE"),
            ("SELECT x + 1 FROM 'a'", "give it a name with AS"),
            (
                "SELECT topic(1, 2) AS t FROM 'a'",
                "wrong number of arguments",
            ),
            ("SELECT get(['a', 'b'], 1) AS g FROM 'a'", "not supported"),
        ] {
            let error = parse_rule(sql).expect_err(sql);
            assert!(error.contains(named), "{sql} => {error}");
        }
    }
}
