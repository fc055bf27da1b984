#!/usr/bin/env bash
# Runs every test of the module. CI runs this too, with the long soak tests
# on (QSCHEDULER_SOAK=1, see .ci/run).
set -euo pipefail
cd "$(dirname "$0")"
go test -count=1 ./... "$@"
# The concurrent parts again under the race detector.
go test -count=1 -race ./state/... ./frontend/... ./prpc/... ./nodestore/... ./eventlog/... "$@"
