//! Where an array's bytes come from: a `.npy` file, or one member of an
//! `.npz` archive (`ARCHIVE.npz[:NAME]`), streamed.

use super::bad;
use crate::{Error, Result};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Splits `ARCHIVE.npz:NAME` into the archive path and the array name.
fn split_npz(path: &Path) -> (PathBuf, Option<String>) {
    let s = path.to_string_lossy();
    if let Some(pos) = s.rfind(':') {
        let (file, name) = (&s[..pos], &s[pos + 1..]);
        if file.ends_with(".npz") && !name.is_empty() {
            return (PathBuf::from(file), Some(name.to_string()));
        }
    }
    (path.to_path_buf(), None)
}

/// Runs `f` on a reader of the `.npy` file at `path`, or of the selected member
/// of an `.npz` (streamed: a member is inflated only as far as `f` reads it).
pub(super) fn with_reader<T>(
    path: &Path,
    f: impl FnOnce(&mut dyn io::Read) -> Result<T>,
) -> Result<T> {
    let (file, name) = split_npz(path);
    let is_npz = file.extension().is_some_and(|e| e == "npz");
    let handle = fs::File::open(&file).map_err(|e| Error::io(&file, e))?;
    let mut reader = io::BufReader::new(handle);
    if !is_npz {
        return f(&mut reader);
    }
    let zip_err = |e: zip::result::ZipError| {
        Error::io(
            &file,
            io::Error::new(io::ErrorKind::InvalidData, format!("not a valid .npz: {e}")),
        )
    };
    let mut archive = zip::ZipArchive::new(reader).map_err(zip_err)?;
    let mut names: Vec<String> = Vec::new();
    for f in archive.file_names() {
        let f = f.map_err(zip_err)?;
        if let Some(n) = npyz::npz::array_name_from_file_name(&f) {
            names.push(n.to_string());
        }
    }
    let wanted = match name {
        Some(n) if names.contains(&n) => n,
        Some(n) => {
            return Err(bad(
                &file,
                format!("the archive has no array `{n}` (it holds {names:?})"),
            ))
        }
        None if names.len() == 1 => names[0].clone(),
        None => {
            return Err(bad(
                &file,
                format!("the archive holds {names:?}; name one as ARCHIVE.npz:NAME"),
            ))
        }
    };
    let mut entry = archive
        .by_name(&npyz::npz::file_name_from_array_name(&wanted))
        .map_err(zip_err)?;
    f(&mut entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npz_member_syntax() {
        assert_eq!(
            split_npz(Path::new("a/b.npz:W")),
            (PathBuf::from("a/b.npz"), Some("W".to_string()))
        );
        assert_eq!(
            split_npz(Path::new("a/b.npz")),
            (PathBuf::from("a/b.npz"), None)
        );
        assert_eq!(
            split_npz(Path::new("c:d.npy")),
            (PathBuf::from("c:d.npy"), None)
        );
    }
}
