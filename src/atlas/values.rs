//! Reading typed values out of the SPEC's TOML: a value, a list, or a numeric
//! range table `{from, to, step}`; every error names the key.

use crate::error::{Error, Result};
use crate::norm::NORM_NAMES;
use toml::{Table, Value};

pub(super) fn bad(key: &str, reason: impl std::fmt::Display) -> Error {
    Error::invalid("spec", format!("key `{key}`"), reason)
}

pub(super) fn type_name(v: &Value) -> &'static str {
    v.type_str()
}

/// A list of values: a scalar, an array, or (for numbers) `{from, to, step}`.
fn values(key: &str, v: &Value, numeric_range: bool) -> Result<Vec<Value>> {
    let out = match v {
        Value::Array(a) => a.clone(),
        Value::Table(t) if numeric_range => {
            for k in t.keys() {
                if !["from", "to", "step"].contains(&k.as_str()) {
                    return Err(bad(
                        &format!("{key}.{k}"),
                        "unknown key in a range (from, to, step)",
                    ));
                }
            }
            let get = |k: &str| -> Result<Option<f64>> {
                match t.get(k) {
                    None => Ok(None),
                    Some(Value::Integer(i)) => Ok(Some(*i as f64)),
                    Some(Value::Float(f)) => Ok(Some(*f)),
                    Some(o) => Err(bad(
                        &format!("{key}.{k}"),
                        format!("expected a number, found {}", type_name(o)),
                    )),
                }
            };
            let ints = t.values().all(|v| matches!(v, Value::Integer(_)));
            let from = get("from")?.ok_or_else(|| bad(key, "a range needs `from`"))?;
            let to = get("to")?.ok_or_else(|| bad(key, "a range needs `to`"))?;
            let step = get("step")?.unwrap_or(1.0);
            if !(step > 0.0 && step.is_finite() && from.is_finite() && to.is_finite()) {
                return Err(bad(key, "a range needs finite from/to and step > 0"));
            }
            if to < from {
                return Err(bad(key, format!("empty range: to = {to} < from = {from}")));
            }
            let n = ((to - from) / step + 1e-9).floor() as usize + 1;
            if n > 100_000 {
                return Err(bad(key, format!("range of {n} values is too long")));
            }
            (0..n)
                .map(|i| {
                    let x = from + step * i as f64;
                    if ints {
                        Value::Integer(x.round() as i64)
                    } else {
                        Value::Float(x)
                    }
                })
                .collect()
        }
        other => vec![other.clone()],
    };
    if out.is_empty() {
        return Err(bad(key, "empty list: the grid would be empty"));
    }
    Ok(out)
}

pub(super) fn as_usize(key: &str, v: &Value) -> Result<usize> {
    match v {
        Value::Integer(i) if *i >= 0 => Ok(*i as usize),
        Value::Integer(i) => Err(bad(key, format!("must be >= 0, found {i}"))),
        o => Err(bad(
            key,
            format!("expected an integer, found {}", type_name(o)),
        )),
    }
}

pub(super) fn as_f64(key: &str, v: &Value) -> Result<f64> {
    let x = match v {
        Value::Integer(i) => *i as f64,
        Value::Float(f) => *f,
        o => {
            return Err(bad(
                key,
                format!("expected a number, found {}", type_name(o)),
            ))
        }
    };
    if !x.is_finite() {
        return Err(bad(key, format!("must be finite, found {x}")));
    }
    Ok(x)
}

pub(super) fn as_bool(key: &str, v: &Value) -> Result<bool> {
    match v {
        Value::Boolean(b) => Ok(*b),
        o => Err(bad(
            key,
            format!("expected true or false, found {}", type_name(o)),
        )),
    }
}

/// Typed list of one grid key (or its default).
pub(super) fn list<T>(
    grid: &Table,
    prefix: &str,
    key: &str,
    default: Option<Vec<T>>,
    numeric_range: bool,
    conv: impl Fn(&str, &Value) -> Result<T>,
) -> Result<Vec<T>> {
    let full = format!("{prefix}.{key}");
    match grid.get(key) {
        None => default.ok_or_else(|| bad(&full, "missing (required)")),
        Some(v) => values(&full, v, numeric_range)?
            .iter()
            .map(|x| conv(&full, x))
            .collect(),
    }
}

/// The grid's `norm` list (names of [`NORM_NAMES`]), or the one its
/// `layer_norm` list `ln` gives (`false` -> `"none"`, `true` -> `"layer"`);
/// both keys at once is an error naming `PREFIX.norm`.
pub(super) fn norm_list(grid: &Table, prefix: &str, ln: &[bool]) -> Result<Vec<&'static str>> {
    match grid.get("norm") {
        Some(_) if grid.contains_key("layer_norm") => Err(bad(
            &format!("{prefix}.norm"),
            "give norm or layer_norm, not both",
        )),
        Some(_) => list(grid, prefix, "norm", None, false, |k, v| match v {
            Value::String(s) => NORM_NAMES.iter().copied().find(|n| n == s).ok_or_else(|| {
                bad(
                    k,
                    format!("expected one of {}, found \"{s}\"", NORM_NAMES.join(", ")),
                )
            }),
            o => Err(bad(k, format!("expected a string, found {o}"))),
        }),
        None => Ok(ln
            .iter()
            .map(|&l| if l { "layer" } else { "none" })
            .collect()),
    }
}
