#!/usr/bin/env bash
# Runs every test of the module. CI runs exactly this (see .ci/run).
set -euo pipefail
cd "$(dirname "$0")"
go test -count=1 ./... "$@"
# The concurrent parts again under the race detector.
go test -count=1 -race ./state/... ./frontend/... ./prpc/... ./nodestore/... ./eventlog/... "$@"
# The scheduler's one goroutine (a storm's pending entries and preemption
# bookkeeping, see entryFeed and step).
go test -count=1 -race -run 'TestEntryFeed|TestHandOver|TestFeedPanic' ./scheduler "$@"
