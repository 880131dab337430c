#!/bin/sh
# `cmake --install` of the build into a temporary prefix, then examples/hit_counter configured
# and built on its own against it with find_package(shmstate) (as an application would), and run:
# it serves the stock API and its own route. Usage: cmake_install_test.sh SOURCE_DIR BUILD_DIR
set -eu
src=$1 build=$2
tmp=$(mktemp -d /tmp/shmstate-install.XXXXXX)
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
for f in bin/shmstate include/shm/segment.h include/shm/server_main.h include/shm/version.h \
         lib/cmake/shmstate/shmstateConfig.cmake lib/cmake/shmstate/shmstateConfigVersion.cmake; do
  [ -e "$tmp/prefix/$f" ] || { echo "not installed: $f" >&2; exit 1; }
done
if ls "$tmp"/prefix/include/*.h "$tmp"/prefix/include/shm/*_rep.h 2>/dev/null | grep -q .; then
  echo "internal headers were installed" >&2; exit 1
fi
"$tmp/prefix/bin/shmstate" --version
launcher=""
command -v ccache >/dev/null 2>&1 && launcher="-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"
cmake -S "$src/examples/hit_counter" -B "$tmp/app" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$tmp/prefix" $launcher >/dev/null
cmake --build "$tmp/app" >/dev/null
app=$(find "$tmp/app" -name hit_counter -type f -perm -u+x | head -n 1)
"$app" --help | grep -q "shmstate serve"
name="hitc$$"
fifo="$tmp/out"
mkfifo "$fifo"
"$app" serve --name "$name" --workers 1 --size 4MiB --listen 127.0.0.1:0 --log-level warn \
  >"$fifo" &
pid=$!
read -r line <"$fifo"  # "shmstate: ... http://127.0.0.1:PORT ...", once it serves.
port=$(echo "$line" | sed -n 's|.*http://127\.0\.0\.1:\([0-9]*\).*|\1|p')
[ -n "$port" ] || { echo "no port in: $line" >&2; exit 1; }
/usr/bin/python3 - "$port" <<'PY'
import json, sys, urllib.request
base = f"http://127.0.0.1:{sys.argv[1]}"
hits = [json.load(urllib.request.urlopen(base + "/hits", timeout=10)) for _ in range(2)]
print("hit_counter /hits:", hits)
health = urllib.request.urlopen(base + "/healthz", timeout=10).status
if health != 200 or hits[0] == hits[1]:
    sys.exit(f"unexpected answers: {hits} {health}")
PY
kill -TERM "$pid"
wait "$pid"
pid=""
[ -z "$(ls /dev/shm | grep "^$name\.")" ] || { echo "segment left behind" >&2; exit 1; }
echo "cmake --install + find_package(shmstate) + hit_counter: ok"
