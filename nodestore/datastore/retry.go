package datastore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	gds "cloud.google.com/go/datastore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// transient reports whether err is one Cloud Datastore says to retry:
// Aborted (a transaction lost to a concurrent one), Unavailable or
// DeadlineExceeded.
func transient(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, gds.ErrConcurrentTransaction) {
		return true
	}
	switch status.Code(err) {
	case codes.Aborted, codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	return false
}

// retry calls f until it succeeds, fails with an error that is not
// transient, or has been called Options.Attempts times, waiting between
// calls a backoff that starts at Options.RetryDelay and doubles up to
// MaxRetryDelay, with jitter. Each call has Options.AttemptTimeout: the
// client library waits for a connection rather than failing at once. The
// caller's context ends it at once.
func (s *Store) retry(ctx context.Context, f func(ctx context.Context) error) error {
	delay := s.opts.RetryDelay
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, s.opts.AttemptTimeout)
		err := f(actx)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			err = status.Error(codes.DeadlineExceeded, fmt.Sprintf("no answer within %v", s.opts.AttemptTimeout))
		}
		if !transient(err) || ctx.Err() != nil {
			return err
		}
		if attempt >= s.opts.Attempts {
			return fmt.Errorf("gave up after %d attempts: %w", attempt, err)
		}
		wait := delay/2 + rand.N(delay/2+1)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		delay = min(2*delay, MaxRetryDelay)
	}
}

// transactOnce runs f in one transaction, once: retry decides on retries.
func (s *Store) transactOnce(ctx context.Context, f func(tx *gds.Transaction) error) error {
	_, err := s.client.RunInTransaction(ctx, f, gds.MaxAttempts(1))
	return err
}

// transact runs f in a transaction, retried as retry does.
func (s *Store) transact(ctx context.Context, f func(tx *gds.Transaction) error) error {
	return s.retry(ctx, func(ctx context.Context) error { return s.transactOnce(ctx, f) })
}
