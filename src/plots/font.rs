//! The font: looked up once per process (the file named by [`FONT_ENV`], else
//! `DejaVuSans.ttf` in [`FONT_DIRS`]) and registered with plotters.

use crate::{Error, Result};
use plotters::style::FontStyle;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

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
pub(super) const FAMILY: &str = "sans-serif";

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
