//! Readable charts for reports: a grouped bar chart with a title, labeled axes, one labeled
//! bar per cell and a legend, written as SVG or PNG (by the file's extension).
//!
//! Drawn with `plotters`; text uses DejaVu Sans from the `dejavu` crate, so neither building
//! nor running needs fontconfig or system fonts. The SVG names the family `sans-serif`.

use crate::error::{Error, Result};
use image::RgbImage;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;
use std::sync::OnceLock;

/// The family every chart's text is drawn in (registered once with plotters).
const FONT: &str = "sans-serif";
/// Largest width or height in pixels: bounds the PNG buffer.
const MAX_SIDE: u32 = 16_384;
/// Smallest width or height: below it the margins leave no plotting area.
const MIN_SIDE: u32 = 320;
/// Longer group labels are shortened in the middle.
const MAX_LABEL_CHARS: usize = 28;

/// A grouped bar chart: one cluster of bars per group (x axis), one bar per series in each
/// cluster, in the series' legend colour, with its value printed at the bar's end.
#[derive(Debug, Clone, PartialEq)]
pub struct BarChart {
    /// Drawn above the plot.
    pub title: String,
    /// The x axis' description (what the groups are).
    pub x_label: String,
    /// The y axis' description (what the values are, with their unit).
    pub y_label: String,
    /// The x axis categories, left to right (e.g. models).
    pub groups: Vec<String>,
    /// The legend entries: a name and one value per group (`None`: no such cell, drawn as
    /// [`BarChart::missing_label`] at zero).
    pub series: Vec<(String, Vec<Option<f64>>)>,
    /// Width and height in pixels; `None` sizes the chart to fit its bars.
    pub size: Option<(u32, u32)>,
    /// Decimals of the values printed on the bars.
    pub decimals: usize,
    /// Printed where a cell has no value.
    pub missing_label: String,
}

impl BarChart {
    /// A chart with no series yet, sized to fit, values printed with 2 decimals.
    pub fn new(title: &str, x_label: &str, y_label: &str, groups: Vec<String>) -> BarChart {
        BarChart {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            groups,
            series: Vec::new(),
            size: None,
            decimals: 2,
            missing_label: "n/a".into(),
        }
    }

    /// Adds a legend entry with one value per group.
    pub fn series(mut self, name: &str, values: Vec<Option<f64>>) -> BarChart {
        self.series.push((name.into(), values));
        self
    }

    /// Writes the chart to `path` as SVG (`.svg`) or PNG (`.png`), atomically: a reader sees
    /// the old file or the whole new one.
    pub fn write(&self, path: &Path) -> Result<()> {
        let file_err = |msg: String| Error::File {
            path: path.to_path_buf(),
            msg,
        };
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let bytes = match ext.to_ascii_lowercase().as_str() {
            "svg" => self.render_svg()?.into_bytes(),
            "png" => crate::data::encode_png(&self.render_png()?, path)?,
            _ => {
                return Err(file_err(
                    "a chart is written as .svg or .png; this extension is neither".into(),
                ))
            }
        };
        crate::io::write_atomic(path, &bytes)
            .map_err(|e| file_err(format!("writing the chart: {e}")))
    }

