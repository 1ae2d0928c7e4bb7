//! Image-folder datasets: `root/<class folder>/<image>.png|jpg|jpeg`.
//!
//! Class index rule, first match wins:
//! 1. `root/classes.txt` (one name per line, blank lines ignored) lists the classes in
//!    label order; each folder maps to the class of the same name, else to the index in
//!    its `<idx>` or `<idx>_<name>` form.
//! 2. Every folder is a CIFAR-10 class name: standard CIFAR-10 labels and names, so a
//!    folder holding only `cat/` and `dog/` still gets labels 3 and 5.
//! 3. Every folder is a number `<idx>`: label `idx`; CIFAR-10 names if all are 0..=9.
//! 4. Every folder is `<idx>_<name>`: label `idx`, name `name` (unlisted indices are
//!    named `class_<idx>`).
//! 5. Otherwise folders sorted by name get labels 0, 1, 2, ...
//!
//! Folders and files are sorted by name (byte order, not natural order); hidden
//! entries (leading `.`) and non-image files are ignored. The loaded order is class
//! folder by class folder, files in name order.
//!
//! These are the folder's own classes; commands that evaluate or calibrate a model then
//! relabel them onto the model's classes by name with [`Dataset::map_classes`], so a folder
//! named differently from the model's classes is an error, never a silent relabelling.

use std::fs;
use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::{ExtendedColorType, ImageEncoder, RgbImage};

use super::{DataError, Dataset, Result, CIFAR10_CLASSES, IMG_SIDE, MAX_CLASSES};

/// What to do with images that are not of the size asked for (a model's input size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizePolicy {
    /// Fail with an error naming the file.
    Reject,
    /// Stretch to the size asked for (no crop, aspect ratio not kept) with [`RESIZE_FILTER`].
    Resize,
}

/// Triangle = bilinear, and `image`'s resize widens the kernel when downscaling, so it
/// is antialiased like PIL's BILINEAR (torchvision's default `Resize` on PIL images).
pub const RESIZE_FILTER: FilterType = FilterType::Triangle;

/// Loads an image folder of 32x32 images (CIFAR's size; see [`load_image_folder_at`]).
pub fn load_image_folder(dir: impl AsRef<Path>, policy: ResizePolicy) -> Result<Dataset> {
    load_image_folder_at(dir, [IMG_SIDE, IMG_SIDE], policy)
}

/// Loads an image folder (see the module docs for the class rule) as images of `size`
/// (`[height, width]`), resizing or refusing others as `policy` says. Grayscale and 16-bit
/// images are converted to 8-bit RGB; alpha is dropped, not composited.
pub fn load_image_folder_at(
    dir: impl AsRef<Path>,
    size: [usize; 2],
    policy: ResizePolicy,
) -> Result<Dataset> {
    let dir = dir.as_ref();
    let folders: Vec<(String, PathBuf)> = sorted_entries(dir)?
        .into_iter()
        .filter(|(_, p)| p.is_dir())
        .collect();
    if folders.is_empty() {
        return Err(format_err(
            dir,
            "no class subfolders (expected one folder per class)",
        ));
    }
    let names: Vec<String> = folders.iter().map(|(n, _)| n.clone()).collect();
    let (class_names, map) = class_map(dir, &names)?;

    let (mut pixels, mut labels, mut resized) = (Vec::new(), Vec::new(), 0usize);
    for ((_, folder), &class) in folders.iter().zip(&map) {
        let files: Vec<PathBuf> = sorted_entries(folder)?
            .into_iter()
            .filter(|(n, p)| is_image_name(n) && p.is_file())
            .map(|(_, p)| p)
            .collect();
        if files.is_empty() {
            log::warn!("{}: class folder has no PNG/JPEG images", folder.display());
        }
        for f in files {
            let (chw, was_resized) = super::images::decode_chw(&f, size, policy)?;
            pixels.extend_from_slice(&chw);
            labels.push(class as super::Label);
            resized += was_resized as usize;
        }
    }
    if labels.is_empty() {
        return Err(format_err(
            dir,
            "no PNG/JPEG images in the class subfolders",
        ));
    }
    // The image count is the dataset's own; reports print it next to this.
    let mut source = format!("image folder {}", dir.display());
    if resized > 0 {
        let [h, w] = size;
        source += &format!(" ({resized} resized to {w}x{h} with {RESIZE_FILTER:?})");
    }
    let images = super::Images::new(pixels, size[0], size[1])?;
    Dataset::from_images(images, labels, class_names, source)
}

