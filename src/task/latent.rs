//! The latent variables of a task: the full set `Z = [n_c]^L`, a uniform draw
//! of distinct ones, and the check that explicit ones are distinct.

use crate::error::Error;
use rand::{Rng, RngExt};

/// All of `Z = [n_c]^L` in lexicographic order (position `L-1` varies fastest).
pub fn full_latent_set(n_c: usize, len: usize) -> Vec<usize> {
    let k = n_c.pow(len as u32);
    let mut z = vec![0usize; k * len];
    for idx in 0..k {
        let mut r = idx;
        for l in (0..len).rev() {
            z[idx * len + l] = r % n_c;
            r /= n_c;
        }
    }
    z
}

/// `k` distinct latent variables drawn uniformly from `Z` (row-major `k x len`):
/// each row is drawn as `len` independent uniform concepts in `0..n_c`, and a row
/// equal to an earlier one is drawn again (rejection), so the result is a uniform
/// draw without replacement. A stream of draws with no repeat gives the rows in
/// the order drawn, the same set as independent draws would.
///
/// The caller ensures `k <= n_c^len` (otherwise no `k` distinct rows exist).
pub fn draw_latent(n_c: usize, len: usize, k: usize, rng: &mut impl Rng) -> Vec<usize> {
    let mut seen = std::collections::HashSet::with_capacity(k);
    let mut z = Vec::with_capacity(k * len);
    let mut row = vec![0usize; len];
    while seen.len() < k {
        for a in row.iter_mut() {
            *a = rng.random_range(0..n_c);
        }
        if seen.insert(row.clone()) {
            z.extend_from_slice(&row);
        }
    }
    z
}

/// The first pair of equal rows `(i, j)`, `i < j`, of the row-major `K x len`
/// latent variables `z`, if any (two classes with one latent variable).
pub fn repeated_rows(z: &[usize], len: usize) -> Option<(usize, usize)> {
    let mut first = std::collections::HashMap::new();
    for (j, row) in z.chunks(len.max(1)).enumerate() {
        if let Some(&i) = first.get(row) {
            return Some((i, j));
        }
        first.insert(row, j);
    }
    None
}

/// The bad-input error for rows `i` and `j` of `z` being equal, on parameter
/// `name` (`origin`: the file or argument the rows come from).
pub fn repeated_rows_error(
    name: &'static str,
    origin: impl ToString,
    z: &[usize],
    len: usize,
    (i, j): (usize, usize),
) -> Error {
    let row = &z[j * len..(j + 1) * len];
    Error::invalid(
        name,
        origin,
        format!(
            "rows {i} and {j} (0-based) are the same latent variable {row:?}; each class needs its own latent variable"
        ),
    )
}
