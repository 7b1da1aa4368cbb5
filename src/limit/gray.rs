//! The reflected mixed-radix Gray code (Knuth's loopless algorithm H) along
//! which the class pass enumerates the token choices `beta in [s_c]^L`.

/// Reflected mixed-radix Gray code over `[radix]^n` (Knuth, TAOCP 7.2.1.1,
/// algorithm H, loopless): starts at all zeros, every step changes one digit by ±1,
/// and every tuple is visited exactly once.
#[derive(Debug, Clone)]
pub(super) struct Gray {
    pub(super) digits: Vec<usize>,
    up: Vec<bool>,
    focus: Vec<usize>,
    radix: usize,
    done: bool,
}

impl Gray {
    pub(super) fn new(n: usize, radix: usize) -> Self {
        let mut g = Gray {
            digits: vec![0; n],
            up: vec![true; n],
            focus: (0..=n).collect(),
            radix,
            done: false,
        };
        g.reset();
        g
    }

    pub(super) fn reset(&mut self) {
        let n = self.digits.len();
        self.digits.fill(0);
        self.up.fill(true);
        for (j, f) in self.focus.iter_mut().enumerate() {
            *f = j;
        }
        // With one value per digit there is a single tuple.
        self.done = self.radix < 2 || n == 0;
    }

    /// Advances to the next tuple: `Some((position, old digit, new digit))`, or
    /// `None` once every tuple has been visited.
    pub(super) fn next(&mut self) -> Option<(usize, usize, usize)> {
        if self.done {
            return None;
        }
        let n = self.digits.len();
        let j = self.focus[0];
        self.focus[0] = 0;
        if j == n {
            self.done = true;
            return None;
        }
        let old = self.digits[j];
        let new = if self.up[j] { old + 1 } else { old - 1 };
        self.digits[j] = new;
        if new == 0 || new == self.radix - 1 {
            self.up[j] = !self.up[j];
            self.focus[j] = self.focus[j + 1];
            self.focus[j + 1] = j + 1;
        }
        Some((j, old, new))
    }

    /// `(position, digit)` of the tuple before `step` (what [`Gray::next`] just
    /// returned; `None`, the end, leaves the digits as they were): the tuple just left.
    pub(super) fn before(
        &self,
        step: Option<(usize, usize, usize)>,
    ) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.digits
            .iter()
            .enumerate()
            .map(move |(l, &b)| match step {
                Some((pos, old, _)) if pos == l => (l, old),
                _ => (l, b),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn gray_code_visits_every_tuple_once_changing_one_digit_by_one() {
        for (n, radix) in [
            (1, 2),
            (3, 2),
            (2, 3),
            (4, 3),
            (3, 4),
            (2, 5),
            (3, 1),
            (1, 1),
        ] {
            let mut g = Gray::new(n, radix);
            let mut seen = HashSet::new();
            seen.insert(g.digits.clone());
            let mut prev = g.digits.clone();
            while let Some((j, old, new)) = g.next() {
                assert_eq!(prev[j], old);
                assert_eq!(old.abs_diff(new), 1);
                assert!(new < radix);
                for (i, (a, b)) in prev.iter().zip(&g.digits).enumerate() {
                    if i != j {
                        assert_eq!(a, b);
                    }
                }
                assert!(seen.insert(g.digits.clone()), "tuple visited twice");
                prev = g.digits.clone();
            }
            assert_eq!(seen.len(), radix.pow(n as u32), "n {n} radix {radix}");
            assert!(g.next().is_none());
        }
    }
}
