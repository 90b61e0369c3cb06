//! JSON values to Python objects and back: tool arguments, results, defaults and event fields cross here.

use pyo3::exceptions::PyTypeError;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBool;
use pyo3::types::PyDict;
use pyo3::types::PyFloat;
use pyo3::types::PyInt;
use pyo3::types::PyList;
use pyo3::types::PyString;
use pyo3::types::PyTuple;
use serde_json::Map;
use serde_json::Number;
use serde_json::Value;

/// Deepest nesting converted; deeper values are refused rather than overflowing the stack.
const MAX_DEPTH: usize = 128;

/// `value` as a Python object: `None`, `bool`, `int`, `float`, `str`, `list` or `dict`.
pub(crate) fn to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                PyFloat::new(py, n.as_f64().unwrap_or(f64::NAN)).into_any()
            }
        }
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => dict(py, map)?.into_any(),
    })
}

/// `map` as a Python `dict`.
pub(crate) fn dict<'py>(py: Python<'py>, map: &Map<String, Value>) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, v) in map {
        d.set_item(k, to_py(py, v)?)?;
    }
    Ok(d)
}

/// How to treat an object that has no JSON form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Other {
    /// Raise `TypeError` (a parameter default must be a literal the model can read).
    Refuse,
    /// Use its `str()` (a tool's result: the model reads it as text).
    Stringify,
}

/// `obj` as JSON: `None`, `bool`, `int`, `float`, `str`, lists, tuples and dicts (keys as `str`); anything else per
/// `other`.
pub(crate) fn from_py(obj: &Bound<'_, PyAny>, other: Other) -> PyResult<Value> {
    convert(obj, other, 0)
}

fn convert(obj: &Bound<'_, PyAny>, other: Other, depth: usize) -> PyResult<Value> {
    if depth > MAX_DEPTH {
        return Err(PyValueError::new_err(format!(
            "value nested more than {MAX_DEPTH} levels deep cannot be passed to the agent"
        )));
    }
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(i) = obj.extract::<i64>() {
            return Ok(Value::from(i));
        }
        if let Ok(u) = obj.extract::<u64>() {
            return Ok(Value::from(u));
        }
        // Larger than 64 bits: the model reads its digits.
        return Ok(Value::String(obj.str()?.to_string()));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return Ok(
            Number::from_f64(f.value()).map_or_else(|| Value::String(f.to_string()), Value::Number)
        );
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::String(s.to_cow()?.into_owned()));
    }
    if let Ok(list) = obj.cast::<PyList>() {
        return list
            .iter()
            .map(|x| convert(&x, other, depth + 1))
            .collect::<PyResult<_>>()
            .map(Value::Array);
    }
    if let Ok(tuple) = obj.cast::<PyTuple>() {
        return tuple
            .iter()
            .map(|x| convert(&x, other, depth + 1))
            .collect::<PyResult<_>>()
            .map(Value::Array);
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut map = Map::new();
        for (k, v) in d.iter() {
            let key = match k.cast::<PyString>() {
                Ok(s) => s.to_cow()?.into_owned(),
                Err(_) => k.str()?.to_string(),
            };
            map.insert(key, convert(&v, other, depth + 1)?);
        }
        return Ok(Value::Object(map));
    }
    match other {
        Other::Stringify => Ok(Value::String(obj.str()?.to_string())),
        Other::Refuse => Err(PyTypeError::new_err(format!(
            "{} is not a JSON value (use None, bool, int, float, str, list or dict)",
            obj.repr()?
        ))),
    }
}
