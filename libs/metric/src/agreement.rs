//! Agreement between human reviewers who judged the same cases.
//!
//! * Raw agreement: the share of cases on which every reviewer gave the
//!   same label.
//! * Cohen's kappa (two reviewers): `(p_o - p_e) / (1 - p_e)`, with `p_e`
//!   from each reviewer's own label frequencies.
//! * Fleiss' kappa (any number of reviewers, each case judged by all of
//!   them): `(P̄ - P̄_e) / (1 - P̄_e)`, `P̄` the mean per-case agreement over
//!   rater pairs and `P̄_e` the sum of squared overall label shares.
//!
//! When chance agreement is total (`p_e = 1`: everyone always used one
//! label) kappa is undefined and reported as `None`.

use std::collections::BTreeMap;

use serde::Serialize;

/// Agreement figures over the cases every reviewer judged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Agreement {
    /// Reviewers.
    pub raters: usize,
    /// Cases judged by all of them.
    pub cases: usize,
    /// Share of those cases with one label from everyone.
    pub raw: f64,
    /// Cohen's kappa, for exactly two reviewers.
    pub cohen: Option<f64>,
    /// Fleiss' kappa.
    pub fleiss: Option<f64>,
}

/// Agreement over `labels[case][rater]` (every case has one label per
/// rater); `None` without cases or with fewer than two raters.
pub fn agreement(labels: &[Vec<String>]) -> Option<Agreement> {
    let raters = labels.first()?.len();
    if raters < 2 || labels.iter().any(|l| l.len() != raters) {
        return None;
    }
    let n = labels.len() as f64;
    let raw = labels.iter().filter(|l| l.iter().all(|x| *x == l[0])).count() as f64 / n;
    // Fleiss.
    let mut totals: BTreeMap<&str, f64> = BTreeMap::new();
    let mut p_bar = 0.0;
    let r = raters as f64;
    for l in labels {
        let mut counts: BTreeMap<&str, f64> = BTreeMap::new();
        for x in l {
            *counts.entry(x.as_str()).or_insert(0.0) += 1.0;
            *totals.entry(x.as_str()).or_insert(0.0) += 1.0;
        }
        p_bar += (counts.values().map(|c| c * c).sum::<f64>() - r) / (r * (r - 1.0));
    }
    p_bar /= n;
    let p_e: f64 = totals.values().map(|c| (c / (n * r)).powi(2)).sum();
    let fleiss = (p_e < 1.0).then(|| (p_bar - p_e) / (1.0 - p_e));
    // Cohen.
    let cohen = (raters == 2)
        .then(|| {
            let mut a: BTreeMap<&str, f64> = BTreeMap::new();
            let mut b: BTreeMap<&str, f64> = BTreeMap::new();
            for l in labels {
                *a.entry(l[0].as_str()).or_insert(0.0) += 1.0;
                *b.entry(l[1].as_str()).or_insert(0.0) += 1.0;
            }
            let p_e: f64 = a.iter().map(|(k, ca)| ca / n * b.get(k).copied().unwrap_or(0.0) / n).sum();
            (p_e < 1.0).then(|| (raw - p_e) / (1.0 - p_e))
        })
        .flatten();
    Some(Agreement { raters, cases: labels.len(), raw, cohen, fleiss })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cases(pairs: &[(&str, &str, usize)]) -> Vec<Vec<String>> {
        pairs.iter().flat_map(|(a, b, n)| std::iter::repeat_n(vec![a.to_string(), b.to_string()], *n)).collect()
    }

    /// Worked by hand: 50 cases, both "yes" 20, both "no" 15, A yes / B no
    /// 5, A no / B yes 10. p_o = 35/50 = 0.7; A says yes 25/50, B 30/50;
    /// p_e = 0.5·0.6 + 0.5·0.4 = 0.5; kappa = (0.7 - 0.5) / 0.5 = 0.4.
    /// Fleiss for the same table: P̄ = 0.7; shares yes 55/100, no 45/100;
    /// P̄_e = 0.3025 + 0.2025 = 0.505; kappa = 0.195 / 0.495 = 0.3939….
    #[test]
    fn hand_checked_two_reviewers() {
        let a = agreement(&cases(&[("yes", "yes", 20), ("no", "no", 15), ("yes", "no", 5), ("no", "yes", 10)])).unwrap();
        assert_eq!(a.cases, 50);
        assert!((a.raw - 0.7).abs() < 1e-12);
        assert!((a.cohen.unwrap() - 0.4).abs() < 1e-12, "{a:?}");
        assert!((a.fleiss.unwrap() - 0.195 / 0.495).abs() < 1e-12, "{a:?}");
    }

    /// Fleiss' worked example shape: three raters, perfect agreement is 1,
    /// and labels independent of the case give about 0.
    #[test]
    fn fleiss_bounds() {
        let perfect: Vec<Vec<String>> = (0..10).map(|i| vec![if i % 2 == 0 { "fix" } else { "accept" }.to_string(); 3]).collect();
        let a = agreement(&perfect).unwrap();
        assert_eq!((a.raw, a.fleiss, a.cohen), (1.0, Some(1.0), None));
        // Every case split the same way: 2 accept, 1 fix — agreement no
        // better than chance, kappa negative.
        let split: Vec<Vec<String>> = (0..10).map(|_| vec!["accept".into(), "accept".into(), "fix".into()]).collect();
        assert!(agreement(&split).unwrap().fleiss.unwrap() < 0.0);
        // One label everywhere: chance agreement is total, kappa undefined.
        let same: Vec<Vec<String>> = (0..4).map(|_| vec!["accept".into(); 2]).collect();
        let a = agreement(&same).unwrap();
        assert_eq!((a.raw, a.cohen, a.fleiss), (1.0, None, None));
        assert!(agreement(&[]).is_none());
        assert!(agreement(&[vec!["x".into()]]).is_none());
    }
}
