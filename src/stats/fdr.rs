//! Benjamini–Hochberg false-discovery-rate control.

/// Benjamini–Hochberg adjusted p-values ("q-values"): `q_(i) = min_{j ≥ i}
/// p_(j) · m / j` over the p-values sorted ascending, capped at 1. NaN
/// p-values count as 1.
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let clean = |x: f64| if x.is_nan() { 1.0 } else { x };
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| clean(p[a]).total_cmp(&clean(p[b])));
    let mut q = vec![1.0; m];
    let mut running = 1.0f64;
    for (rank, &i) in order.iter().enumerate().rev() {
        running = running.min(clean(p[i]) * m as f64 / (rank + 1) as f64);
        q[i] = running.min(1.0);
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    /// By hand from the definition (R's `p.adjust(p, "BH")`): sorted p·m/rank is
    /// 0.025, 0.025, 0.05, 0.05, 0.5, already monotone. scipy's
    /// `false_discovery_control` checks the fit's q in `tests/python/test_null_numpy.py`.
    #[test]
    fn matches_r_p_adjust() {
        let q = benjamini_hochberg(&[0.01, 0.04, 0.03, 0.005, 0.5]);
        for (got, want) in q.iter().zip([0.025, 0.05, 0.05, 0.025, 0.5]) {
            assert!((got - want).abs() < 1e-12, "{q:?}");
        }
        assert_eq!(benjamini_hochberg(&[f64::NAN, 0.5]), vec![1.0, 1.0]);
    }
}
