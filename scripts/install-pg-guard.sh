#!/usr/bin/env bash
# Builds pgbyok's PostgreSQL hook module (pg/guard/pgbyok_guard.c) and installs it into PostgreSQL 15's
# library directory. Run as root, once per machine (and again after changing the module).
# It needs gcc and PostgreSQL 15's server headers: those of postgresql-server-dev-15 when installed, else
# the headers are unpacked from that Debian package without installing it (its clang/LLVM toolchain is not needed).
set -euo pipefail
cd "$(dirname "$0")/.."
libdir=/usr/lib/postgresql/15/lib
[ -d "$libdir" ] || { echo "PostgreSQL 15 is not installed ($libdir is missing): apt-get install postgresql-15" >&2; exit 1; }
inc=/usr/include/postgresql/15/server
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 0777 "$work" # apt-get download fetches as the _apt user
if [ ! -f "$inc/postgres.h" ]; then
  # A fresh machine may have no package lists yet: fetch them once if the download fails.
  (cd "$work" && { apt-get download -q postgresql-server-dev-15 >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get download -q postgresql-server-dev-15 >/dev/null; }; } && dpkg -x postgresql-server-dev-15_*.deb headers)
  inc="$work/headers/usr/include/postgresql/15/server"
fi
gcc -O2 -fPIC -shared -Wall -Werror -I"$inc" -o "$work/pgbyok_guard.so" pg/guard/pgbyok_guard.c
install -m 0755 "$work/pgbyok_guard.so" "$libdir/pgbyok_guard.so"
echo "installed $libdir/pgbyok_guard.so"
