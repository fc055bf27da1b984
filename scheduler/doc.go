// Package scheduler is the pure quota scheduler of qscheduler-swarming and
// the reconciler that adapts it to Swarming's pull model.
//
// It implements the rules of docs/algorithm.md: accounts that recharge
// worker-seconds per priority level, a FreeBucket level, preemption with
// refunds, reprioritization, preference for workers that already have a
// request's provisionable labels, fanout and per-label limits, and the
// reconciler's pending assignments, cancellations and callbacks.
//
// The package does no I/O, never reads a clock, never logs and starts no
// goroutine: every time is a parameter, every call does its work on the
// caller's goroutine, and the same state and inputs give the same outputs,
// events and resulting state. Events are values collected
// in the Scheduler and handed out by TakeEvents, so that the caller can emit
// them after the change is durable. The whole state converts losslessly to
// and from the statev1.PoolState protobuf message (ToProto, FromProto).
//
// The scheduler clock moves only forward, to the time of each AssignTasks,
// Notify and UpdateTime call that is later than it, so that a running task
// is charged to its account for every second until the notification or poll
// that ends it.
//
// A pass costs in proportion to what changed: waiting requests are indexed by
// account and label signature, signatures are found for a worker by walking a
// trie with the worker's labels, priorities are per account and limits are
// counters.
//
// docs/design.md outlines the algorithm, its invariants and the decisions
// where the rules are silent. The files, by concept (each type's comment
// describes its structure):
//
//	scheduler.go    the Scheduler, New, gc of what a call emptied
//	types.go        ids, levels, cost vectors, errors, times
//	accounts.go     accounts, balances, limit counters; the account API
//	requests.go     requests and FIFO order
//	classes.go      the index of waiting requests: classes, base indexes
//	workers.go      workers, starting and stopping tasks
//	labels.go       interned labels and label sets
//	trie.go         the trie of base label sets and eligibility walks
//	clock.go        the clock: UpdateTime, recharge and expiry
//	transitions.go  the transitions under the reconciler (algorithm.md §2.3)
//	runonce.go      a pass and its sub-passes a and b (algorithm.md §2.4)
//	reprioritize.go step c (algorithm.md §2.5)
//	preempt.go      step d (algorithm.md §2.6); units.go, victims.go its parts
//	reconciler.go   pending entries, AssignTasks, Notify, cancellations,
//	                callbacks (algorithm.md §3)
//	tombstones.go   finished requests, for stale reports
//	events.go       events (algorithm.md §5)
//	dirty.go        change marks and pre-images; delta.go the PoolDelta
//	                they give; apply.go ApplyDelta and UndoDelta
//	serialize.go    ToProto and FromProto; config.go tunables, validation
//	view.go         what operators see (View)
//
// Generic data structures are in scheduler/internal: heap (indexed binary
// heap), idtable (the request table), rank (ranking and integer sorts),
// btree (an ordered set), bitset and chunkbuf (the event buffer).
//
// A Scheduler is not safe for concurrent use.
package scheduler
