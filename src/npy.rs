//! Minimal reader and writer for NumPy `.npy` files (format version 1.0).
//!
//! Only what the experiments need: dense little-endian `float32` (`'<f4'`) and
//! `float64` (`'<f8'`) arrays in C (row-major) order. The header is laid out
//! exactly as `numpy.save` lays it out (sorted dictionary keys, spare growth
//! space after the dictionary, space padding and a final newline), so the data
//! starts at a multiple of 64 bytes and files are byte-identical to NumPy's.
//!
//! Writes are atomic: the file is written to a temporary sibling and renamed
//! into place, so a reader never sees a half-written array.
//!
//! ```no_run
//! use feature_collapse::npy;
//! use std::path::Path;
//! npy::write_npy_f64(Path::new("out/w.npy"), &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])?;
//! let (shape, data) = npy::read_npy_f64(Path::new("out/w.npy"))?;
//! assert_eq!(shape, vec![2, 3]);
//! # Ok::<(), feature_collapse::Error>(())
//! ```

use crate::{Error, Result};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The six magic bytes every `.npy` file starts with.
pub const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Alignment of the array data in the file (NumPy's `ARRAY_ALIGN`).
const ALIGN: usize = 64;

/// Spare header space NumPy reserves for the growth axis (`GROWTH_AXIS_MAX_DIGITS`).
const GROWTH_AXIS_MAX_DIGITS: usize = 21;

/// Length of the fixed prefix of a version 1.0 file: magic, 2 version bytes, `u16` header length.
const PREFIX_V1: usize = 6 + 2 + 2;

/// Element types this module can store.
trait Element: Copy {
    /// NumPy `descr` string, e.g. `'<f8'`.
    const DESCR: &'static str;
    /// Size of one element in bytes.
    const SIZE: usize;
    /// Appends the little-endian bytes of `self` to `out`.
    fn put_le(self, out: &mut Vec<u8>);
    /// Decodes one element from exactly [`Self::SIZE`] little-endian bytes.
    fn get_le(bytes: &[u8]) -> Self;
}

impl Element for f32 {
    const DESCR: &'static str = "<f4";
    const SIZE: usize = 4;
    fn put_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn get_le(bytes: &[u8]) -> Self {
        f32::from_le_bytes(bytes.try_into().expect("4 bytes"))
    }
}

impl Element for f64 {
    const DESCR: &'static str = "<f8";
    const SIZE: usize = 8;
    fn put_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn get_le(bytes: &[u8]) -> Self {
        f64::from_le_bytes(bytes.try_into().expect("8 bytes"))
    }
}

/// Writes a `float32` array of the given `shape` (C order) to `path` as `.npy` 1.0.
///
/// `data.len()` must equal the product of `shape` (an empty `shape` is a scalar
/// holding one element). Errors: [`Error::InvalidParam`] on a shape/length
/// mismatch, [`Error::Io`] if the file cannot be written.
pub fn write_npy_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    write_npy(path, shape, data)
}

/// Writes a `float64` array of the given `shape` (C order) to `path` as `.npy` 1.0.
///
/// Same contract as [`write_npy_f32`].
pub fn write_npy_f64(path: &Path, shape: &[usize], data: &[f64]) -> Result<()> {
    write_npy(path, shape, data)
}

/// Reads a little-endian `float32` C-order `.npy` file, returning `(shape, data)`.
///
/// Errors: [`Error::Io`] if the file cannot be read, or (with kind
/// `InvalidData`) if it is not a `'<f4'`, C-order `.npy` file of version 1.0–3.0.
pub fn read_npy_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    read_npy(path)
}

/// Reads a little-endian `float64` C-order `.npy` file, returning `(shape, data)`.
///
/// Same contract as [`read_npy_f32`], for `'<f8'`.
pub fn read_npy_f64(path: &Path) -> Result<(Vec<usize>, Vec<f64>)> {
    read_npy(path)
}

/// Number of elements of an array of this shape, or `None` on overflow.
fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Python `repr` of a shape tuple: `()`, `(3,)`, `(2, 3)`.
fn shape_repr(shape: &[usize]) -> String {
    match shape {
        [] => "()".to_string(),
        [n] => format!("({n},)"),
        _ => {
            let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            format!("({})", dims.join(", "))
        }
    }
}

/// The complete version 1.0 header (magic through the final newline) for an
/// array of this `descr` and `shape`, laid out as `numpy.save` does.
pub fn header_v1(descr: &str, shape: &[usize]) -> Result<Vec<u8>> {
    let mut dict = format!(
        "{{'descr': '{descr}', 'fortran_order': False, 'shape': {}, }}",
        shape_repr(shape)
    );
    // Spare room so the first axis can grow in place, as NumPy reserves it.
    if let Some(first) = shape.first() {
        let digits = first.to_string().len();
        dict.push_str(&" ".repeat(GROWTH_AXIS_MAX_DIGITS.saturating_sub(digits)));
    }
    let hlen = dict.len() + 1; // + final newline
    let pad = ALIGN - (PREFIX_V1 + hlen) % ALIGN;
    let total_len = hlen + pad;
    let len16 = u16::try_from(total_len).map_err(|_| {
        Error::invalid(
            "shape",
            shape_repr(shape),
            "too many dimensions for an .npy version 1.0 header",
        )
    })?;
    let mut out = Vec::with_capacity(PREFIX_V1 + total_len);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&len16.to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', pad));
    out.push(b'\n');
    debug_assert_eq!(out.len() % ALIGN, 0);
    Ok(out)
}

