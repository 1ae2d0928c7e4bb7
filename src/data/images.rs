//! A batch of images of one size and channel count (RGB unless said): what a model takes as
//! input.

use super::{DataError, ResizePolicy, Result, RESIZE_FILTER};
use std::ops::Range;
use std::path::Path;

/// N images of `channels` x `height` x `width` pixels, `u8` CHW per image, one after the
/// other. Three channels are R, G, B; one is gray (see [`Images::to_channels`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Images {
    pixels: Vec<u8>,
    channels: usize,
    height: usize,
    width: usize,
}

/// ITU-R BT.601 luma weights of R, G and B: how RGB images become 1-channel ones.
pub const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

impl Images {
    /// RGB images from their CHW bytes, `3 * height * width` per image.
    pub fn new(pixels: Vec<u8>, height: usize, width: usize) -> Result<Images> {
        Images::with_channels(pixels, 3, height, width)
    }

    /// Images of `channels` planes from their CHW bytes, `channels * height * width` each.
    pub fn with_channels(
        pixels: Vec<u8>,
        channels: usize,
        height: usize,
        width: usize,
    ) -> Result<Images> {
        let each = (channels.checked_mul(height)).and_then(|v| v.checked_mul(width));
        if !each.is_some_and(|e| e > 0 && pixels.len().is_multiple_of(e)) {
            return Err(DataError::Invalid(format!(
                "{} pixel bytes are not a whole number of {channels}x{height}x{width} images",
                pixels.len()
            )));
        }
        Ok(Images {
            pixels,
            channels,
            height,
            width,
        })
    }

    /// These images with `channels` planes: themselves at their own count; RGB images as
    /// gray ones for 1 channel (BT.601 luma of the u8 values, [`LUMA`], rounded). Any other
    /// conversion is refused (images are RGB or gray; nothing says what a fifth band is).
    pub fn to_channels(&self, channels: usize) -> Result<Images> {
        if channels == self.channels {
            return Ok(self.clone());
        }
        if !(self.channels == 3 && channels == 1) {
            return Err(DataError::Invalid(format!(
                "images of {} channels cannot become {channels}-channel images (only RGB to \
                 gray, 3 to 1, is defined)",
                self.channels
            )));
        }
        let plane = self.height * self.width;
        let mut pixels = Vec::with_capacity(self.len() * plane);
        for i in 0..self.len() {
            let chw = self.image(i);
            pixels.extend((0..plane).map(|p| {
                let v: f32 = (0..3).map(|c| LUMA[c] * chw[c * plane + p] as f32).sum();
                v.round().clamp(0.0, 255.0) as u8
            }));
        }
        Images::with_channels(pixels, 1, self.height, self.width)
    }

    /// Decodes image files (PNG or JPEG) to `[height, width]`: a file of another size is
    /// resized (Catmull-Rom) or refused, as `policy` says.
    pub fn load<P: AsRef<Path>>(
        paths: &[P],
        [height, width]: [usize; 2],
        policy: ResizePolicy,
    ) -> Result<Images> {
        if height == 0 || width == 0 {
            return Err(DataError::Invalid(format!(
                "cannot load images at {width}x{height}"
            )));
        }
        let what = format!("{} images at {width}x{height}", paths.len());
        crate::limits::check_alloc(&what, &[paths.len(), 3, height, width])
            .map_err(|e| DataError::Invalid(e.to_string()))?;
        let mut pixels = Vec::with_capacity(paths.len() * 3 * height * width);
        for p in paths {
            let (chw, _) = decode_chw(p.as_ref(), [height, width], policy)?;
            pixels.extend(chw);
        }
        Images::new(pixels, height, width)
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.pixels.len() / self.image_bytes()
    }

    /// Whether there is no image.
    pub fn is_empty(&self) -> bool {
        self.pixels.is_empty()
    }

