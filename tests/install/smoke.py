"""Smoke test of an installed shmstate: run with the interpreter of the installation under test.

    python smoke.py SERVER_BINARY EXPECTED_VERSION [EXPECTED_PREFIX]

Checks that `shmstate` imports from EXPECTED_PREFIX (not from the build tree), that
__version__ and `SERVER --version` are EXPECTED_VERSION, then starts `SERVER serve --workers 0`,
attaches, counts, and stops it with SIGTERM: exit 0 and no segment left.
"""

import os
import signal
import subprocess
import sys
import uuid

server_binary, expected_version = sys.argv[1], sys.argv[2]
expected_prefix = sys.argv[3] if len(sys.argv) > 3 else None

import shmstate  # noqa: E402

where = os.path.realpath(shmstate.__file__)
if expected_prefix and not where.startswith(os.path.realpath(expected_prefix)):
    sys.exit(f"shmstate imported from {where}, not from {expected_prefix}")
if shmstate.__version__ != expected_version:
    sys.exit(f"shmstate.__version__ is {shmstate.__version__!r}, expected {expected_version!r}")
banner = subprocess.run([server_binary, "--version"], check=True, capture_output=True,
                        text=True).stdout
if not banner.startswith(f"shmstate {expected_version} (segment layout v{shmstate.LAYOUT_VERSION}"):
    sys.exit(f"`{server_binary} --version` says {banner!r}")

name = "smoke" + uuid.uuid4().hex[:12]
server = subprocess.Popen([server_binary, "serve", "--name", name, "--workers", "0",
                           "--size", "4MiB", "--log-level", "warn"], stdout=subprocess.PIPE)
try:
    line = server.stdout.readline().decode()  # Printed once the segment serves.
    if not line.startswith("shmstate:"):
        sys.exit(f"the server did not start: {line!r}")
    client = shmstate.attach(name)
    hits = client.counter("hits")
    values = [hits.incr() for _ in range(3)]
    if values != [1, 2, 3] or shmstate.attach(name).counter("hits").value != 3:
        sys.exit(f"counter gave {values}")
    del hits, client
finally:
    server.send_signal(signal.SIGTERM)
    code = server.wait(timeout=30)
if code != 0:
    sys.exit(f"the server exited with {code}")
left = [f for f in os.listdir("/dev/shm") if f.startswith(name + ".")]
if left:
    sys.exit(f"left in /dev/shm: {left}")
print(f"smoke: shmstate {shmstate.__version__} from {os.path.dirname(where)}: ok")
