//! CIFAR-style image datasets: loading, saving, subsetting and tensor conversion.
//!
//! Images are C x H x W `u8` in CHW order (for RGB: R plane, G plane, B plane), the layout of a
//! CIFAR binary record (3 x 32 x 32), stored contiguously so a batch is one slice.
//! Nothing here draws progress bars; the CLI adds them.

mod cifar;
mod classes;
mod folder;
mod grid;
mod images;
mod subset;

#[cfg(test)]
mod test_util;

use std::path::{Path, PathBuf};

pub use cifar::{load_cifar10_bin, Split};
pub use classes::names_per_line;
pub(crate) use folder::encode_png;
pub use folder::{
    load_image_folder, load_image_folder_at, save_image_folder, ResizePolicy, RESIZE_FILTER,
};
pub use grid::{sample_grid_png, GRID_GAP};
pub use images::{Images, LUMA};
pub use subset::{balanced_subset, balanced_subset_indices};

/// Loads `path`: the CIFAR-10 binaries (`split` of them) if it holds them (or is one of
/// them), else an image folder with one subfolder per class, as images of `size`
/// (`[height, width]`; CIFAR's are 32x32, resized or refused at another size as `policy`
/// says). The labels are the data's own; [`Dataset::map_classes`] puts them onto a model's
/// classes.
pub fn load(path: &Path, split: Split, size: [usize; 2], policy: ResizePolicy) -> Result<Dataset> {
    load_first(path, split, size, policy, None)
}

/// [`load`], keeping only the first `limit` images (CIFAR-10's are cut before they are
/// resized).
pub fn load_first(
    path: &Path,
    split: Split,
    size: [usize; 2],
    policy: ResizePolicy,
    limit: Option<usize>,
) -> Result<Dataset> {
    let is_cifar = path.is_file()
        || ["test_batch.bin", "data_batch_1.bin", "cifar-10-batches-bin"]
            .iter()
            .any(|f| path.join(f).exists());
    let ds = if is_cifar {
        load_cifar10_bin(path, split)?
    } else {
        load_image_folder_at(path, size, policy)?
    };
    let ds = match limit.filter(|&n| n < ds.len()) {
        Some(n) => ds.subset(&(0..n).collect::<Vec<_>>())?,
        None => ds,
    };
    match policy {
        _ if [ds.height(), ds.width()] == size => Ok(ds),
        ResizePolicy::Resize => ds.resized(size),
        ResizePolicy::Reject => Err(DataError::WrongSize {
            path: path.to_path_buf(),
            width: ds.width() as u32,
            height: ds.height() as u32,
            want: size,
        }),
    }
}

/// A class index (ImageNet's 1000 classes and more).
pub type Label = u16;
/// Most classes a dataset may have: one per [`Label`] value.
pub const MAX_CLASSES: usize = Label::MAX as usize + 1;

/// Image side in pixels.
pub const IMG_SIDE: usize = 32;
/// Pixels per channel plane.
pub const PLANE: usize = IMG_SIDE * IMG_SIDE;
/// Bytes per image (3 planes).
pub const IMG_BYTES: usize = 3 * PLANE;
/// The CIFAR-10 class names, in label order.
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];
/// Where to get the official CIFAR-10 binary archive.
pub const CIFAR10_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";

