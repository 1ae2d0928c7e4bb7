//! Named parameter tensors (host copies), validated against what a graph expects.

use crate::array::Array;
use crate::error::{Error, Result};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default)]
pub struct Params {
    pub tensors: BTreeMap<String, Array>,
}

impl Params {
    pub fn get(&self, name: &str) -> Result<&Array> {
        self.tensors
            .get(name)
            .ok_or_else(|| Error::Invalid(format!("missing parameter tensor `{name}`")))
    }

    pub fn insert(&mut self, name: impl Into<String>, a: Array) {
        self.tensors.insert(name.into(), a);
    }

    /// Refuses values no trained model holds, naming the tensor: NaN or infinite numbers, and
    /// negative BatchNorm running variances (their square root would be NaN).
    pub fn validate(&self) -> Result<()> {
        validate_tensors(self.tensors.iter().map(|(n, a)| (n.as_str(), a)))
    }

    /// Checks that every expected tensor is present with its shape; lists all problems at once.
    pub fn check(&self, expected: &[(String, Vec<usize>)]) -> Result<()> {
        let problems: Vec<String> = expected
            .iter()
            .filter_map(|(name, shape)| match self.tensors.get(name) {
                None => Some(format!("  missing `{name}` (expected shape {shape:?})")),
                Some(a) if &a.shape != shape => Some(format!(
                    "  `{name}` has shape {:?}, expected {shape:?}",
                    a.shape
                )),
                Some(_) => None,
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "weights do not fit the architecture ({} problems):\n{}",
                problems.len(),
                problems.join("\n")
            )))
        }
    }
}

/// [`Params::validate`] over any named tensors (a GAN checkpoint's, say).
pub fn validate_tensors<'a>(tensors: impl IntoIterator<Item = (&'a str, &'a Array)>) -> Result<()> {
    for (name, a) in tensors {
        if let Some((i, v)) = a.data.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(Error::Invalid(format!(
                "tensor `{name}`: value {v} at index {i} is not finite"
            )));
        }
        if name.ends_with("running_var") {
            if let Some((i, v)) = a.data.iter().enumerate().find(|(_, v)| **v < 0.0) {
                return Err(Error::Invalid(format!(
                    "tensor `{name}`: variance {v} at index {i} is negative"
                )));
            }
        }
    }
    Ok(())
}
