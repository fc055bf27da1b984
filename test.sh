#!/usr/bin/env bash
# Runs every test of the module. CI runs exactly this (see .ci/run).
set -euo pipefail
cd "$(dirname "$0")"
exec go test -count=1 ./... "$@"
