//! The figure functions ([`pca_scatter`], [`curves`], [`norms_vs_rank`]): input
//! checks, then the drawing of each figure on any plotters backend.

use super::render::{check_finite, plot_err, render, Figure};
use super::style::{
    chart_builder, draw_mesh, fmt_sig, header, padded_range, LegendEntry, Mark, PALETTE,
};
use super::Series;
use crate::{Error, Result};
use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// Series with at most this many points get a marker at each point.
const MARKER_MAX: usize = 40;

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
