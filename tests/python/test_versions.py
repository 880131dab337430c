"""Versions: one source (CMakeLists.txt's project(VERSION)) for the module and the server, and a
module that meets a segment of another layout version refuses it with a message naming both
versions and what to do (never a crash, never a misread)."""

import os
import re
import struct
import subprocess

import pytest

import shmstate
from conftest import SHMSTATE_BIN

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Root's frozen prefix (shared/src/layout.h): magic at 0, layout version at 8 (little endian).
MAGIC = struct.pack("<Q", 0x4554415453484D53)


def project_version():
    with open(os.path.join(ROOT, "CMakeLists.txt")) as f:
        return re.search(r"project\(shmstate\b[^)]*\bVERSION\s+([0-9.]+)", f.read()).group(1)


def test_module_and_server_report_the_version_of_the_build():
    assert shmstate.__version__ == project_version()
    out = subprocess.run([SHMSTATE_BIN, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith(
        f"shmstate {project_version()} (segment layout v{shmstate.LAYOUT_VERSION}, Boost 1.81)")


def _layout_word(path):
    """Offset of Root's layout version in the segment file (Root is the first allocation)."""
    with open(path, "rb") as f:
        head = f.read(1 << 20)
    assert head.count(MAGIC) == 1, "Root's magic should appear once"
    return head.index(MAGIC) + 8


@pytest.mark.parametrize("delta,advice", [(+1, "upgrade this module/client"),
                                          (-1, "upgrade the server")])
def test_attach_to_another_layout_version_names_both_and_what_to_do(server, delta, advice):
    path = f"/dev/shm/{server.name}.1"
    offset = _layout_word(path)
    with open(path, "r+b") as f:
        f.seek(offset)
        (ours,) = struct.unpack("<I", f.read(4))
        assert ours == shmstate.LAYOUT_VERSION
        f.seek(offset)
        f.write(struct.pack("<I", ours + delta))  # A server of another release, as seen here.
        f.flush()
        try:
            with pytest.raises(shmstate.InvalidArgument) as refused:
                shmstate.attach(server.name)
        finally:
            f.seek(offset)
            f.write(struct.pack("<I", ours))
    message = str(refused.value)
    assert f"has layout v{ours + delta}" in message
    assert f"reads layout v{ours}" in message
    assert f"shmstate {shmstate.__version__}" in message
    assert advice in message
    assert shmstate.attach(server.name).counter("after").incr() == 1  # Restored: attaches again.
