//! Drawing a figure into `<stem>.svg` and `<stem>.png` (both written
//! atomically), the input check shared by the figures, and plotters errors.

use super::font::ensure_font;
use super::{HEIGHT, WIDTH};
use crate::npy::write_atomic;
use crate::{Error, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

/// A figure that can be drawn on any plotters backend.
pub(super) trait Figure {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>;
}

/// Converts any plotters error into [`Error::Plot`].
pub(super) fn plot_err(e: impl std::fmt::Display) -> Error {
    Error::Plot(e.to_string())
}

/// `stem` with `.ext` appended (not substituted).
fn with_ext(stem: &Path, ext: &str) -> PathBuf {
    let mut s: OsString = stem.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

pub(super) fn check_finite(
    name: &'static str,
    values: impl IntoIterator<Item = f64>,
) -> Result<()> {
    match values.into_iter().find(|v| !v.is_finite()) {
        Some(v) => Err(Error::invalid(name, v, "values must be finite")),
        None => Ok(()),
    }
}

/// Draws `fig` into `<stem>.svg` and `<stem>.png`.
pub(super) fn render(stem: &Path, fig: &impl Figure) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stem_extension_is_appended() {
        assert_eq!(
            with_ext(Path::new("out/fig4.a"), "png"),
            PathBuf::from("out/fig4.a.png")
        );
    }
}