    /// The chart as an SVG document.
    pub fn render_svg(&self) -> Result<String> {
        let (w, h) = self.checked_size()?;
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
            self.draw(&root).map_err(|e| self.draw_err(e))?;
            root.present().map_err(|e| self.draw_err(e))?;
        }
        Ok(svg)
    }

    /// The chart as an RGB image.
    pub fn render_png(&self) -> Result<RgbImage> {
        let (w, h) = self.checked_size()?;
        let mut buf = vec![0u8; w as usize * h as usize * 3];
        {
            let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
            self.draw(&root).map_err(|e| self.draw_err(e))?;
            root.present().map_err(|e| self.draw_err(e))?;
        }
        RgbImage::from_raw(w, h, buf).ok_or_else(|| self.invalid("pixel buffer size"))
    }

    fn invalid(&self, msg: impl std::fmt::Display) -> Error {
        Error::Invalid(format!("chart {:?}: {msg}", self.title))
    }

    fn draw_err(&self, e: impl std::fmt::Display) -> Error {
        self.invalid(format_args!("drawing failed: {e}"))
    }

    /// Checks the data and returns the size in pixels.
    fn checked_size(&self) -> Result<(u32, u32)> {
        register_font().map_err(|e| self.invalid(e))?;
        if self.groups.is_empty() || self.series.is_empty() {
            return Err(self.invalid("needs at least one group and one series"));
        }
        for (name, values) in &self.series {
            if values.len() != self.groups.len() {
                return Err(self.invalid(format_args!(
                    "series {name:?} has {} values for {} groups",
                    values.len(),
                    self.groups.len()
                )));
            }
            if let Some(i) = values
                .iter()
                .position(|v| v.is_some_and(|v| !v.is_finite()))
            {
                return Err(self.invalid(format_args!(
                    "series {name:?}, group {:?}: value is not finite",
                    self.groups[i]
                )));
            }
        }
        let (w, h) = self.size.unwrap_or_else(|| self.fitted_size());
        if !(MIN_SIDE..=MAX_SIDE).contains(&w) || !(MIN_SIDE..=MAX_SIDE).contains(&h) {
            return Err(self.invalid(format_args!(
                "size {w}x{h} is outside {MIN_SIDE} to {MAX_SIDE} pixels a side"
            )));
        }
        Ok((w, h))
    }

    /// 16 px per bar, at least 640 x 480, taller when group labels are rotated.
    fn fitted_size(&self) -> (u32, u32) {
        let per_group = 16 * self.series.len() as u32 + 12;
        let plot = (per_group * self.groups.len() as u32).max(420);
        let longest = self.labels().iter().map(|l| l.chars().count()).max();
        let tall = if self.groups.len() > 8 {
            7 * longest.unwrap_or(0) as u32
        } else {
            0
        };
        let legend = 9 * self
            .series
            .iter()
            .map(|s| s.0.chars().count())
            .max()
            .unwrap_or(0);
        let w = plot + 100 + legend as u32 + 40;
        (w.clamp(640, MAX_SIDE), (460 + tall).min(MAX_SIDE))
    }

    /// Group labels, long ones shortened in the middle.
    fn labels(&self) -> Vec<String> {
        self.groups.iter().map(|g| abbreviate(g)).collect()
    }

    /// The y range: always holds 0 and every value, with room for the printed values.
    fn y_range(&self) -> (f64, f64) {
        let values = self.series.iter().flat_map(|s| s.1.iter().flatten());
        let (lo, hi) = values.fold((0.0f64, 0.0f64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        let span = if hi - lo > 0.0 { hi - lo } else { 1.0 };
        let pad = 0.15 * span;
        let lo = if lo < 0.0 { lo - pad } else { 0.0 };
        let hi = if hi > 0.0 || lo == 0.0 { hi + pad } else { 0.0 };
        (lo, hi)
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        root.fill(&WHITE)?;
        let text = |size: u32| (FONT, size).into_font().color(&BLACK);
        let (w, h) = root.dim_in_pixel();
        let legend_w = self
            .series
            .iter()
            .map(|(name, _)| root.estimate_text_size(name, &text(14)).map(|s| s.0))
            .try_fold(0, |m, s| s.map(|s| m.max(s)))?
            + 60;
        let (plot, legend) = root.split_horizontally(w.saturating_sub(legend_w));

        let labels = self.labels();
        let n = self.groups.len();
        let label_w = labels
            .iter()
            .map(|l| root.estimate_text_size(l, &text(13)).map(|s| s.0))
            .try_fold(0, |m, s| s.map(|s| m.max(s)))?;
        // A guess of the plotting width (the y label area and margins are about 100 px).
        let group_px = w.saturating_sub(legend_w + 100) as f64 / n as f64;
        let rotate = label_w as f64 > 0.9 * group_px;
        let label_area = if rotate { label_w + 45 } else { 50 };
        let label_area = label_area.min(h / 2);

        let (lo, hi) = self.y_range();
        let mut chart = ChartBuilder::on(&plot)
            .caption(&self.title, text(20))
            .margin(12)
            .x_label_area_size(label_area)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..n as f64, lo..hi)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .label_style(text(13))
            .axis_desc_style(text(15))
            .draw()?;
        if lo < 0.0 {
            let zero = PathElement::new(vec![(0.0, 0.0), (n as f64, 0.0)], BLACK);
            chart.draw_series(std::iter::once(zero))?;
        }

        let ns = self.series.len() as f64;
        let bar = 0.8 / ns;
        let bar_px = group_px * bar;
        for (k, (name, values)) in self.series.iter().enumerate() {
            let color = Palette99::pick(k).to_rgba();
            let x0 = |i: usize| i as f64 + 0.1 + k as f64 * bar;
            let bars = values.iter().enumerate().filter_map(|(i, v)| {
                v.map(|v| Rectangle::new([(x0(i), 0.0), (x0(i) + bar, v)], color.filled()))
            });
            chart.draw_series(bars)?;
            for (i, v) in values.iter().enumerate() {
                let (s, y, up, style) = match v {
                    Some(v) => (format!("{v:.*}", self.decimals), *v, *v >= 0.0, text(11)),
                    None => (
                        self.missing_label.clone(),
                        0.0,
                        true,
                        text(11).color(&RGBColor(120, 120, 120)),
                    ),
                };
                let fits = root.estimate_text_size(&s, &style)?.0 as f64 <= bar_px;
                let pos = match (fits, up) {
                    (true, true) => Pos::new(HPos::Center, VPos::Bottom),
                    (true, false) => Pos::new(HPos::Center, VPos::Top),
                    (false, true) => Pos::new(HPos::Left, VPos::Center),
                    (false, false) => Pos::new(HPos::Right, VPos::Center),
                };
                let style = if fits {
                    style.pos(pos)
                } else {
                    style.pos(pos).transform(FontTransform::Rotate270)
                };
                let (x, y) = chart.backend_coord(&(x0(i) + bar / 2.0, y));
                let gap = if up { -3 } else { 3 };
                root.draw(&Text::new(s, (x, y + gap), style))?;
            }
            let (lx, ly) = (8, 40 + 22 * k as i32);
            legend.draw(&Rectangle::new(
                [(lx, ly), (lx + 14, ly + 14)],
                color.filled(),
            ))?;
            let style = text(14).pos(Pos::new(HPos::Left, VPos::Center));
            legend.draw(&Text::new(name.as_str(), (lx + 20, ly + 7), style))?;
        }

        for (i, l) in labels.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(i as f64 + 0.5, lo));
            let style = if rotate {
                text(13)
                    .pos(Pos::new(HPos::Right, VPos::Center))
                    .transform(FontTransform::Rotate270)
            } else {
                text(13).pos(Pos::new(HPos::Center, VPos::Top))
            };
            root.draw(&Text::new(l.as_str(), (x, y + 6), style))?;
        }
        Ok(())
    }
}