/// Writes `dir/<label>_<classname>/<index>.png` (index = position in `ds`, zero-padded
/// to 6+ digits) and `dir/classes.txt`, each file atomically. Refuses a non-empty `dir`
/// so stale images cannot mix in. Loading it back gives the images grouped by class.
pub fn save_image_folder(ds: &Dataset, dir: impl AsRef<Path>) -> Result<()> {
    let dir = dir.as_ref();
    // PNGs hold gray (written as equal R, G, B, read back as the same gray) or RGB.
    if ![1, 3].contains(&ds.channels()) {
        return Err(DataError::Invalid(format!(
            "{}-channel images cannot be written as PNG (1 or 3 channels only)",
            ds.channels()
        )));
    }
    for name in ds.class_names() {
        if name.is_empty() || name.trim() != name || name.contains(['\n', '\r']) {
            return Err(DataError::Invalid(format!(
                "class name {name:?} cannot be written to classes.txt"
            )));
        }
    }
    fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    if fs::read_dir(dir)
        .map_err(|e| io_err(dir, e))?
        .next()
        .is_some()
    {
        return Err(format_err(
            dir,
            "refusing to write into a non-empty directory",
        ));
    }
    let folders: Vec<PathBuf> = ds
        .class_names()
        .iter()
        .enumerate()
        .map(|(i, n)| dir.join(format!("{i}_{}", sanitize(n))))
        .collect();
    for (c, &count) in ds.class_counts().iter().enumerate() {
        if count > 0 {
            fs::create_dir(&folders[c]).map_err(|e| io_err(&folders[c], e))?;
        }
    }
    let width = ds.len().saturating_sub(1).to_string().len().max(6);
    for i in 0..ds.len() {
        let name = format!("{i:0width$}.png");
        let path = folders[ds.labels()[i] as usize].join(name);
        write_atomic(&path, &encode_png(&ds.rgb_image(i), &path)?)?;
    }
    let list = ds.class_names().join("\n") + "\n";
    write_atomic(&dir.join("classes.txt"), list.as_bytes())
}

/// Maps folder names to labels; returns (class names, label per folder).
fn class_map(dir: &Path, folders: &[String]) -> Result<(Vec<String>, Vec<usize>)> {
    let txt = dir.join("classes.txt");
    let (names, map): (Vec<String>, Vec<Option<usize>>) = if txt.is_file() {
        let text = fs::read_to_string(&txt).map_err(|e| io_err(&txt, e))?;
        let names: Vec<String> = crate::data::classes::names_per_line(&text);
        let map = folders
            .iter()
            .map(|f| {
                names
                    .iter()
                    .position(|n| n == f)
                    .or_else(|| index_prefix(f).filter(|&i| i < names.len()))
            })
            .collect();
        (names, map)
    } else if let Some(map) = all(folders, |f| CIFAR10_CLASSES.iter().position(|n| *n == f)) {
        (cifar_names(), map.into_iter().map(Some).collect())
    } else if let Some(map) = all(folders, |f| {
        f.parse::<usize>().ok().filter(|_| is_digits(f))
    }) {
        let n = class_count(dir, &map)?;
        let names = if n <= 10 {
            cifar_names()
        } else {
            (0..n).map(|i| i.to_string()).collect()
        };
        (names, map.into_iter().map(Some).collect())
    } else if let Some(map) = all(folders, |f| f.split_once('_').and(index_prefix(f))) {
        let n = class_count(dir, &map)?;
        let mut names: Vec<String> = (0..n).map(|i| format!("class_{i}")).collect();
        for (f, &i) in folders.iter().zip(&map) {
            names[i] = f.split_once('_').map_or("", |(_, n)| n).to_string();
        }
        (names, map.into_iter().map(Some).collect())
    } else {
        (folders.to_vec(), (0..folders.len()).map(Some).collect())
    };
    if names.len() > MAX_CLASSES {
        return Err(format_err(
            dir,
            &format!("{} classes, at most {MAX_CLASSES}", names.len()),
        ));
    }
    let mut seen = vec![None::<&str>; names.len()];
    let mut out = Vec::with_capacity(folders.len());
    for (f, m) in folders.iter().zip(map) {
        let Some(i) = m.filter(|&i| i < names.len()) else {
            return Err(format_err(
                &dir.join(f),
                "matches no class in classes.txt (by name, `<idx>` or `<idx>_<name>`)",
            ));
        };
        if let Some(prev) = seen[i].replace(f) {
            return Err(format_err(
                dir,
                &format!("folders {prev:?} and {f:?} both map to class {i}"),
            ));
        }
        out.push(i);
    }
    Ok((names, out))
}

