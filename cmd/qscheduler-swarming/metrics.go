package main

import (
	"context"
	"errors"

	"github.com/qscheduler-swarming/qscheduler-swarming/frontend"
	"github.com/qscheduler-swarming/qscheduler-swarming/state"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// registerMetrics creates the service's instruments on m. Each is read from
// the pipeline and the handlers when metrics are collected, so a deleted
// pool's series disappear with it. docs/operations.md lists them.
func registerMetrics(m metric.Meter, p *state.Pipeline, sw *frontend.Swarming) error {
	var errs []error
	counter := func(name, desc string) metric.Int64ObservableCounter {
		c, err := m.Int64ObservableCounter(name, metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	gauge := func(name, desc string) metric.Int64ObservableGauge {
		g, err := m.Int64ObservableGauge(name, metric.WithDescription(desc))
		errs = append(errs, err)
		return g
	}
	shed := counter("qscheduler_requests_shed",
		"Requests refused because their pool's queue was full (by count or bytes, or a pool over its share of --max-polls-in-flight): AssignTasks answered ResourceExhausted, NotifyTasks and admin calls answered Unavailable.")
	expired := counter("qscheduler_requests_expired",
		"Requests dropped unapplied because their caller had left (its deadline passed, or it canceled) before their batch started.")
	doorRefused := counter("qscheduler_polls_refused_at_door",
		"AssignTasks calls answered ResourceExhausted before their request was read, because the process had --max-polls-in-flight of them in flight.")
	inFlight := gauge("qscheduler_polls_in_flight",
		"AssignTasks calls admitted at the door and not yet answered.")
	notifyBytes := gauge("qscheduler_notification_bytes",
		"Bytes of NotifyTasks and admin calls the process holds, queued or in a running batch (bounded by --max-notify-queue-bytes).")
	failures := counter("qscheduler_batch_failures",
		"Batches that failed: their commit failed (reason=commit) or applying them panicked (reason=panic); their callers got Unavailable or Internal.")
	conflicts := counter("qscheduler_commit_conflicts",
		"Batches whose commit found that another process serving the store had committed first; each was taken back, caught up and replayed.")
	catchUps := counter("qscheduler_pool_catch_ups",
		"Times the pool's state was brought up to the store's other than delta by delta: how=rebuild (the deltas touched far more records than the pool holds: one rebuild in memory) or how=reload (the log was truncated, or a delta did not apply: read again from the store).")
	restores := counter("qscheduler_pool_restore_failures",
		"Failed attempts to restore a pool's committed state after a failed batch.")
	down := gauge("qscheduler_pool_down",
		"1 while the pool answers Unavailable because its committed state is being restored, else 0.")
	queued := gauge("qscheduler_queued_requests",
		"Requests waiting in the pool's queue: kind=notifications (NotifyTasks and admin calls) or kind=polls (AssignTasks).")
	queuedBytes := gauge("qscheduler_queued_bytes",
		"Bytes of the requests waiting in the pool's queue: kind=notifications (NotifyTasks and admin calls) or kind=polls (AssignTasks).")
	empty := counter("qscheduler_cron_empty_answers",
		"GetCancellations and GetCallbacks calls answered with an empty list because the pool they name cannot be read (unknown, empty or invalid id, down).")
	storeHealthy := gauge("qscheduler_store_healthy",
		"1 while the store takes writes, 0 from its first failed write until a background write check succeeds.")
	storeOutages := counter("qscheduler_store_outages",
		"Times the store stopped taking writes.")
	storeChecks := counter("qscheduler_store_write_check_failures",
		"Background write checks that failed while the store took no writes.")
	if err := errors.Join(errs...); err != nil {
		return err
	}
	_, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, st := range p.Status() {
			pool := attribute.String("pool", st.Pool)
			with := func(kv ...attribute.KeyValue) metric.ObserveOption {
				return metric.WithAttributes(append([]attribute.KeyValue{pool}, kv...)...)
			}
			c := st.Counters
			o.ObserveInt64(shed, c.ShedPolls, with(attribute.String("method", "AssignTasks")))
			o.ObserveInt64(shed, c.ShedNotifications, with(attribute.String("method", "NotifyTasks")))
			o.ObserveInt64(shed, c.ShedAdmin, with(attribute.String("method", "admin")))
			o.ObserveInt64(expired, c.ExpiredPolls, with(attribute.String("method", "AssignTasks")))
			o.ObserveInt64(expired, c.ExpiredNotifications, with(attribute.String("method", "NotifyTasks")))
			o.ObserveInt64(expired, c.ExpiredAdmin, with(attribute.String("method", "admin")))
			o.ObserveInt64(failures, c.FailedCommits, with(attribute.String("reason", "commit")))
			o.ObserveInt64(failures, c.BatchPanics, with(attribute.String("reason", "panic")))
			o.ObserveInt64(restores, c.FailedRestores, with())
			o.ObserveInt64(conflicts, c.Conflicts, with())
			o.ObserveInt64(catchUps, c.Rebuilds, with(attribute.String("how", "rebuild")))
			o.ObserveInt64(catchUps, c.Reloads, with(attribute.String("how", "reload")))
			d := int64(0)
			if st.Down {
				d = 1
			}
			o.ObserveInt64(down, d, with())
			o.ObserveInt64(queued, int64(st.QueuedNotifications), with(attribute.String("kind", "notifications")))
			o.ObserveInt64(queued, int64(st.QueuedPolls), with(attribute.String("kind", "polls")))
			o.ObserveInt64(queuedBytes, st.QueuedNotificationBytes, with(attribute.String("kind", "notifications")))
			o.ObserveInt64(queuedBytes, st.QueuedPollBytes, with(attribute.String("kind", "polls")))
		}
		door := p.Door()
		o.ObserveInt64(doorRefused, door.Refused)
		o.ObserveInt64(inFlight, door.InFlight)
		held, _ := p.NotifyBytes()
		o.ObserveInt64(notifyBytes, held)
		h := p.StoreHealth()
		healthy := int64(0)
		if h.Healthy {
			healthy = 1
		}
		o.ObserveInt64(storeHealthy, healthy)
		o.ObserveInt64(storeOutages, h.Outages)
		o.ObserveInt64(storeChecks, h.TotalFailedChecks)
		o.ObserveInt64(empty, sw.EmptyCancellations.Load(), metric.WithAttributes(attribute.String("method", "GetCancellations")))
		o.ObserveInt64(empty, sw.EmptyCallbacks.Load(), metric.WithAttributes(attribute.String("method", "GetCallbacks")))
		return nil
	}, shed, expired, doorRefused, inFlight, notifyBytes, failures, conflicts, catchUps, restores, down, queued, queuedBytes, empty, storeHealthy, storeOutages, storeChecks)
	return err
}
