#!/usr/bin/env bash
# Runs the trainer natively and on an emulated AVX2-only CPU (QEMU user mode,
# `-cpu Haswell`: AVX2 + FMA, no AVX-512), and compares the trained weights.
#
# The binary is built once with `gemm`'s `x86-v4` feature: it must still start and
# train where AVX-512 is missing (gemm then picks its AVX2/FMA kernels at run time),
# and the script says whether both runs ended with bit-identical `W` and `U`
# (`weights_digest`, FNV-1a of their bits), natively with the kernels the CPU picks
# (the own AVX-512 ones of `train::matmul` where it has AVX-512) and natively with
# `--gemm` (the emulated CPU's kernel set). Different digests are not an error of
# the trainer: bit-identity is promised within one machine, not across CPUs.
#
# Usage: scripts/check-avx2-path.sh
# Needs `qemu-x86_64` (Debian/Ubuntu package `qemu-user`). Exit status 1 if the
# emulated run fails or does not report the AVX2 path.
set -euo pipefail
cd "$(dirname "$0")/.."
QEMU="${QEMU:-qemu-x86_64}"
cargo build --release --example train_timing
BIN=target/release/examples/train_timing
field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read().splitlines()[-1])['$1'])"; }
status=0
# (flags) pairs: the small shape (class panels, K < 256) and the paper's K = 1000.
for flags in "--classes 50 --nspl 10 --epochs 2" "--classes 1000 --nspl 1 --epochs 1"; do
    native=$($BIN $flags --threads 1)
    native_gemm=$($BIN $flags --threads 1 --gemm)
    emulated=$($QEMU -cpu Haswell $BIN $flags --threads 1 2>/dev/null)
    n_simd=$(field simd <<<"$native")
    e_simd=$(field simd <<<"$emulated")
    n_dig=$(field weights_digest <<<"$native")
    g_dig=$(field weights_digest <<<"$native_gemm")
    e_dig=$(field weights_digest <<<"$emulated")
    if [ "$e_simd" != "avx2+fma" ]; then
        echo "$flags: the emulated run reports simd=$e_simd, expected avx2+fma" >&2
        status=1
    fi
    same() { if [ "$1" = "$2" ]; then echo "bit-identical"; else echo "DIFFERENT"; fi; }
    echo "$flags: native $n_simd $n_dig, emulated $e_simd $e_dig: $(same "$n_dig" "$e_dig")"
    echo "$flags: native with --gemm $g_dig, emulated: $(same "$g_dig" "$e_dig")"
done
exit $status
