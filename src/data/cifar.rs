//! The official CIFAR-10 binary format: records of 1 label byte + 3072 CHW pixel bytes.

use std::path::{Path, PathBuf};

use super::{DataError, Dataset, Result, CIFAR10_CLASSES, IMG_BYTES};

const RECORD: usize = 1 + IMG_BYTES;
const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
const TEST_FILES: [&str; 1] = ["test_batch.bin"];
const SUBDIR: &str = "cifar-10-batches-bin";
/// Records in each official file; a file of that name holding fewer was cut short.
pub(super) const OFFICIAL_RECORDS: usize = 10_000;

/// A CIFAR-10 split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// `data_batch_1.bin` .. `data_batch_5.bin`, 50,000 images in file order.
    Train,
    /// `test_batch.bin`, 10,000 images.
    Test,
}

/// Loads a CIFAR-10 split from `path`, which may be the `cifar-10-batches-bin`
/// directory, its parent, or a single `.bin` file (then `split` is ignored and only
/// that file is read). Class names come from `batches.meta.txt` beside the files if it
/// holds exactly 10 non-empty lines, else the standard names. A file with an official name
/// (`test_batch.bin`, `data_batch_N.bin`) must hold the official 10,000 records.
pub fn load_cifar10_bin(path: impl AsRef<Path>, split: Split) -> Result<Dataset> {
    load(path.as_ref(), split, OFFICIAL_RECORDS)
}

/// [`load_cifar10_bin`] with the records an official file holds as a parameter (for tests).
fn load(path: &Path, split: Split, official: usize) -> Result<Dataset> {
    let (dir, files, kind) = if path.is_file() {
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        (dir, vec![path.to_path_buf()], "file")
    } else {
        let dir = if path.join(SUBDIR).is_dir() {
            path.join(SUBDIR)
        } else {
            path.to_path_buf()
        };
        let names: &[&str] = match split {
            Split::Train => &TRAIN_FILES,
            Split::Test => &TEST_FILES,
        };
        let missing: Vec<String> = names
            .iter()
            .filter(|n| !dir.join(n).is_file())
            .map(|n| n.to_string())
            .collect();
        if !missing.is_empty() {
            return Err(DataError::Missing { dir, missing });
        }
        let files = names.iter().map(|n| dir.join(n)).collect();
        let kind = match split {
            Split::Train => "train split",
            Split::Test => "test split",
        };
        (dir, files, kind)
    };

    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for f in &files {
        read_bin(f, &mut pixels, &mut labels, official)?;
    }
    let file_list: Vec<String> = files
        .iter()
        .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    let source = format!(
        "CIFAR-10 binary {kind} ({}) from {}",
        file_list.join(", "),
        dir.display()
    );
    Dataset::new(pixels, labels, class_names(&dir)?, source)
}

/// Appends the records of one file, validating length and labels.
fn read_bin(
    path: &Path,
    pixels: &mut Vec<u8>,
    labels: &mut Vec<super::Label>,
    official: usize,
) -> Result<()> {
    let io_err = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bytes = std::fs::read(path).map_err(io_err)?;
    let n = bytes.len() / RECORD;
    if bytes.len() % RECORD != 0 {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            len: bytes.len() as u64,
            record: n,
            offset: (n * RECORD) as u64,
        });
    }
    if n == 0 {
        return Err(DataError::Format {
            path: path.to_path_buf(),
            msg: "file is empty, expected 3073-byte CIFAR records".into(),
        });
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if n != official && (TEST_FILES.contains(&name) || TRAIN_FILES.contains(&name)) {
        return Err(DataError::NotOfficialSize {
            path: path.to_path_buf(),
            len: bytes.len() as u64,
            records: n,
        });
    }
    pixels.reserve(n * IMG_BYTES);
    labels.reserve(n);
    for (i, rec) in bytes.chunks_exact(RECORD).enumerate() {
        if rec[0] > 9 {
            return Err(DataError::BadLabel {
                path: path.to_path_buf(),
                record: i,
                offset: (i * RECORD) as u64,
                label: rec[0],
            });
        }
        labels.push(rec[0].into());
        pixels.extend_from_slice(&rec[1..]);
    }
    Ok(())
}

