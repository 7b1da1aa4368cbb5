//! NumPy `.npy` / `.npz` arrays.
//!
//! **Reading** goes through the `npyz` crate, which parses every header version
//! (1.0–3.0), byte order and memory order: [`read_array`] returns any plain
//! float, integer or boolean array as a C-order (row-major) [`NpyArray`]
//! (Fortran-order data is transposed on reading). A path `ARCHIVE.npz` or
//! `ARCHIVE.npz:NAME` selects an array of an `.npz` archive (a zip of `.npy`
//! files, stored or deflated, as `numpy.savez` and `numpy.savez_compressed`
//! write them); without `:NAME` the archive must hold exactly one array.
//!
//! **Writing** stays here: dense little-endian `float32` (`'<f4'`) and `float64`
//! (`'<f8'`) arrays in C order, with the header laid out exactly as `numpy.save`
//! lays it out (sorted dictionary keys, spare growth space after the dictionary,
//! space padding and a final newline), so the data starts at a multiple of 64
//! bytes and files are byte-identical to NumPy's. (`npyz`'s writer also aligns
//! to 64 bytes, but writes the shape tuple as `(2, 3, )` where NumPy writes
//! `(2, 3)` and reserves no growth space, so its files are valid but not
//! byte-identical to `numpy.save`.)
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

mod npz;
use npz::with_reader;

/// The six magic bytes every `.npy` file starts with.
pub const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Alignment of the array data in the file (NumPy's `ARRAY_ALIGN`).
const ALIGN: usize = 64;

/// Spare header space NumPy reserves for the growth axis (`GROWTH_AXIS_MAX_DIGITS`).
const GROWTH_AXIS_MAX_DIGITS: usize = 21;

/// Length of the fixed prefix of a version 1.0 file: magic, 2 version bytes, `u16` header length.
const PREFIX_V1: usize = 6 + 2 + 2;

/// Element types this module can write.
trait Element: Copy {
    /// NumPy `descr` string, e.g. `'<f8'`.
    const DESCR: &'static str;
    /// Size of one element in bytes.
    const SIZE: usize;
    /// Appends the little-endian bytes of `self` to `out`.
    fn put_le(self, out: &mut Vec<u8>);
    /// The values of `data` when they have exactly this type.
    fn take(data: NpyData) -> Option<Vec<Self>>;
}

impl Element for f32 {
    const DESCR: &'static str = "<f4";
    const SIZE: usize = 4;
    fn put_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn take(data: NpyData) -> Option<Vec<Self>> {
        match data {
            NpyData::F32(v) => Some(v),
            _ => None,
        }
    }
}

impl Element for f64 {
    const DESCR: &'static str = "<f8";
    const SIZE: usize = 8;
    fn put_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn take(data: NpyData) -> Option<Vec<Self>> {
        match data {
            NpyData::F64(v) => Some(v),
            _ => None,
        }
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

/// Reads a `float32` array (either byte order, C or Fortran order; `.npy` or an
/// `.npz` member as in [`read_array`]), returning `(shape, data)` in C order.
///
/// Errors: [`Error::Io`] if the file cannot be read, or (with kind
/// `InvalidData`) if it does not hold a `float32` array (no silent conversion).
pub fn read_npy_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    read_npy(path)
}

/// Reads a little-endian `float64` C-order `.npy` file, returning `(shape, data)`.
///
/// Same contract as [`read_npy_f32`], for `float64`.
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
pub(crate) fn bad(path: &Path, msg: impl Into<String>) -> Error {
    Error::io(
        path,
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not a supported .npy file: {}", msg.into()),
        ),
    )
}

/// The values of an array read by [`read_array`], in C order.
#[derive(Debug, Clone, PartialEq)]
pub enum NpyData {
    /// `float32` (`f4`), either byte order.
    F32(Vec<f32>),
    /// `float64` (`f8`), either byte order.
    F64(Vec<f64>),
    /// Any signed, unsigned (up to `2^63 - 1`) or boolean integer type, widened to `i64`.
    Int(Vec<i64>),
}

/// An array read by [`read_array`]: shape, NumPy `descr` as stored (e.g. `'<f4'`,
/// `'>i8'`) and the values in C (row-major) order whatever the file's order.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub descr: String,
    /// True when the file stored the data in Fortran (column-major) order.
    pub fortran_order: bool,
    pub data: NpyData,
}

impl NpyArray {
    /// The values as `f64` when the array holds floats (`f4` values are exact in `f64`).
    pub fn to_f64(&self) -> Option<Vec<f64>> {
        match &self.data {
            NpyData::F32(v) => Some(v.iter().map(|&x| f64::from(x)).collect()),
            NpyData::F64(v) => Some(v.clone()),
            NpyData::Int(_) => None,
        }
    }

