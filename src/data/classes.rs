//! Relabelling a dataset onto a model's classes by name, so that label `i` means the model's
//! output `i` whatever order the folders or files listed the classes in.

use super::{DataError, Dataset, Label, Result, MAX_CLASSES};

impl Dataset {
    /// The same images with `classes` (a model's class names, in output order) as class
    /// list: each of the dataset's classes maps to the class of the same name, ignoring ASCII
    /// case and surrounding blanks. A class with no match is an error listing `classes`, even
    /// without images (a `classes.txt` line the model lacks); so are two classes naming one.
    /// Unused `class_<i>` placeholders (an image folder's unlisted indices) are skipped.
    pub fn map_classes(self, classes: &[String]) -> Result<Dataset> {
        if self.class_names == classes {
            return Ok(self);
        }
        if classes.len() > MAX_CLASSES {
            return Err(DataError::Invalid(format!(
                "{} classes, at most {MAX_CLASSES} supported",
                classes.len()
            )));
        }
        let counts = self.class_counts();
        let mut map: Vec<Label> = vec![0; self.num_classes()];
        let mut taken: Vec<Option<&str>> = vec![None; classes.len()];
        for (i, name) in self.class_names.iter().enumerate() {
            let Some(j) = classes
                .iter()
                .position(|c| c.trim().eq_ignore_ascii_case(name.trim()))
            else {
                if counts[i] == 0 && *name == format!("class_{i}") {
                    continue;
                }
                return Err(DataError::UnknownClass {
                    origin: self.source.clone(),
                    name: name.clone(),
                    known: classes.to_vec(),
                });
            };
            if let Some(prev) = taken[j].replace(name) {
                return Err(DataError::Invalid(format!(
                    "{}: classes {prev:?} and {name:?} are both the model's class {:?}",
                    self.source, classes[j]
                )));
            }
            map[i] = j as Label;
        }
        let labels = self.labels.iter().map(|&l| map[l as usize]).collect();
        Dataset::from_images(self.images, labels, classes.to_vec(), self.source)
    }

    /// Gives a set whose labels carry no class (noise, fractals) the class list `classes`:
    /// image i becomes class i mod `classes.len()`, so a model with any class names takes it.
    pub fn round_robin_classes(self, classes: &[String]) -> Result<Dataset> {
        let k = classes.len();
        if !(1..=MAX_CLASSES).contains(&k) {
            return Err(DataError::Invalid(format!(
                "{}: {k} classes, 1 to {MAX_CLASSES} supported",
                self.source
            )));
        }
        let labels = (0..self.len()).map(|i| (i % k) as Label).collect();
        Dataset::from_images(self.images, labels, classes.to_vec(), self.source)
    }
}

/// Class names written one per line (blank lines and surrounding spaces ignored), as CIFAR's
/// `batches.meta.txt`, an image folder's `classes.txt` and `import --classes` have them.
pub fn names_per_line(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::IMG_BYTES;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn set(labels: &[u16], classes: &[&str]) -> Dataset {
        let px = (0..labels.len() * IMG_BYTES).map(|k| k as u8).collect();
        Dataset::new(px, labels.to_vec(), names(classes), "test set").unwrap()
    }

    #[test]
    fn maps_by_name_ignoring_case_and_order() {
        let model = names(&["cat", "dog", "frog"]);
        let ds = set(&[0, 1, 1, 0], &["Frog", "CAT"]);
        let px = ds.pixels().to_vec();
        let m = ds.map_classes(&model).unwrap();
        assert_eq!(m.labels(), &[2, 0, 0, 2]);
        assert_eq!(m.class_names(), model.as_slice());
        assert_eq!(m.pixels(), px.as_slice());
        // Unused placeholders of an image folder's unlisted indices are not classes.
        let ds = set(&[1], &["class_0", "dog"]);
        assert_eq!(ds.map_classes(&model).unwrap().labels(), &[1]);
    }

    #[test]
    fn round_robin_takes_any_class_list() {
        let ds = set(&[0, 0, 0, 0, 0], &["a"]);
        let px = ds.pixels().to_vec();
        let m = ds.round_robin_classes(&names(&["x", "y", "z"])).unwrap();
        assert_eq!(m.labels(), &[0, 1, 2, 0, 1]);
        assert_eq!(m.class_names(), names(&["x", "y", "z"]).as_slice());
        assert_eq!(m.pixels(), px.as_slice());
        let e = set(&[0], &["a"]).round_robin_classes(&[]).unwrap_err();
        assert!(e.to_string().contains("test set"), "{e}");
    }

    #[test]
    fn unknown_or_doubled_class_is_refused() {
        let model = names(&["airplane", "cat"]);
        let e = set(&[0], &["plane", "cat"])
            .map_classes(&model)
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("`plane`") && msg.contains("airplane, cat"),
            "{msg}"
        );
        assert!(msg.contains("test set"), "{msg}");
        // A class without images counts too (an extra classes.txt line).
        let e = set(&[0], &["cat", "airplane", "horse"])
            .map_classes(&model)
            .unwrap_err();
        assert!(e.to_string().contains("`horse`"), "{e}");
        let e = set(&[0], &["cat", "CAT"]).map_classes(&model).unwrap_err();
        assert!(e.to_string().contains("both"), "{e}");
    }
}
