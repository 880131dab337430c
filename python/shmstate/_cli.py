"""The ``shmstate`` command of a pip-installed package: runs the server binary the wheel carries.

``pip install`` puts a ``shmstate`` script on PATH that calls :func:`main`, which replaces the
Python process with ``shmstate/bin/shmstate`` (so signals, the pid and the exit code are the
server's own, as systemd and ``gunicorn --preload`` setups expect).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import List, Optional


def server_binary() -> str:
    """The bundled server, else a ``shmstate`` on PATH that is not this script."""
    bundled = Path(__file__).resolve().parent / "bin" / "shmstate"
    if bundled.is_file():
        if not os.access(bundled, os.X_OK):
            bundled.chmod(0o755)  # Some installers drop the mode bits of package data.
        return str(bundled)
    here = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = shutil.which("shmstate", path=folder) if folder else None
        if candidate and (here is None or Path(candidate).resolve() != here):
            return candidate
    raise SystemExit("shmstate: no server binary in this package and none on PATH "
                     "(install the wheel built by `pip install .`, or the shmstate Debian package)")


def main(argv: Optional[List[str]] = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    binary = server_binary()
    os.execv(binary, [binary, *args])


if __name__ == "__main__":
    main()
