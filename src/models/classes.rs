//! What a model says about its inputs and outputs beyond its weights: class names and input
//! normalization, their defaults, and their metadata form (read and validated on load).

use super::{Normalization, CIFAR10_CLASSES};
use crate::graph::{Graph, Op, ValueId};
use std::collections::BTreeMap;

/// Class names of a model without any: CIFAR-10's for 10 outputs, else the indices.
pub fn default_class_names(n: usize) -> Vec<String> {
    if n == CIFAR10_CLASSES.len() {
        CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect()
    } else {
        (0..n).map(|i| i.to_string()).collect()
    }
}

/// The width of `graph`'s output: the rows of the conv/linear it comes from through
/// shape-keeping ops, `rows(node, weight name)` giving a layer's output channels. None when
/// the output does not come from such a layer (or the graph is malformed).
pub fn output_width(graph: &Graph, rows: impl Fn(ValueId, &str) -> Option<usize>) -> Option<usize> {
    let mut v = graph.output;
    // Bounded: a graph read from a file may contain a cycle.
    for _ in 0..=graph.nodes.len() {
        let n = graph.nodes.get(v)?;
        match &n.op {
            Op::Linear { weight, .. } | Op::Conv2d { weight, .. } => return rows(v, weight),
            Op::Act(_) | Op::Flatten | Op::GlobalAvgPool | Op::BatchNorm { .. } | Op::Softmax => {
                v = *n.inputs.first()?;
            }
            _ => return None,
        }
    }
    None
}

/// `norm_mean` and `norm_std` from an FP32 file's metadata (JSON lists of one number per
/// input channel, as many as `default` has), each replacing `default`'s when present. Errors
/// say which field is wrong and why.
pub fn norm_from_meta(
    meta: &BTreeMap<String, String>,
    default: Normalization,
) -> Result<Normalization, String> {
    let channels = default.channels();
    let field = |key: &str| -> Result<Option<Vec<f32>>, String> {
        let Some(text) = meta.get(key) else {
            return Ok(None);
        };
        let v: Vec<f32> = serde_json::from_str(text)
            .map_err(|e| format!("metadata `{key}` is not a list of numbers ({e}): {text:?}"))?;
        if v.len() != channels {
            return Err(format!(
                "metadata `{key}` has {} values, expected {channels} (one per input channel)",
                v.len()
            ));
        }
        Ok(Some(v))
    };
    let norm = Normalization {
        mean: field("norm_mean")?.unwrap_or(default.mean),
        std: field("norm_std")?.unwrap_or(default.std),
    };
    check_norm(&norm).map_err(|e| format!("metadata `norm_mean`/`norm_std`: {e}"))?;
    Ok(norm)
}

/// One mean and one deviation for each of `channels` input channels (and [`check_norm`]).
pub fn check_norm_channels(norm: &Normalization, channels: usize) -> Result<(), String> {
    check_norm(norm)?;
    if norm.channels() != channels {
        return Err(format!(
            "{} normalization values per list for an input of {channels} channels",
            norm.channels()
        ));
    }
    Ok(())
}

/// As many means as deviations (at least one), means finite, deviations positive and finite.
pub fn check_norm(norm: &Normalization) -> Result<(), String> {
    if norm.mean.is_empty() || norm.mean.len() != norm.std.len() {
        return Err(format!(
            "normalization has {} means and {} standard deviations",
            norm.mean.len(),
            norm.std.len()
        ));
    }
    if !norm.mean.iter().all(|m| m.is_finite()) {
        return Err(format!("normalization mean {:?} is not finite", norm.mean));
    }
    if !norm.std.iter().all(|s| s.is_finite() && *s > 0.0) {
        return Err(format!(
            "normalization std {:?} must be positive and finite",
            norm.std
        ));
    }
    Ok(())
}