/// Errors from this module; each names the file involved where there is one.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be read.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The CIFAR-10 binary files are not in the folder.
    #[error(
        "CIFAR-10 binary files not found in {}: missing {}. Expected data_batch_1.bin .. \
         data_batch_5.bin (train) and test_batch.bin (test) in that directory or in its \
         cifar-10-batches-bin/ subdirectory; download and extract {CIFAR10_URL}",
        .dir.display(), .missing.join(", ")
    )]
    Missing {
        /// The folder searched.
        dir: PathBuf,
        /// The files not found.
        missing: Vec<String>,
    },
    #[error(
        "{}: length {len} bytes is not a multiple of the 3073-byte CIFAR record; \
         record {record} starting at byte offset {offset} is truncated",
        .path.display()
    )]
    /// A CIFAR-10 binary file ends inside a record.
    Truncated {
        /// The file.
        path: PathBuf,
        /// Its length in bytes.
        len: u64,
        /// The truncated record.
        record: usize,
        /// Where that record starts.
        offset: u64,
    },
    #[error(
        "{}: record {record} at byte offset {offset} has label {label}, expected 0..=9",
        .path.display()
    )]
    /// A CIFAR-10 record's label is not a class.
    BadLabel {
        /// The file.
        path: PathBuf,
        /// The record.
        record: usize,
        /// Where that record starts.
        offset: u64,
        /// The label found.
        label: u8,
    },
    /// An image file could not be decoded.
    #[error("{}: {source}", .path.display())]
    Image {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: image::ImageError,
    },
    #[error(
        "{}: image is {width}x{height}, expected {}x{} (resize the images first, or load \
         them with resizing on)",
        .path.display(), .want[1], .want[0]
    )]
    /// An image is not of the size asked for.
    WrongSize {
        /// The file.
        path: PathBuf,
        /// Its width.
        width: u32,
        /// Its height.
        height: u32,
        /// The size asked for, `[height, width]`.
        want: [usize; 2],
    },
    /// A file that is not in the expected format.
    #[error("{}: {msg}", .path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// A class has fewer images than a balanced draw asks for.
    #[error("class {class} ({name}) has {have} images, {want} requested")]
    NotEnough {
        /// The class index.
        class: usize,
        /// Its name.
        name: String,
        /// Images it has.
        have: usize,
        /// Images asked for.
        want: usize,
    },
    #[error(
        "{origin}: class `{name}` is not one of the model's {} classes ({}); name class \
         folders (and classes.txt lines) after them",
        .known.len(), .known.join(", ")
    )]
    /// Images of a class the model does not have.
    UnknownClass {
        /// Where the class was found (a folder or file).
        origin: String,
        /// The unknown class.
        name: String,
        /// The model's classes.
        known: Vec<String>,
    },
    #[error(
        "{}: {records} records ({len} bytes); the official CIFAR-10 file holds {} records \
         ({} bytes). To use a subset, give it another file name and pass that file",
        .path.display(), cifar::OFFICIAL_RECORDS, cifar::OFFICIAL_RECORDS * (IMG_BYTES + 1)
    )]
    /// A file named like an official CIFAR-10 file does not hold its 10,000 records.
    NotOfficialSize {
        /// The file.
        path: PathBuf,
        /// Its length in bytes.
        len: u64,
        /// Records it holds.
        records: usize,
    },
    /// Anything else, described.
    #[error("{0}")]
    Invalid(String),
}

/// This module's result type.
pub type Result<T> = std::result::Result<T, DataError>;

/// Labelled images (see [`Images`]) with class names and provenance.
///
/// Invariants (checked by [`Dataset::from_images`]): one label per image, every label
/// indexes `class_names`, at most [`MAX_CLASSES`] classes.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    images: Images,
    labels: Vec<Label>,
    class_names: Vec<String>,
    source: String,
}

impl Dataset {
    /// A dataset of 32x32 images (CIFAR's size) from their CHW bytes, 3072 per label.
    pub fn new(
        pixels: Vec<u8>,
        labels: Vec<Label>,
        class_names: Vec<String>,
        source: impl Into<String>,
    ) -> Result<Self> {
        if pixels.len() != labels.len() * IMG_BYTES {
            return Err(DataError::Invalid(format!(
                "{} pixel bytes for {} labels, expected {}",
                pixels.len(),
                labels.len(),
                labels.len() * IMG_BYTES
            )));
        }
        let images = Images::new(pixels, IMG_SIDE, IMG_SIDE)?;
        Self::from_images(images, labels, class_names, source)
    }

    /// A dataset of `images` of any size, one label each.
    pub fn from_images(
        images: Images,
        labels: Vec<Label>,
        class_names: Vec<String>,
        source: impl Into<String>,
    ) -> Result<Self> {
        if images.len() != labels.len() {
            return Err(DataError::Invalid(format!(
                "{} images for {} labels",
                images.len(),
                labels.len()
            )));
        }
        if class_names.len() > MAX_CLASSES {
            return Err(DataError::Invalid(format!(
                "{} classes, at most {MAX_CLASSES} supported",
                class_names.len()
            )));
        }
        if let Some((i, &l)) = labels
            .iter()
            .enumerate()
            .find(|(_, &l)| l as usize >= class_names.len())
        {
            return Err(DataError::Invalid(format!(
                "label {l} of image {i} is out of range for {} classes",
                class_names.len()
            )));
        }
        Ok(Self {
            images,
            labels,
            class_names,
            source: source.into(),
        })
    }

