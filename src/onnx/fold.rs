//! Import-time arithmetic that needs no graph op: shape-computing subgraphs folded to
//! constants (Shape, Gather, Unsqueeze, Cast, Concat, ConstantOfShape, ...), per-channel
//! constants read off broadcast shapes, and the symmetric padding `auto_pad` and `ceil_mode`
//! come to.

use super::proto::{data_type, AttributeProto, NodeProto};
use super::tensor::{decode, Const, DOUBLE};
use crate::array::Array;
use std::collections::HashMap;

/// Largest constant a fold may build (ConstantOfShape is sized by the file).
const MAX_FOLD_ELEMS: usize = 1 << 24;

fn attr<'a>(n: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    n.attribute.iter().find(|a| a.name.as_deref() == Some(name))
}

/// `n`'s output as a constant when every input it reads is one (or, for Shape, has a known
/// shape); None when `n` computes on graph values. `shape_of` gives a value's shape for one
/// image: the batch dimension reads 1, which the Reshape patterns synthcal maps allow for.
pub(super) fn fold(
    n: &NodeProto,
    opset: i64,
    consts: &HashMap<String, Const>,
    shape_of: &dyn Fn(&str) -> Option<Vec<usize>>,
) -> Result<Option<Const>, String> {
    let op = n.op_type.as_deref().unwrap_or("");
    let ins: Vec<&str> = n.input.iter().map(String::as_str).collect();
    if op == "Shape" {
        let Some(s) = ins.first().and_then(|i| shape_of(i)) else {
            return Ok(None);
        };
        let r = s.len() as i64;
        let clampi = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
        let start = clampi(attr(n, "start").and_then(|a| a.i).unwrap_or(0));
        let end = clampi(attr(n, "end").and_then(|a| a.i).unwrap_or(r));
        let dims = s.get(start..end.max(start)).unwrap_or(&[]);
        return Ok(Some(Const::I64(dims.iter().map(|&d| d as i64).collect())));
    }
    let foldable = matches!(
        op,
        "Gather"
            | "Unsqueeze"
            | "Squeeze"
            | "Cast"
            | "Concat"
            | "ConstantOfShape"
            | "Add"
            | "Sub"
            | "Mul"
            | "Div"
            | "Identity"
            | "Reshape"
    );
    let present: Vec<&str> = ins.iter().copied().filter(|i| !i.is_empty()).collect();
    if !foldable || present.is_empty() || !present.iter().all(|i| consts.contains_key(*i)) {
        return Ok(None);
    }
    let c = |k: usize| consts.get(ins[k]).ok_or(format!("input {k} is missing"));
    let ints = |k: usize| match c(k)? {
        Const::I64(v) => Ok(v.clone()),
        _ => Err(format!("input `{}` must be an integer constant", ins[k])),
    };
    let axes = |k: usize| -> Result<Option<Vec<i64>>, String> {
        if opset < 13 {
            return Ok(attr(n, "axes").map(|a| a.ints.clone()));
        }
        ins.get(k)
            .filter(|s| !s.is_empty())
            .map(|_| ints(k))
            .transpose()
    };
    let out = match op {
        "Identity" => c(0)?.clone(),
        "Gather" => {
            let (Const::I64(data), idx) = (c(0)?, ints(1)?) else {
                return Err("gathers from a float constant; only shape vectors fold".into());
            };
            if attr(n, "axis").and_then(|a| a.i).unwrap_or(0) != 0 {
                return Err("constant Gather on an axis other than 0".into());
            }
            let len = data.len() as i64;
            let picked = idx
                .iter()
                .map(|&i| {
                    let j = if i < 0 { i + len } else { i };
                    data.get(j as usize)
                        .copied()
                        .filter(|_| (0..len).contains(&j))
                        .ok_or(format!("index {i} outside a vector of {len}"))
                })
                .collect::<Result<_, _>>()?;
            Const::I64(picked)
        }
        "Unsqueeze" | "Squeeze" => match c(0)? {
            // Integer constants are flat: their rank does not matter here.
            Const::I64(v) => Const::I64(v.clone()),
            Const::F32(a) => {
                let mut shape = a.shape.clone();
                let ax = axes(1)?;
                if ax.as_ref().is_some_and(|a| a.len() > 64) {
                    return Err(format!("{op} of more than 64 axes"));
                }
                if op == "Squeeze" {
                    let r = shape.len() as i64;
                    let drop: Vec<usize> = match ax {
                        Some(ax) => ax
                            .iter()
                            .map(|&x| {
                                let i = if x < 0 { x + r } else { x };
                                match usize::try_from(i).ok().filter(|&i| i < shape.len()) {
                                    Some(i) if shape[i] == 1 => Ok(i),
                                    _ => Err(format!(
                                        "Squeeze axis {x} is not a dimension of size 1 of {shape:?}"
                                    )),
                                }
                            })
                            .collect::<Result<_, _>>()?,
                        None => (0..shape.len()).filter(|&i| shape[i] == 1).collect(),
                    };
                    shape = (0..shape.len())
                        .filter(|i| !drop.contains(i))
                        .map(|i| shape[i])
                        .collect();
                } else {
                    let mut ax = ax.ok_or("Unsqueeze without axes")?;
                    if shape.len() + ax.len() > 64 {
                        return Err(format!("Unsqueeze to rank {}", shape.len() + ax.len()));
                    }
                    let r = (shape.len() + ax.len()) as i64;
                    ax.iter_mut()
                        .for_each(|x| *x = if *x < 0 { *x + r } else { *x });
                    ax.sort();
                    if ax.windows(2).any(|w| w[0] == w[1]) {
                        return Err(format!("Unsqueeze axes {ax:?} repeat"));
                    }
                    for &x in &ax {
                        if x < 0 || x as usize > shape.len() {
                            return Err(format!("Unsqueeze axis {x} out of range"));
                        }
                        shape.insert(x as usize, 1);
                    }
                }
                Const::F32(Array::new(&shape, a.data.clone()))
            }
            _ => return Ok(None),
        },
        "Cast" => {
            let to = attr(n, "to").and_then(|a| a.i).unwrap_or(0) as i32;
            match (c(0)?, to) {
                (Const::I64(v), data_type::INT64 | data_type::INT32) => Const::I64(v.clone()),
                (Const::F32(a), data_type::INT64 | data_type::INT32) => {
                    Const::I64(a.data.iter().map(|&x| x as i64).collect())
                }
                (Const::I64(v), data_type::FLOAT | DOUBLE) => Const::F32(Array::new(
                    &[v.len()],
                    v.iter().map(|&x| x as f32).collect(),
                )),
                (Const::F32(a), data_type::FLOAT | DOUBLE) => Const::F32(a.clone()),
                _ => return Err(format!("a constant Cast to data type {to}")),
            }
        }
        "Concat" => {
            let mut all = Vec::new();
            for k in 0..ins.len() {
                all.extend(ints(k)?);
                if all.len() > MAX_FOLD_ELEMS {
                    return Err(format!("a Concat of more than {MAX_FOLD_ELEMS} integers"));
                }
            }
            Const::I64(all)
        }
        "ConstantOfShape" => {
            let shape: Vec<usize> = ints(0)?
                .iter()
                .map(|&d| usize::try_from(d).map_err(|_| format!("negative dimension {d}")))
                .collect::<Result<_, _>>()?;
            // Non-zero dimensions bounded too: a zero-element constant may not claim vast ones.
            let numel = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            if super::tensor::extent(&shape).is_none_or(|m| m > MAX_FOLD_ELEMS) {
                return Err(format!("ConstantOfShape {shape:?} is implausibly large"));
            }
            let numel = numel.unwrap_or(0);
            let value = match attr(n, "value").and_then(|a| a.t.as_ref()) {
                Some(t) => decode(t, "value")?,
                None => Const::F32(Array::new(&[1], vec![0.0])),
            };
            match value {
                Const::F32(v) if v.numel() == 1 => {
                    Const::F32(Array::new(&shape, vec![v.data[0]; numel]))
                }
                Const::I64(v) if v.len() == 1 => Const::I64(vec![v[0]; numel]),
                _ => return Err("ConstantOfShape `value` must be one number".into()),
            }
        }
        "Reshape" => {
            let Const::F32(a) = c(0)? else {
                return Ok(None);
            };
            let spec = ints(1)?;
            let mut shape: Vec<i64> = spec
                .iter()
                .enumerate()
                .map(|(i, &d)| {
                    if d == 0 {
                        a.shape.get(i).map_or(0, |&s| s as i64)
                    } else {
                        d
                    }
                })
                .collect();
            let known = (shape.iter().filter(|&&d| d > 0))
                .try_fold(1i64, |p, &d| p.checked_mul(d))
                .filter(|&k| k <= 1 << 30)
                .ok_or(format!(
                    "reshape to {spec:?} overflows (over 2^30 elements)"
                ))?;
            if let Some(m) = shape.iter_mut().find(|d| **d == -1) {
                *m = if known > 0 {
                    a.numel() as i64 / known
                } else {
                    0
                };
            }
            let shape: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
            let numel = shape.iter().try_fold(1usize, |p, &d| p.checked_mul(d));
            if numel != Some(a.numel()) {
                return Err(format!("reshape of {:?} to {spec:?}", a.shape));
            }
            Const::F32(Array::new(&shape, a.data.clone()))
        }
        // Add / Sub / Mul / Div of two constants.
        _ => {
            let f = |x: f64, y: f64| match op {
                "Add" => x + y,
                "Sub" => x - y,
                "Mul" => x * y,
                _ => x / y,
            };
            match (c(0)?, c(1)?) {
                (Const::I64(a), Const::I64(b)) => {
                    // i64::MIN / -1 overflows: refused with division by zero.
                    let g = |x: i64, y: i64| match op {
                        "Add" => Some(x.wrapping_add(y)),
                        "Sub" => Some(x.wrapping_sub(y)),
                        "Mul" => Some(x.wrapping_mul(y)),
                        _ => x.checked_div_euclid(y),
                    };
                    let v = broadcast(a, b, |x, y| g(x, y).ok_or(()))?;
                    let v: Result<Vec<i64>, ()> = v.into_iter().collect();
                    Const::I64(v.map_err(|_| {
                        "integer division by zero, or of the smallest int64 by -1".to_string()
                    })?)
                }
                (Const::F32(a), Const::F32(b)) => {
                    let v = broadcast(&a.data, &b.data, |x, y| f(x as f64, y as f64) as f32)?;
                    // The shape of the side whose length the result has (an empty constant
                    // against a scalar is empty).
                    let shape = if v.len() == a.numel() {
                        &a.shape
                    } else {
                        &b.shape
                    };
                    Const::F32(Array::new(shape, v))
                }
                _ => return Err(format!("{op} of an integer and a float constant")),
            }
        }
    };
    Ok(Some(out))
}

