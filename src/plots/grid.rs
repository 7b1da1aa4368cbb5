//! [`category_grid`]: a grid of coloured cells, one category per cell, on two
//! categorical axes (the atlas phase diagrams).

use super::render::{plot_err, render, Figure};
use super::style::{chart_builder, header, LegendEntry, Mark};
use crate::{Error, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// One cell: the index of its category and a short label drawn inside it.
pub type Cell = Option<(usize, String)>;

/// A grid figure: `cells[y][x]` coloured by its category
/// (`categories[i] = (legend name, RGB)`), empty cells left white, with the
/// column labels `x_ticks` and the row labels `y_ticks` (row 0 at the bottom).
pub struct CategoryGrid<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub x_ticks: &'a [String],
    pub y_ticks: &'a [String],
    pub categories: &'a [(&'a str, (u8, u8, u8))],
    pub cells: &'a [Vec<Cell>],
}

/// Draws `grid` into `<stem>.png` and `<stem>.svg`.
///
/// Errors: [`Error::InvalidParam`] if there is no category or more than 8, no
/// column or row, `cells` does not have `y_ticks.len()` rows of `x_ticks.len()`
/// cells, or a cell names a category that does not exist.
pub fn category_grid(stem: &Path, grid: &CategoryGrid) -> Result<()> {
    let (categories, cells) = (grid.categories, grid.cells);
    let (x_ticks, y_ticks) = (grid.x_ticks, grid.y_ticks);
    if categories.is_empty() || categories.len() > 8 {
        return Err(Error::invalid(
            "categories",
            categories.len(),
            "need 1 to 8 categories",
        ));
    }
    if x_ticks.is_empty() || y_ticks.is_empty() {
        return Err(Error::invalid(
            "cells",
            format!("{} x {}", x_ticks.len(), y_ticks.len()),
            "need at least one row and one column",
        ));
    }
    if cells.len() != y_ticks.len() || cells.iter().any(|r| r.len() != x_ticks.len()) {
        return Err(Error::invalid(
            "cells",
            cells.len(),
            "need one row per y tick and one cell per x tick",
        ));
    }
    if let Some((c, _)) = cells
        .iter()
        .flatten()
        .flatten()
        .find(|(c, _)| *c >= categories.len())
    {
        return Err(Error::invalid("cells", c, "category index out of range"));
    }
    render(stem, grid)
}

fn tick(labels: &[String], v: f64) -> String {
    let i = v.round();
    if (v - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels.len() {
        labels[i as usize].clone()
    } else {
        String::new()
    }
}

impl Figure for CategoryGrid<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let colour = |c: (u8, u8, u8)| RGBColor(c.0, c.1, c.2);
        let legend: Vec<LegendEntry> = self
            .categories
            .iter()
            .map(|(name, c)| LegendEntry {
                name,
                color: colour(*c),
                mark: Mark::Dot,
            })
            .collect();
        let body = header(root, self.title, None, &legend)?;
        let (nx, ny) = (self.x_ticks.len(), self.y_ticks.len());
        let mut chart = chart_builder(&body)
            .build_cartesian_2d(-0.5..nx as f64 - 0.5, -0.5..ny as f64 - 0.5)
            .map_err(plot_err)?;
        let fx = |v: &f64| tick(self.x_ticks, *v);
        let fy = |v: &f64| tick(self.y_ticks, *v);
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(self.x_label)
            .y_desc(self.y_label)
            .x_labels(nx * 4 + 1)
            .y_labels(ny * 4 + 1)
            .x_label_formatter(&fx)
            .y_label_formatter(&fy)
            .label_style(("sans-serif", 15.0))
            .axis_desc_style(("sans-serif", 17.0))
            .draw()
            .map_err(plot_err)?;
        for (y, row) in self.cells.iter().enumerate() {
            for (x, cell) in row.iter().enumerate() {
                let Some((c, label)) = cell else { continue };
                let (x, y) = (x as f64, y as f64);
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x - 0.47, y - 0.47), (x + 0.47, y + 0.47)],
                        colour(self.categories[*c].1).filled(),
                    )))
                    .map_err(plot_err)?;
                if !label.is_empty() {
                    let style = ("sans-serif", 14.0)
                        .into_font()
                        .color(&BLACK)
                        .pos(Pos::new(HPos::Center, VPos::Center));
                    chart
                        .draw_series(std::iter::once(Text::new(label.clone(), (x, y), style)))
                        .map_err(plot_err)?;
                }
            }
        }
        Ok(())
    }
}