    /// Planes per image (3 for RGB).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Rows of pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Columns of pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Bytes per image (`channels` planes).
    pub fn image_bytes(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The CHW bytes of image `i`. Panics if `i >= len()`, like slice indexing.
    pub fn image(&self, i: usize) -> &[u8] {
        assert!(
            i < self.len(),
            "image {i} out of range (len {})",
            self.len()
        );
        let n = self.image_bytes();
        &self.pixels[i * n..(i + 1) * n]
    }

    /// All pixels, CHW per image.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// Images `range` as NCHW f32, `x = (v / 255 - mean[c]) / std[c]`.
    ///
    /// Bit-exact with torchvision `ToTensor()` + `Normalize(mean, std)`: ToTensor divides
    /// by 255 in f32, Normalize then subtracts and divides in f32. Do not "optimize" to a
    /// multiply by a precomputed reciprocal or a fused scale/offset: results would differ
    /// in the last ulp. Panics if `range` is out of bounds or `mean` and `std` do not hold
    /// one value per channel.
    pub fn to_f32_normalized(&self, range: Range<usize>, mean: &[f32], std: &[f32]) -> Vec<f32> {
        assert!(
            mean.len() == self.channels && std.len() == self.channels,
            "{} means and {} deviations for {}-channel images",
            mean.len(),
            std.len(),
            self.channels
        );
        self.map_f32(range, |c, v| (v as f32 / 255.0 - mean[c]) / std[c])
    }

    /// Images `range` as NCHW f32 in [-1, 1]: `v / 127.5 - 1` (GAN convention).
    /// Panics if `range` is out of bounds.
    pub fn to_f32_unit_range(&self, range: Range<usize>) -> Vec<f32> {
        self.map_f32(range, |_, v| v as f32 / 127.5 - 1.0)
    }

    /// These images at `[height, width]`, each stretched (aspect ratio not kept) with
    /// [`RESIZE_FILTER`]; a copy when they already have that size.
    pub fn resized(&self, [height, width]: [usize; 2]) -> Result<Images> {
        if [height, width] == [self.height, self.width] {
            return Ok(self.clone());
        }
        if height == 0 || width == 0 {
            return Err(DataError::Invalid(format!(
                "cannot resize images to {width}x{height}"
            )));
        }
        crate::limits::check_alloc(
            &format!("{} images resized to {width}x{height}", self.len()),
            &[self.len(), self.channels, height, width],
        )
        .map_err(|e| DataError::Invalid(e.to_string()))?;
        let each = self.channels * height * width;
        let (h, w) = (self.height, self.width);
        let mut pixels = Vec::with_capacity(self.len() * each);
        for i in 0..self.len() {
            let chw = self.image(i);
            if self.channels == 3 {
                let rgb = image::RgbImage::from_fn(w as u32, h as u32, |x, y| {
                    let p = y as usize * w + x as usize;
                    image::Rgb([chw[p], chw[h * w + p], chw[2 * h * w + p]])
                });
                let out = image::imageops::resize(&rgb, width as u32, height as u32, RESIZE_FILTER);
                pixels.extend(chw_of(&out));
                continue;
            }
            // Plane by plane: the filter treats each channel on its own either way.
            for plane in chw.chunks(h * w) {
                let g = image::GrayImage::from_raw(w as u32, h as u32, plane.to_vec())
                    .expect("a plane holds height x width bytes");
                let out = image::imageops::resize(&g, width as u32, height as u32, RESIZE_FILTER);
                pixels.extend(out.into_raw());
            }
        }
        Images::with_channels(pixels, self.channels, height, width)
    }

    fn map_f32(&self, range: Range<usize>, f: impl Fn(usize, u8) -> f32) -> Vec<f32> {
        assert!(
            range.start <= range.end && range.end <= self.len(),
            "image range {range:?} out of bounds (len {})",
            self.len()
        );
        let (n, plane) = (self.image_bytes(), self.height * self.width);
        self.pixels[range.start * n..range.end * n]
            .iter()
            .enumerate()
            .map(|(k, &v)| f((k / plane) % self.channels, v))
            .collect()
    }
}

/// Decodes one image file to `[height, width]` CHW bytes; the flag says whether it was
/// resized.
pub(crate) fn decode_chw(
    path: &Path,
    [height, width]: [usize; 2],
    policy: ResizePolicy,
) -> Result<(Vec<u8>, bool)> {
    let img_err = |source| DataError::Image {
        path: path.to_path_buf(),
        source,
    };
    let reader = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| DataError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
    let mut rgb = reader.decode().map_err(img_err)?.into_rgb8();
    let (w, h) = (width as u32, height as u32);
    let resized = rgb.dimensions() != (w, h);
    if resized {
        match policy {
            ResizePolicy::Reject => {
                return Err(DataError::WrongSize {
                    path: path.to_path_buf(),
                    width: rgb.width(),
                    height: rgb.height(),
                    want: [height, width],
                })
            }
            ResizePolicy::Resize => rgb = image::imageops::resize(&rgb, w, h, RESIZE_FILTER),
        }
    }
    Ok((chw_of(&rgb), resized))
}

/// The CHW bytes of an RGB image.
fn chw_of(rgb: &image::RgbImage) -> Vec<u8> {
    let plane = rgb.width() as usize * rgb.height() as usize;
    let mut chw = vec![0u8; 3 * plane];
    for (p, px) in rgb.pixels().enumerate() {
        for c in 0..3 {
            chw[c * plane + p] = px.0[c];
        }
    }
    chw
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_carry_their_size_and_refuse_a_partial_image() {
        let im = Images::new((0..2 * 3 * 4 * 5).map(|k| k as u8).collect(), 4, 5).unwrap();
        assert_eq!(
            (im.len(), im.height(), im.width(), im.image_bytes()),
            (2, 4, 5, 60)
        );
        assert_eq!(im.image(1)[0], 60);
        // Channel of each value: planes of 20.
        let x = im.to_f32_normalized(1..2, &[0.0; 3], &[1.0 / 255.0; 3]);
        assert_eq!(x.len(), 60);
        assert_eq!(x[19], 79.0 * (1.0 / 255.0) / (1.0 / 255.0));
        assert!(Images::new(vec![0; 59], 4, 5).is_err());
        assert!(Images::new(vec![], 0, 5).is_err());
        // Sizes whose products overflow, or that no memory holds, are errors, not panics.
        let third = usize::MAX / 3 + 1;
        assert!(Images::with_channels(vec![0; 9], 3, third, 3).is_err());
        let e = Images::load(&["none.png"], [1 << 20, 1 << 20], ResizePolicy::Resize)
            .unwrap_err()
            .to_string();
        assert!(e.contains("memory"), "{e}");
        assert!(Images::load(&["none.png"], [0, 5], ResizePolicy::Resize).is_err());
        assert!(im.resized([1 << 40, 1 << 40]).is_err());
    }

    #[test]
    fn rgb_becomes_gray_by_bt601_luma_and_nothing_else_converts() {
        // Two 1x2 images, R plane then G then B.
        let px = vec![200, 255, 100, 255, 50, 255, 1, 10, 2, 0, 3, 0];
        let im = Images::new(px, 1, 2).unwrap();
        let g = im.to_channels(1).unwrap();
        assert_eq!((g.len(), g.channels(), g.image_bytes()), (2, 1, 2));
        // 0.299*200 + 0.587*100 + 0.114*50 = 124.2; white stays 255;
        // 0.299*1 + 0.587*2 + 0.114*3 = 1.815; 0.299*10 = 2.99.
        assert_eq!(g.pixels(), [124, 255, 2, 3]);
        assert_eq!(im.to_channels(3).unwrap(), im);
        let e = im.to_channels(5).unwrap_err().to_string();
        assert!(e.contains("3 channels cannot become 5-channel"), "{e}");
        assert!(g.to_channels(3).is_err());
        // Gray normalizes with one mean and one deviation.
        assert_eq!(
            g.to_f32_normalized(1..2, &[0.0], &[1.0 / 255.0]),
            [2.0, 3.0]
        );
    }

    #[test]
    fn any_channel_count_resizes_plane_by_plane_as_rgb_does() {
        let (h, w) = (5, 7);
        let rgb = Images::new(
            (0..2 * 3 * h * w).map(|k| (k * 37 % 251) as u8).collect(),
            h,
            w,
        )
        .unwrap();
        let big = rgb.resized([9, 4]).unwrap();
        // The same bytes as 6 single-plane images, and as 2 images of 3 unnamed bands.
        let planes = Images::with_channels(rgb.pixels().to_vec(), 1, h, w).unwrap();
        assert_eq!(planes.resized([9, 4]).unwrap().pixels(), big.pixels());
        let bands = Images::with_channels(rgb.pixels().to_vec(), 2, h, w).unwrap();
        let b = bands.resized([9, 4]).unwrap();
        assert_eq!((b.channels(), b.len(), b.pixels()), (2, 3, big.pixels()));
        assert!(Images::with_channels(vec![0; 10], 4, 1, 2).is_err());
    }

    #[test]
    fn files_are_decoded_to_the_asked_size_or_refused() {
        let dir = std::env::temp_dir().join(format!("synthcal-images-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.png");
        image::RgbImage::from_pixel(7, 5, image::Rgb([10, 20, 30]))
            .save(&p)
            .unwrap();
        let im = Images::load(&[&p], [5, 7], ResizePolicy::Reject).unwrap();
        assert_eq!((im.len(), im.height(), im.width()), (1, 5, 7));
        assert!(im.image(0)[..35].iter().all(|&v| v == 10));
        assert!(im.image(0)[70..].iter().all(|&v| v == 30));
        let e = Images::load(&[&p], [32, 32], ResizePolicy::Reject).unwrap_err();
        assert!(e.to_string().contains("a.png"), "{e}");
        let big = Images::load(&[&p], [32, 32], ResizePolicy::Resize).unwrap();
        assert_eq!(big.image_bytes(), 3072);
        std::fs::remove_dir_all(&dir).ok();
    }
}