/// `a op b` elementwise, either side a single value.
fn broadcast<T: Copy, U>(a: &[T], b: &[T], f: impl Fn(T, T) -> U) -> Result<Vec<U>, String> {
    Ok(match (a.len(), b.len()) {
        (x, y) if x == y => a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect(),
        (_, 1) => a.iter().map(|&x| f(x, b[0])).collect(),
        (1, _) => b.iter().map(|&y| f(a[0], y)).collect(),
        (x, y) => {
            return Err(format!(
                "constants of {x} and {y} elements do not broadcast"
            ))
        }
    })
}

/// The per-channel values of constant `c` broadcast against a value of shape `x` (C = x[1]):
/// a scalar, or a shape whose only non-1 dimension lines up with x's channels. ONNX
/// broadcasting aligns trailing dimensions, so a `[C]` constant on an image scales its width.
pub(super) fn per_channel(c: &Array, x: &[usize], what: &str) -> Result<Vec<f32>, String> {
    let ch = x.get(1).copied().unwrap_or(0);
    if c.numel() == 1 {
        return Ok(vec![c.data[0]; ch]);
    }
    let fits = c.shape.len() <= x.len()
        && c.shape
            .iter()
            .rev()
            .zip(x.iter().rev())
            .enumerate()
            .all(|(k, (&d, &xd))| {
                if x.len() - 1 - k == 1 {
                    d == xd
                } else {
                    d == 1
                }
            });
    if fits && c.numel() == ch {
        return Ok(c.data.clone());
    }
    Err(format!(
        "constant `{what}` of shape {:?} does not broadcast per channel over {x:?}; only a scalar, [C, 1, 1] on images or [C] on [N, C] is supported",
        c.shape
    ))
}

