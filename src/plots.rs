//! Figures in the style of the paper's panels (THEORY §6), from plain data.
//!
//! Every function takes a path *stem* and writes two files next to each other:
//! `<stem>.png` (an 800×600 bitmap, see [`WIDTH`] and [`HEIGHT`]) and
//! `<stem>.svg`. The extension is appended, never substituted, so a stem like
//! `out/fig4.a` gives `out/fig4.a.png`. Missing parent directories are created
//! and both files are written atomically (temporary sibling + rename).
//!
//! - [`pca_scatter`]: 2-D PCA coordinates coloured by concept, with the leading
//!   singular values in a caption (collapse pictures of figures 3–4);
//! - [`curves`]: line plots such as train/test accuracy or loss over epochs;
//! - [`norms_vs_rank`]: measured embedding norm per frequency rank, with the
//!   type-III prediction drawn over it.
//!
//! # Fonts
//!
//! Text is rasterised with `ab_glyph` from a TrueType font read at run time
//! (no font is compiled in and no C font library is needed). The first figure
//! drawn looks the font up once per process, see [`ensure_font`]: the file
//! named by the environment variable `FCOLLAPSE_FONT` if it is set, otherwise
//! `DejaVuSans.ttf` in the directories of [`FONT_DIRS`]. If none is found,
//! plotting fails with an [`Error::Plot`] asking to install the Debian package
//! `fonts-dejavu-core`.
//!
//! # Input checks
//!
//! Inconsistent or non-finite input is rejected with [`Error::InvalidParam`]
//! before anything is drawn; failures while drawing are [`Error::Plot`] and
//! failures while writing are [`Error::Io`].

use crate::npy::write_atomic;
use crate::{Error, Result};
use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontStyle;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Width of every figure in pixels (PNG) or user units (SVG).
pub const WIDTH: u32 = 800;
/// Height of every figure in pixels (PNG) or user units (SVG).
pub const HEIGHT: u32 = 600;

/// Environment variable that, when set, names the TrueType/OpenType font file to use.
pub const FONT_ENV: &str = "FCOLLAPSE_FONT";

/// Directories searched, in order, for `DejaVuSans.ttf` (and `DejaVuSans-Bold.ttf`)
/// when [`FONT_ENV`] is not set.
pub const FONT_DIRS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu",
    "/usr/share/fonts/TTF",
    "/usr/share/fonts/dejavu",
    "/usr/share/fonts/dejavu-sans-fonts",
    "/usr/share/fonts/truetype",
    "/usr/local/share/fonts",
    "/Library/Fonts",
];

/// Font family name the font is registered under (also written into the SVGs).
const FAMILY: &str = "sans-serif";

/// Categorical colours (the "tab10" palette), distinguishable in print.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

const TEXT: RGBColor = RGBColor(30, 30, 30);
const SUBTLE: RGBColor = RGBColor(80, 80, 80);
const GRID_BOLD: RGBColor = RGBColor(218, 218, 218);

/// Font sizes (in pixels).
const TITLE_SIZE: f64 = 24.0;
const CAPTION_SIZE: f64 = 17.0;
const LEGEND_SIZE: f64 = 16.0;
const TICK_SIZE: f64 = 15.0;
const AXIS_DESC_SIZE: f64 = 17.0;

/// Series with at most this many points get a marker at each point.
const MARKER_MAX: usize = 40;

/// One curve of a [`curves`] plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// `(x, y)` points, drawn joined in the given order.
    pub points: Vec<(f64, f64)>,
    /// Draw the line dashed instead of solid.
    pub dashed: bool,
}

impl Series {
    /// A solid curve.
    pub fn solid(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series {
            name: name.into(),
            points,
            dashed: false,
        }
    }

    /// A dashed curve.
    pub fn dashed(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series {
            name: name.into(),
            points,
            dashed: true,
        }
    }
}

