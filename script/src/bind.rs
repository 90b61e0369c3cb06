//! Binding a call's positional and keyword arguments against a [`ToolSpec`], with CPython's messages.

use serde_json::Map;
use serde_json::Value;

use codepilot_protocol::ToolSpec;

/// Binds `positional` and `keywords` to the tool's parameters, in declared order, defaults filled.
///
/// The error is a `TypeError` message worded like CPython's.
pub(crate) fn bind(
    spec: &ToolSpec,
    positional: Vec<Value>,
    keywords: Vec<(String, Value)>,
) -> Result<Map<String, Value>, String> {
    let name = &spec.name;
    let params = &spec.params;
    if positional.len() > params.len() {
        return Err(too_many_positional(spec, positional.len()));
    }
    let mut slots: Vec<Option<Value>> = vec![None; params.len()];
    for (slot, value) in slots.iter_mut().zip(positional) {
        *slot = Some(value);
    }
    let mut rest = Map::new();
    for (key, value) in keywords {
        let Some(index) = params.iter().position(|p| p.name == key) else {
            if spec.var_keyword.is_some() {
                if rest.insert(key.clone(), value).is_some() {
                    return Err(format!(
                        "{name}() got multiple values for keyword argument '{key}'"
                    ));
                }
                continue;
            }
            let mut msg = format!("{name}() got an unexpected keyword argument '{key}'");
            if let Some(close) = closest(&key, params.iter().map(|p| p.name.as_str())) {
                msg.push_str(&format!(". Did you mean '{close}'?"));
            }
            return Err(msg);
        };
        if slots[index].is_some() {
            return Err(format!("{name}() got multiple values for argument '{key}'"));
        }
        slots[index] = Some(value);
    }
    let missing: Vec<&str> = params
        .iter()
        .zip(&slots)
        .filter(|(p, slot)| slot.is_none() && p.default.is_none())
        .map(|(p, _)| p.name.as_str())
        .collect();
    if !missing.is_empty() {
        let count = missing.len();
        let plural = if count == 1 { "argument" } else { "arguments" };
        return Err(format!(
            "{name}() missing {count} required positional {plural}: {}",
            join_names(&missing)
        ));
    }
    let mut bound = Map::with_capacity(params.len());
    for (param, slot) in params.iter().zip(slots) {
        let value = slot
            .or_else(|| param.default.clone())
            .unwrap_or(Value::Null);
        bound.insert(param.name.clone(), value);
    }
    if let Some(var) = &spec.var_keyword {
        bound.insert(var.clone(), Value::Object(rest));
    }
    Ok(bound)
}

/// CPython: `f() takes 2 positional arguments but 3 were given`,
/// `f() takes from 1 to 3 positional arguments but 4 were given`.
fn too_many_positional(spec: &ToolSpec, given: usize) -> String {
    let total = spec.params.len();
    let required = spec.params.iter().filter(|p| p.default.is_none()).count();
    let takes = if required == total {
        let plural = if total == 1 { "argument" } else { "arguments" };
        format!("{total} positional {plural}")
    } else {
        format!("from {required} to {total} positional arguments")
    };
    let was = if given == 1 { "was" } else { "were" };
    format!("{}() takes {takes} but {given} {was} given", spec.name)
}

/// CPython: `'a'`, `'a' and 'b'`, `'a', 'b', and 'c'`.
fn join_names(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    match quoted.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [a, b] => format!("{a} and {b}"),
        [init @ .., last] => format!("{}, and {last}", init.join(", ")),
    }
}

/// The candidate within edit distance 2 (or a third of the word) of `word`, if there is exactly a best one.
fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let budget = (word.chars().count() / 3).max(2);
    candidates
        .map(|c| (levenshtein(word, c), c))
        .filter(|(d, _)| *d <= budget)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}
