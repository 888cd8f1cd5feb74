#!/usr/bin/env bash
# Runs the test suite; "no tests collected" (pytest exit code 5) is a failure, never a pass.
set -uo pipefail
cd "$(dirname "$0")/.."
.venv/bin/pytest "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: failing on purpose" >&2
  exit 1
fi
exit "$status"
