//! The atlas SPEC: a TOML file of grids, expanded into a list of instances.
//!
//! ```toml
//! description = "free text"        # optional
//! grad_tol = 1e-9                   # optional verify settings shared by all grids
//! max_iters = 5000
//! budget = 2e10
//! certify = true                    # optional: also prove each instance (`fcollapse certify`)
//! certify_max_rows = 2000           # optional: prove only where L n_w K <= this
//!
//! [[grid]]                          # one or more grids; the atlas is their union
//! name = "uniform"                  # optional label
//! n_c = [2, 3]                      # a value, a list, or a range table
//! s_c = { from = 2, to = 4 }        # inclusive; `step` optional (default 1)
//! len = [2, 3]
//! dim = { from = 1, to = 8 }        # d < n_c - 1 (d < n_c with LayerNorm) is left out
//! classes = ["full", 10]            # "full" = Z = [n_c]^L, an integer K = drawn latent set
//! freq = ["uniform", "zipf"]
//! zipf_exponent = [0.5, 1.0]        # used by "zipf" only
//! lambda_ratio = [0.5, 2.0]         # lambda_W = lambda_U = ratio * lambda_critical
//! # or: lambda_w = [0.01]  lambda_u = [0.01]   (absolute values; not with lambda_ratio)
//! layer_norm = [false, true]
//! # or: norm = ["none", "layer", "rms", "center", "layer-affine"]   (not with layer_norm)
//! eps = [0.0]                       # eps of layer, rms, layer-affine
//! restarts = 4
//! seed = [0, 1]                     # seeds the drawn latent set and the restarts
//! ```
//!
//! Every grid key is optional except `n_c`, `s_c`, `len`, `dim`; the defaults are
//! `classes = "full"`, `freq = "uniform"`, `zipf_exponent = 1`, `lambda_ratio = 0.5`,
//! `layer_norm = false`, `eps = 0`, `restarts = 4`, `seed = 0`.
//!
//! Which theorem applies follows from the instance: LayerNorm, RMSNorm or affine
//! LayerNorm → 3 (then `lambda_W = 0`, as theorem 3 states, `lambda_U` is the
//! given or the ratio value, and the affine decay is `lambda_U`), otherwise
//! (`none`, `center`) uniform `mu` → 1, otherwise (Zipf) → 2. The centring
//! norms need `d >= n_c`, the others `d >= n_c - 1`. `lambda_critical` is
//! [`crate::collapse::lambda_critical`] of the instance without LayerNorm (the
//! same number for both halves of a LayerNorm comparison). A Zipf instance with
//! `s_c = 1` has `mu = (1)` and becomes the uniform one. Instances that coincide
//! are kept once.
//!
//! A malformed spec (unknown key, empty list, wrong type, bad range) is an
//! [`Error::InvalidParam`] naming the key, e.g. `grid[1].n_c`.

use super::values::{as_bool, as_f64, as_usize, bad, list, norm_list, type_name};
use crate::collapse;
use crate::error::{Error, Result};
use crate::norm::Norm;
use crate::task::{Freq, TaskConfig};
use serde::{Deserialize, Serialize};
use toml::{Table, Value};

/// One instance of the atlas: a task, the theorem it falls under, the verify settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// Position in the expanded spec (0-based); shards split on it.
    pub index: usize,
    /// Stable identifier: FNV-1a hash of the canonical JSON of the instance
    /// (everything but `index` and `grid`), 16 hex digits.
    pub id: String,
    /// Name of the grid it came from.
    pub grid: String,
    /// 1, 2 or 3.
    pub theorem: u8,
    pub task: TaskConfig,
    /// `lambda / lambda_critical` when the spec gave a ratio, else computed from `lambda_U`.
    pub lambda_ratio: f64,
    /// `lambda_critical` of the task without LayerNorm.
    pub lambda_critical: f64,
    /// Zipf exponent (0 for uniform).
    pub zipf_exponent: f64,
    pub restarts: usize,
    /// Seed of the restarts (the latent draw uses `task.seed`, the same number).
    pub seed: u64,
}

