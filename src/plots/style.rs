//! Shared styling of the figures: palette, colours and text sizes, the title /
//! caption / legend header, the chart geometry and axes, and the number formats
//! of ticks and captions.

use super::font::FAMILY;
use super::render::plot_err;
use crate::Result;
use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontStyle;

/// Categorical colours (the "tab10" palette), distinguishable in print.
pub(super) const PALETTE: [RGBColor; 10] = [
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

/// How a legend entry is drawn.
#[derive(Clone, Copy)]
pub(super) enum Mark {
    Dot,
    Line,
    Dashed,
}

pub(super) struct LegendEntry<'a> {
    pub(super) name: &'a str,
    pub(super) color: RGBColor,
    pub(super) mark: Mark,
}

fn font(size: f64) -> FontDesc<'static> {
    FontDesc::new(FontFamily::Name(FAMILY), size, FontStyle::Normal)
}

fn text_style(size: f64, color: RGBColor) -> TextStyle<'static> {
    font(size).color(&color)
}

/// Fills the background, draws the title, an optional caption and a legend
/// row (wrapped if needed), and returns the area left for the chart.
pub(super) fn header<DB: DrawingBackend>(
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
pub(super) fn chart_builder<'a, 'b, DB: DrawingBackend>(
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

/// Formats an axis tick value compactly (`0.3` rather than `0.30000000000000004`);
/// a tick within `1e-12` of zero is round-off of the tick arithmetic and prints as `0`.
fn fmt_tick(v: f64) -> String {
    if v.abs() < 1e-12 {
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
pub(super) fn fmt_sig(v: f64) -> String {
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
pub(super) fn padded_range(values: impl IntoIterator<Item = f64>, pad: f64) -> (f64, f64) {
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
pub(super) fn draw_mesh<DB, X>(
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
        assert_eq!(fmt_tick(-5.551115123125783e-17), "0");
    }

    #[test]
    fn caption_format_keeps_four_digits() {
        assert_eq!(fmt_sig(12.3456), "12.35");
        assert_eq!(fmt_sig(0.5), "0.5000");
        assert_eq!(fmt_sig(1234.6), "1235");
        assert_eq!(fmt_sig(2e-6), "2.000e-6");
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