// ---------------------------------------------------------------------------
// Fonts
// ---------------------------------------------------------------------------

static FONT: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();

/// Finds, loads and registers the font with plotters, once per process.
///
/// Returns the path of the regular font in use. Later calls return the
/// outcome of the first one (the environment is read only once). All plotting
/// functions call this themselves; call it early to fail fast.
pub fn ensure_font() -> Result<PathBuf> {
    FONT.get_or_init(load_font).clone().map_err(Error::Plot)
}

/// Reads a font file and registers it under [`FAMILY`] with the given style.
fn register(path: &Path, style: FontStyle) -> std::result::Result<(), String> {
    let bytes = fs::read(path).map_err(|e| format!("cannot read font {}: {e}", path.display()))?;
    // plotters keeps a `&'static` reference to the font data; the bytes are
    // loaded once per process and style, so leaking them is bounded.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font(FAMILY, style, bytes)
        .map_err(|_| format!("{} is not a valid TrueType/OpenType font", path.display()))
}

fn load_font() -> std::result::Result<PathBuf, String> {
    if let Some(value) = std::env::var_os(FONT_ENV) {
        let path = PathBuf::from(value);
        register(&path, FontStyle::Normal).map_err(|e| {
            format!(
                "{FONT_ENV} is set but {e}; point it to a .ttf file or unset it to use \
                 DejaVu Sans from the Debian package fonts-dejavu-core"
            )
        })?;
        return Ok(path);
    }
    for dir in FONT_DIRS {
        let regular = Path::new(dir).join("DejaVuSans.ttf");
        if regular.is_file() {
            register(&regular, FontStyle::Normal)?;
            // Bold is optional: plotters falls back to the regular face.
            let bold = Path::new(dir).join("DejaVuSans-Bold.ttf");
            if bold.is_file() {
                let _ = register(&bold, FontStyle::Bold);
            }
            return Ok(regular);
        }
    }
    Err(format!(
        "no font found for drawing figures: looked for DejaVuSans.ttf in {}; install the \
         Debian package fonts-dejavu-core (apt-get install fonts-dejavu-core) or set \
         {FONT_ENV} to the path of a .ttf file",
        FONT_DIRS.join(", ")
    ))
}

// ---------------------------------------------------------------------------
// Public figures
// ---------------------------------------------------------------------------

/// Scatter plot of 2-D PCA coordinates coloured by concept.
///
/// `points[i]` is drawn in the colour of `labels[i]`, which indexes
/// `label_names` (the legend). The first three `singular_values` (as many as
/// given) are printed in a caption under the title. Axes use equal scales so
/// the geometry of the configuration (e.g. an equiangular triangle) is not
/// distorted.
///
/// Errors: [`Error::InvalidParam`] if `points` is empty, if `labels` and
/// `points` differ in length, if a label has no name, if there are more than
/// 10 label names, or if a coordinate or singular value is not finite.
pub fn pca_scatter(
    stem: &Path,
    title: &str,
    points: &[[f64; 2]],
    labels: &[usize],
    label_names: &[String],
    singular_values: &[f64],
) -> Result<()> {
    if points.is_empty() {
        return Err(Error::invalid("points", 0, "nothing to plot"));
    }
    if labels.len() != points.len() {
        return Err(Error::invalid(
            "labels",
            labels.len(),
            format!("need one label per point ({} points)", points.len()),
        ));
    }
    if label_names.len() > PALETTE.len() {
        return Err(Error::invalid(
            "label_names",
            label_names.len(),
            format!("at most {} classes can be coloured", PALETTE.len()),
        ));
    }
    if let Some(&bad) = labels.iter().find(|&&l| l >= label_names.len()) {
        return Err(Error::invalid(
            "labels",
            bad,
            format!("label has no name ({} label names)", label_names.len()),
        ));
    }
    check_finite("points", points.iter().flatten().copied())?;
    check_finite("singular_values", singular_values.iter().copied())?;
    render(
        stem,
        &Scatter {
            title,
            points,
            labels,
            label_names,
            singular_values,
        },
    )
}