/// The whole spec, expanded.
#[derive(Debug, Clone)]
pub struct Spec {
    pub description: String,
    pub grad_tol: f64,
    pub max_iters: u64,
    pub budget: f64,
    /// `certify = true`: every instance also gets `fcollapse certify`'s proof of
    /// its prediction (default false).
    pub certify: bool,
    /// `certify_max_rows`: the instances whose interval score table has more
    /// rows `L n_w K` are `not applicable` (default: certify's own limit).
    pub certify_max_rows: Option<usize>,
    pub instances: Vec<Instance>,
}

const TOP_KEYS: [&str; 7] = [
    "description",
    "grad_tol",
    "max_iters",
    "budget",
    "certify",
    "certify_max_rows",
    "grid",
];
const GRID_KEYS: [&str; 17] = [
    "name",
    "n_c",
    "s_c",
    "len",
    "dim",
    "classes",
    "freq",
    "zipf_exponent",
    "lambda_ratio",
    "lambda_w",
    "lambda_u",
    "layer_norm",
    "norm",
    "eps",
    "restarts",
    "seed",
    "comment",
];

#[derive(Clone, Copy, PartialEq)]
enum Classes {
    Full,
    Drawn(usize),
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Most instances one SPEC may expand to.
pub const MAX_INSTANCES: usize = 100_000;

/// Most restarts (instances times their restarts) one SPEC may ask for.
pub const MAX_RESTARTS_TOTAL: f64 = 1e7;

/// Parses and expands a SPEC (`text` is the TOML source). Refused (bad input,
/// the keys named): a grid over [`MAX_INSTANCES`] instances or
/// [`MAX_RESTARTS_TOTAL`] restarts, restarts above
/// [`crate::verify::MAX_RESTARTS`].
pub fn parse(text: &str) -> Result<Spec> {
    let doc: Table = text.parse().map_err(|e: toml::de::Error| {
        let msg = e.message().replace('\n', " ");
        Error::invalid("spec", "TOML", format!("not valid TOML: {}", msg.trim()))
    })?;
    for k in doc.keys() {
        if !TOP_KEYS.contains(&k.as_str()) {
            return Err(bad(
                k,
                format!("unknown key (allowed: {})", TOP_KEYS.join(", ")),
            ));
        }
    }
    let description = match doc.get("description") {
        None => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(o) => {
            return Err(bad(
                "description",
                format!("expected a string, found {}", type_name(o)),
            ))
        }
    };
    let grad_tol = doc
        .get("grad_tol")
        .map(|v| as_f64("grad_tol", v))
        .transpose()?
        .unwrap_or(1e-9);
    if grad_tol <= 0.0 {
        return Err(bad("grad_tol", "must be > 0"));
    }
    let max_iters = doc
        .get("max_iters")
        .map(|v| as_usize("max_iters", v))
        .transpose()?
        .unwrap_or(5000) as u64;
    if max_iters == 0 {
        return Err(bad("max_iters", "must be >= 1"));
    }
    let budget = doc
        .get("budget")
        .map(|v| as_f64("budget", v))
        .transpose()?
        .unwrap_or(crate::limit::DEFAULT_WORK_BUDGET);
    if budget <= 0.0 {
        return Err(bad("budget", "must be > 0"));
    }
    let certify = doc
        .get("certify")
        .map(|v| as_bool("certify", v))
        .transpose()?
        .unwrap_or(false);
    let certify_max_rows = doc
        .get("certify_max_rows")
        .map(|v| as_usize("certify_max_rows", v))
        .transpose()?;
    if certify_max_rows == Some(0) {
        return Err(bad("certify_max_rows", "must be >= 1"));
    }
    let grids = match doc.get("grid") {
        None => {
            return Err(bad(
                "grid",
                "missing: the spec needs at least one [[grid]] table",
            ))
        }
        Some(Value::Array(a)) if a.is_empty() => return Err(bad("grid", "empty: no grid")),
        Some(Value::Array(a)) => a.clone(),
        Some(Value::Table(t)) => vec![Value::Table(t.clone())],
        Some(o) => {
            return Err(bad(
                "grid",
                format!("expected [[grid]] tables, found {}", type_name(o)),
            ))
        }
    };
    let mut instances: Vec<Instance> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (gi, g) in grids.iter().enumerate() {
        let prefix = format!("grid[{gi}]");
        let Value::Table(grid) = g else {
            return Err(bad(
                &prefix,
                format!("expected a table, found {}", type_name(g)),
            ));
        };
        for k in grid.keys() {
            if !GRID_KEYS.contains(&k.as_str()) {
                return Err(bad(
                    &format!("{prefix}.{k}"),
                    format!("unknown key (allowed: {})", GRID_KEYS.join(", ")),
                ));
            }
        }
        let name = match grid.get("name") {
            None => format!("grid{gi}"),
            Some(Value::String(s)) => s.clone(),
            Some(o) => {
                return Err(bad(
                    &format!("{prefix}.name"),
                    format!("expected a string, found {}", type_name(o)),
                ))
            }
        };
        let n_c = list(grid, &prefix, "n_c", None, true, as_usize)?;
        let s_c = list(grid, &prefix, "s_c", None, true, as_usize)?;
        let len = list(grid, &prefix, "len", None, true, as_usize)?;
        let dim = list(grid, &prefix, "dim", None, true, as_usize)?;
        let classes = list(
            grid,
            &prefix,
            "classes",
            Some(vec![Classes::Full]),
            false,
            |k, v| match v {
                Value::String(s) if s == "full" => Ok(Classes::Full),
                Value::Integer(_) => Ok(Classes::Drawn(as_usize(k, v)?)),
                o => Err(bad(
                    k,
                    format!("expected \"full\" or an integer K, found {}", type_name(o)),
                )),
            },
        )?;
        let freq = list(
            grid,
            &prefix,
            "freq",
            Some(vec![false]),
            false,
            |k, v| match v {
                Value::String(s) if s == "uniform" => Ok(false),
                Value::String(s) if s == "zipf" => Ok(true),
                o => Err(bad(
                    k,
                    format!("expected \"uniform\" or \"zipf\", found {o}"),
                )),
            },
        )?;
        let expo = list(
            grid,
            &prefix,
            "zipf_exponent",
            Some(vec![1.0]),
            true,
            as_f64,
        )?;
        if let Some(e) = expo.iter().find(|e| **e <= 0.0) {
            return Err(bad(
                &format!("{prefix}.zipf_exponent"),
                format!("must be > 0, found {e}"),
            ));
        }
        let has_ratio = grid.contains_key("lambda_ratio");
        let has_abs = grid.contains_key("lambda_w") || grid.contains_key("lambda_u");
        if has_ratio && has_abs {
            return Err(bad(
                &format!("{prefix}.lambda_ratio"),
                "give lambda_ratio or lambda_w/lambda_u, not both",
            ));
        }
        let nonneg = |k: &str, v: &Value| -> Result<f64> {
            let x = as_f64(k, v)?;
            if x < 0.0 {
                return Err(bad(k, format!("must be >= 0, found {x}")));
            }
            Ok(x)
        };
        let ratio = list(grid, &prefix, "lambda_ratio", Some(vec![0.5]), true, nonneg)?;
        let lw = list(grid, &prefix, "lambda_w", Some(vec![0.01]), true, nonneg)?;
        let lu = list(grid, &prefix, "lambda_u", Some(vec![0.01]), true, nonneg)?;
        // (lambda_w, lambda_u) pairs or ratios
        let lambdas: Vec<(Option<f64>, f64, f64)> = if has_abs {
            lw.iter()
                .flat_map(|&w| lu.iter().map(move |&u| (None, w, u)))
                .collect()
        } else {
            ratio.iter().map(|&r| (Some(r), 0.0, 0.0)).collect()
        };
        let ln = list(
            grid,
            &prefix,
            "layer_norm",
            Some(vec![false]),
            false,
            as_bool,
        )?;
        let norms = norm_list(grid, &prefix, &ln)?;
        let eps = list(grid, &prefix, "eps", Some(vec![0.0]), true, nonneg)?;
        let restarts = list(grid, &prefix, "restarts", Some(vec![4]), true, as_usize)?;
        if let Some(r) = restarts
            .iter()
            .find(|r| **r == 0 || **r > crate::verify::MAX_RESTARTS)
        {
            return Err(bad(
                &format!("{prefix}.restarts"),
                format!("must be 1 to {}, found {r}", crate::verify::MAX_RESTARTS),
            ));
        }
        let seeds = list(grid, &prefix, "seed", Some(vec![0]), true, as_usize)?;
        // The grid is the product of its lists: refuse it before expanding it.
        let sizes = [
            ("n_c", n_c.len()),
            ("s_c", s_c.len()),
            ("len", len.len()),
            ("dim", dim.len()),
            ("classes", classes.len()),
            ("freq", freq.len()),
            ("zipf_exponent", expo.len()),
            ("lambda", lambdas.len()),
            ("norm", norms.len()),
            ("eps", eps.len()),
            ("restarts", restarts.len()),
            ("seed", seeds.len()),
        ];
        let product = sizes.iter().map(|(_, n)| *n as f64).product::<f64>();
        let restart_total = product * restarts.iter().copied().max().unwrap_or(1) as f64;
        if product + instances.len() as f64 > MAX_INSTANCES as f64
            || restart_total > MAX_RESTARTS_TOTAL
        {
            let mut keys: Vec<(&str, usize)> =
                sizes.iter().copied().filter(|(_, n)| *n > 1).collect();
            keys.sort_by_key(|k| std::cmp::Reverse(k.1));
            let named: Vec<String> = keys
                .iter()
                .map(|(k, n)| format!("{prefix}.{k} ({n} values)"))
                .collect();
            return Err(bad(
                &prefix,
                format!(
                    "the grid has up to {product:.3e} instances ({restart_total:.3e} restarts); at most {MAX_INSTANCES} instances and {MAX_RESTARTS_TOTAL:.0e} restarts per SPEC: shorten {}",
                    named.join(", ")
                ),
            ));
        }
        let before = instances.len();
        for &n_c in &n_c {
            for &s_c in &s_c {
                for &len in &len {
                    for &dim in &dim {
                        if dim + 1 < n_c || dim == 0 {
                            continue;
                        }
                        for &cl in &classes {
                            for &zipf in &freq {
                                let exps: Vec<f64> = if zipf && s_c > 1 {
                                    expo.clone()
                                } else {
                                    vec![0.0]
                                };
                                for &e in &exps {
                                    for &(r, w, u) in &lambdas {
                                        for &norm_name in &norms {
                                            let base = Norm::parse(norm_name, 0.0)?;
                                            // a mean-zero simplex of n_c points needs d >= n_c
                                            if base.centres() && dim < n_c {
                                                continue;
                                            }
                                            let epss: Vec<Norm> = if base.eps().is_some() {
                                                eps.iter().map(|&e| base.with_eps(e)).collect()
                                            } else {
                                                vec![base]
                                            };
                                            for &eps in &epss {
                                                for &restarts in &restarts {
                                                    for &seed in &seeds {
                                                        let inst = make(
                                                            &prefix,
                                                            &name,
                                                            n_c,
                                                            s_c,
                                                            len,
                                                            dim,
                                                            cl,
                                                            e,
                                                            (r, w, u),
                                                            eps,
                                                            restarts,
                                                            seed as u64,
                                                        )?;
                                                        let key = canonical(&inst);
                                                        if seen.insert(key.clone()) {
                                                            let id = format!(
                                                                "{:016x}",
                                                                fnv1a(key.as_bytes())
                                                            );
                                                            instances.push(Instance {
                                                                index: instances.len(),
                                                                id,
                                                                ..inst
                                                            });
                                                        }
                                                    }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        if instances.len() == before {
            return Err(bad(
                &prefix,
                "empty grid: no new instance (is every dim < n_c - 1, or the grid a repeat?)",
            ));
        }
    }
    if instances.is_empty() {
        return Err(bad("grid", "empty grid: no instance"));
    }
    Ok(Spec {
        description,
        grad_tol,
        max_iters,
        budget,
        certify,
        certify_max_rows,
        instances,
    })
}

/// The canonical JSON of an instance without `index`, `id`, `grid`.
fn canonical(inst: &Instance) -> String {
    serde_json::json!({
        "theorem": inst.theorem,
        "task": inst.task,
        "restarts": inst.restarts,
        "seed": inst.seed,
    })
    .to_string()
}

#[allow(clippy::too_many_arguments)]
fn make(
    prefix: &str,
    name: &str,
    n_c: usize,
    s_c: usize,
    len: usize,
    dim: usize,
    classes: Classes,
    exponent: f64,
    (ratio, lw, lu): (Option<f64>, f64, f64),
    norm: Norm,
    restarts: usize,
    seed: u64,
) -> Result<Instance> {
    let freq = if exponent > 0.0 {
        Freq::Zipf { exponent }
    } else {
        Freq::Uniform
    };
    let mut task = TaskConfig {
        n_c,
        s_c,
        len,
        dim,
        classes: match classes {
            Classes::Full => None,
            Classes::Drawn(k) => Some(k),
        },
        freq,
        layer_norm: None,
        norm: None,
        lambda_affine: None,
        lambda_w: lw,
        lambda_u: lu,
        seed,
        latent: None,
    };
    let built = task.build().map_err(|e| {
        bad(
            prefix,
            format!("instance {n_c}/{s_c}/{len}/{dim}: {}", e.report()),
        )
    })?;
    let lc = collapse::lambda_critical(&built).expect("no LayerNorm here");
    if lc.is_nan() || lc <= 0.0 {
        // Every class has the same concept at each position: no class can be
        // told apart, and lambda / lambda_critical is not a number.
        return Err(bad(
            prefix,
            format!(
                "instance {n_c}/{s_c}/{len}/{dim}: lambda_critical = 0 (the drawn classes share one latent variable); draw more classes or another seed"
            ),
        ));
    }
    if let Some(r) = ratio {
        task.lambda_w = r * lc;
        task.lambda_u = r * lc;
    }
    task.set_norm(norm);
    let theorem = if !norm.is_linear() {
        task.lambda_w = 0.0;
        if norm.is_affine() {
            task.lambda_affine = Some(task.lambda_u);
        }
        3
    } else if freq.is_uniform() {
        1
    } else {
        2
    };
    let lambda_ratio = match ratio {
        Some(r) => r,
        None if !norm.is_linear() => task.lambda_u / lc,
        None => (task.lambda_w * task.lambda_u).sqrt() / lc,
    };
    Ok(Instance {
        index: 0,
        id: String::new(),
        grid: name.to_string(),
        theorem,
        task,
        lambda_ratio,
        lambda_critical: lc,
        zipf_exponent: exponent,
        restarts,
        seed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_lists_and_the_theorem_of_each_instance() {
        let s = parse(
            r#"
            [[grid]]
            n_c = 3
            s_c = { from = 1, to = 2 }
            len = 2
            dim = [1, 2, 4]
            freq = ["uniform", "zipf"]
            zipf_exponent = [1.0, 2.0]
            layer_norm = [false, true]
            "#,
        )
        .unwrap();
        // dim 1 < n_c - 1 is left out, and dim 2 < n_c with LayerNorm; s_c = 1 has
        // only uniform: s_c = 1: 2 + 1 = 3; s_c = 2: 3 freqs x (2 + 1) = 9
        assert_eq!(s.instances.len(), 12);
        for (i, inst) in s.instances.iter().enumerate() {
            assert_eq!(inst.index, i);
            let expect = if inst.task.layer_norm.is_some() {
                3
            } else if inst.task.freq.is_uniform() {
                1
            } else {
                2
            };
            assert_eq!(inst.theorem, expect);
            let lc = inst.lambda_critical;
            assert!((inst.task.lambda_u - 0.5 * lc).abs() <= 1e-15 * lc);
        }
        let ids: std::collections::HashSet<_> = s.instances.iter().map(|i| &i.id).collect();
        assert_eq!(ids.len(), 12);
    }
}
