package state

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore"
)

// The store's health: whether it takes writes. A pool that fails a commit
// restores its committed state at once (a read, which a full disk does not
// stop) and fails the next commit again, so pools alone would flap between
// down and up while nothing can be written. The pipeline therefore tracks
// the store itself: it is unhealthy from the first failed write (a commit,
// CreatePool, DeletePool) until a write check (nodestore.WriteChecker) that
// started after the last failed write succeeds. While it is unhealthy a
// background goroutine runs the check with backoff, so that health recovers
// without traffic: a pod that reports NOT_SERVING gets none.
//
// Only the check ends it, not a commit that happens to succeed: on a full
// disk some commits still do (those that fit in the pages bbolt freed; 11
// of 400 on a full 2 MiB tmpfs, measured), and health would flap with
// them; the embedded store's check proves there is room to grow.
//
// Failures that say nothing about the store's writes do not count: a lost
// compare-and-swap (ErrConflict), an unknown or existing pool, corrupt data
// of one pool (that pool stays down instead), a closed store, a panic, a
// caller that gave up.

// StoreHealth says whether the store takes writes.
type StoreHealth struct {
	// Healthy: no write failed since the last successful write check.
	Healthy bool
	// Since is when the store became unhealthy (its first failed write)
	// or, while healthy, when it last recovered (or the pipeline was
	// created).
	Since time.Time
	// While unhealthy: the failed write that made it so (Cause), the
	// latest failed write or check (Last), how many writes of requests
	// failed (FailedWrites) and how many background checks (FailedChecks).
	Cause, Last  error
	FailedWrites int
	FailedChecks int
	// Since the pipeline was created: how often the store became
	// unhealthy, and every failed check.
	Outages, TotalFailedChecks int64
}

// ErrStoreUnhealthy is wrapped by StoreHealth.Err.
var ErrStoreUnhealthy = errors.New("the store takes no writes")

// Err is nil while the store is healthy; otherwise it says since when, what
// failed first and last, and how many checks failed (for /readyz).
func (h StoreHealth) Err() error {
	if h.Healthy {
		return nil
	}
	return fmt.Errorf("%w since %s (%d failed writes and %d failed write checks since; last error: %v); first failure: %v",
		ErrStoreUnhealthy, h.Since.UTC().Format(time.RFC3339), h.FailedWrites, h.FailedChecks, h.Last, h.Cause)
}

// health is the pipeline's record of the store's health.
type health struct {
	seq atomic.Uint64 // failed writes and checks so far; bumped under mu

	mu       sync.Mutex
	st       StoreHealth
	checking bool // a check goroutine runs (it exits under mu once healthy)
	closed   bool // the pipeline is closing: no more check goroutines
	checkLog rateLog

	changed chan struct{} // a token after each transition
}

func (h *health) init(now time.Time) {
	h.st = StoreHealth{Healthy: true, Since: now}
	h.changed = make(chan struct{}, 1)
	h.checkLog.every = time.Minute
}

// StoreHealth reports whether the store takes writes, since when, and why
// not. It is cheap: call it from /readyz.
func (p *Pipeline) StoreHealth() StoreHealth {
	p.health.mu.Lock()
	defer p.health.mu.Unlock()
	return p.health.st
}

// StoreHealthChanged returns a channel that receives a token after the
// store's health changes. Tokens do not queue: a receiver reads the health
// with StoreHealth after each token and so never misses the latest state.
// There is one channel per pipeline; it is never closed.
func (p *Pipeline) StoreHealthChanged() <-chan struct{} { return p.health.changed }

// signal leaves a token for StoreHealthChanged; h.mu is held, so that
// whoever sees the new state finds the token.
func (h *health) signal() {
	select {
	case h.changed <- struct{}{}:
	default:
	}
}

// writeDone records the outcome of a write of a request: what names it in
// the log. callerCtx, if not nil, is the caller's context the write ran
// under: an error after it ended says nothing of the store.
func (p *Pipeline) writeDone(what string, err error, callerCtx context.Context) {
	switch {
	case err == nil:
	case callerCtx != nil && callerCtx.Err() != nil,
		errors.Is(err, nodestore.ErrConflict), errors.Is(err, nodestore.ErrNotFound),
		errors.Is(err, nodestore.ErrAlreadyExists), errors.Is(err, nodestore.ErrCorrupt),
		errors.Is(err, nodestore.ErrClosed), errors.Is(err, context.Canceled):
	default:
		p.writeFailed(what, err, false)
	}
}

