//! A PNG contact sheet of dataset images, one band of rows per class.

use std::path::Path;

use image::{Rgb, RgbImage};

use super::folder::{encode_png, write_atomic};
use super::{DataError, Dataset, Result};

/// Pixels between images and around the border.
pub const GRID_GAP: u32 = 2;

/// Writes a grid with `rows_per_class` rows of `cols` images for each class, in label
/// order, filled with that class's first images in dataset order (shuffle or subset
/// first for a random sample). Missing cells stay white; written atomically.
pub fn sample_grid_png(
    ds: &Dataset,
    rows_per_class: usize,
    cols: usize,
    path: impl AsRef<Path>,
) -> Result<()> {
    let path = path.as_ref();
    let rows = rows_per_class.saturating_mul(ds.num_classes());
    let gap = GRID_GAP as u64;
    let (cw, ch) = (ds.width() as u64 + gap, ds.height() as u64 + gap);
    let (w, h) = (cols as u64 * cw + gap, rows as u64 * ch + gap);
    if rows == 0 || cols == 0 || w * h > 1 << 28 {
        return Err(DataError::Invalid(format!(
            "grid of {rows} rows x {cols} columns is empty or too large"
        )));
    }
    let mut canvas = RgbImage::from_pixel(w as u32, h as u32, Rgb([255, 255, 255]));
    let per_class = rows_per_class * cols;
    let mut filled = vec![0usize; ds.num_classes()];
    for (i, &l) in ds.labels().iter().enumerate() {
        let (c, k) = (l as usize, filled[l as usize]);
        if k >= per_class {
            continue;
        }
        filled[c] += 1;
        let row = (c * rows_per_class + k / cols) as u64;
        let col = (k % cols) as u64;
        let (x, y) = (gap + col * cw, gap + row * ch);
        image::imageops::replace(&mut canvas, &ds.rgb_image(i), x as i64, y as i64);
    }
    write_atomic(path, &encode_png(&canvas, path)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_util::TempDir;
    use crate::data::IMG_BYTES;

    #[test]
    fn grid_layout() {
        let t = TempDir::new("grid");
        // Class 0: 3 images of value 10, class 1: 1 image of value 20.
        let labels = vec![0, 1, 0, 0];
        let mut px = vec![10u8; 4 * IMG_BYTES];
        px[IMG_BYTES..2 * IMG_BYTES].fill(20);
        let ds = Dataset::new(px, labels, vec!["a".into(), "b".into()], "t").unwrap();
        let p = t.0.join("grid.png");
        sample_grid_png(&ds, 1, 2, &p).unwrap();
        let img = image::open(&p).unwrap().into_rgb8();
        assert_eq!(img.dimensions(), (2 * 34 + 2, 2 * 34 + 2));
        assert_eq!(img.get_pixel(0, 0).0, [255; 3]);
        assert_eq!(img.get_pixel(2, 2).0, [10; 3]);
        assert_eq!(img.get_pixel(36 + 31, 2 + 31).0, [10; 3]);
        assert_eq!(img.get_pixel(2, 36).0, [20; 3]);
        assert_eq!(img.get_pixel(36, 36).0, [255; 3]); // class 1 has one image only
        assert!(sample_grid_png(&ds, 0, 2, &p).is_err());
        // Cells take the images' own size: 40 wide, 20 high.
        let p = t.0.join("wide.png");
        sample_grid_png(&ds.resized([20, 40]).unwrap(), 1, 2, &p).unwrap();
        let img = image::open(&p).unwrap().into_rgb8();
        assert_eq!(img.dimensions(), (2 * 42 + 2, 2 * 22 + 2));
        assert_eq!(img.get_pixel(2 + 42 + 39, 2 + 19).0, [10; 3]);
        assert_eq!(img.get_pixel(2, 24).0, [20; 3]);
    }
}
