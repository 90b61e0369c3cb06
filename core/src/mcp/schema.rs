//! An MCP tool's JSON Schema as a Python-style signature, and the checks that make a wrong argument a `TypeError`
//! in the block before anything is sent.

use codepilot_protocol::ParamSpec;
use serde_json::Map;
use serde_json::Value;

/// The parameters of a tool whose input schema is `schema`: required ones first, then the optional ones with their
/// schema default, else `None`; each group by name (JSON objects keep no order here, and calls are by keyword).
pub(crate) fn params(schema: &Map<String, Value>) -> Vec<ParamSpec> {
    let Some(Value::Object(props)) = schema.get("properties") else {
        return Vec::new();
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut first = Vec::new();
    let mut rest = Vec::new();
    for (name, prop) in props {
        let annotation = annotation(prop);
        if required.contains(&name.as_str()) {
            let p = ParamSpec::required(name.clone());
            first.push(match annotation {
                Some(a) => p.annotated(a),
                None => p,
            });
        } else {
            let default = prop.get("default").cloned().unwrap_or(Value::Null);
            let annotation = annotation.map(|a| {
                if default.is_null() && !a.starts_with("Optional[") && a != "None" {
                    format!("Optional[{a}]")
                } else {
                    a
                }
            });
            let p = ParamSpec::optional(name.clone(), default);
            rest.push(match annotation {
                Some(a) => p.annotated(a),
                None => p,
            });
        }
    }
    first.extend(rest);
    first
}

/// A Python annotation for a property schema: `int`, `str`, `list[str]`, `Literal['a', 'b']`, `Optional[int]`, …
pub(crate) fn annotation(prop: &Value) -> Option<String> {
    if let Some(values) = prop.get("enum").and_then(Value::as_array) {
        let items: Vec<String> = values.iter().map(codepilot_protocol::py_literal).collect();
        return Some(format!("Literal[{}]", items.join(", ")));
    }
    if let Some(options) = prop
        .get("anyOf")
        .or_else(|| prop.get("oneOf"))
        .and_then(Value::as_array)
    {
        let nullable = options
            .iter()
            .any(|o| o.get("type").and_then(Value::as_str) == Some("null"));
        let mut names: Vec<String> = options
            .iter()
            .filter(|o| o.get("type").and_then(Value::as_str) != Some("null"))
            .filter_map(annotation)
            .collect();
        names.dedup();
        let inner = match names.len() {
            0 => return None,
            1 => names.remove(0),
            _ => format!("Union[{}]", names.join(", ")),
        };
        return Some(if nullable {
            format!("Optional[{inner}]")
        } else {
            inner
        });
    }
    match prop.get("type")? {
        Value::String(t) => Some(type_name(t, prop)),
        Value::Array(types) => {
            let nullable = types.iter().any(|t| t == "null");
            let names: Vec<String> = types
                .iter()
                .filter_map(Value::as_str)
                .filter(|t| *t != "null")
                .map(|t| type_name(t, prop))
                .collect();
            let inner = match names.len() {
                0 => return Some("None".to_owned()),
                1 => names[0].clone(),
                _ => format!("Union[{}]", names.join(", ")),
            };
            Some(if nullable {
                format!("Optional[{inner}]")
            } else {
                inner
            })
        }
        _ => None,
    }
}

fn type_name(t: &str, prop: &Value) -> String {
    match t {
        "string" => "str".to_owned(),
        "integer" => "int".to_owned(),
        "number" => "float".to_owned(),
        "boolean" => "bool".to_owned(),
        "null" => "None".to_owned(),
        "array" => match prop.get("items").and_then(annotation) {
            Some(item) => format!("list[{item}]"),
            None => "list".to_owned(),
        },
        "object" => "dict".to_owned(),
        other => other.to_owned(),
    }
}

/// An object schema's shape as a dict literal of annotations, e.g. `{'result': int}`.
pub(crate) fn shape(schema: &Map<String, Value>) -> Option<String> {
    let Some(Value::Object(props)) = schema.get("properties") else {
        return None;
    };
    let fields: Vec<String> = props
        .iter()
        .map(|(name, p)| {
            format!(
                "{}: {}",
                codepilot_protocol::py_literal(&Value::String(name.clone())),
                annotation(p).unwrap_or_else(|| "Any".to_owned())
            )
        })
        .collect();
    Some(format!("{{{}}}", fields.join(", ")))
}

/// The doc string shown in the prompt: the tool's description, then one line per described parameter.
pub(crate) fn doc(description: Option<&str>, schema: &Map<String, Value>, server: &str) -> String {
    let mut out = description.map(str::trim).unwrap_or_default().to_owned();
    if out.is_empty() {
        out = format!("A tool of MCP server `{server}`.");
    }
    if let Some(Value::Object(props)) = schema.get("properties") {
        let described: Vec<String> = props
            .iter()
            .filter_map(|(name, p)| {
                let d = p.get("description").and_then(Value::as_str)?.trim();
                (!d.is_empty()).then(|| format!("    {name}: {d}"))
            })
            .collect();
        if !described.is_empty() {
            out.push_str("\nArgs:\n");
            out.push_str(&described.join("\n"));
        }
    }
    out
}

/// Checks the bound arguments against the schema's property types; the message of the `TypeError` otherwise.
/// Optional arguments left at `None` whose schema does not allow null are dropped, so the server sees them absent.
pub(crate) fn check_args(
    tool: &str,
    schema: &Map<String, Value>,
    args: &mut Map<String, Value>,
) -> Result<(), String> {
    let Some(Value::Object(props)) = schema.get("properties") else {
        return Ok(());
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut drop = Vec::new();
    for (name, value) in args.iter() {
        let Some(prop) = props.get(name) else {
            continue;
        };
        if value.is_null() && !required.contains(&name.as_str()) && !accepts(prop, value) {
            drop.push(name.clone());
            continue;
        }
        if !accepts(prop, value) {
            let wanted = annotation(prop).unwrap_or_else(|| "another type".to_owned());
            return Err(format!(
                "{tool}() argument '{name}' must be {wanted}, not {}",
                py_type(value)
            ));
        }
    }
    for name in drop {
        args.remove(&name);
    }
    Ok(())
}

/// Whether `value` has one of the types `prop` allows (only `type`, `enum`, `anyOf`/`oneOf` are looked at).
fn accepts(prop: &Value, value: &Value) -> bool {
    if let Some(values) = prop.get("enum").and_then(Value::as_array) {
        return values.contains(value);
    }
    if let Some(options) = prop
        .get("anyOf")
        .or_else(|| prop.get("oneOf"))
        .and_then(Value::as_array)
    {
        return options.iter().any(|o| accepts(o, value));
    }
    match prop.get("type") {
        Some(Value::String(t)) => is_type(t, value),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .any(|t| is_type(t, value)),
        _ => true,
    }
}

fn is_type(t: &str, value: &Value) -> bool {
    match t {
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => true,
    }
}

fn py_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use pretty_assertions::assert_eq;
    use serde_json::json;

    use super::*;

    fn schema(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn signatures_from_schemas() {
        let s = schema(json!({
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "Where"},
                "limit": {"type": "integer", "default": 10},
                "tags": {"type": "array", "items": {"type": "string"}},
                "mode": {"enum": ["fast", "slow"]},
                "depth": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            },
            "required": ["path", "mode"],
        }));
        let spec = codepilot_protocol::ToolSpec::new(
            "fs__read",
            params(&s),
            doc(Some("Reads."), &s, "fs"),
        );
        assert_eq!(
            spec.signature(),
            "fs__read(mode: Literal['fast', 'slow'], path: str, depth: Optional[int] = None, limit: int = 10, \
             tags: Optional[list[str]] = None)"
        );
        assert_eq!(spec.doc, "Reads.\nArgs:\n    path: Where");
    }

    #[test]
    fn wrong_types_are_type_errors_and_unset_optionals_are_dropped() {
        let s = schema(json!({
            "properties": {"a": {"type": "integer"}, "b": {"type": "string"}},
            "required": ["a"],
        }));
        let mut args = json!({"a": "x", "b": null}).as_object().unwrap().clone();
        assert_eq!(
            check_args("calc__add", &s, &mut args).unwrap_err(),
            "calc__add() argument 'a' must be int, not str"
        );
        let mut args = json!({"a": 1, "b": null}).as_object().unwrap().clone();
        check_args("calc__add", &s, &mut args).unwrap();
        assert_eq!(Value::Object(args), json!({"a": 1}));
        let mut args = json!({"a": 1.5}).as_object().unwrap().clone();
        assert!(check_args("calc__add", &s, &mut args).is_err());
    }
}
