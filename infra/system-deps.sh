#!/usr/bin/env sh
# System packages some tests use, installed where we can (root with apt-get); otherwise a note, and those
# tests skip:  postgresql  -> tests marked `postgres` (Prefect and MLflow on a real PostgreSQL)
#              chromium    -> tests marked `browser` (the Prefect and MLflow UIs rendered headless)
# Called by `make setup` (system-deps); safe to run again.
set -u
missing=""
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || missing="$missing postgresql"
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing="$missing chromium"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages:$missing"
  # shellcheck disable=SC2086
  (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null 2>&1 || \
   (apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null)) || \
    echo "note: could not install$missing; the tests that need them will be skipped"
else
  echo "note: 'sudo apt-get install$missing' enables the postgres/browser tests (skipped without them)"
fi
exit 0
