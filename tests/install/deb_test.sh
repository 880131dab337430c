#!/bin/sh
# The Debian packages made by CPack from the build tree (no second compile), installed on this
# machine with dpkg -i, checked from the system (the binary on PATH, the module from the system
# Python, the service user, `systemd-analyze verify` of the unit), then purged, leaving nothing.
# Needs root (or sudo without a password); exit 77 (CTest: skipped) otherwise, or when shmstate
# packages are installed already (they are not ours to remove).
# Usage: deb_test.sh SOURCE_DIR BUILD_DIR VERSION
set -eu
src=$1 build=$2 version=$3
if [ "$(id -u)" -eq 0 ]; then sudo=""
elif sudo -n true 2>/dev/null; then sudo="sudo -n"
else echo "deb_test: needs root or passwordless sudo: skipped"; exit 77; fi
for p in shmstate python3-shmstate libshmstate-dev; do
  if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep >/dev/null "ok installed"; then
    echo "deb_test: $p is installed on this machine already: skipped"; exit 77
  fi
done
tmp=$(mktemp -d /tmp/shmstate-deb.XXXXXX)
installed=""
cleanup() {
  [ -n "$installed" ] && $sudo dpkg --purge python3-shmstate shmstate >/dev/null 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "deb_test: $*" >&2; exit 1; }

cpack -G DEB --config "$build/CPackConfig.cmake" -B "$tmp" >/dev/null
server_deb=$tmp/shmstate_${version}-1_$(dpkg --print-architecture).deb
python_deb=$(ls "$tmp"/python3-shmstate_"$version"-1_*.deb)
ls "$tmp"/libshmstate-dev_"$version"-1_*.deb >/dev/null
dpkg-deb -c "$server_deb" | grep >/dev/null ' ./usr/bin/shmstate$' || fail "no /usr/bin/shmstate"
dpkg-deb -c "$server_deb" | grep >/dev/null ' ./usr/lib/systemd/system/shmstate@.service$' ||
  fail "no systemd unit"
dpkg-deb -c "$python_deb" | grep >/dev/null './usr/lib/python3/dist-packages/shmstate/_shmstate\..*\.so$' ||
  fail "no extension in python3-shmstate"
dpkg-deb -f "$server_deb" Depends | grep >/dev/null 'libboost-json' || fail "no Boost dependency"

installed=yes
$sudo dpkg -i "$server_deb" "$python_deb" >/dev/null
[ "$(command -v shmstate)" = /usr/bin/shmstate ] || fail "shmstate is not /usr/bin/shmstate"
shmstate --version | grep >/dev/null "^shmstate $version " || fail "shmstate --version: $(shmstate --version)"
cd /
env -u PYTHONPATH /usr/bin/python3 -I -c 'import shmstate; print("python3:", shmstate.__file__)'
env -u PYTHONPATH /usr/bin/python3 -I "$src/tests/install/smoke.py" /usr/bin/shmstate "$version" \
  /usr/lib/python3/dist-packages
getent passwd shmstate >/dev/null || fail "no shmstate user"
[ "$(stat -c %G /etc/shmstate)" = shmstate ] || fail "/etc/shmstate is not group shmstate"
# The deployment of docs/deploy.md, as the unit runs it: user shmstate, the options of the
# packaged example instance file (--workers 0 --group www-data --snapshot /var/lib/shmstate/...).
# The app as www-data attaches and counts; a user outside the group is refused; the stop writes
# the snapshot into the state folder.
if getent group www-data >/dev/null && getent passwd www-data >/dev/null; then
  $sudo adduser --quiet shmstate www-data
  name="debci$$"
  opts=$(sh -c '. "$1" && printf %s "$SHMSTATE_OPTS"' _ /usr/share/doc/shmstate/examples/instance.conf |
    sed "s/myapp/$name/g")
  case "$opts" in *"--group www-data"*"/var/lib/shmstate/$name.snap"*) ;;
    *) fail "unexpected example options: $opts" ;; esac
  mkfifo "$tmp/ready"
  # shellcheck disable=SC2086 # Word splitting, as systemd does with $SHMSTATE_OPTS.
  $sudo setpriv --reuid=shmstate --regid=shmstate --init-groups /usr/bin/shmstate serve \
    --name "$name" $opts --log-level warn >"$tmp/ready" &
  server_pid=$!  # setpriv execs the server (sudo forwards signals to it).
  read -r line <"$tmp/ready"
  case "$line" in shmstate:*) ;; *) fail "the server as user shmstate did not start: $line" ;; esac
  [ "$(stat -c '%a %U %G' "/dev/shm/$name.1")" = "660 shmstate www-data" ] ||
    fail "segment: $(stat -c '%a %U %G' "/dev/shm/$name.1")"
  $sudo setpriv --reuid=www-data --regid=www-data --init-groups env -u PYTHONPATH \
    /usr/bin/python3 -I -c 'import shmstate, sys; assert shmstate.attach(sys.argv[1]).counter("c").incr() == 1' "$name"
  if $sudo setpriv --reuid=nobody --regid=nogroup --clear-groups env -u PYTHONPATH \
      /usr/bin/python3 -I -c 'import shmstate, sys; shmstate.attach(sys.argv[1])' "$name" 2>"$tmp/err"; then
    fail "a user outside the group attached"
  fi
  grep >/dev/null "Permission denied (only the server.s user" "$tmp/err" || fail "refused without saying why: $(cat "$tmp/err")"
  $sudo kill -TERM "$server_pid"
  wait "$server_pid" || fail "the server exited with $?"
  [ ! -e "/dev/shm/$name.1" ] || fail "segment left after SIGTERM"
  [ "$($sudo stat -c "%a %U" "/var/lib/shmstate/$name.snap")" = "600 shmstate" ] || fail "no snapshot at stop"
  echo "deployment: example options as shmstate, attached as www-data, nobody refused, snapshot: ok"
fi
# The unit is a template: verify an instance of it (a copy named like one).
mkdir "$tmp/units"
cp /usr/lib/systemd/system/shmstate@.service "$tmp/units/shmstate@ci.service"
out=$(SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no "$tmp/units/shmstate@ci.service" 2>&1) ||
  fail "systemd-analyze verify: $out"
if echo "$out" | grep -i "shmstate@" >/dev/null; then fail "systemd-analyze verify: $out"; fi

$sudo dpkg --purge python3-shmstate shmstate >/dev/null
installed=""
[ ! -e /usr/bin/shmstate ] || fail "/usr/bin/shmstate left after purge"
[ ! -e /usr/lib/python3/dist-packages/shmstate ] || fail "the module was left after purge"
! getent passwd shmstate >/dev/null || fail "the shmstate user was left after purge"
[ ! -e /etc/shmstate ] && [ ! -e /var/lib/shmstate ] || fail "/etc or /var/lib left after purge"
echo "deb: built, installed, checked, purged: ok"