// checkSucceeded makes the store healthy again if no write failed since
// the successful check started (seq is the failure count then).
func (p *Pipeline) checkSucceeded(seq uint64, what string) {
	h := &p.health
	h.mu.Lock()
	if h.st.Healthy || h.seq.Load() != seq {
		h.mu.Unlock()
		return
	}
	old := h.st
	now := time.Now()
	// Logged before anyone sees the store healthy, so that the line
	// precedes what follows.
	p.opts.Logger.Info("store takes writes again: ready", "after", what, "unhealthy_for", now.Sub(old.Since),
		"failed_writes", old.FailedWrites, "failed_checks", old.FailedChecks, "first_error", old.Cause)
	h.st.Healthy, h.st.Since, h.st.Cause, h.st.Last, h.st.FailedWrites, h.st.FailedChecks = true, now, nil, nil, 0, 0
	h.signal()
	h.mu.Unlock()
}

// writeFailed records a failed write (check: a background check) and makes
// the store unhealthy, starting the background check, if it was healthy.
func (p *Pipeline) writeFailed(what string, err error, check bool) {
	h := &p.health
	now := time.Now()
	h.mu.Lock()
	h.seq.Add(1)
	err = fmt.Errorf("%s: %w", what, err)
	h.st.Last = err
	if check {
		h.st.FailedChecks++
		h.st.TotalFailedChecks++
	} else {
		h.st.FailedWrites++
	}
	if !h.st.Healthy {
		h.mu.Unlock()
		return
	}
	p.opts.Logger.Error("store takes no writes: not ready until a write check succeeds; checking with backoff", "write", what, "err", err)
	h.st.Healthy, h.st.Since, h.st.Cause = false, now, err
	h.st.Outages++
	start := !h.checking && !h.closed
	if start {
		h.checking = true
		p.hwg.Add(1)
	}
	h.signal()
	h.mu.Unlock()
	if start {
		go p.checkStore()
	}
}

// checkDone reports whether the check goroutine should exit (the store is
// healthy or the pipeline closing), and if so marks it gone.
func (h *health) checkDone(ctx context.Context) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.st.Healthy || ctx.Err() != nil {
		h.checking = false
		return true
	}
	return false
}

// checkStore runs the write check, first at once (a passing fault ends
// within milliseconds), then with backoff, until one succeeds or the
// pipeline closes.
func (p *Pipeline) checkStore() {
	defer p.hwg.Done()
	var backoff time.Duration
	for first := true; ; first = false {
		if !first {
			backoff = min(max(2*backoff, p.opts.StoreCheckBackoff), p.opts.StoreCheckBackoffMax)
			// Up to a fifth less, as restores do.
			wait := backoff - time.Duration(rand.Int64N(int64(backoff)/5+1))
			t := time.NewTimer(wait)
			select {
			case <-p.ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
		if p.health.checkDone(p.ctx) {
			return
		}
		seq := p.health.seq.Load()
		ctx, cancel := context.WithTimeout(p.ctx, p.opts.BatchTimeout)
		err := p.checkWrite(ctx)
		cancel()
		if p.ctx.Err() != nil {
			continue // closing: checkDone ends it
		}
		if err == nil {
			p.checkSucceeded(seq, "write check")
			continue
		}
		p.writeFailed("write check", err, true)
		if n, ok := p.health.checkLog.allow(time.Now()); ok {
			st := p.StoreHealth()
			p.opts.Logger.Warn("store write check failed; the store is still unhealthy", "failed_checks", n,
				"unhealthy_since", st.Since, "next_check_in", min(max(2*backoff, p.opts.StoreCheckBackoff), p.opts.StoreCheckBackoffMax), "err", err)
		}
	}
}

// checkWrite is the store's write check. A store without one is checked
// with a read (ListPools): health then recovers once the store answers,
// and goes bad again at the next failed write (flapping while writes fail,
// rather than staying NOT_SERVING for good).
func (p *Pipeline) checkWrite(ctx context.Context) error {
	if wc, ok := p.store.(nodestore.WriteChecker); ok {
		return wc.CheckWrite(ctx)
	}
	_, err := p.store.ListPools(ctx)
	return err
}

// closeHealth stops the check goroutine: p.ctx is canceled.
func (p *Pipeline) closeHealth() {
	p.health.mu.Lock()
	p.health.closed = true
	p.health.mu.Unlock()
	p.hwg.Wait()
}
