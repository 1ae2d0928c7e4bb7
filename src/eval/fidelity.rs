//! How faithfully an INT8 model reproduces its FP32 source, beyond top-1: prediction
//! agreement, flips each way, logit RMSE, softmax KL, and McNemar's paired test.

use crate::data::Label;
use crate::infer::{argmax, check_logits};
use crate::Result;
use serde::{Deserialize, Serialize};

/// How faithful an INT8 model's outputs are to its FP32 source's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Fidelity {
    /// Images compared.
    pub images: usize,
    /// FP32 top-1, percent.
    pub fp32_top1: f64,
    /// INT8 top-1, percent.
    pub int8_top1: f64,
    /// FP32 top-1 minus INT8 top-1, percentage points.
    pub drop: f64,
    /// Images where both predict the same class (%).
    pub agreement: f64,
    /// Images FP32 gets right and INT8 wrong, and the reverse.
    pub fp32_right_int8_wrong: usize,
    /// Images only INT8 classifies correctly.
    pub fp32_wrong_int8_right: usize,
    /// Root mean square of INT8 - FP32 logits over every logit.
    pub logit_rmse: f64,
    /// `logit_rmse` over the standard deviation of the FP32 logits.
    pub logit_rmse_rel: f64,
    /// Mean over images of KL(softmax(FP32) || softmax(INT8)), nats.
    pub kl: f64,
    /// Two-sided exact McNemar p-value for "FP32 and INT8 have the same top-1".
    pub mcnemar_p: f64,
}

/// Two-sided exact McNemar test on the discordant pairs: b of one kind, c of the other.
/// Under the null each discordant pair is a fair coin, so p = P(|X - n/2| >= |b - n/2|) for
/// X ~ Binomial(b + c, 1/2); 1 when there are none.
pub fn mcnemar(b: usize, c: usize) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    // log of C(n, i) / 2^n, summed over the lower tail with log-sum-exp.
    let ln_fact = |m: usize| -> f64 { (1..=m).map(|i| (i as f64).ln()).sum() };
    let (lf_n, ln2n) = (ln_fact(n), n as f64 * std::f64::consts::LN_2);
    let mut lf_i = 0.0;
    let mut terms = Vec::with_capacity(k + 1);
    let mut lf_ni = lf_n;
    for i in 0..=k {
        if i > 0 {
            lf_i += (i as f64).ln();
            lf_ni -= ((n - i + 1) as f64).ln();
        }
        terms.push(lf_n - lf_i - lf_ni - ln2n);
    }
    let m = terms.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let tail = m.exp() * terms.iter().map(|t| (t - m).exp()).sum::<f64>();
    (2.0 * tail).min(1.0)
}

fn log_softmax(r: &[f32]) -> Vec<f64> {
    let m = r.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = m + r.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
    r.iter().map(|&v| v as f64 - lse).collect()
}

/// Checks that `a` and `b` each hold one row of `classes` logits per label.
fn check_paired(a: &[f32], b: &[f32], labels: &[Label], classes: usize) -> Result<()> {
    check_logits("first logits", a.len(), labels.len(), classes)?;
    check_logits("second logits", b.len(), labels.len(), classes)
}

