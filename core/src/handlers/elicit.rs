//! An MCP server's form (`elicitation/create`, SPEC §18) put to a person: field by field through
//! [`AskUserHandler::ask`] for hosts that ask questions, and the answers of hosts that show a whole form checked
//! against the requested schema.

use serde_json::Map;
use serde_json::Value;

use super::AskUserHandler;

/// How often a field is asked again after an answer that does not fit it.
const TRIES: usize = 3;

/// An MCP server's question (`elicitation/create`, `elicitation: ask`) put to a person one field at a time through
/// [`AskUserHandler::ask`]: each answer checked against the field's type and choices, Enter for its default.
/// Asks `handler` for every field of `schema` (a flat object schema, as elicitation allows); the answers as an
/// object, or `None` when the person gave no answer (declined) or could not give a valid one.
pub async fn by_questions<H: AskUserHandler + ?Sized>(
    handler: &H,
    message: &str,
    schema: &Value,
) -> Option<Value> {
    let properties = schema.get("properties").and_then(Value::as_object)?;
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut answers = Map::new();
    for (name, field) in properties {
        let is_required = required.contains(&name.as_str());
        let question = field_question(message, name, field, is_required);
        let mut value = None;
        for _ in 0..TRIES {
            let answer = handler.ask(&question).await?;
            match parse(answer.trim(), field) {
                // A required field left empty is asked again, like an answer that does not fit.
                Ok(None) if is_required => {}
                Ok(v) => {
                    value = Some(v);
                    break;
                }
                Err(()) => {}
            }
        }
        match value {
            Some(Some(v)) => {
                answers.insert(name.clone(), v);
            }
            // Left out (optional, no default).
            Some(None) => {}
            // No answer that fits after every try.
            None => return None,
        }
    }
    Some(Value::Object(answers))
}

/// The question for one field: the server's message, the field's title and description, its type or choices, and
/// what Enter gives.
fn field_question(message: &str, name: &str, field: &Value, required: bool) -> String {
    let title = field.get("title").and_then(Value::as_str).unwrap_or(name);
    let mut q = format!("{message}\n{title}");
    if let Some(d) = field.get("description").and_then(Value::as_str) {
        q.push_str(&format!(" ({d})"));
    }
    match choices(field) {
        Some(list) if is_list(field) => q.push_str(&format!(
            " — any of (separated by commas): {}",
            choice_list(&list)
        )),
        Some(list) => q.push_str(&format!(" — one of: {}", choice_list(&list))),
        None => {
            let kind = field
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("string");
            q.push_str(&format!(" — {kind}"));
        }
    }
    match field.get("default") {
        Some(d) => q.push_str(&format!("; Enter for {}", show(d))),
        None if !required => q.push_str("; Enter to leave it out"),
        None => {}
    }
    q
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A field's choices as (value, label): `enum` (with `enumNames`), `oneOf`/`anyOf` of `const` + `title`, and for a
/// list the same under `items`.
fn choices(field: &Value) -> Option<Vec<(String, String)>> {
    let field = if is_list(field) {
        field.get("items")?
    } else {
        field
    };
    if let Some(values) = field.get("enum").and_then(Value::as_array) {
        let names = field.get("enumNames").and_then(Value::as_array);
        return Some(
            values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let label = names
                        .and_then(|n| n.get(i))
                        .and_then(Value::as_str)
                        .map_or_else(|| show(v), str::to_owned);
                    (show(v), label)
                })
                .collect(),
        );
    }
    let options = field
        .get("oneOf")
        .or_else(|| field.get("anyOf"))
        .and_then(Value::as_array)?;
    Some(
        options
            .iter()
            .filter_map(|o| {
                let value = show(o.get("const")?);
                let label = o
                    .get("title")
                    .and_then(Value::as_str)
                    .map_or_else(|| value.clone(), str::to_owned);
                Some((value, label))
            })
            .collect(),
    )
}

/// Whether a field is a multi-select list (`type: array`).
fn is_list(field: &Value) -> bool {
    field.get("type").and_then(Value::as_str) == Some("array")
}

