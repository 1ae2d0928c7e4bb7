//! Seeded class-balanced subsets.

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::{DataError, Dataset, Result};

/// Indices of `per_class` images of every class, chosen at random with
/// `StdRng::seed_from_u64(seed)` (deterministic for a seed and the locked `rand`
/// version; classes are drawn in label order from one generator).
///
/// Order is interleaved: class 0, 1, ..., K-1, class 0, 1, ... so that every batch
/// or prefix of the subset is itself (nearly) balanced. Within a class the chosen
/// images keep their dataset order.
pub fn balanced_subset_indices(ds: &Dataset, per_class: usize, seed: u64) -> Result<Vec<usize>> {
    if per_class == 0 || ds.num_classes() == 0 {
        return Err(DataError::Invalid(
            "balanced subset needs per_class > 0 and at least one class".into(),
        ));
    }
    let mut by_class = vec![Vec::new(); ds.num_classes()];
    for (i, &l) in ds.labels().iter().enumerate() {
        by_class[l as usize].push(i);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut chosen = Vec::with_capacity(by_class.len());
    for (c, members) in by_class.iter().enumerate() {
        if members.len() < per_class {
            return Err(DataError::NotEnough {
                class: c,
                name: ds.class_names()[c].clone(),
                have: members.len(),
                want: per_class,
            });
        }
        let mut pick: Vec<usize> = rand::seq::index::sample(&mut rng, members.len(), per_class)
            .into_iter()
            .map(|k| members[k])
            .collect();
        pick.sort_unstable();
        chosen.push(pick);
    }
    Ok((0..per_class)
        .flat_map(|k| chosen.iter().map(move |p| p[k]))
        .collect())
}

/// The images of [`balanced_subset_indices`] as a new dataset.
pub fn balanced_subset(ds: &Dataset, per_class: usize, seed: u64) -> Result<Dataset> {
    let mut out = ds.subset(&balanced_subset_indices(ds, per_class, seed)?)?;
    out.source = format!(
        "balanced subset, {per_class} per class, seed {seed}, of [{}]",
        ds.source()
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::IMG_BYTES;

    fn dataset(counts: &[usize]) -> Dataset {
        let labels: Vec<u16> = (0..counts.len())
            .flat_map(|c| std::iter::repeat_n(c as u16, counts[c]))
            .collect();
        let px = (0..labels.len() * IMG_BYTES)
            .map(|k| (k / IMG_BYTES) as u8)
            .collect();
        let names = (0..counts.len()).map(|c| format!("k{c}")).collect();
        Dataset::new(px, labels, names, "t").unwrap()
    }

    #[test]
    fn deterministic_balanced_interleaved() {
        let ds = dataset(&[20, 30, 25]);
        let a = balanced_subset_indices(&ds, 7, 42).unwrap();
        assert_eq!(a, balanced_subset_indices(&ds, 7, 42).unwrap());
        assert_ne!(a, balanced_subset_indices(&ds, 7, 43).unwrap());
        let sub = balanced_subset(&ds, 7, 42).unwrap();
        assert_eq!(sub.len(), 21);
        assert_eq!(sub.class_counts(), vec![7, 7, 7]);
        assert_eq!(sub.labels()[..6], [0, 1, 2, 0, 1, 2]);
        let mut uniq = a.clone();
        uniq.sort_unstable();
        uniq.dedup();
        assert_eq!(uniq.len(), 21);
        assert!(sub.source().contains("seed 42"));
    }

    #[test]
    fn not_enough_names_class() {
        let ds = dataset(&[5, 2]);
        let msg = balanced_subset(&ds, 3, 0).unwrap_err().to_string();
        assert!(
            msg.contains("class 1 (k1) has 2 images, 3 requested"),
            "{msg}"
        );
        assert!(balanced_subset(&ds, 0, 0).is_err());
    }
}