fn class_names(dir: &Path) -> Result<Vec<String>> {
    let meta: PathBuf = dir.join("batches.meta.txt");
    let standard = || CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect();
    if !meta.is_file() {
        return Ok(standard());
    }
    let text = std::fs::read_to_string(&meta).map_err(|source| DataError::Io {
        path: meta.clone(),
        source,
    })?;
    // The official file ends with blank lines; ignore them.
    let names: Vec<String> = crate::data::classes::names_per_line(&text);
    if names.len() == CIFAR10_CLASSES.len() {
        Ok(names)
    } else {
        log::warn!(
            "{}: {} class names, expected 10; using the standard CIFAR-10 names",
            meta.display(),
            names.len()
        );
        Ok(standard())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_util::TempDir;

    /// `n` records with labels `i % 10` and pixel bytes `(i + k) % 256`.
    fn records(n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..n {
            out.push((i % 10) as u8);
            out.extend((0..IMG_BYTES).map(|k| ((i + k) % 256) as u8));
        }
        out
    }

    #[test]
    fn round_trip_dir_parent_and_file() {
        let t = TempDir::new("cifar-ok");
        let d = t.0.join(SUBDIR);
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("test_batch.bin"), records(12)).unwrap();
        // Official names hold 10,000 records: 12 is a cut-short file.
        let e = load_cifar10_bin(&t.0, Split::Test).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("test_batch.bin") && msg.contains("12 records"),
            "{msg}"
        );
        assert!(msg.contains("10000 records (30730000 bytes)"), "{msg}");
        std::fs::write(
            d.join("batches.meta.txt"),
            "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n\n",
        )
        .unwrap();
        for p in [&t.0, &d, &d.join("test_batch.bin")] {
            let ds = load(p, Split::Test, 12).unwrap();
            assert_eq!(ds.len(), 12);
            assert_eq!(ds.labels()[11], 1);
            assert_eq!(ds.image(3)[0..2], [3, 4]);
            assert_eq!(ds.class_names()[9], "j");
        }
        // Train split: all five files concatenated in order.
        for f in TRAIN_FILES {
            std::fs::write(d.join(f), records(3)).unwrap();
        }
        std::fs::write(d.join(TRAIN_FILES[4]), records(2)).unwrap();
        let e = load(&t.0, Split::Train, 3).unwrap_err().to_string();
        assert!(
            e.contains("data_batch_5.bin") && e.contains("2 records"),
            "{e}"
        );
        std::fs::write(d.join(TRAIN_FILES[4]), records(3)).unwrap();
        let tr = load(&t.0, Split::Train, 3).unwrap();
        assert_eq!(tr.len(), 15);
        assert_eq!(tr.labels()[2..5], [2, 0, 1]);
        // Another name is any whole number of records (a user's subset).
        std::fs::copy(d.join(TRAIN_FILES[4]), t.0.join("subset.bin")).unwrap();
        assert_eq!(
            load_cifar10_bin(t.0.join("subset.bin"), Split::Test)
                .unwrap()
                .len(),
            3
        );
    }

    #[test]
    fn truncated_file_names_file_and_offset() {
        let t = TempDir::new("cifar-trunc");
        let f = t.0.join("test_batch.bin");
        let mut b = records(3);
        b.truncate(2 * RECORD + 100);
        std::fs::write(&f, b).unwrap();
        let msg = load_cifar10_bin(&t.0, Split::Test).unwrap_err().to_string();
        assert!(msg.contains("test_batch.bin"), "{msg}");
        assert!(
            msg.contains(&format!("byte offset {}", 2 * RECORD)),
            "{msg}"
        );
        assert!(msg.contains(&format!("{}", 2 * RECORD + 100)), "{msg}");
    }

    #[test]
    fn bad_label_names_record_and_offset() {
        let t = TempDir::new("cifar-label");
        let f = t.0.join("one.bin");
        let mut b = records(4);
        b[2 * RECORD] = 10;
        std::fs::write(&f, b).unwrap();
        let msg = load_cifar10_bin(&f, Split::Test).unwrap_err().to_string();
        assert!(msg.contains("one.bin") && msg.contains("record 2"), "{msg}");
        assert!(
            msg.contains(&format!("byte offset {}", 2 * RECORD)),
            "{msg}"
        );
        assert!(msg.contains("label 10"), "{msg}");
    }

    #[test]
    fn missing_files_are_listed_with_url() {
        let t = TempDir::new("cifar-missing");
        std::fs::write(t.0.join("data_batch_1.bin"), records(1)).unwrap();
        let err = load_cifar10_bin(&t.0, Split::Train).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("data_batch_2.bin") && msg.contains("data_batch_5.bin"));
        assert!(!msg.contains("missing data_batch_1.bin"), "{msg}");
        assert!(msg.contains(super::super::CIFAR10_URL), "{msg}");
        let gone = load_cifar10_bin(t.0.join("nope"), Split::Test).unwrap_err();
        assert!(matches!(gone, DataError::Missing { .. }));
    }
}