/// Compares INT8 logits with FP32 logits (both row-major `[N, classes]`) on labeled images.
/// An error when either does not hold `classes` logits per label.
pub fn fidelity(fp32: &[f32], int8: &[f32], labels: &[Label], classes: usize) -> Result<Fidelity> {
    check_paired(fp32, int8, labels, classes)?;
    let n = labels.len();
    let (mut right_a, mut right_b, mut same, mut b_only_wrong, mut a_only_wrong) = (0, 0, 0, 0, 0);
    let (mut sq, mut kl) = (0.0f64, 0.0f64);
    for i in 0..n {
        let (ra, rb) = (
            &fp32[i * classes..(i + 1) * classes],
            &int8[i * classes..(i + 1) * classes],
        );
        let (pa, pb, l) = (argmax(ra), argmax(rb), labels[i] as usize);
        right_a += (pa == l) as usize;
        right_b += (pb == l) as usize;
        same += (pa == pb) as usize;
        b_only_wrong += (pa == l && pb != l) as usize;
        a_only_wrong += (pa != l && pb == l) as usize;
        sq += ra
            .iter()
            .zip(rb)
            .map(|(&a, &b)| ((a - b) as f64).powi(2))
            .sum::<f64>();
        let (la, lb) = (log_softmax(ra), log_softmax(rb));
        kl += la
            .iter()
            .zip(&lb)
            .map(|(a, b)| a.exp() * (a - b))
            .sum::<f64>();
    }
    let count = (n * classes).max(1) as f64;
    let mean = fp32[..n * classes].iter().map(|&v| v as f64).sum::<f64>() / count;
    let var = fp32[..n * classes]
        .iter()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        / count;
    let rmse = (sq / count).sqrt();
    let pct = |k: usize| 100.0 * k as f64 / n.max(1) as f64;
    Ok(Fidelity {
        images: n,
        fp32_top1: pct(right_a),
        int8_top1: pct(right_b),
        drop: pct(right_a) - pct(right_b),
        agreement: pct(same),
        fp32_right_int8_wrong: b_only_wrong,
        fp32_wrong_int8_right: a_only_wrong,
        logit_rmse: rmse,
        logit_rmse_rel: rmse / var.sqrt().max(1e-12),
        kl: kl / n.max(1) as f64,
        mcnemar_p: mcnemar(b_only_wrong, a_only_wrong),
    })
}

/// McNemar between two models' predictions on the same labeled images: (A right and B
/// wrong, A wrong and B right, p-value). An error when either does not hold `classes` logits
/// per label.
pub fn paired(
    a: &[f32],
    b: &[f32],
    labels: &[Label],
    classes: usize,
) -> Result<(usize, usize, f64)> {
    check_paired(a, b, labels, classes)?;
    let (mut ab, mut ba) = (0, 0);
    for (i, &l) in labels.iter().enumerate() {
        let pa = argmax(&a[i * classes..(i + 1) * classes]) == l as usize;
        let pb = argmax(&b[i * classes..(i + 1) * classes]) == l as usize;
        ab += (pa && !pb) as usize;
        ba += (!pa && pb) as usize;
    }
    Ok((ab, ba, mcnemar(ab, ba)))
}

