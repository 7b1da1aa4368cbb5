//! The font: looked up once per process (the file named by [`FONT_ENV`], else
//! the first of [`font_candidates`]: DejaVu Sans in the Linux, macOS and Windows
//! font folders, then Liberation Sans or Arial) and registered with plotters.

use crate::{Error, Result};
use plotters::style::FontStyle;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Environment variable that, when set, names the TrueType/OpenType font file to use.
pub const FONT_ENV: &str = "FCOLLAPSE_FONT";

/// Directories searched, in order, for `DejaVuSans.ttf` (and `DejaVuSans-Bold.ttf`)
/// when [`FONT_ENV`] is not set: the usual Linux places, then macOS's. The
/// user's own font folders (`~/.local/share/fonts`, `~/.fonts`,
/// `~/Library/Fonts`) and Windows's (`%WINDIR%\Fonts`, default
/// `C:\Windows\Fonts`, and `%LOCALAPPDATA%\Microsoft\Windows\Fonts`) follow,
/// see [`font_candidates`].
pub const FONT_DIRS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu",
    "/usr/share/fonts/TTF",
    "/usr/share/fonts/dejavu",
    "/usr/share/fonts/dejavu-sans-fonts",
    "/usr/share/fonts/truetype",
    "/usr/local/share/fonts",
    "/opt/homebrew/share/fonts",
    "/Library/Fonts",
    "/System/Library/Fonts",
];

/// Sans-serif fonts used when no DejaVu Sans is found, `(regular, bold)` file
/// names relative to a font directory: Liberation Sans (Linux), Arial (macOS
/// and Windows).
pub const FALLBACK_FONTS: &[(&str, &str)] = &[
    (
        "liberation/LiberationSans-Regular.ttf",
        "liberation/LiberationSans-Bold.ttf",
    ),
    ("Supplemental/Arial.ttf", "Supplemental/Arial Bold.ttf"),
    ("Arial.ttf", "Arial Bold.ttf"),
    ("arial.ttf", "arialbd.ttf"),
];

/// Every `(regular, bold)` font file looked for, in order: `DejaVuSans.ttf` in
/// [`FONT_DIRS`], the user's font folders and Windows's, then
/// [`FALLBACK_FONTS`] in the same folders.
pub fn font_candidates() -> Vec<(PathBuf, PathBuf)> {
    let env = |k: &str| std::env::var_os(k).map(PathBuf::from);
    let mut dirs: Vec<PathBuf> = FONT_DIRS.iter().map(PathBuf::from).collect();
    if let Some(home) = env("HOME") {
        for sub in [".local/share/fonts", ".fonts", "Library/Fonts"] {
            dirs.push(home.join(sub));
        }
    }
    let windir = env("WINDIR")
        .or_else(|| env("SystemRoot"))
        .unwrap_or_else(|| PathBuf::from(r"C:\Windows"));
    dirs.push(windir.join("Fonts"));
    if let Some(local) = env("LOCALAPPDATA") {
        dirs.push(local.join("Microsoft").join("Windows").join("Fonts"));
    }
    let mut out: Vec<(PathBuf, PathBuf)> = dirs
        .iter()
        .map(|d| (d.join("DejaVuSans.ttf"), d.join("DejaVuSans-Bold.ttf")))
        .collect();
    for (regular, bold) in FALLBACK_FONTS {
        for d in &dirs {
            out.push((d.join(regular), d.join(bold)));
        }
    }
    out
}

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
    for (regular, bold) in font_candidates() {
        if regular.is_file() {
            register(&regular, FontStyle::Normal)?;
            // Bold is optional: plotters falls back to the regular face.
            if bold.is_file() {
                let _ = register(&bold, FontStyle::Bold);
            }
            return Ok(regular);
        }
    }
    Err(format!(
        "no font found for drawing figures: looked for DejaVuSans.ttf (then Liberation \
         Sans or Arial) in {}, the user's font folders and the Windows Fonts folder; install \
         the Debian package fonts-dejavu-core (apt-get install fonts-dejavu-core) or set \
         {FONT_ENV} to the path of a .ttf file",
        FONT_DIRS.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_cover_linux_macos_and_windows() {
        let c = font_candidates();
        let has = |p: &Path| c.iter().any(|(r, _)| r == p);
        assert_eq!(
            c[0].0,
            Path::new("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
        );
        assert!(has(Path::new("/Library/Fonts/DejaVuSans.ttf")));
        assert!(has(Path::new(
            "/System/Library/Fonts/Supplemental/Arial.ttf"
        )));
        let windows = c.iter().any(|(r, b)| {
            r.ends_with("Fonts/arial.ttf")
                && b.ends_with("Fonts/arialbd.ttf")
                && r.to_string_lossy().contains("Windows")
        });
        assert!(windows, "{c:?}");
        // DejaVu Sans comes before every fallback.
        let last_dejavu = c.iter().rposition(|(r, _)| r.ends_with("DejaVuSans.ttf"));
        let first_other = c.iter().position(|(r, _)| !r.ends_with("DejaVuSans.ttf"));
        assert!(last_dejavu < first_other);
    }
}
