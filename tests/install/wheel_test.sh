#!/bin/sh
# `pip wheel` of the source tree (from the CMake build that the tests already made: no second
# compile), installed with pip into a fresh venv, then smoke.py with the venv's interpreter and
# its `shmstate` entry point. Usage: wheel_test.sh SOURCE_DIR BUILD_DIR VERSION [PYTHON]
# PYTHON: the interpreter the build's module is for (CMake's SHM_PYTHON_EXECUTABLE).
set -eu
src=$1 build=$2 version=$3 python=${4:-/usr/bin/python3}
tmp=$(mktemp -d /tmp/shmstate-wheel.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# --system-site-packages: numpy and the rest come from Debian, offline.
"$python" -m venv --system-site-packages "$tmp/venv"
SHMSTATE_CMAKE_BUILD_DIR=$build SHMSTATE_SETUPTOOLS_BUILD=$tmp/setuptools \
  "$tmp/venv/bin/pip" wheel --quiet --no-build-isolation --no-deps --no-index \
  --wheel-dir "$tmp/dist" "$src"
wheel=$(ls "$tmp"/dist/shmstate-"$version"-*.whl)
# The wheel carries the module, its version file and the server binary (executable).
"$python" - "$wheel" <<'PY'
import stat, sys, zipfile
names = {i.filename: i for i in zipfile.ZipFile(sys.argv[1]).infolist()}
for need in ("shmstate/__init__.py", "shmstate/_version.py", "shmstate/_cli.py",
             "shmstate/bin/shmstate"):
    if need not in names:
        sys.exit(f"{need} missing from the wheel: {sorted(names)}")
if not any(n.startswith("shmstate/_shmstate.") and n.endswith(".so") for n in names):
    sys.exit("the extension is missing from the wheel")
if not (names["shmstate/bin/shmstate"].external_attr >> 16) & stat.S_IXUSR:
    sys.exit("shmstate/bin/shmstate is not executable in the wheel")
PY
"$tmp/venv/bin/pip" install --quiet --no-index --no-deps "$wheel"
cd "$tmp"  # Nothing of the source or build tree on the path.
env -u PYTHONPATH "$tmp/venv/bin/python" "$src/tests/install/smoke.py" \
  "$tmp/venv/bin/shmstate" "$version" "$tmp/venv"