#[cfg(test)]
/// A plausible fidelity block with top-1 drop `drop` (for tests of what displays it).
pub(crate) fn example(drop: f64) -> Fidelity {
    Fidelity {
        images: 100,
        fp32_top1: 90.0,
        int8_top1: 90.0 - drop,
        drop,
        agreement: 95.0,
        fp32_right_int8_wrong: 3,
        fp32_wrong_int8_right: 1,
        logit_rmse: 0.1,
        logit_rmse_rel: 0.01,
        kl: 0.001,
        mcnemar_p: 0.5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mcnemar_matches_exact_binomial_values() {
        assert_eq!(mcnemar(0, 0), 1.0);
        assert_eq!(mcnemar(3, 3), 1.0);
        // n = 10, k = 1: 2 * (1 + 10) / 1024.
        assert!((mcnemar(1, 9) - 22.0 / 1024.0).abs() < 1e-12);
        assert!((mcnemar(9, 1) - 22.0 / 1024.0).abs() < 1e-12);
        // n = 5, k = 0: 2 / 32.
        assert!((mcnemar(0, 5) - 0.0625).abs() < 1e-12);
        // Large counts stay finite and symmetric: 100 vs 140 is significant at 5%, 100 vs 110 not.
        let p = mcnemar(100, 140);
        assert!(p > 0.005 && p < 0.05, "{p}");
        assert!(mcnemar(100, 110) > 0.4);
        assert_eq!(mcnemar(1000, 1000), 1.0);
    }

    #[test]
    fn fidelity_of_identical_and_shifted_logits() {
        let fp = vec![2.0, 0.0, 1.0, 0.0, 3.0, 1.0, 1.0, 0.5, 0.0, 0.0, 0.0, 4.0];
        let labels = [0, 1, 2, 2];
        let f = fidelity(&fp, &fp, &labels, 3).unwrap();
        assert_eq!(
            (f.agreement, f.drop, f.logit_rmse, f.mcnemar_p),
            (100.0, 0.0, 0.0, 1.0)
        );
        assert!(f.kl.abs() < 1e-12);
        assert_eq!(f.fp32_top1, 75.0);
        // Shift every logit by 0.5: predictions and softmax unchanged, RMSE 0.5.
        let q: Vec<f32> = fp.iter().map(|v| v + 0.5).collect();
        let f = fidelity(&fp, &q, &labels, 3).unwrap();
        assert!((f.logit_rmse - 0.5).abs() < 1e-9 && f.kl.abs() < 1e-9 && f.agreement == 100.0);
        // Flip image 0 (right -> wrong) and image 2 (wrong -> right).
        let mut q = fp.clone();
        q[0] = -1.0;
        q[8] = 9.0;
        let f = fidelity(&fp, &q, &labels, 3).unwrap();
        assert_eq!((f.fp32_right_int8_wrong, f.fp32_wrong_int8_right), (1, 1));
        assert_eq!(f.agreement, 50.0);
        assert!(f.kl > 0.0);
        assert_eq!(paired(&fp, &q, &labels, 3).unwrap(), (1, 1, 1.0));
    }

    /// Three flips one way, one the other, and a prediction that changes while both are
    /// wrong: every count lands in its own field, so swapped fields or directions fail.
    #[test]
    fn flips_are_counted_by_direction() {
        // Six images, three classes; row i predicts class `pred[i]` with logit 5.
        let logits = |pred: &[usize]| -> Vec<f32> {
            pred.iter()
                .flat_map(|&p| (0..3).map(move |c| if c == p { 5.0 } else { 0.0 }))
                .collect()
        };
        let labels = [0, 1, 2, 0, 1, 2];
        // FP32 right on 0, 1, 2, 3; wrong on 4, 5. INT8 breaks 0, 1, 2, fixes 4, and moves
        // 5's wrong prediction to another wrong class.
        let fp = logits(&[0, 1, 2, 0, 0, 0]);
        let q = logits(&[1, 2, 0, 0, 1, 1]);
        let f = fidelity(&fp, &q, &labels, 3).unwrap();
        assert_eq!((f.fp32_right_int8_wrong, f.fp32_wrong_int8_right), (3, 1));
        assert!((f.fp32_top1 - 400.0 / 6.0).abs() < 1e-9, "{}", f.fp32_top1);
        assert!((f.int8_top1 - 200.0 / 6.0).abs() < 1e-9, "{}", f.int8_top1);
        assert!((f.drop - 200.0 / 6.0).abs() < 1e-9, "{}", f.drop);
        assert!((f.agreement - 100.0 / 6.0).abs() < 1e-9, "{}", f.agreement);
        assert_eq!(f.mcnemar_p, mcnemar(3, 1));
        assert_eq!(paired(&fp, &q, &labels, 3).unwrap(), (3, 1, mcnemar(3, 1)));
        assert_eq!(paired(&q, &fp, &labels, 3).unwrap(), (1, 3, mcnemar(1, 3)));
        // The reverse comparison swaps the counts and the sign of the drop.
        let r = fidelity(&q, &fp, &labels, 3).unwrap();
        assert_eq!((r.fp32_right_int8_wrong, r.fp32_wrong_int8_right), (1, 3));
        assert!((r.drop + f.drop).abs() < 1e-9);
    }

    #[test]
    fn mismatched_logits_are_errors() {
        let labels = [0, 1];
        let fp = [1.0, 0.0, 0.0, 1.0];
        assert!(fidelity(&fp, &fp[..3], &labels, 2).is_err());
        assert!(fidelity(&fp[..3], &fp, &labels, 2).is_err());
        assert!(fidelity(&fp, &fp, &labels, 0).is_err());
        assert!(fidelity(&fp, &fp, &labels, usize::MAX).is_err());
        assert!(paired(&fp, &fp, &labels[..1], 2).is_err());
        assert_eq!(paired(&fp, &fp, &labels, 2).unwrap(), (0, 0, 1.0));
    }
}
