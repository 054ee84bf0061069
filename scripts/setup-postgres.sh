#!/usr/bin/env bash
# Makes sure the PostgreSQL server binaries (initdb, pg_ctl) are installed, for the PostgreSQL
# store tests: test/support/postgres.ts starts a throwaway cluster from them for each test file.
# Nothing is started here, and no cluster of the system is touched.
#
# Usage: scripts/setup-postgres.sh   (Debian/Ubuntu; uses sudo when not root)
set -euo pipefail

have_initdb() {
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1
}

if have_initdb; then
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-postgres: initdb not found and apt-get is not available; install PostgreSQL (server) yourself" >&2
  exit 1
fi

echo "installing Debian package: postgresql"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
# The package's post-install creates and starts a system cluster; the tests do not use it.
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null

if ! have_initdb; then
  echo "setup-postgres: postgresql installed but initdb is still missing" >&2
  exit 1
fi
# initdb refuses to run as root; as root the tests run it as the package's `postgres` user.
if [ "$(id -u)" -eq 0 ] && ! id -u postgres >/dev/null 2>&1; then
  echo "setup-postgres: running as root but there is no postgres user to run initdb as" >&2
  exit 1
fi