    /// Builds a dataset from NCHW f32 in [-1, 1] (GAN output): `round((x + 1) * 127.5)`,
    /// clamped to 0..=255, so it inverts [`Images::to_f32_unit_range`] exactly on u8 values.
    pub fn from_f32_unit_range(
        values: &[f32],
        labels: Vec<Label>,
        class_names: Vec<String>,
        source: impl Into<String>,
    ) -> Result<Self> {
        let pixels = values
            .iter()
            .map(|&x| ((x + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8)
            .collect();
        Self::new(pixels, labels, class_names, source)
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there is no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The images, without their labels.
    pub fn images(&self) -> &Images {
        &self.images
    }

    /// Rows of pixels of every image.
    pub fn height(&self) -> usize {
        self.images.height()
    }

    /// Columns of pixels of every image.
    pub fn width(&self) -> usize {
        self.images.width()
    }

    /// The CHW bytes of image `i`. Panics if `i >= len()`, like slice indexing.
    pub fn image(&self, i: usize) -> &[u8] {
        self.images.image(i)
    }

    /// Image `i` as an HWC `RgbImage` (for PNG output): a 1-channel image as gray, one of
    /// other counts as its first three planes (the last repeated where there are fewer).
    pub fn rgb_image(&self, i: usize) -> image::RgbImage {
        let chw = self.image(i);
        let (h, w) = (self.height(), self.width());
        let last = self.channels() - 1;
        let at = |c: usize, p: usize| chw[c.min(last) * h * w + p];
        image::RgbImage::from_fn(w as u32, h as u32, |x, y| {
            let p = y as usize * w + x as usize;
            image::Rgb([at(0, p), at(1, p), at(2, p)])
        })
    }

    /// Planes per image (3 for RGB, 1 for gray).
    pub fn channels(&self) -> usize {
        self.images.channels()
    }

    /// This dataset with `channels` planes per image ([`Images::to_channels`]: RGB to gray by
    /// BT.601 luma); the source says so. Itself when it has them already.
    pub fn to_channels(&self, channels: usize) -> Result<Dataset> {
        if channels == self.channels() {
            return Ok(self.clone());
        }
        let images = self
            .images
            .to_channels(channels)
            .map_err(|e| DataError::Invalid(format!("{}: {e}", self.source)))?;
        Ok(Dataset {
            images,
            labels: self.labels.clone(),
            class_names: self.class_names.clone(),
            source: format!("{} (as gray: BT.601 luma)", self.source),
        })
    }

    /// All pixels, CHW per image.
    pub fn pixels(&self) -> &[u8] {
        self.images.pixels()
    }

    /// One label per image, an index into [`Dataset::class_names`].
    pub fn labels(&self) -> &[Label] {
        &self.labels
    }

    /// The class names, in label order.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// Human-readable provenance (which files, which transformations).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Number of images per class, indexed by label.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes()];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }

    /// This dataset with every image stretched to `size` (`[height, width]`) by
    /// [`Images::resized`]; the source says so. Itself when the size is already `size`.
    pub fn resized(&self, size: [usize; 2]) -> Result<Dataset> {
        if [self.height(), self.width()] == size {
            return Ok(self.clone());
        }
        let source = format!(
            "{} (resized from {}x{} to {}x{} with {RESIZE_FILTER:?})",
            self.source,
            self.width(),
            self.height(),
            size[1],
            size[0]
        );
        Ok(Dataset {
            images: self.images.resized(size)?,
            labels: self.labels.clone(),
            class_names: self.class_names.clone(),
            source,
        })
    }

    /// A new dataset with the given images, in the given order (repeats allowed).
    pub fn subset(&self, indices: &[usize]) -> Result<Dataset> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.len()) {
            return Err(DataError::Invalid(format!(
                "subset index {bad} out of range (len {})",
                self.len()
            )));
        }
        let mut pixels = Vec::with_capacity(indices.len() * self.images.image_bytes());
        for &i in indices {
            pixels.extend_from_slice(self.image(i));
        }
        let images = Images::with_channels(pixels, self.channels(), self.height(), self.width())?;
        let labels = indices.iter().map(|&i| self.labels[i]).collect();
        let source = format!("subset of {} images of [{}]", indices.len(), self.source);
        Dataset::from_images(images, labels, self.class_names.clone(), source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i}")).collect()
    }

    #[test]
    fn new_validates() {
        assert!(Dataset::new(vec![0; 3071], vec![0], names(1), "").is_err());
        assert!(Dataset::new(vec![0; 3072], vec![2], names(2), "").is_err());
        assert!(Dataset::new(vec![0; 3072], vec![1], names(2), "").is_ok());
    }

    #[test]
    fn normalization_matches_torchvision_by_hand() {
        let mut px = vec![0u8; IMG_BYTES];
        px[0] = 200; // R of pixel 0
        px[PLANE] = 100; // G of pixel 0
        px[2 * PLANE + 5] = 255; // B of pixel 5
        let ds = Dataset::new(px, vec![0], names(1), "").unwrap();
        let mean = [0.4914f32, 0.4822, 0.4465];
        let std = [0.2023f32, 0.1994, 0.2010];
        let x = ds.images().to_f32_normalized(0..1, &mean, &std);
        assert_eq!(x.len(), IMG_BYTES);
        // The same f32 operation order as torch: (200/255 - 0.4914) / 0.2023.
        let r: f32 = 200.0 / 255.0;
        assert_eq!(x[0], (r - 0.4914) / 0.2023);
        // Values worked out by hand with f32 rounding after each operation.
        assert_eq!(x[0], 1.447_917_7);
        assert_eq!(x[PLANE], -0.451_570_36);
        assert_eq!(x[2 * PLANE + 5], 2.753_731_3);
        assert!((x[1] - (-0.4914 / 0.2023)).abs() < 1e-6);

        let u = ds.images().to_f32_unit_range(0..1);
        assert_eq!(u[0], 200.0 / 127.5 - 1.0);
        assert_eq!(u[1], -1.0);
        assert_eq!(u[2 * PLANE + 5], 1.0);
        let back = Dataset::from_f32_unit_range(&u, vec![0], names(1), "").unwrap();
        assert_eq!(back.pixels(), ds.pixels());
    }

    #[test]
    fn subset_and_rgb_image() {
        let px: Vec<u8> = (0..3 * IMG_BYTES).map(|k| (k / IMG_BYTES) as u8).collect();
        let ds = Dataset::new(px, vec![0, 1, 1], names(2), "t").unwrap();
        let s = ds.subset(&[2, 0]).unwrap();
        assert_eq!(s.labels(), &[1, 0]);
        assert!(s.image(0).iter().all(|&v| v == 2));
        assert!(ds.subset(&[3]).is_err());
        assert_eq!(ds.class_counts(), vec![1, 2]);
        let mut p = vec![0u8; IMG_BYTES];
        p[IMG_SIDE + 2] = 9; // R at (x=2, y=1)
        let one = Dataset::new(p, vec![0], names(1), "").unwrap();
        assert_eq!(one.rgb_image(0).get_pixel(2, 1).0, [9, 0, 0]);
    }

    /// Resizing keeps labels and a flat colour, changes the size, and says so; the same size
    /// is left alone.
    #[test]
    fn resized_changes_only_the_size() {
        let mut px = vec![0u8; 2 * IMG_BYTES];
        px[..PLANE].fill(200); // image 0: R plane
        px[IMG_BYTES + 2 * PLANE..].fill(50); // image 1: B plane
        let ds = Dataset::new(px, vec![1, 0], names(2), "t").unwrap();
        let big = ds.resized([48, 80]).unwrap();
        assert_eq!((big.len(), big.height(), big.width()), (2, 48, 80));
        assert_eq!(big.labels(), ds.labels());
        let plane = 48 * 80;
        assert!(big.image(0)[..plane].iter().all(|&v| v == 200));
        assert!(big.image(0)[plane..].iter().all(|&v| v == 0));
        assert!(big.image(1)[2 * plane..].iter().all(|&v| v == 50));
        assert!(
            big.source().contains("resized from 32x32 to 80x48"),
            "{}",
            big.source()
        );
        assert_eq!(ds.resized([32, 32]).unwrap(), ds);
        assert!(ds.resized([0, 4]).is_err());
    }

    /// CIFAR-10 binaries load at another size only when resizing is asked for; otherwise the
    /// error names the file and both sizes.
    #[test]
    fn cifar_binaries_are_resized_or_refused() {
        let t = test_util::TempDir::new("cifar-resize");
        let mut rec = vec![3u8];
        rec.extend(vec![90u8; IMG_BYTES]);
        let f = t.0.join("few.bin");
        std::fs::write(&f, [rec.clone(), rec].concat()).unwrap();
        let e = load(&f, Split::Test, [64, 64], ResizePolicy::Reject).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("few.bin") && msg.contains("32x32") && msg.contains("expected 64x64"),
            "{msg}"
        );
        let ds = load(&f, Split::Test, [64, 64], ResizePolicy::Resize).unwrap();
        assert_eq!((ds.len(), ds.height(), ds.width()), (2, 64, 64));
        assert!(ds.pixels().iter().all(|&v| v == 90));
        assert_eq!(ds.labels(), &[3, 3]);
    }
}
