#!/usr/bin/env bash
# Builds the Python wheel of `feature_collapse` (maturin, release, abi3: one wheel
# for every CPython >= 3.9 on this platform), then checks that it installs and
# works without a Rust toolchain: a fresh venv, `pip install` of the wheel with no
# `cargo` or `rustc` on the PATH and binary packages only (nothing can be built
# from source), and the package's pytest suite run against that install.
#
# Usage: scripts/build-wheel.sh [WHEEL_DIR]   (default target/wheels)
# Environment: PYTHON (default python3) makes the test venv; MATURIN (default
# `maturin` on the PATH) builds; FCOLLAPSE_BIN / FCOLLAPSE_REQUIRE_BIN reach the
# tests that compare with the `fcollapse` binary.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
WHEEL_DIR="${1:-target/wheels}"
PYTHON="${PYTHON:-python3}"
MATURIN="${MATURIN:-maturin}"
VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)"

start=$(date +%s)
rm -f "$WHEEL_DIR"/feature_collapse-"$VERSION"-*.whl
"$MATURIN" build --release --quiet --out "$WHEEL_DIR"
wheels=("$WHEEL_DIR"/feature_collapse-"$VERSION"-*.whl)
if [ "${#wheels[@]}" -ne 1 ] || [ ! -f "${wheels[0]}" ]; then
  echo "build-wheel: expected one wheel feature_collapse-$VERSION-*.whl in $WHEEL_DIR" >&2
  exit 1
fi
WHEEL="${wheels[0]}"
case "$(basename "$WHEEL")" in
  *-abi3-*) ;;
  *) echo "build-wheel: $WHEEL is not an abi3 wheel" >&2; exit 1 ;;
esac
built=$(date +%s)
echo "wheel: $WHEEL ($(( $(stat -c %s "$WHEEL") / 1024 )) KiB), built in $(( built - start )) s"

# The PATH without any folder that holds a Rust toolchain.
clean_path=""
IFS=: read -r -a dirs <<< "$PATH"
for d in "${dirs[@]}"; do
  if [ -n "$d" ] && [ ! -e "$d/cargo" ] && [ ! -e "$d/rustc" ]; then
    clean_path="${clean_path:+$clean_path:}$d"
  fi
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
env PATH="$clean_path" "$PYTHON" -m venv "$tmp/venv"
VPY="$tmp/venv/bin/python"
check_path="$tmp/venv/bin:$clean_path"
if env PATH="$check_path" bash -c 'command -v cargo || command -v rustc' >/dev/null; then
  echo "build-wheel: a Rust toolchain is still on the test PATH" >&2
  exit 1
fi
# matplotlib: the example notebook, run as a test, draws its figure
env PATH="$check_path" "$VPY" -m pip install -q --only-binary :all: "$WHEEL" pytest matplotlib
# The tests import the installed package (run from outside the checkout).
cd "$tmp"
env PATH="$check_path" "$VPY" - "$tmp/venv" "$VERSION" <<'PY'
import sys, pathlib
import feature_collapse as fc
where = pathlib.Path(fc.__file__).resolve()
assert pathlib.Path(sys.argv[1]).resolve() in where.parents, f"imported from {where}"
assert fc.__version__ == sys.argv[2], (fc.__version__, sys.argv[2])
print(f"installed feature_collapse {fc.__version__} from the wheel, no cargo on the PATH")
PY
# Any non-zero pytest exit (5 included: no test collected) fails.
env PATH="$check_path" "$VPY" -m pytest -q -rs -p no:cacheprovider "$REPO/python/tests"
echo "wheel check passed in $(( $(date +%s) - start )) s (build $(( built - start )) s)"