/// Line plot of one or more series, e.g. accuracy or loss over epochs.
///
/// Series get distinct colours in order and a legend under the title; series
/// with at most 40 points also get a marker at each point. `y_range` fixes the
/// vertical axis (e.g. `Some((0.0, 1.0))` for accuracies); otherwise it is
/// fitted to the data with a small margin.
///
/// Errors: [`Error::InvalidParam`] if there is no series, a series has no
/// points, there are more than 10 series, a value is not finite, or `y_range`
/// is not a finite increasing pair.
pub fn curves(
    stem: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    y_range: Option<(f64, f64)>,
) -> Result<()> {
    if series.is_empty() {
        return Err(Error::invalid("series", 0, "nothing to plot"));
    }
    if series.len() > PALETTE.len() {
        return Err(Error::invalid(
            "series",
            series.len(),
            format!("at most {} series can be coloured", PALETTE.len()),
        ));
    }
    for s in series {
        if s.points.is_empty() {
            return Err(Error::invalid("series", &s.name, "series has no points"));
        }
        check_finite("series", s.points.iter().flat_map(|&(x, y)| [x, y]))?;
    }
    if let Some((lo, hi)) = y_range {
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            return Err(Error::invalid(
                "y_range",
                format!("({lo}, {hi})"),
                "need finite bounds with low < high",
            ));
        }
    }
    render(
        stem,
        &Curves {
            title,
            x_label,
            y_label,
            series,
            y_range,
        },
    )
}

/// Measured norm of each token's embedding against its frequency rank.
///
/// `measured[r]` is the norm for the token of rank `r + 1` (most frequent
/// first), drawn as points; `predicted`, if given, is the type-III prediction
/// for the same ranks, drawn as a line over them. `log_x` puts the rank axis
/// on a logarithmic scale (natural for Zipf frequencies).
///
/// Errors: [`Error::InvalidParam`] if `measured` is empty, `predicted` has a
/// different length, or a value is not finite.
pub fn norms_vs_rank(
    stem: &Path,
    title: &str,
    measured: &[f64],
    predicted: Option<&[f64]>,
    log_x: bool,
) -> Result<()> {
    if measured.is_empty() {
        return Err(Error::invalid("measured", 0, "nothing to plot"));
    }
    check_finite("measured", measured.iter().copied())?;
    if let Some(p) = predicted {
        if p.len() != measured.len() {
            return Err(Error::invalid(
                "predicted",
                p.len(),
                format!("need one value per rank ({} measured)", measured.len()),
            ));
        }
        check_finite("predicted", p.iter().copied())?;
    }
    render(
        stem,
        &Norms {
            title,
            measured,
            predicted,
            log_x,
        },
    )
}

// ---------------------------------------------------------------------------
// Rendering machinery
// ---------------------------------------------------------------------------

/// A figure that can be drawn on any plotters backend.
trait Figure {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>;
}

/// Converts any plotters error into [`Error::Plot`].
fn plot_err(e: impl std::fmt::Display) -> Error {
    Error::Plot(e.to_string())
}