/// `s`, or its start and end around an ellipsis when longer than [`MAX_LABEL_CHARS`].
fn abbreviate(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= MAX_LABEL_CHARS {
        return s.to_string();
    }
    let half = (MAX_LABEL_CHARS - 1) / 2;
    let head: String = chars[..half].iter().collect();
    let tail: String = chars[chars.len() - half..].iter().collect();
    format!("{head}…{tail}")
}

/// Registers DejaVu Sans as [`FONT`] with plotters, once per process.
fn register_font() -> std::result::Result<(), &'static str> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok()
    });
    ok.then_some(())
        .ok_or("the embedded DejaVu Sans font could not be loaded")
}

#[cfg(test)]
/// The text of every `<text>` element, unescaped.
pub(crate) fn svg_texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .map(|t| {
            let body = &t[t.find('>').unwrap() + 1..t.find("</text>").unwrap()];
            body.trim()
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BarChart {
        BarChart::new(
            "Drops & gains",
            "model <name>",
            "drop (pp)",
            vec!["resnet20".into(), "resnet56".into(), "shufflenet".into()],
        )
        .series("real", vec![Some(1.25), Some(-0.5), None])
        .series("gan", vec![Some(3.0), Some(0.0), Some(2.5)])
    }

    /// (y, height) of every filled `<rect>` in `color`.
    fn rects(svg: &str, color: (u8, u8, u8)) -> Vec<(i32, i32)> {
        let fill = format!("fill=\"#{:02X}{:02X}{:02X}\"", color.0, color.1, color.2);
        let attr = |t: &str, name: &str| -> i32 {
            let at = t.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
            t[at..at + t[at..].find('"').unwrap()].parse().unwrap()
        };
        svg.split("<rect")
            .skip(1)
            .map(|t| &t[..t.find("/>").unwrap()])
            .filter(|t| t.to_ascii_uppercase().contains(&fill.to_ascii_uppercase()))
            .map(|t| (attr(t, "y"), attr(t, "height")))
            .collect()
    }

    fn tmp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("synthcal-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn svg_has_title_axis_labels_legend_groups_and_values() {
        let texts = svg_texts(&sample().render_svg().unwrap());
        for want in [
            "Drops & gains",
            "model <name>",
            "drop (pp)",
            "real",
            "gan",
            "resnet20",
            "resnet56",
            "shufflenet",
            "1.25",
            "-0.50",
            "3.00",
            "0.00",
            "2.50",
            "n/a",
        ] {
            assert!(texts.iter().any(|t| t == want), "{want:?} not in {texts:?}");
        }
    }

    /// One bar per present cell plus the legend square; the negative bar hangs below the
    /// zero line where the positive one stands on it.
    #[test]
    fn one_bar_per_cell_and_negative_bars_go_down() {
        let svg = sample().render_svg().unwrap();
        let real = rects(&svg, Palette99::pick(0).to_rgba().rgb());
        let gan = rects(&svg, Palette99::pick(1).to_rgba().rgb());
        assert_eq!((real.len(), gan.len()), (3, 4), "{real:?} {gan:?}");
        let (pos, neg) = (real[0], real[1]);
        assert!(pos.1 > 0 && neg.1 > 0, "{real:?}");
        assert!(
            (pos.0 + pos.1 - neg.0).abs() <= 1,
            "zero line: {pos:?} {neg:?}"
        );
    }

    #[test]
    fn y_range_holds_zero_and_every_value() {
        let one = |v: Vec<Option<f64>>| {
            BarChart::new("t", "x", "y", vec!["a".into(), "b".into()])
                .series("s", v)
                .y_range()
        };
        let (lo, hi) = one(vec![Some(-2.0), Some(3.0)]);
        assert!(lo < -2.0 && hi > 3.0, "{lo} {hi}");
        let (lo, hi) = one(vec![Some(-2.0), Some(-1.0)]);
        assert!(lo < -2.0 && hi == 0.0, "{lo} {hi}");
        let (lo, hi) = one(vec![Some(1.0), None]);
        assert!(lo == 0.0 && hi > 1.0, "{lo} {hi}");
        let (lo, hi) = one(vec![None, None]);
        assert!(lo == 0.0 && hi > 0.0, "{lo} {hi}");
    }

    #[test]
    fn png_has_the_requested_size_and_is_drawn() {
        let mut chart = sample();
        chart.size = Some((700, 400));
        let path = tmp("bars.png");
        chart.write(&path).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (700, 400));
        let mut colors: Vec<[u8; 3]> = img.pixels().map(|p| p.0).collect();
        colors.sort_unstable();
        colors.dedup();
        // White, black text and axes, two bar colours and anti-aliased glyph edges.
        assert!(colors.len() > 10, "{} colours", colors.len());
        let bar = Palette99::pick(0).to_rgba().rgb();
        assert!(img.pixels().any(|p| p.0 == [bar.0, bar.1, bar.2]));
    }

    #[test]
    fn writes_svg_by_extension_and_refuses_others() {
        let path = tmp("bars.SVG");
        sample().write(&path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
        for name in ["bars.jpg", "bars"] {
            let e = sample().write(&tmp(name)).unwrap_err().to_string();
            assert!(e.contains(name) && e.contains(".svg or .png"), "{e}");
            assert!(!tmp(name).exists());
        }
    }

    #[test]
    fn a_missing_folder_is_an_error_naming_the_path() {
        let path = tmp("no/such/folder/bars.svg");
        let e = sample().write(&path).unwrap_err().to_string();
        assert!(e.contains(&path.display().to_string()), "{e}");
        assert!(!path.exists());
    }

    /// The temporary file is renamed over the old chart: the old one survives a failure and
    /// nothing is left beside it.
    #[test]
    fn writes_atomically() {
        let dir = tmp("atomic");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.svg");
        std::fs::write(&path, "old").unwrap();
        let bad = BarChart::new("t", "x", "y", vec!["a".into()]).series("s", vec![]);
        assert!(bad.write(&path).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        sample().write(&path).unwrap();
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["c.svg"]);
        assert!(std::fs::read_to_string(&path).unwrap().contains("resnet56"));
    }

    #[test]
    fn bad_data_is_an_error_naming_series_and_group() {
        let e = sample().series("nan", vec![None, Some(f64::NAN), None]);
        let e = e.render_svg().unwrap_err().to_string();
        assert!(e.contains("\"nan\"") && e.contains("resnet56"), "{e}");
        let e = sample()
            .series("short", vec![Some(1.0)])
            .render_png()
            .unwrap_err();
        assert!(e.to_string().contains("1 values for 3 groups"), "{e}");
        let empty = BarChart::new("t", "x", "y", vec![]).series("s", vec![]);
        assert!(empty.render_svg().is_err());
        let mut tiny = sample();
        tiny.size = Some((10, 10));
        assert!(tiny.render_png().unwrap_err().to_string().contains("10x10"));
    }

    /// Many long group labels (a diagnose chart of a deep model) are rotated and shortened,
    /// and the chart grows to fit them.
    #[test]
    fn many_layers_get_rotated_shortened_labels() {
        let names: Vec<String> = (0..60)
            .map(|i| format!("layer{}.block{i}.conv_with_a_long_name", i / 20))
            .collect();
        let mut chart = BarChart::new("SQNR", "layer", "dB", names.clone());
        chart = chart.series("output", (0..60).map(|i| Some(20.0 + i as f64)).collect());
        let (w, h) = chart.fitted_size();
        assert!(w > 60 * 16 && h > 460, "{w}x{h}");
        let svg = chart.render_svg().unwrap();
        let short = abbreviate(&names[0]);
        assert!(
            short.chars().count() == MAX_LABEL_CHARS - 1 && short.contains('…'),
            "{short}"
        );
        assert!(svg_texts(&svg).contains(&short));
        assert!(svg.contains("rotate(270"), "labels not rotated");
        assert_eq!(abbreviate("conv1"), "conv1");
        chart.write(&tmp("layers.png")).unwrap();
    }
}
