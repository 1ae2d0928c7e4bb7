//! Ranges of user-given numbers: clap value parsers that check every numeric option when
//! the command line is parsed, naming the allowed range.

use std::fmt::Display;
use std::ops::{Bound, RangeBounds};
use std::str::FromStr;

/// A clap value parser for a whole number in `min..=max`; the message names the range (clap
/// prefixes the flag).
pub fn int<T>(min: T, max: T) -> impl Fn(&str) -> std::result::Result<T, String> + Clone
where
    T: FromStr + PartialOrd + Display + Copy + Send + Sync + 'static,
{
    move |s: &str| {
        let v: T = s
            .trim()
            .parse()
            .map_err(|_| format!("expected a whole number in {min}..={max}"))?;
        if v < min {
            Err(format!("must be at least {min}"))
        } else if v > max {
            Err(format!("must be at most {max}"))
        } else {
            Ok(v)
        }
    }
}

/// A clap value parser for a finite number in `range` (NaN and infinities are refused).
pub fn real<T>(
    range: impl RangeBounds<f64>,
) -> impl Fn(&str) -> std::result::Result<T, String> + Clone
where
    T: FromStr + Into<f64> + Copy + Send + Sync + 'static,
{
    let (lo, hi) = (range.start_bound().cloned(), range.end_bound().cloned());
    move |s: &str| {
        let shown = interval(lo, hi);
        let v: T = s
            .trim()
            .parse()
            .map_err(|_| format!("expected a number in {shown}"))?;
        let x: f64 = v.into();
        if x.is_finite() && (lo, hi).contains(&x) {
            Ok(v)
        } else {
            Err(format!("must be a finite number in {shown}"))
        }
    }
}

/// `[a, b)`-style text of a range.
fn interval(lo: Bound<f64>, hi: Bound<f64>) -> String {
    let l = match lo {
        Bound::Included(a) => format!("[{a}"),
        Bound::Excluded(a) => format!("({a}"),
        Bound::Unbounded => "(-inf".into(),
    };
    let h = match hi {
        Bound::Included(b) => format!("{b}]"),
        Bound::Excluded(b) => format!("{b})"),
        Bound::Unbounded => "inf)".into(),
    };
    format!("{l}, {h}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_parser_names_the_range() {
        let p = int(1usize, 10);
        assert_eq!(p("3"), Ok(3));
        assert_eq!(p("0").unwrap_err(), "must be at least 1");
        assert_eq!(p("11").unwrap_err(), "must be at most 10");
        assert!(p("-1").unwrap_err().contains("1..=10"));
        assert!(p("18446744073709551616").is_err());
    }

    #[test]
    fn real_parser_refuses_non_finite_and_out_of_range() {
        let p = real::<f64>(0.0..1.0);
        assert_eq!(p("0"), Ok(0.0));
        assert_eq!(p("0.5"), Ok(0.5));
        for bad in ["1", "-0.01", "NaN", "inf", "-inf", "200", "x"] {
            let e = p(bad).unwrap_err();
            assert!(e.contains("[0, 1)"), "{bad}: {e}");
        }
        let q = real::<f32>((Bound::Excluded(0.0), Bound::Included(1.0)));
        assert!(q("0").is_err());
        assert_eq!(q("1"), Ok(1.0f32));
        assert!(q("1e-30").is_ok());
        // f32 overflow parses as inf: refused.
        assert!(q("1e39").is_err());
    }
}