/// `stem` with `.ext` appended (not substituted).
fn with_ext(stem: &Path, ext: &str) -> PathBuf {
    let mut s: OsString = stem.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

fn check_finite(name: &'static str, values: impl IntoIterator<Item = f64>) -> Result<()> {
    match values.into_iter().find(|v| !v.is_finite()) {
        Some(v) => Err(Error::invalid(name, v, "values must be finite")),
        None => Ok(()),
    }
}

/// Draws `fig` into `<stem>.svg` and `<stem>.png`.
fn render(stem: &Path, fig: &impl Figure) -> Result<()> {
    ensure_font()?;
    if stem.file_name().is_none() {
        return Err(Error::invalid(
            "stem",
            stem.display(),
            "need a file name stem",
        ));
    }
    if let Some(parent) = stem.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        fig.draw(&root)?;
        root.present().map_err(plot_err)?;
    }
    write_atomic(&with_ext(stem, "svg"), svg.as_bytes())?;

    // The bitmap backend picks the encoder from the extension, so the
    // temporary file must also end in `.png`.
    let png = with_ext(stem, "png");
    let tmp = with_ext(stem, &format!("tmp{}.png", std::process::id()));
    let drawn = (|| {
        let root = BitMapBackend::new(&tmp, (WIDTH, HEIGHT)).into_drawing_area();
        fig.draw(&root)?;
        root.present().map_err(plot_err)
    })();
    if let Err(e) = drawn {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, &png).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(&png, e)
    })
}

/// How a legend entry is drawn.
#[derive(Clone, Copy)]
enum Mark {
    Dot,
    Line,
    Dashed,
}

struct LegendEntry<'a> {
    name: &'a str,
    color: RGBColor,
    mark: Mark,
}

fn font(size: f64) -> FontDesc<'static> {
    FontDesc::new(FontFamily::Name(FAMILY), size, FontStyle::Normal)
}

fn text_style(size: f64, color: RGBColor) -> TextStyle<'static> {
    font(size).color(&color)
}

/// Fills the background, draws the title, an optional caption and a legend
/// row (wrapped if needed), and returns the area left for the chart.
fn header<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    caption: Option<&str>,
    legend: &[LegendEntry],
) -> Result<DrawingArea<DB, Shift>> {
    root.fill(&WHITE).map_err(plot_err)?;
    let (w, _) = root.dim_in_pixel();
    let cx = (w / 2) as i32;
    let mut y = 14i32;

    let title_style = FontDesc::new(FontFamily::Name(FAMILY), TITLE_SIZE, FontStyle::Bold)
        .color(&TEXT)
        .pos(Pos::new(HPos::Center, VPos::Top));
    root.draw(&Text::new(title.to_string(), (cx, y), title_style))
        .map_err(plot_err)?;
    y += TITLE_SIZE as i32 + 10;

    if let Some(c) = caption {
        let style = text_style(CAPTION_SIZE, SUBTLE).pos(Pos::new(HPos::Center, VPos::Top));
        root.draw(&Text::new(c.to_string(), (cx, y), style))
            .map_err(plot_err)?;
        y += CAPTION_SIZE as i32 + 10;
    }

    if !legend.is_empty() {
        y += 2;
        let style = text_style(LEGEND_SIZE, TEXT).pos(Pos::new(HPos::Left, VPos::Center));
        const SWATCH: i32 = 30;
        const GAP: i32 = 8;
        const SEP: i32 = 28;
        // Width of each entry, then greedy wrapping into rows.
        let mut widths = Vec::with_capacity(legend.len());
        for e in legend {
            let (tw, _) = root.estimate_text_size(e.name, &style).map_err(plot_err)?;
            widths.push(SWATCH + GAP + tw as i32);
        }
        let max_row = w as i32 - 60;
        let mut rows: Vec<Vec<usize>> = vec![vec![]];
        let mut row_w = 0;
        for (i, &ew) in widths.iter().enumerate() {
            let last = rows.last_mut().expect("non-empty");
            let extra = if last.is_empty() { ew } else { SEP + ew };
            if !last.is_empty() && row_w + extra > max_row {
                rows.push(vec![i]);
                row_w = ew;
            } else {
                last.push(i);
                row_w += extra;
            }
        }
        let row_h = LEGEND_SIZE as i32 + 10;
        for row in rows {
            let total: i32 =
                row.iter().map(|&i| widths[i]).sum::<i32>() + SEP * (row.len() as i32 - 1);
            let mut x = cx - total / 2;
            let yc = y + row_h / 2;
            for &i in &row {
                let e = &legend[i];
                let line_style = e.color.stroke_width(3);
                match e.mark {
                    Mark::Dot => root
                        .draw(&Circle::new((x + SWATCH / 2, yc), 5, e.color.filled()))
                        .map_err(plot_err)?,
                    Mark::Line => root
                        .draw(&PathElement::new(
                            vec![(x, yc), (x + SWATCH, yc)],
                            line_style,
                        ))
                        .map_err(plot_err)?,
                    Mark::Dashed => root
                        .draw(&DashedPathElement::new(
                            vec![(x, yc), (x + SWATCH, yc)],
                            8,
                            5,
                            line_style,
                        ))
                        .map_err(plot_err)?,
                }
                root.draw(&Text::new(
                    e.name.to_string(),
                    (x + SWATCH + GAP, yc),
                    style.clone(),
                ))
                .map_err(plot_err)?;
                x += widths[i] + SEP;
            }
            y += row_h;
        }
    }
    Ok(root.margin(y + 4, 0, 0, 0))
}