    /// The values when the array holds integers.
    pub fn as_ints(&self) -> Option<&[i64]> {
        match &self.data {
            NpyData::Int(v) => Some(v),
            _ => None,
        }
    }
}

/// Most elements [`read_array`] accepts (8 GiB of `f64`): a header that claims
/// more is refused before anything is allocated.
pub const MAX_ELEMENTS: usize = 1 << 30;

/// What [`read_array_checked`] knows before it reads any data.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyHeader {
    pub shape: Vec<usize>,
    /// NumPy `descr`, e.g. `'<f8'`.
    pub descr: String,
    /// `'f'` float, `'i'` signed, `'u'` unsigned integer, `'b'` boolean, `'?'` other.
    pub kind: char,
    /// Number of elements (the product of the shape).
    pub elements: usize,
}

/// Reorders column-major `data` of `shape` into row-major order.
fn fortran_to_c<T: Copy>(shape: &[usize], data: Vec<T>) -> Vec<T> {
    if shape.len() < 2 || data.is_empty() {
        return data;
    }
    // Fortran strides: dimension 0 is contiguous.
    let mut f_stride = vec![1usize; shape.len()];
    for i in 1..shape.len() {
        f_stride[i] = f_stride[i - 1] * shape[i - 1];
    }
    let mut idx = vec![0usize; shape.len()];
    let mut out = Vec::with_capacity(data.len());
    for _ in 0..data.len() {
        let src: usize = idx.iter().zip(&f_stride).map(|(i, s)| i * s).sum();
        out.push(data[src]);
        // C order: the last index runs fastest.
        for ax in (0..shape.len()).rev() {
            idx[ax] += 1;
            if idx[ax] < shape[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
    out
}

/// Reads a whole array of any plain float (`f4`, `f8`), integer or boolean dtype,
/// either byte order, C or Fortran order, from an `.npy` file or an `.npz`
/// member (`ARCHIVE.npz[:NAME]`, see the module doc). The data comes back in C order.
///
/// Errors: [`Error::Io`] if the file cannot be read, or (kind `InvalidData`) if it
/// is not such an array (the message says why: e.g. the unsupported dtype).
pub fn read_array(path: &Path) -> Result<NpyArray> {
    read_array_checked(path, |_| Ok(()))
}

/// [`read_array`] that first hands the header to `check` and reads no data when
/// it refuses (its message becomes the error), so that a huge or mistyped array
/// is refused before it is read or inflated.
pub fn read_array_checked(
    path: &Path,
    check: impl FnOnce(&NpyHeader) -> std::result::Result<(), String>,
) -> Result<NpyArray> {
    with_reader(path, |r| decode(path, r, check))
}

fn decode(
    path: &Path,
    reader: &mut dyn io::Read,
    check: impl FnOnce(&NpyHeader) -> std::result::Result<(), String>,
) -> Result<NpyArray> {
    let file = npyz::NpyFile::new(reader)
        .map_err(|e| bad(path, e.to_string().lines().next().unwrap_or("bad header")))?;
    let ts = match file.dtype() {
        npyz::DType::Plain(ts) => ts,
        other => {
            return Err(bad(
                path,
                format!("dtype {} is not a plain numeric type", other.descr()),
            ))
        }
    };
    let descr = ts.to_string();
    let shape: Vec<usize> = file
        .shape()
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| bad(path, "shape overflows")))
        .collect::<Result<_>>()?;
    let elements = element_count(&shape).ok_or_else(|| bad(path, "shape overflows"))?;
    let kind = match ts.type_char() {
        npyz::TypeChar::Float => 'f',
        npyz::TypeChar::Int => 'i',
        npyz::TypeChar::Uint => 'u',
        npyz::TypeChar::Bool => 'b',
        _ => '?',
    };
    if elements > MAX_ELEMENTS {
        return Err(bad(
            path,
            format!(
                "shape {} has {elements} elements, over the {MAX_ELEMENTS} this reader accepts",
                shape_repr(&shape)
            ),
        ));
    }
    check(&NpyHeader {
        shape: shape.clone(),
        descr: descr.clone(),
        kind,
        elements,
    })
    .map_err(|m| bad(path, m))?;
    let fortran_order = file.order() == npyz::Order::Fortran;
    let read_err = |e: io::Error| bad(path, format!("{e} (dtype '{descr}')"));
    let ints = |v: Vec<i64>| NpyData::Int(v);
    let data = match (ts.type_char(), ts.size_field()) {
        (npyz::TypeChar::Float, 4) => NpyData::F32(file.into_vec::<f32>().map_err(read_err)?),
        (npyz::TypeChar::Float, 8) => NpyData::F64(file.into_vec::<f64>().map_err(read_err)?),
        (npyz::TypeChar::Int, 1) => ints(widen(file.into_vec::<i8>().map_err(read_err)?)),
        (npyz::TypeChar::Int, 2) => ints(widen(file.into_vec::<i16>().map_err(read_err)?)),
        (npyz::TypeChar::Int, 4) => ints(widen(file.into_vec::<i32>().map_err(read_err)?)),
        (npyz::TypeChar::Int, 8) => ints(file.into_vec::<i64>().map_err(read_err)?),
        (npyz::TypeChar::Uint, 1) => ints(widen(file.into_vec::<u8>().map_err(read_err)?)),
        (npyz::TypeChar::Uint, 2) => ints(widen(file.into_vec::<u16>().map_err(read_err)?)),
        (npyz::TypeChar::Uint, 4) => ints(widen(file.into_vec::<u32>().map_err(read_err)?)),
        (npyz::TypeChar::Uint, 8) => {
            let v = file.into_vec::<u64>().map_err(read_err)?;
            ints(
                v.into_iter()
                    .map(|x| {
                        i64::try_from(x).map_err(|_| bad(path, format!("value {x} too large")))
                    })
                    .collect::<Result<_>>()?,
            )
        }
        (npyz::TypeChar::Bool, 1) => ints(
            file.into_vec::<bool>()
                .map_err(read_err)?
                .into_iter()
                .map(i64::from)
                .collect(),
        ),
        _ => {
            return Err(bad(
                path,
                format!("dtype '{descr}' is not supported (float32/64, integers or bool)"),
            ))
        }
    };
    let data = if fortran_order {
        match data {
            NpyData::F32(v) => NpyData::F32(fortran_to_c(&shape, v)),
            NpyData::F64(v) => NpyData::F64(fortran_to_c(&shape, v)),
            NpyData::Int(v) => NpyData::Int(fortran_to_c(&shape, v)),
        }
    } else {
        data
    };
    Ok(NpyArray {
        shape,
        descr,
        fortran_order,
        data,
    })
}

fn widen<T: Into<i64>>(v: Vec<T>) -> Vec<i64> {
    v.into_iter().map(Into::into).collect()
}

fn read_npy<T: Element>(path: &Path) -> Result<(Vec<usize>, Vec<T>)> {
    let a = read_array(path)?;
    let data = T::take(a.data).ok_or_else(|| {
        bad(
            path,
            format!("dtype is '{}', expected '{}'", a.descr, T::DESCR),
        )
    })?;
    Ok((a.shape, data))
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
            let parsed = npyz::NpyHeader::from_reader(&h[..]).unwrap();
            let got: Vec<usize> = parsed.shape().iter().map(|&d| d as usize).collect();
            assert_eq!(got, shape);
            assert_eq!(parsed.dtype().descr(), "'<f8'");
            assert_eq!(parsed.order(), npyz::Order::C);
        }
    }

    /// Why writing does not go through npyz: its files are valid `.npy` but their
    /// shape tuple is written `(2, 3, )` where NumPy writes `(2, 3)`.
    #[test]
    fn npyz_writer_header_differs_from_numpy() {
        let mut bytes = Vec::new();
        {
            use npyz::WriterBuilder;
            let mut w = npyz::WriteOptions::new()
                .default_dtype()
                .shape(&[2, 3])
                .writer(&mut bytes)
                .begin_nd()
                .unwrap();
            w.extend([1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
            w.finish().unwrap();
        }
        let ours = header_v1("<f4", &[2, 3]).unwrap();
        let theirs = &bytes[..bytes.len() - 6 * 4];
        assert_eq!((ours.len(), theirs.len()), (128, 128));
        let text = String::from_utf8_lossy(theirs);
        assert!(text.contains("'shape': (2, 3, ), }"), "{text}");
        assert!(String::from_utf8_lossy(&ours).contains("'shape': (2, 3), }"));
        assert_ne!(theirs, &ours[..]);
        // Both parse to the same array.
        let f = npyz::NpyFile::new(&bytes[..]).unwrap();
        assert_eq!(f.shape(), &[2, 3]);
        assert_eq!(
            f.into_vec::<f32>().unwrap(),
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        );
    }

    #[test]
    fn fortran_to_c_transposes_every_axis() {
        // a[i, j, k] = 100 i + 10 j + k, shape (2, 3, 4), stored column-major.
        let shape = [2, 3, 4];
        let mut f = Vec::new();
        for k in 0..4 {
            for j in 0..3 {
                for i in 0..2 {
                    f.push(100 * i + 10 * j + k);
                }
            }
        }
        let c = fortran_to_c(&shape, f);
        let mut expected = Vec::new();
        for i in 0..2 {
            for j in 0..3 {
                for k in 0..4 {
                    expected.push(100 * i + 10 * j + k);
                }
            }
        }
        assert_eq!(c, expected);
    }
}