/// 1 + the largest index; bounded so a folder named `99999999` cannot allocate much.
fn class_count(dir: &Path, map: &[usize]) -> Result<usize> {
    let n = map.iter().max().map_or(0, |m| m + 1);
    if n > MAX_CLASSES {
        return Err(format_err(
            dir,
            &format!(
                "class index {} too large, at most {}",
                n - 1,
                MAX_CLASSES - 1
            ),
        ));
    }
    Ok(n)
}

/// `Some(labels)` if `f` maps every folder.
fn all(folders: &[String], f: impl Fn(&str) -> Option<usize>) -> Option<Vec<usize>> {
    folders.iter().map(|s| f(s)).collect()
}

/// The `idx` of `<idx>` or `<idx>_<anything>`.
fn index_prefix(name: &str) -> Option<usize> {
    let head = name.split_once('_').map_or(name, |(h, _)| h);
    head.parse().ok().filter(|_| is_digits(head))
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn cifar_names() -> Vec<String> {
    CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect()
}

fn is_image_name(name: &str) -> bool {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg"))
}

/// Non-hidden entries of `dir`, sorted by name.
fn sorted_entries(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let rd = fs::read_dir(dir).map_err(|e| io_err(dir, e))?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            out.push((name, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

pub(crate) fn encode_png(img: &RgbImage, path: &Path) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    image::codecs::png::PngEncoder::new(&mut buf)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            ExtendedColorType::Rgb8,
        )
        .map_err(|source| DataError::Image {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(buf)
}

/// `io::write_atomic` (temp file, fsync, rename) with this module's error type.
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::io::write_atomic(path, bytes).map_err(|e| io_err(path, e))
}

/// Keeps folder names portable; classes.txt keeps the real names.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn io_err(path: &Path, source: std::io::Error) -> DataError {
    DataError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn format_err(path: &Path, msg: &str) -> DataError {
    DataError::Format {
        path: path.to_path_buf(),
        msg: msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_util::TempDir;

    fn synthetic(n_per_class: usize, names: &[&str]) -> Dataset {
        let (mut px, mut labels) = (Vec::new(), Vec::new());
        for c in 0..names.len() {
            for i in 0..n_per_class {
                px.extend(
                    (0..crate::data::IMG_BYTES).map(|k| ((k * 7 + i * 13 + c * 31) % 256) as u8),
                );
                labels.push(c as u16);
            }
        }
        let names = names.iter().map(|s| s.to_string()).collect();
        Dataset::new(px, labels, names, "synthetic").unwrap()
    }

    fn save_png(path: &Path, img: &image::DynamicImage) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        img.save(path).unwrap();
    }

    #[test]
    fn round_trip_save_load() {
        let t = TempDir::new("folder-rt");
        let ds = synthetic(3, &["alpha", "beta/gamma", "delta"]);
        save_image_folder(&ds, &t.0).unwrap();
        assert!(t.0.join("1_beta_gamma/000004.png").is_file());
        let back = load_image_folder(&t.0, ResizePolicy::Reject).unwrap();
        assert_eq!(back.pixels(), ds.pixels());
        assert_eq!(back.labels(), ds.labels());
        assert_eq!(back.class_names(), ds.class_names());
        // A second save into the same directory is refused.
        assert!(save_image_folder(&ds, &t.0).is_err());
    }

    #[test]
    fn class_rules() {
        let t = TempDir::new("folder-rules");
        let small = image::DynamicImage::new_rgb8(32, 32);
        // CIFAR names, only two of them: labels 3 and 5 with the standard names.
        save_png(&t.0.join("cifar/dog/a.png"), &small);
        save_png(&t.0.join("cifar/cat/b.png"), &small);
        let ds = load_image_folder(t.0.join("cifar"), ResizePolicy::Reject).unwrap();
        assert_eq!(ds.labels(), &[3, 5]);
        assert_eq!(ds.num_classes(), 10);
        // Plain names: sorted order; grayscale and RGBA accepted.
        save_png(
            &t.0.join("plain/zebra/a.png"),
            &image::DynamicImage::new_luma8(32, 32),
        );
        save_png(
            &t.0.join("plain/apple/a.png"),
            &image::DynamicImage::new_rgba8(32, 32),
        );
        fs::write(t.0.join("plain/apple/notes.txt"), "x").unwrap();
        let ds = load_image_folder(t.0.join("plain"), ResizePolicy::Reject).unwrap();
        assert_eq!(ds.labels(), &[0, 1]);
        assert_eq!(ds.class_names(), &["apple", "zebra"]);
        // Numeric folders and <idx>_<name> folders.
        save_png(&t.0.join("num/7/a.png"), &small);
        let ds = load_image_folder(t.0.join("num"), ResizePolicy::Reject).unwrap();
        assert_eq!((ds.labels()[0], ds.class_names()[7].as_str()), (7, "horse"));
        save_png(&t.0.join("idx/2_foo_bar/a.png"), &small);
        let ds = load_image_folder(t.0.join("idx"), ResizePolicy::Reject).unwrap();
        assert_eq!(
            (ds.labels()[0], ds.class_names()[2].as_str()),
            (2, "foo_bar")
        );
        // classes.txt takes precedence; unknown folder is an error naming it.
        fs::write(t.0.join("plain/classes.txt"), "zebra\napple\n").unwrap();
        let ds = load_image_folder(t.0.join("plain"), ResizePolicy::Reject).unwrap();
        assert_eq!(ds.labels(), &[1, 0]);
        save_png(&t.0.join("plain/kiwi/a.png"), &small);
        let msg = load_image_folder(t.0.join("plain"), ResizePolicy::Reject)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("kiwi"), "{msg}");
    }

    /// A folder of 7x5 images loads at that size, and carries it.
    #[test]
    fn folders_load_at_any_size() {
        let t = TempDir::new("folder-any-size");
        let img = image::RgbImage::from_pixel(7, 5, image::Rgb([1, 2, 3]));
        save_png(&t.0.join("cat/a.png"), &img.into());
        let ds = load_image_folder_at(&t.0, [5, 7], ResizePolicy::Reject).unwrap();
        assert_eq!((ds.len(), ds.height(), ds.width()), (1, 5, 7));
        assert_eq!(ds.rgb_image(0).dimensions(), (7, 5));
        let e = load_image_folder(&t.0, ResizePolicy::Reject).unwrap_err();
        assert!(e.to_string().contains("expected 32x32"), "{e}");
    }

    #[test]
    fn wrong_size_reject_or_resize() {
        let t = TempDir::new("folder-size");
        let big = image::RgbImage::from_pixel(64, 48, image::Rgb([200, 100, 50]));
        save_png(&t.0.join("cat/big.png"), &big.into());
        let msg = load_image_folder(&t.0, ResizePolicy::Reject)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("big.png") && msg.contains("64x48"), "{msg}");
        assert!(
            msg.contains("expected 32x32") && msg.contains("resiz"),
            "{msg}"
        );
        let ds = load_image_folder(&t.0, ResizePolicy::Resize).unwrap();
        // A flat colour stays flat under the resize filter.
        let img = ds.image(0);
        assert!(img[..crate::data::PLANE].iter().all(|&v| v == 200));
        assert!(img[crate::data::PLANE..2 * crate::data::PLANE]
            .iter()
            .all(|&v| v == 100));
        assert!(ds.source().contains("1 resized"), "{}", ds.source());
    }

    #[test]
    fn empty_and_undecodable() {
        let t = TempDir::new("folder-empty");
        let msg = load_image_folder(&t.0, ResizePolicy::Reject)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("no class subfolders"), "{msg}");
        fs::create_dir(t.0.join("cat")).unwrap();
        let msg = load_image_folder(&t.0, ResizePolicy::Reject)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("no PNG/JPEG images"), "{msg}");
        fs::write(t.0.join("cat/broken.png"), b"not a png").unwrap();
        let msg = load_image_folder(&t.0, ResizePolicy::Reject)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("broken.png"), "{msg}");
        assert!(load_image_folder(t.0.join("absent"), ResizePolicy::Reject).is_err());
    }
}