/// Chart geometry shared by all figures.
fn chart_builder<'a, 'b, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
) -> ChartBuilder<'a, 'b, DB> {
    let mut b = ChartBuilder::on(area);
    b.margin_left(12)
        .margin_right(34)
        .margin_top(6)
        .margin_bottom(12)
        .x_label_area_size(52)
        .y_label_area_size(70);
    b
}

/// Formats an axis tick value compactly (`0.3` rather than `0.30000000000000004`).
fn fmt_tick(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-3..1e6).contains(&a) {
        let s = format!("{v:.1e}");
        return s.replace(".0e", "e");
    }
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// Formats a value with about four significant digits for captions.
fn fmt_sig(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.3e}")
    } else {
        let decimals = (3 - a.log10().floor() as i32).max(0) as usize;
        format!("{v:.decimals$}")
    }
}

/// `(min, max)` of the values, widened by `pad` of the span on both sides and
/// made non-degenerate.
fn padded_range(values: impl IntoIterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (lo, hi) = values
        .into_iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if hi - lo <= f64::EPSILON * (lo.abs() + hi.abs()).max(1e-300) {
        let half = if lo == 0.0 { 1.0 } else { 0.1 * lo.abs() };
        return (lo - half, hi + half);
    }
    let span = hi - lo;
    (lo - pad * span, hi + pad * span)
}

/// Draws the grid, ticks and axis descriptions.
fn draw_mesh<DB, X>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<X, RangedCoordf64>>,
    x_desc: &str,
    y_desc: &str,
) -> Result<()>
where
    DB: DrawingBackend,
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let fmt = |v: &f64| fmt_tick(*v);
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&fmt)
        .y_label_formatter(&fmt)
        .x_labels(8)
        .y_labels(8)
        .label_style(text_style(TICK_SIZE, TEXT))
        .axis_desc_style(text_style(AXIS_DESC_SIZE, TEXT))
        .bold_line_style(GRID_BOLD.stroke_width(1))
        .light_line_style(TRANSPARENT)
        .axis_style(SUBTLE.stroke_width(1))
        .draw()
        .map_err(plot_err)
}

// ---------------------------------------------------------------------------
// PCA scatter
// ---------------------------------------------------------------------------

struct Scatter<'a> {
    title: &'a str,
    points: &'a [[f64; 2]],
    labels: &'a [usize],
    label_names: &'a [String],
    singular_values: &'a [f64],
}