/// `class_names` from a file's metadata (a JSON list of strings; a comma-separated list as
/// older imports wrote it), or None when absent; validated against the output `width`.
pub fn class_names_from_meta(
    meta: &BTreeMap<String, String>,
    width: usize,
) -> Result<Option<Vec<String>>, String> {
    let Some(text) = meta.get("class_names") else {
        return Ok(None);
    };
    let names: Vec<String> = if text.trim_start().starts_with('[') {
        serde_json::from_str(text)
            .map_err(|e| format!("metadata `class_names` is not a list of strings ({e})"))?
    } else {
        text.split(',').map(|s| s.trim().to_string()).collect()
    };
    check_class_names(&names, width).map_err(|e| format!("metadata `class_names`: {e}"))?;
    Ok(Some(names))
}

/// One non-empty name per output, unique ignoring case (datasets are matched by name).
pub fn check_class_names(names: &[String], width: usize) -> Result<(), String> {
    if names.len() != width {
        return Err(format!(
            "{} class names for a model with {width} outputs",
            names.len()
        ));
    }
    for (i, n) in names.iter().enumerate() {
        if n.trim().is_empty() {
            return Err(format!("class name {i} is empty"));
        }
        if let Some(j) = names[..i].iter().position(|m| m.eq_ignore_ascii_case(n)) {
            return Err(format!(
                "class names {j} ({:?}) and {i} ({n:?}) are the same",
                names[j]
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn norm_metadata_overrides_and_is_validated() {
        let d = super::super::cifar_norm();
        assert_eq!(norm_from_meta(&meta(&[]), d.clone()).unwrap(), d);
        let n = norm_from_meta(
            &meta(&[
                ("norm_mean", "[0.5, 0.25, 0.125]"),
                ("norm_std", "[1, 2, 4]"),
            ]),
            d.clone(),
        )
        .unwrap();
        assert_eq!(n.mean, [0.5, 0.25, 0.125]);
        assert_eq!(n.std, [1.0, 2.0, 4.0]);
        for (k, v, want) in [
            ("norm_mean", "[0.5, 0.5]", "2 values"),
            ("norm_std", "[1, 0, 1]", "positive"),
            ("norm_std", "[1, -1, 1]", "positive"),
            ("norm_std", "[1, 1, 1, 1]", "4 values"),
            ("norm_mean", "abc", "not a list"),
            ("norm_std", "[1, 1e39, 1]", "positive"),
            ("norm_mean", "[NaN, 0, 0]", "not a list"),
        ] {
            let e = norm_from_meta(&meta(&[(k, v)]), d.clone()).unwrap_err();
            assert!(e.contains(want) && e.contains(k), "{k}={v}: {e}");
        }
        // A gray model's normalization has one value per list.
        let gray = Normalization::for_channels(&d, 1);
        assert_eq!(gray.mean.len(), 1);
        let n = norm_from_meta(&meta(&[("norm_mean", "[0.25]")]), gray.clone()).unwrap();
        assert_eq!((n.mean, n.std), (vec![0.25], gray.std.clone()));
        let e = norm_from_meta(&meta(&[("norm_std", "[1, 1, 1]")]), gray).unwrap_err();
        assert!(e.contains("3 values, expected 1"), "{e}");
    }

    #[test]
    fn class_name_metadata_both_forms_and_validated() {
        let ten = default_class_names(10);
        let json = serde_json::to_string(&ten).unwrap();
        let got = class_names_from_meta(&meta(&[("class_names", &json)]), 10).unwrap();
        assert_eq!(got, Some(ten.clone()));
        let got = class_names_from_meta(&meta(&[("class_names", &ten.join(","))]), 10).unwrap();
        assert_eq!(got, Some(ten));
        assert_eq!(class_names_from_meta(&meta(&[]), 10).unwrap(), None);
        for (v, want) in [
            ("a,b,c", "3 class names for a model with 10 outputs"),
            (r#"["a","b","","d"]"#, "class name 2 is empty"),
            (r#"["a","b","A","d"]"#, "are the same"),
            ("[1, 2]", "not a list of strings"),
        ] {
            let w = if want.contains("10") { 10 } else { 4 };
            let e = class_names_from_meta(&meta(&[("class_names", v)]), w).unwrap_err();
            assert!(e.contains(want), "{v}: {e}");
        }
        assert_eq!(default_class_names(3), ["0", "1", "2"]);
    }
}