/// The (begin, end) padding of one spatial axis for `auto_pad` SAME_UPPER / SAME_LOWER.
pub(super) fn same_pads(size: usize, k: usize, stride: usize, upper: bool) -> (i64, i64) {
    let out = size.div_ceil(stride.max(1));
    let reach = out
        .saturating_sub(1)
        .saturating_mul(stride)
        .saturating_add(k);
    let total = reach.saturating_sub(size).min(i64::MAX as usize) as i64;
    let (small, big) = (total / 2, total - total / 2);
    if upper {
        (small, big)
    } else {
        (big, small)
    }
}

/// Whether a pooling window's `ceil_mode` output size equals the floor one, with padding
/// (begin, end); a last window starting in the end padding is dropped.
pub(super) fn ceil_is_floor(size: usize, k: usize, stride: usize, pad: (usize, usize)) -> bool {
    use crate::ops::pool::pooled_size;
    pooled_size(size, k, stride, pad, true) == pooled_size(size, k, stride, pad, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_pads_follow_the_onnx_rule() {
        // 7 wide, k 3, stride 2: out 4, total pad (4-1)*2+3-7 = 2.
        assert_eq!(same_pads(7, 3, 2, true), (1, 1));
        // 8 wide, k 3, stride 2: out 4, total 1, the extra at the end (upper) or start.
        assert_eq!(same_pads(8, 3, 2, true), (0, 1));
        assert_eq!(same_pads(8, 3, 2, false), (1, 0));
        assert_eq!(same_pads(5, 3, 1, true), (1, 1));
    }

    #[test]
    fn ceil_mode_changes_size_only_on_a_partial_window() {
        assert!(ceil_is_floor(8, 2, 2, (0, 0)));
        assert!(!ceil_is_floor(7, 2, 2, (0, 0)));
        // 5 + 2 padded, k 2 stride 2: a ceil window at 6 would start in the end padding.
        assert!(ceil_is_floor(5, 2, 2, (1, 1)));
        assert!(!ceil_is_floor(6, 3, 2, (1, 1)));
        // An end pad that completes the last window leaves nothing partial.
        assert!(ceil_is_floor(7, 2, 2, (0, 1)));
    }

    #[test]
    fn per_channel_constants_align_with_channels_only() {
        let c = Array::new(&[3, 1, 1], vec![1.0, 2.0, 3.0]);
        assert_eq!(
            per_channel(&c, &[1, 3, 4, 4], "c").unwrap(),
            [1.0, 2.0, 3.0]
        );
        let s = Array::new(&[], vec![2.0]);
        assert_eq!(per_channel(&s, &[1, 2, 4, 4], "s").unwrap(), [2.0, 2.0]);
        // [C] on an image broadcasts along the width: refused, not misread.
        let w = Array::new(&[3], vec![1.0, 2.0, 3.0]);
        assert!(per_channel(&w, &[1, 3, 3, 3], "w").is_err());
        assert_eq!(per_channel(&w, &[1, 3], "w").unwrap(), [1.0, 2.0, 3.0]);
    }

    #[test]
    fn shape_chains_fold_to_constants() {
        let node = |op: &str, ins: &[&str]| NodeProto {
            op_type: Some(op.into()),
            input: ins.iter().map(|s| s.to_string()).collect(),
            output: vec!["y".into()],
            ..Default::default()
        };
        let mut consts = HashMap::new();
        let shape_of = |v: &str| (v == "x").then(|| vec![1, 8, 4, 4]);
        let s = fold(&node("Shape", &["x"]), 13, &consts, &shape_of).unwrap();
        assert!(matches!(s, Some(Const::I64(ref v)) if v == &[1, 8, 4, 4]));
        consts.insert("s".to_string(), s.unwrap());
        consts.insert("i".to_string(), Const::I64(vec![0]));
        consts.insert("m".to_string(), Const::I64(vec![-1]));
        let g = fold(&node("Gather", &["s", "i"]), 13, &consts, &shape_of).unwrap();
        consts.insert("g".to_string(), g.unwrap());
        let c = fold(&node("Concat", &["g", "m"]), 13, &consts, &shape_of).unwrap();
        assert!(matches!(c, Some(Const::I64(ref v)) if v == &[1, -1]));
        // A node on a graph value is left to the importer.
        assert!(fold(&node("Relu", &["x"]), 13, &consts, &shape_of)
            .unwrap()
            .is_none());
        let bad = fold(&node("Gather", &["s", "m2"]), 13, &consts, &shape_of).unwrap();
        assert!(bad.is_none(), "an unknown input is not a constant");
    }
}