impl Figure for Scatter<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let caption = if self.singular_values.is_empty() {
            None
        } else {
            const SUB: [&str; 3] = ["\u{2081}", "\u{2082}", "\u{2083}"];
            let parts: Vec<String> = self
                .singular_values
                .iter()
                .take(3)
                .enumerate()
                .map(|(i, s)| format!("\u{3c3}{} = {}", SUB[i], fmt_sig(*s)))
                .collect();
            Some(format!("singular values: {}", parts.join(",   ")))
        };
        // Only label classes that occur get a legend entry.
        let mut present = vec![false; self.label_names.len()];
        for &l in self.labels {
            present[l] = true;
        }
        let legend: Vec<LegendEntry> = self
            .label_names
            .iter()
            .enumerate()
            .filter(|(i, _)| present[*i])
            .map(|(i, name)| LegendEntry {
                name,
                color: PALETTE[i],
                mark: Mark::Dot,
            })
            .collect();
        let body = header(root, self.title, caption.as_deref(), &legend)?;

        // Equal scales on both axes: measure the plotting area, then widen
        // the shorter data range to match its aspect ratio.
        let (mut x0, mut x1) = padded_range(self.points.iter().map(|p| p[0]), 0.08);
        let (mut y0, mut y1) = padded_range(self.points.iter().map(|p| p[1]), 0.08);
        let (pw, ph) = chart_builder(&body)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)
            .map_err(plot_err)?
            .plotting_area()
            .dim_in_pixel();
        let (pw, ph) = (pw.max(1) as f64, ph.max(1) as f64);
        let scale = ((x1 - x0) / pw).max((y1 - y0) / ph);
        let (cx, cy) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
        (x0, x1) = (cx - scale * pw / 2.0, cx + scale * pw / 2.0);
        (y0, y1) = (cy - scale * ph / 2.0, cy + scale * ph / 2.0);

        let mut chart = chart_builder(&body)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(plot_err)?;
        draw_mesh(&mut chart, "PC 1", "PC 2")?;

        let n = self.points.len();
        let radius = if n <= 300 {
            4
        } else if n <= 3000 {
            3
        } else {
            2
        };
        chart
            .draw_series(
                self.points.iter().zip(self.labels).map(|(p, &l)| {
                    Circle::new((p[0], p[1]), radius, PALETTE[l].mix(0.75).filled())
                }),
            )
            .map_err(plot_err)?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Curves
// ---------------------------------------------------------------------------

struct Curves<'a> {
    title: &'a str,
    x_label: &'a str,
    y_label: &'a str,
    series: &'a [Series],
    y_range: Option<(f64, f64)>,
}

impl Figure for Curves<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let legend: Vec<LegendEntry> = self
            .series
            .iter()
            .enumerate()
            .map(|(i, s)| LegendEntry {
                name: &s.name,
                color: PALETTE[i],
                mark: if s.dashed { Mark::Dashed } else { Mark::Line },
            })
            .collect();
        let body = header(root, self.title, None, &legend)?;

        let all = || self.series.iter().flat_map(|s| s.points.iter());
        // Lines may touch the frame; markers need a little room.
        let x_pad = if self.series.iter().any(|s| s.points.len() <= MARKER_MAX) {
            0.03
        } else {
            0.0
        };
        let (x0, x1) = padded_range(all().map(|p| p.0), x_pad);
        let (y0, y1) = self
            .y_range
            .unwrap_or_else(|| padded_range(all().map(|p| p.1), 0.05));
        let mut chart = chart_builder(&body)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(plot_err)?;
        draw_mesh(&mut chart, self.x_label, self.y_label)?;

        for (i, s) in self.series.iter().enumerate() {
            let style = PALETTE[i].stroke_width(2);
            if s.dashed {
                chart
                    .draw_series(DashedLineSeries::new(s.points.iter().copied(), 9, 6, style))
                    .map_err(plot_err)?;
            } else {
                chart
                    .draw_series(LineSeries::new(s.points.iter().copied(), style))
                    .map_err(plot_err)?;
            }
            if s.points.len() <= MARKER_MAX {
                chart
                    .draw_series(
                        s.points
                            .iter()
                            .map(|&p| Circle::new(p, 4, PALETTE[i].filled())),
                    )
                    .map_err(plot_err)?;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Norms against frequency rank
// ---------------------------------------------------------------------------

struct Norms<'a> {
    title: &'a str,
    measured: &'a [f64],
    predicted: Option<&'a [f64]>,
    log_x: bool,
}

impl Norms<'_> {
    fn draw_on<DB, X>(
        &self,
        mut chart: ChartContext<'_, DB, Cartesian2d<X, RangedCoordf64>>,
    ) -> Result<()>
    where
        DB: DrawingBackend,
        X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        draw_mesh(&mut chart, "frequency rank", "embedding norm")?;
        let n = self.measured.len();
        let radius = if n <= 200 { 4 } else { 3 };
        chart
            .draw_series(self.measured.iter().enumerate().map(|(r, &v)| {
                Circle::new(((r + 1) as f64, v), radius, PALETTE[0].mix(0.7).filled())
            }))
            .map_err(plot_err)?;
        if let Some(p) = self.predicted {
            let pts: Vec<(f64, f64)> = p
                .iter()
                .enumerate()
                .map(|(r, &v)| ((r + 1) as f64, v))
                .collect();
            chart
                .draw_series(LineSeries::new(pts, PALETTE[3].stroke_width(3)))
                .map_err(plot_err)?;
        }
        Ok(())
    }
}

