//! Tests of `feature_collapse::npy`: Rust round trips, exact header bytes, and
//! (when a Python with NumPy is available) agreement with `numpy.load`/`numpy.save`.

mod common;

use feature_collapse::npy::{
    read_array, read_npy_f32, read_npy_f64, write_npy_f32, write_npy_f64, NpyData,
};
use feature_collapse::Error;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

fn out_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("npy")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Deterministic awkward values: signs, zeros, subnormals, infinities, NaN.
fn values_f64(n: usize) -> Vec<f64> {
    let special = [
        0.0,
        -0.0,
        1.0,
        -1.5,
        f64::MIN_POSITIVE / 4.0,
        f64::MAX,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        std::f64::consts::PI,
    ];
    (0..n)
        .map(|i| {
            if i < special.len() {
                special[i]
            } else {
                (i as f64 * 0.618_033_988_7).sin() * 10f64.powi(i as i32 % 7 - 3)
            }
        })
        .collect()
}

fn values_f32(n: usize) -> Vec<f32> {
    let mut v: Vec<f32> = values_f64(n).iter().map(|&x| x as f32).collect();
    if n > 4 {
        v[4] = f32::MIN_POSITIVE / 8.0; // an f32 subnormal
    }
    v
}

fn bits64(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn bits32(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

const SHAPES: &[&[usize]] = &[
    &[],
    &[0],
    &[1],
    &[5],
    &[2, 3],
    &[2, 3, 4],
    &[3, 0, 2],
    &[1200, 2],
];

fn len_of(shape: &[usize]) -> usize {
    shape.iter().product()
}

#[test]
fn round_trip_f64_and_f32() {
    let dir = out_dir("round_trip");
    for (i, shape) in SHAPES.iter().enumerate() {
        let n = len_of(shape);
        let p64 = dir.join(format!("a{i}.f64.npy"));
        let data64 = values_f64(n);
        write_npy_f64(&p64, shape, &data64).unwrap();
        let (s, d) = read_npy_f64(&p64).unwrap();
        assert_eq!(&s, shape);
        assert_eq!(bits64(&d), bits64(&data64), "shape {shape:?}");

        let p32 = dir.join(format!("a{i}.f32.npy"));
        let data32 = values_f32(n);
        write_npy_f32(&p32, shape, &data32).unwrap();
        let (s, d) = read_npy_f32(&p32).unwrap();
        assert_eq!(&s, shape);
        assert_eq!(bits32(&d), bits32(&data32), "shape {shape:?}");

        // Data starts at a multiple of 64 bytes.
        let bytes = std::fs::read(&p32).unwrap();
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        assert_eq!(bytes.len(), 10 + header_len + 4 * n);
    }
    // Overwriting an existing file works and leaves no temporary behind.
    let p = dir.join("a4.f64.npy");
    write_npy_f64(&p, &[2], &[7.0, 8.0]).unwrap();
    assert_eq!(read_npy_f64(&p).unwrap(), (vec![2], vec![7.0, 8.0]));
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name();
        assert!(!name.to_string_lossy().contains(".tmp"), "{name:?}");
    }
}

#[test]
fn header_bytes_are_exact() {
    let dir = out_dir("header");
    let p = dir.join("small.npy");
    write_npy_f32(&p, &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    let mut expected: Vec<u8> = b"\x93NUMPY\x01\x00\x76\x00".to_vec();
    expected.extend_from_slice(b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }");
    expected.extend_from_slice(&[b' '; 58]);
    expected.push(b'\n');
    assert_eq!(expected.len(), 128);
    for x in [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0] {
        expected.extend_from_slice(&x.to_le_bytes());
    }
    assert_eq!(&expected[128..132], &[0x00, 0x00, 0x80, 0x3f]);
    assert_eq!(bytes, expected);

    let p = dir.join("scalar.npy");
    write_npy_f64(&p, &[], &[1.5]).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    let mut expected: Vec<u8> = b"\x93NUMPY\x01\x00\x76\x00".to_vec();
    expected.extend_from_slice(b"{'descr': '<f8', 'fortran_order': False, 'shape': (), }");
    expected.extend_from_slice(&[b' '; 62]);
    expected.push(b'\n');
    expected.extend_from_slice(&1.5f64.to_le_bytes());
    assert_eq!(bytes, expected);
}

#[test]
fn bad_writes_and_reads_are_errors() {
    let dir = out_dir("bad");
    let p = dir.join("x.npy");
    let err = write_npy_f64(&p, &[2, 3], &[1.0; 5]).unwrap_err();
    assert!(matches!(err, Error::InvalidParam { .. }), "{err}");
    let err = write_npy_f32(&p, &[usize::MAX, 2], &[]).unwrap_err();
    assert!(matches!(err, Error::InvalidParam { .. }), "{err}");
    assert!(!p.exists());

    // Wrong dtype.
    write_npy_f64(&p, &[2], &[1.0, 2.0]).unwrap();
    let err = read_npy_f32(&p).unwrap_err();
    assert!(
        matches!(&err, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::InvalidData),
        "{err}"
    );
    // the cause (found dtype) is in the error chain that the CLI prints
    assert!(err.report().contains("<f8"), "{}", err.report());

    // Truncated data.
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
    assert!(matches!(read_npy_f64(&p), Err(Error::Io { .. })));

    // Not an npy file at all, and a missing file.
    std::fs::write(&p, b"hello").unwrap();
    assert!(matches!(read_npy_f64(&p), Err(Error::Io { .. })));
    assert!(matches!(
        read_npy_f64(&dir.join("missing.npy")),
        Err(Error::Io { .. })
    ));

    // A structured dtype is refused with its descr in the message.
    std::fs::write(
        &p,
        raw_npy("[('a', '<f8')]", false, "(1,)", &1.0f64.to_le_bytes()),
    )
    .unwrap();
    let err = read_array(&p).unwrap_err();
    assert!(err.report().contains("not a plain"), "{}", err.report());

    // Writing into a missing directory is an I/O error naming the path.
    let err = write_npy_f64(&dir.join("no/such/dir/x.npy"), &[1], &[1.0]).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
}

fn python_with_numpy() -> Option<String> {
    common::python_with("numpy")
}

const NUMPY_CHECK: &str = r#"
import json, sys
import numpy as np
src, dst = sys.argv[1], sys.argv[2]
out = []
for name in sorted(json.loads(sys.argv[3])):
    a = np.load(f"{src}/{name}.npy")
    bits = a.view(np.uint32 if a.dtype == np.float32 else np.uint64)
    out.append({"name": name, "dtype": a.dtype.str, "shape": list(a.shape),
                "c": bool(a.flags.c_contiguous), "bits": [int(b) for b in bits.ravel()]})
    np.save(f"{dst}/{name}.npy", a)
print(json.dumps(out))
"#;

#[test]
fn numpy_agrees_when_available() {
    // The Rust side of this test always runs; NumPy only adds a cross-check.
    let dir = out_dir("numpy");
    let src = dir.join("rust");
    let dst = dir.join("numpy");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&dst).unwrap();
    let mut names = Vec::new();
    let mut expected = std::collections::BTreeMap::new();
    for (i, shape) in SHAPES.iter().enumerate() {
        let n = len_of(shape);
        let name = format!("a{i}_f64");
        let d = values_f64(n);
        write_npy_f64(&src.join(format!("{name}.npy")), shape, &d).unwrap();
        expected.insert(name.clone(), ("<f8", shape.to_vec(), bits64(&d)));
        names.push(name);
        let name = format!("a{i}_f32");
        let d = values_f32(n);
        write_npy_f32(&src.join(format!("{name}.npy")), shape, &d).unwrap();
        let b: Vec<u64> = bits32(&d).into_iter().map(u64::from).collect();
        expected.insert(name.clone(), ("<f4", shape.to_vec(), b));
        names.push(name);
    }
    for name in &names {
        let p = src.join(format!("{name}.npy"));
        let (_, shape, _) = &expected[name];
        if name.ends_with("f64") {
            assert_eq!(&read_npy_f64(&p).unwrap().0, shape);
        } else {
            assert_eq!(&read_npy_f32(&p).unwrap().0, shape);
        }
    }

    let Some(py) = python_with_numpy() else {
        println!("note: no Python with NumPy found (set FCOLLAPSE_PYTHON); skipped the NumPy cross-check");
        return;
    };
    let out = Command::new(&py)
        .args([
            "-c",
            NUMPY_CHECK,
            src.to_str().unwrap(),
            dst.to_str().unwrap(),
            &serde_json::to_string(&names).unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "numpy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report.len(), names.len());
    for r in &report {
        let name = r["name"].as_str().unwrap();
        let (descr, shape, bits) = &expected[name];
        assert_eq!(r["dtype"], *descr, "{name}");
        let got_shape: Vec<usize> = serde_json::from_value(r["shape"].clone()).unwrap();
        assert_eq!(&got_shape, shape, "{name}");
        assert_eq!(r["c"], true, "{name}");
        let got_bits: Vec<u64> = serde_json::from_value(r["bits"].clone()).unwrap();
        assert_eq!(&got_bits, bits, "{name}: values differ");

        // numpy.save of the same array is byte-identical to ours, and we read it back.
        let ours = std::fs::read(src.join(format!("{name}.npy"))).unwrap();
        let theirs_path = dst.join(format!("{name}.npy"));
        let theirs = std::fs::read(&theirs_path).unwrap();
        assert_eq!(ours, theirs, "{name}: file bytes differ from numpy.save");
        if *descr == "<f8" {
            let (s, d) = read_npy_f64(&theirs_path).unwrap();
            assert_eq!((&s, &bits64(&d)), (shape, bits));
        } else {
            let (s, d) = read_npy_f32(&theirs_path).unwrap();
            let b: Vec<u64> = bits32(&d).into_iter().map(u64::from).collect();
            assert_eq!((&s, &b), (shape, bits));
        }
    }
    println!("NumPy cross-check passed with {py}");
}

/// A hand-made `.npy` (version 1.0) with this header dictionary and payload.
fn raw_npy(descr: &str, fortran: bool, shape: &str, payload: &[u8]) -> Vec<u8> {
    let dict = format!(
        "{{'descr': {}, 'fortran_order': {}, 'shape': {shape}, }}",
        if descr.starts_with('[') {
            descr.to_string()
        } else {
            format!("'{descr}'")
        },
        if fortran { "True" } else { "False" }
    );
    let mut header = dict.into_bytes();
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(b' ');
    }
    header.push(b'\n');
    let mut out: Vec<u8> = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
    out
}

#[test]
fn fortran_order_big_endian_and_integers_are_read_in_c_order() {
    let dir = out_dir("dtypes");
    // a[i, j] = 10 i + j, shape (2, 3), Fortran order: a[0,0] a[1,0] a[0,1] ...
    let c_order: Vec<f64> = vec![0.0, 1.0, 2.0, 10.0, 11.0, 12.0];
    let f_order = [0.0f64, 10.0, 1.0, 11.0, 2.0, 12.0];
    let payload: Vec<u8> = f_order.iter().flat_map(|x| x.to_le_bytes()).collect();
    let p = dir.join("f.npy");
    std::fs::write(&p, raw_npy("<f8", true, "(2, 3)", &payload)).unwrap();
    let a = read_array(&p).unwrap();
    assert!(a.fortran_order);
    assert_eq!(a.shape, vec![2, 3]);
    assert_eq!(a.to_f64().unwrap(), c_order);
    assert_eq!(read_npy_f64(&p).unwrap(), (vec![2, 3], c_order.clone()));

    // Big-endian f4, C order.
    let payload: Vec<u8> = [1.5f32, -2.25]
        .iter()
        .flat_map(|x| x.to_be_bytes())
        .collect();
    let p = dir.join("be.npy");
    std::fs::write(&p, raw_npy(">f4", false, "(2,)", &payload)).unwrap();
    assert_eq!(read_npy_f32(&p).unwrap(), (vec![2], vec![1.5f32, -2.25]));
    assert_eq!(read_array(&p).unwrap().to_f64().unwrap(), vec![1.5, -2.25]);
    assert!(
        read_npy_f64(&p).is_err(),
        "no silent widening in read_npy_f64"
    );

    // Integers of every width widen to i64; floats are not integers.
    for (descr, bytes) in [
        (
            "<i8",
            [3i64, -1]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect::<Vec<u8>>(),
        ),
        (
            "<i4",
            [3i32, -1].iter().flat_map(|x| x.to_le_bytes()).collect(),
        ),
        ("|i1", vec![3u8, 0xff]),
        (
            ">i2",
            [3i16, -1].iter().flat_map(|x| x.to_be_bytes()).collect(),
        ),
    ] {
        let p = dir.join("int.npy");
        std::fs::write(&p, raw_npy(descr, false, "(2,)", &bytes)).unwrap();
        let a = read_array(&p).unwrap();
        assert_eq!(a.as_ints(), Some(&[3i64, -1][..]), "{descr}");
        assert_eq!(a.to_f64(), None, "{descr}");
    }
    let p = dir.join("u8.npy");
    std::fs::write(&p, raw_npy("<u8", false, "(1,)", &u64::MAX.to_le_bytes())).unwrap();
    assert!(read_array(&p).unwrap_err().report().contains("too large"));
    assert!(matches!(
        read_array(&dir.join("f.npy")).unwrap().data,
        NpyData::F64(_)
    ));
}

#[test]
fn npz_members_stored_and_deflated() {
    let dir = out_dir("npz");
    let w: Vec<f64> = (0..6).map(|i| i as f64 * 0.5).collect();
    let wp = dir.join("w.npy");
    write_npy_f64(&wp, &[3, 2], &w).unwrap();
    let u = vec![7.0f32, 8.0];
    let up = dir.join("u.npy");
    write_npy_f32(&up, &[1, 2], &u).unwrap();
    for (name, method) in [
        ("stored.npz", zip::CompressionMethod::Stored),
        ("deflated.npz", zip::CompressionMethod::Deflated),
    ] {
        let path = dir.join(name);
        let mut z = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        let opts = zip::write::SimpleFileOptions::default().compression_method(method);
        z.start_file("W.npy", opts).unwrap();
        z.write_all(&std::fs::read(&wp).unwrap()).unwrap();
        z.start_file("U.npy", opts).unwrap();
        z.write_all(&std::fs::read(&up).unwrap()).unwrap();
        z.finish().unwrap();
        let member = |m: &str| PathBuf::from(format!("{}:{m}", path.display()));
        assert_eq!(read_npy_f64(&member("W")).unwrap(), (vec![3, 2], w.clone()));
        assert_eq!(read_npy_f32(&member("U")).unwrap(), (vec![1, 2], u.clone()));
        let err = read_array(&path).unwrap_err().report();
        assert!(err.contains("ARCHIVE.npz:NAME"), "{err}");
        let err = read_array(&member("Z")).unwrap_err().report();
        assert!(err.contains("no array `Z`"), "{err}");
    }
    // A one-array archive needs no name.
    let path = dir.join("one.npz");
    let mut z = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    z.start_file("arr_0.npy", zip::write::SimpleFileOptions::default())
        .unwrap();
    z.write_all(&std::fs::read(&wp).unwrap()).unwrap();
    z.finish().unwrap();
    assert_eq!(read_npy_f64(&path).unwrap(), (vec![3, 2], w));
    // Not a zip at all.
    std::fs::write(&path, b"nonsense").unwrap();
    assert!(read_array(&path)
        .unwrap_err()
        .report()
        .contains("not a valid .npz"));
}

/// Column-major layout of the row-major `c` of `shape`.
fn to_fortran(shape: &[usize], c: &[f64]) -> Vec<f64> {
    let n = c.len();
    let mut out = vec![0.0; n];
    let mut idx = vec![0usize; shape.len()];
    for &v in c {
        // C strides: last axis contiguous; Fortran: first axis contiguous.
        let mut f = 0;
        let mut stride = 1;
        for (ax, &i) in idx.iter().enumerate() {
            f += i * stride;
            stride *= shape[ax];
        }
        out[f] = v;
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

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// The same array stored in C and in Fortran order reads back identically.
    #[test]
    fn fortran_and_c_order_read_the_same(
        shape in proptest::collection::vec(1usize..5, 1..5),
        seed in 0u64..1000,
    ) {
        let dir = out_dir(&format!("order{seed}_{}", shape.len()));
        let n: usize = shape.iter().product();
        let c: Vec<f64> = (0..n).map(|i| (i as f64 + seed as f64 * 0.37).sin()).collect();
        let cp = dir.join("c.npy");
        write_npy_f64(&cp, &shape, &c).unwrap();
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        let tuple = if shape.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
        let payload: Vec<u8> = to_fortran(&shape, &c).iter().flat_map(|x| x.to_le_bytes()).collect();
        let fp = dir.join("f.npy");
        std::fs::write(&fp, raw_npy("<f8", true, &tuple, &payload)).unwrap();
        let (sc, dc) = read_npy_f64(&cp).unwrap();
        let (sf, df) = read_npy_f64(&fp).unwrap();
        proptest::prop_assert_eq!(&sc, &shape);
        proptest::prop_assert_eq!(&sf, &shape);
        proptest::prop_assert_eq!(bits64(&dc), bits64(&c));
        proptest::prop_assert_eq!(bits64(&df), bits64(&c));
    }
}