fn write_npy<T: Element>(path: &Path, shape: &[usize], data: &[T]) -> Result<()> {
    let count = element_count(shape).ok_or_else(|| {
        Error::invalid("shape", shape_repr(shape), "element count overflows usize")
    })?;
    if count != data.len() {
        return Err(Error::invalid(
            "shape",
            shape_repr(shape),
            format!(
                "shape holds {count} elements but {} values were given",
                data.len()
            ),
        ));
    }
    let mut bytes = header_v1(T::DESCR, shape)?;
    bytes.reserve(data.len() * T::SIZE);
    for &x in data {
        x.put_le(&mut bytes);
    }
    write_atomic(path, &bytes)
}

/// Temporary sibling of `path` used for atomic writes.
fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

/// Writes `bytes` to a temporary sibling of `path`, syncs it and renames it over `path`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if path.file_name().is_none() {
        return Err(Error::io(
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"),
        ));
    }
    let tmp = tmp_path(path);
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(&tmp, e));
    }
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// An `InvalidData` I/O error about `path`.
fn bad(path: &Path, msg: impl Into<String>) -> Error {
    Error::io(
        path,
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not a supported .npy file: {}", msg.into()),
        ),
    )
}

/// Parsed header fields.
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// Returns the text after `'key':` in the header dictionary, trimmed at the start.
fn dict_value<'a>(dict: &'a str, key: &str) -> Option<&'a str> {
    let pos = dict
        .find(&format!("'{key}':"))
        .or_else(|| dict.find(&format!("\"{key}\":")))?;
    Some(dict[pos + key.len() + 3..].trim_start())
}

/// Parses the Python-literal header dictionary NumPy writes.
fn parse_header(dict: &str) -> std::result::Result<Header, String> {
    let dict = dict.trim();
    if !dict.starts_with('{') || !dict.ends_with('}') {
        return Err("header is not a dictionary".into());
    }
    let descr_val = dict_value(dict, "descr").ok_or("header has no 'descr'")?;
    let quote = descr_val.chars().next().ok_or("empty 'descr'")?;
    if quote != '\'' && quote != '"' {
        return Err("'descr' is not a plain string (structured dtypes are not supported)".into());
    }
    let end = descr_val[1..]
        .find(quote)
        .ok_or("unterminated 'descr' string")?;
    let descr = descr_val[1..1 + end].to_string();

    let fo_val = dict_value(dict, "fortran_order").ok_or("header has no 'fortran_order'")?;
    let fortran_order = if fo_val.starts_with("True") {
        true
    } else if fo_val.starts_with("False") {
        false
    } else {
        return Err("'fortran_order' is neither True nor False".into());
    };

    let shape_val = dict_value(dict, "shape").ok_or("header has no 'shape'")?;
    if !shape_val.starts_with('(') {
        return Err("'shape' is not a tuple".into());
    }
    let close = shape_val.find(')').ok_or("unterminated 'shape' tuple")?;
    let shape = shape_val[1..close]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim_end_matches('L')
                .parse::<usize>()
                .map_err(|_| format!("bad dimension `{s}` in 'shape'"))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(Header {
        descr,
        fortran_order,
        shape,
    })
}

fn read_npy<T: Element>(path: &Path) -> Result<(Vec<usize>, Vec<T>)> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.len() < PREFIX_V1 || &bytes[..6] != MAGIC {
        return Err(bad(path, "missing magic string"));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (header_len, header_start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(bad(path, "truncated header length"));
            }
            let n = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            (n as usize, 12)
        }
        _ => return Err(bad(path, format!("unknown format version {major}.{minor}"))),
    };
    let data_start = header_start + header_len;
    if bytes.len() < data_start {
        return Err(bad(path, "truncated header"));
    }
    let dict = std::str::from_utf8(&bytes[header_start..data_start])
        .map_err(|_| bad(path, "header is not valid text"))?;
    let header = parse_header(dict).map_err(|m| bad(path, m))?;
    if header.descr != T::DESCR {
        return Err(bad(
            path,
            format!("dtype is '{}', expected '{}'", header.descr, T::DESCR),
        ));
    }
    if header.fortran_order {
        return Err(bad(path, "Fortran-order arrays are not supported"));
    }
    let count = element_count(&header.shape).ok_or_else(|| bad(path, "shape overflows"))?;
    let payload = &bytes[data_start..];
    if Some(payload.len()) != count.checked_mul(T::SIZE) {
        return Err(bad(
            path,
            format!(
                "shape {} needs {count} elements but the file holds {} bytes of data",
                shape_repr(&header.shape),
                payload.len()
            ),
        ));
    }
    let data = payload.chunks_exact(T::SIZE).map(T::get_le).collect();
    Ok((header.shape, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_repr_matches_python() {
        assert_eq!(shape_repr(&[]), "()");
        assert_eq!(shape_repr(&[7]), "(7,)");
        assert_eq!(shape_repr(&[2, 3, 4]), "(2, 3, 4)");
    }

    #[test]
    fn header_is_aligned_for_many_shapes() {
        for shape in [
            vec![],
            vec![0],
            vec![1],
            vec![123456],
            vec![2, 3],
            vec![10, 20, 30, 40, 50, 60, 70],
        ] {
            let h = header_v1("<f8", &shape).unwrap();
            assert_eq!(h.len() % 64, 0, "{shape:?}");
            assert_eq!(*h.last().unwrap(), b'\n');
            let parsed = parse_header(std::str::from_utf8(&h[10..]).unwrap()).unwrap();
            assert_eq!(parsed.shape, shape);
            assert_eq!(parsed.descr, "<f8");
            assert!(!parsed.fortran_order);
        }
    }
}