impl Figure for Norms<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let mut legend = vec![LegendEntry {
            name: "measured",
            color: PALETTE[0],
            mark: Mark::Dot,
        }];
        if self.predicted.is_some() {
            legend.push(LegendEntry {
                name: "type-III prediction",
                color: PALETTE[3],
                mark: Mark::Line,
            });
        }
        let body = header(root, self.title, None, &legend)?;

        let values = self
            .measured
            .iter()
            .chain(self.predicted.unwrap_or(&[]))
            .copied();
        let (lo, hi) = padded_range(values.chain([0.0]), 0.0);
        let (y0, y1) = (lo.min(0.0), hi + 0.06 * (hi - lo));
        let k = self.measured.len() as f64;
        if self.log_x {
            let (x0, x1) = (0.8, (k * 1.25).max(1.25));
            let chart = chart_builder(&body)
                .build_cartesian_2d((x0..x1).log_scale(), y0..y1)
                .map_err(plot_err)?;
            self.draw_on(chart)
        } else {
            let pad = (0.02 * k).max(0.5);
            let chart = chart_builder(&body)
                .build_cartesian_2d((1.0 - pad)..(k + pad), y0..y1)
                .map_err(plot_err)?;
            self.draw_on(chart)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_format_is_compact() {
        assert_eq!(fmt_tick(0.30000000000000004), "0.3");
        assert_eq!(fmt_tick(1000.0), "1000");
        assert_eq!(fmt_tick(-2.5), "-2.5");
        assert_eq!(fmt_tick(1e-7), "1e-7");
        assert_eq!(fmt_tick(0.0), "0");
    }

    #[test]
    fn caption_format_keeps_four_digits() {
        assert_eq!(fmt_sig(12.3456), "12.35");
        assert_eq!(fmt_sig(0.5), "0.5000");
        assert_eq!(fmt_sig(1234.6), "1235");
        assert_eq!(fmt_sig(2e-6), "2.000e-6");
    }

    #[test]
    fn stem_extension_is_appended() {
        assert_eq!(
            with_ext(Path::new("out/fig4.a"), "png"),
            PathBuf::from("out/fig4.a.png")
        );
    }

    #[test]
    fn padded_range_is_never_degenerate() {
        let (lo, hi) = padded_range([3.0, 3.0], 0.1);
        assert!(lo < 3.0 && hi > 3.0);
        let (lo, hi) = padded_range([0.0], 0.1);
        assert!(lo < 0.0 && hi > 0.0);
        let (lo, hi) = padded_range([0.0, 10.0], 0.1);
        assert_eq!((lo, hi), (-1.0, 11.0));
    }
}