/// How the choices read in a question: `value` or `value (label)`.
fn choice_list(list: &[(String, String)]) -> String {
    list.iter()
        .map(|(v, l)| {
            if v == l {
                v.clone()
            } else {
                format!("{v} ({l})")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// An answer as the field's value: `Ok(None)` for an empty answer without a default, `Err` for one that does not
/// fit. A list takes its choices separated by commas.
fn parse(answer: &str, field: &Value) -> Result<Option<Value>, ()> {
    if answer.is_empty() {
        return Ok(field.get("default").cloned());
    }
    let value = if is_list(field) {
        Value::Array(
            answer
                .split(',')
                .map(|a| Value::String(a.trim().to_owned()))
                .filter(|a| a.as_str() != Some(""))
                .collect(),
        )
    } else {
        match field
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("string")
        {
            "integer" => answer.parse::<i64>().map(Value::from).map_err(|_| ())?,
            "number" => answer
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or(())?,
            "boolean" => match answer.to_ascii_lowercase().as_str() {
                "y" | "yes" | "true" => Value::Bool(true),
                "n" | "no" | "false" => Value::Bool(false),
                _ => return Err(()),
            },
            _ => Value::String(answer.to_owned()),
        }
    };
    check_field(&value, field)
        .map(|()| Some(value))
        .map_err(|_| ())
}

/// Checks a whole form's answers (`content`, from a host that shows forms) against the requested `schema`: every
/// field known, of its type and within its bounds and choices, every required field there; omitted fields take
/// their defaults. The answers as the server gets them, or what does not fit, in words for a person.
///
/// # Errors
/// The first field that does not fit, or a required one that is missing.
pub fn check_form(schema: &Value, content: Value) -> Result<Value, String> {
    let Value::Object(mut answers) = content else {
        return Err("the answer is not a form's fields (an object)".to_owned());
    };
    let empty = Map::new();
    let properties = schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    if let Some(unknown) = answers.keys().find(|k| !properties.contains_key(*k)) {
        return Err(format!("the form has no field `{unknown}`"));
    }
    for (name, field) in properties {
        if !answers.contains_key(name)
            && let Some(default) = field.get("default")
        {
            answers.insert(name.clone(), default.clone());
        }
    }
    let required = schema.get("required").and_then(Value::as_array);
    for name in required.into_iter().flatten().filter_map(Value::as_str) {
        if !answers.contains_key(name) {
            return Err(format!("`{name}` is required"));
        }
    }
    for (name, value) in &answers {
        if let Some(field) = properties.get(name) {
            check_field(value, field).map_err(|why| format!("`{name}` {why}"))?;
        }
    }
    Ok(Value::Object(answers))
}

/// One field's value against its schema: type, choices, length, bounds, list size.
fn check_field(value: &Value, field: &Value) -> Result<(), String> {
    if let Some(list) = choices(field) {
        let allowed = |v: &Value| list.iter().any(|(c, _)| *c == show(v));
        let fits = match value {
            Value::Array(items) if is_list(field) => items.iter().all(allowed),
            other if !is_list(field) => allowed(other),
            _ => false,
        };
        if !fits {
            return Err(format!("must be one of: {}", choice_list(&list)));
        }
    }
    let kind = field
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("string");
    let bound = |key: &str| field.get(key).and_then(Value::as_f64);
    match (kind, value) {
        ("string", Value::String(s)) => {
            let chars = s.chars().count() as f64;
            if bound("minLength").is_some_and(|m| chars < m) {
                return Err(format!(
                    "must be at least {} characters",
                    show(&field["minLength"])
                ));
            }
            if bound("maxLength").is_some_and(|m| chars > m) {
                return Err(format!(
                    "must be at most {} characters",
                    show(&field["maxLength"])
                ));
            }
        }
        ("integer", Value::Number(n)) if n.is_i64() || n.is_u64() => {}
        ("number", Value::Number(_)) | ("boolean", Value::Bool(_)) => {}
        ("array", Value::Array(items)) => {
            let count = items.len() as f64;
            if bound("minItems").is_some_and(|m| count < m) {
                return Err(format!(
                    "needs at least {} choices",
                    show(&field["minItems"])
                ));
            }
            if bound("maxItems").is_some_and(|m| count > m) {
                return Err(format!(
                    "takes at most {} choices",
                    show(&field["maxItems"])
                ));
            }
        }
        _ => {
            let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
                "an"
            } else {
                "a"
            };
            return Err(format!("must be {article} {kind}"));
        }
    }
    if let Some(n) = value.as_f64() {
        if bound("minimum").is_some_and(|m| n < m) {
            return Err(format!("must be at least {}", show(&field["minimum"])));
        }
        if bound("maximum").is_some_and(|m| n > m) {
            return Err(format!("must be at most {}", show(&field["maximum"])));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use serde_json::json;

    use super::*;
    use crate::handlers::BoxFuture;

    struct Scripted(Mutex<Vec<&'static str>>, Mutex<Vec<String>>);

    impl AskUserHandler for Scripted {
        fn ask<'a>(&'a self, question: &'a str) -> BoxFuture<'a, Option<String>> {
            self.1.lock().unwrap().push(question.to_owned());
            let next = self.0.lock().unwrap().pop().map(str::to_owned);
            Box::pin(async move { next })
        }
    }

    #[tokio::test]
    async fn each_field_is_asked_typed_and_defaulted() {
        let schema = json!({
            "type": "object",
            "properties": {
                "age": {"type": "integer", "default": 30},
                "name": {"type": "string", "title": "Your name"},
                "status": {"type": "string", "enum": ["active", "paused"]},
                "verified": {"type": "boolean"},
            },
            "required": ["name"],
        });
        // Answers are popped from the end: age (Enter → default), name, status (a wrong choice, then a right one),
        // verified.
        let host = Scripted(
            Mutex::new(vec!["yes", "paused", "gone", "Ada", ""]),
            Mutex::default(),
        );
        let got = by_questions(&host, "Who are you?", &schema).await;
        assert_eq!(
            got,
            Some(json!({"age": 30, "name": "Ada", "status": "paused", "verified": true}))
        );
        let asked = host.1.lock().unwrap().clone();
        assert!(
            asked[0].starts_with("Who are you?\nage — integer; Enter for 30"),
            "{asked:?}"
        );
        assert!(asked[1].contains("Your name — string"), "{asked:?}");
        assert!(asked[2].contains("one of: active, paused"), "{asked:?}");
        // No answer at all: declined.
        let silent = Scripted(Mutex::new(Vec::new()), Mutex::default());
        assert_eq!(by_questions(&silent, "Who?", &schema).await, None);
    }

    #[test]
    fn a_whole_form_is_checked_and_defaulted() {
        let schema = json!({
            "type": "object",
            "properties": {
                "guest": {"type": "string", "minLength": 2},
                "nights": {"type": "integer", "default": 1, "minimum": 1, "maximum": 30},
                "tier": {"type": "string", "oneOf": [{"const": "f", "title": "Free"}, {"const": "p", "title": "Pro"}]},
                "tags": {"type": "array", "items": {"enum": ["quiet", "view"]}, "maxItems": 1},
            },
            "required": ["guest"],
        });
        assert_eq!(
            check_form(&schema, json!({"guest": "Ada"})),
            Ok(json!({"guest": "Ada", "nights": 1}))
        );
        let refused = |content: Value| check_form(&schema, content).unwrap_err();
        assert_eq!(refused(json!({})), "`guest` is required");
        assert_eq!(
            refused(json!({"guest": "A"})),
            "`guest` must be at least 2 characters"
        );
        assert_eq!(
            refused(json!({"guest": "Ada", "nights": "two"})),
            "`nights` must be an integer"
        );
        assert_eq!(
            refused(json!({"guest": "Ada", "nights": 31})),
            "`nights` must be at most 30"
        );
        assert_eq!(
            refused(json!({"guest": "Ada", "tier": "x"})),
            "`tier` must be one of: f (Free), p (Pro)"
        );
        assert_eq!(
            refused(json!({"guest": "Ada", "tags": ["quiet", "view"]})),
            "`tags` takes at most 1 choices"
        );
        assert_eq!(
            refused(json!({"guest": "Ada", "pet": true})),
            "the form has no field `pet`"
        );
        assert_eq!(
            refused(json!("Ada")),
            "the answer is not a form's fields (an object)"
        );
    }

    #[tokio::test]
    async fn a_list_takes_several_choices_separated_by_commas() {
        let schema = json!({
            "type": "object",
            "properties": {"tags": {"type": "array", "items": {"enum": ["quiet", "view"]}}},
        });
        let host = Scripted(
            Mutex::new(vec!["view, quiet", "view, pool"]),
            Mutex::default(),
        );
        let got = by_questions(&host, "Room?", &schema).await;
        assert_eq!(got, Some(json!({"tags": ["view", "quiet"]})));
        let asked = host.1.lock().unwrap().clone();
        assert!(
            asked[0].contains("any of (separated by commas): quiet, view"),
            "{asked:?}"
        );
        assert_eq!(
            asked.len(),
            2,
            "a choice that is not offered is asked again"
        );
    }
}
