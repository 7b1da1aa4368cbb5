//! Numbers as a person reads them in reports.

/// `v` with `digits` decimals when that is readable (`1e-4 <= |v| < 1e9`, or 0),
/// else in scientific notation with `digits` significant decimals, so that a
/// huge or tiny value never prints hundreds of digits or rounds to `0.000…`.
pub fn fixed(v: f64, digits: usize) -> String {
    let a = v.abs();
    if v == 0.0 || (1e-4..1e9).contains(&a) || !v.is_finite() {
        format!("{v:.digits$}")
    } else {
        format!("{v:.digits$e}")
    }
}

#[cfg(test)]
mod tests {
    use super::fixed;

    #[test]
    fn readable_range_is_fixed_outside_scientific() {
        assert_eq!(fixed(0.688461247872021, 6), "0.688461");
        assert_eq!(fixed(0.0, 3), "0.000");
        assert_eq!(fixed(1e200, 3), "1.000e200");
        assert_eq!(fixed(7.35e-10, 4), "7.3500e-10");
        assert_eq!(fixed(-2.5e-7, 2), "-2.50e-7");
        assert_eq!(fixed(f64::INFINITY, 2), "inf");
    }
}
