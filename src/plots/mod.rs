//! Figures in the style of the paper's panels (docs/theory.md §9), from plain data.
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
//! `DejaVuSans.ttf` in the directories of [`FONT_DIRS`] (Linux and macOS), the
//! user's font folders and the Windows Fonts folder, then Liberation Sans or
//! Arial there ([`font_candidates`]). If none is found,
//! plotting fails with an [`Error::Plot`] asking to install the Debian package
//! `fonts-dejavu-core`.
//!
//! # Input checks
//!
//! Inconsistent or non-finite input is rejected with [`Error::InvalidParam`]
//! before anything is drawn; failures while drawing are [`Error::Plot`] and
//! failures while writing are [`Error::Io`].
//!
//! [`Error::Plot`]: crate::Error::Plot
//! [`Error::InvalidParam`]: crate::Error::InvalidParam
//! [`Error::Io`]: crate::Error::Io
//!
//! # Layout
//!
//! This file holds the figure size and [`Series`]; the figure functions live
//! in `figures`, the font lookup in `font`, the shared styling (palette, text
//! sizes, title and legend header, axes, number formats) in `style`, and the
//! drawing of a figure into its SVG and PNG files in `render`. All public items
//! are re-exported here.

mod figures;
mod font;
mod grid;
mod render;
mod style;

pub use figures::{curves, norms_vs_rank, pca_scatter};
pub use font::{ensure_font, font_candidates, FALLBACK_FONTS, FONT_DIRS, FONT_ENV};
pub use grid::{category_grid, CategoryGrid, Cell};

/// Width of every figure in pixels (PNG) or user units (SVG).
pub const WIDTH: u32 = 800;
/// Height of every figure in pixels (PNG) or user units (SVG).
pub const HEIGHT: u32 = 600;

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
