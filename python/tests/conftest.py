"""Shared helpers: the `fcollapse` binary and a repository-relative path."""

import os
import pathlib
import shutil
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def fcollapse_bin():
    """`$FCOLLAPSE_BIN`, else `target/release/fcollapse` of this repository, else
    `fcollapse` on the PATH; None when there is none."""
    env = os.environ.get("FCOLLAPSE_BIN")
    if env:
        return env
    local = REPO / "target" / "release" / "fcollapse"
    if local.exists():
        return str(local)
    return shutil.which("fcollapse")


@pytest.fixture(scope="session")
def cli():
    """Runs `fcollapse ARGS...`, returning the CompletedProcess (text mode).

    Without a binary the test is skipped, unless `FCOLLAPSE_REQUIRE_BIN=1` (CI),
    where it fails."""
    exe = fcollapse_bin()
    if exe is None:
        if os.environ.get("FCOLLAPSE_REQUIRE_BIN") == "1":
            pytest.fail("no fcollapse binary (build it with `cargo build --release`)")
        pytest.skip("no fcollapse binary: run `cargo build --release` or set FCOLLAPSE_BIN")

    def run(*args, cwd=None):
        return subprocess.run(
            [exe, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600
        )

    return run
