package frontend

import (
	"context"
	"log/slog"
	"time"

	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	qschedulerv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/v1"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler"
	"github.com/qscheduler-swarming/qscheduler-swarming/state"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Admin implements qscheduler.v1.QSchedulerAdmin. Every change it makes is
// logged at Info with the pool, the account and what changed.
type Admin struct {
	qschedulerv1.UnimplementedQSchedulerAdminServer
	P *state.Pipeline
	// Log receives a line per change (nil: slog.Default()).
	Log *slog.Logger
}

// logChange logs one committed admin change, with the caller's address.
func (h *Admin) logChange(ctx context.Context, msg, pool string, args ...any) {
	log := h.Log
	if log == nil {
		log = slog.Default()
	}
	args = append([]any{"pool", pool}, args...)
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		args = append(args, "peer", p.Addr.String())
	}
	log.InfoContext(ctx, msg, args...)
}

// text is a message in one line of protobuf text format, for logs; "{}"
// for an empty one (a pool config with every tunable at its default).
func text(m proto.Message) string {
	if s := (prototext.MarshalOptions{}).Format(m); s != "" {
		return s
	}
	return "{}"
}

// CreateSchedulerPool creates a pool.
func (h *Admin) CreateSchedulerPool(ctx context.Context, req *qschedulerv1.CreateSchedulerPoolRequest) (*qschedulerv1.CreateSchedulerPoolResponse, error) {
	if err := validPool("pool_id", req.PoolId); err != nil {
		return nil, err
	}
	if err := h.P.CreatePool(ctx, req.PoolId); err != nil {
		return nil, toStatus(err)
	}
	h.logChange(ctx, "admin: pool created", req.PoolId)
	return &qschedulerv1.CreateSchedulerPoolResponse{}, nil
}

// DeleteSchedulerPool deletes a pool.
func (h *Admin) DeleteSchedulerPool(ctx context.Context, req *qschedulerv1.DeleteSchedulerPoolRequest) (*qschedulerv1.DeleteSchedulerPoolResponse, error) {
	if err := validPool("pool_id", req.PoolId); err != nil {
		return nil, err
	}
	if err := h.P.DeletePool(ctx, req.PoolId); err != nil {
		return nil, toStatus(err)
	}
	h.logChange(ctx, "admin: pool deleted", req.PoolId)
	return &qschedulerv1.DeleteSchedulerPoolResponse{}, nil
}

// CreateAccount adds or overwrites an account; its balance restarts at zero.
func (h *Admin) CreateAccount(ctx context.Context, req *qschedulerv1.CreateAccountRequest) (*qschedulerv1.CreateAccountResponse, error) {
	if err := validPool("pool_id", req.PoolId); err != nil {
		return nil, err
	}
	if err := scheduler.ValidateID("account_id", req.AccountId); err != nil {
		return nil, toStatus(err)
	}
	if err := scheduler.ValidateAccountConfig("config", req.Config); err != nil {
		return nil, toStatus(err)
	}
	var before *statev1.AccountConfig
	err := h.P.Mutate(ctx, req.PoolId, func(s *scheduler.Scheduler) error {
		before = s.AccountConfig(scheduler.AccountID(req.AccountId))
		return s.AddAccount(scheduler.AccountID(req.AccountId), req.Config, nil)
	})
	if err != nil {
		return nil, toStatus(err)
	}
	if before != nil {
		h.logChange(ctx, "admin: account replaced, its balance reset", req.PoolId, "account", req.AccountId, "before", text(before), "after", text(req.Config))
	} else {
		h.logChange(ctx, "admin: account created", req.PoolId, "account", req.AccountId, "config", text(req.Config))
	}
	return &qschedulerv1.CreateAccountResponse{}, nil
}

// ModAccount changes the fields of an account's config that are set.
func (h *Admin) ModAccount(ctx context.Context, req *qschedulerv1.ModAccountRequest) (*qschedulerv1.ModAccountResponse, error) {
	if err := validPool("pool_id", req.PoolId); err != nil {
		return nil, err
	}
	if err := scheduler.ValidateID("account_id", req.AccountId); err != nil {
		return nil, toStatus(err)
	}
	if len(req.PerLabelTaskLimits) > 0 && req.ClearPerLabelTaskLimits {
		return nil, invalid("per_label_task_limits and clear_per_label_task_limits: set only one")
	}
	if _, err := scheduler.VectorFromFloat32("charge_rate", req.ChargeRate); err != nil {
		return nil, toStatus(err)
	}
	id := scheduler.AccountID(req.AccountId)
	var before, after *statev1.AccountConfig
	err := h.P.Mutate(ctx, req.PoolId, func(s *scheduler.Scheduler) error {
		cfg := s.AccountConfig(id)
		if cfg == nil {
			return scheduler.NotFoundf("account %q", id)
		}
		before = proto.CloneOf(cfg)
		if len(req.ChargeRate) > 0 {
			cfg.ChargeRate = req.ChargeRate
		}
		if req.MaxChargeSeconds != nil {
			cfg.MaxChargeSeconds = req.MaxChargeSeconds.Value
		}
		if req.MaxFanout != nil {
			cfg.MaxFanout = req.MaxFanout.Value
		}
		if req.DisableFreeTasks != nil {
			cfg.DisableFreeTasks = req.DisableFreeTasks.Value
		}
		if req.Description != nil {
			cfg.Description = req.Description.Value
		}
		if len(req.PerLabelTaskLimits) > 0 {
			cfg.PerLabelTaskLimits = req.PerLabelTaskLimits
		}
		if req.ClearPerLabelTaskLimits {
			cfg.PerLabelTaskLimits = nil
		}
		after = proto.CloneOf(cfg)
		if req.ResetBalance {
			return s.AddAccount(id, cfg, nil)
		}
		return s.UpdateAccount(id, cfg)
	})
	if err != nil {
		return nil, toStatus(err)
	}
	h.logChange(ctx, "admin: account modified", req.PoolId, "account", req.AccountId, "before", text(before), "after", text(after), "balance_reset", req.ResetBalance)
	return &qschedulerv1.ModAccountResponse{}, nil
}

// DeleteAccount removes an account.
func (h *Admin) DeleteAccount(ctx context.Context, req *qschedulerv1.DeleteAccountRequest) (*qschedulerv1.DeleteAccountResponse, error) {
	if err := validPool("pool_id", req.PoolId); err != nil {
		return nil, err
	}
	if err := scheduler.ValidateID("account_id", req.AccountId); err != nil {
		return nil, toStatus(err)
	}
	var before *statev1.AccountConfig
	err := h.P.Mutate(ctx, req.PoolId, func(s *scheduler.Scheduler) error {
		before = s.AccountConfig(scheduler.AccountID(req.AccountId))
		return s.DeleteAccount(scheduler.AccountID(req.AccountId))
	})
	if err != nil {
		return nil, toStatus(err)
	}
	h.logChange(ctx, "admin: account deleted", req.PoolId, "account", req.AccountId, "config", text(before))
	return &qschedulerv1.DeleteAccountResponse{}, nil
}

// ModSchedulerPool changes the tunables that are set.
func (h *Admin) ModSchedulerPool(ctx context.Context, req *qschedulerv1.ModSchedulerPoolRequest) (*qschedulerv1.ModSchedulerPoolResponse, error) {
	if err := validPool("pool_id", req.PoolId); err != nil {
		return nil, err
	}
	seconds := []struct {
		name string
		v    *wrapperspb.Int32Value
	}{
		{"bot_expiration_seconds", req.BotExpirationSeconds},
		{"worker_queue_timeout_seconds", req.WorkerQueueTimeoutSeconds},
		{"max_queueing_age_seconds", req.MaxQueueingAgeSeconds},
		{"tombstone_ttl_seconds", req.TombstoneTtlSeconds},
		{"max_tombstones", req.MaxTombstones},
	}
	for _, f := range seconds {
		if f.v != nil && f.v.Value < 0 {
			return nil, invalid("%s: %d is negative", f.name, f.v.Value)
		}
	}
	nanos := func(v *wrapperspb.Int32Value) *int64 {
		return proto.Int64(int64(time.Duration(v.Value) * time.Second))
	}
	var before, after *statev1.PoolConfig
	err := h.P.Mutate(ctx, req.PoolId, func(s *scheduler.Scheduler) error {
		t := s.Tunables()
		before = proto.CloneOf(t)
		if req.DisablePreemption != nil {
			t.DisablePreemption = req.DisablePreemption.Value
		}
		if req.BotExpirationSeconds != nil {
			t.BotExpirationNanos = nanos(req.BotExpirationSeconds)
		}
		if req.PromoteThreshold != nil {
			t.PromoteThreshold = proto.Float32(req.PromoteThreshold.Value)
		}
		if req.DemoteThreshold != nil {
			t.DemoteThreshold = proto.Float32(req.DemoteThreshold.Value)
		}
		if req.WorkerQueueTimeoutSeconds != nil {
			t.WorkerQueueTimeoutNanos = nanos(req.WorkerQueueTimeoutSeconds)
		}
		if req.MaxQueueingAgeSeconds != nil {
			t.MaxQueueingAgeNanos = nanos(req.MaxQueueingAgeSeconds)
		}
		if req.TombstoneTtlSeconds != nil {
			t.TombstoneTtlNanos = nanos(req.TombstoneTtlSeconds)
		}
		if req.MaxTombstones != nil {
			t.MaxTombstones = proto.Int32(req.MaxTombstones.Value)
		}
		after = proto.CloneOf(t)
		return s.SetTunables(t)
	})
	if err != nil {
		return nil, toStatus(err)
	}
	h.logChange(ctx, "admin: pool tunables modified", req.PoolId, "before", text(before), "after", text(after))
	return &qschedulerv1.ModSchedulerPoolResponse{}, nil
}

// Wipe clears a pool's tasks, bots, balances, reconciler and clock.
func (h *Admin) Wipe(ctx context.Context, req *qschedulerv1.WipeRequest) (*qschedulerv1.WipeResponse, error) {
	if err := validPool("pool_id", req.PoolId); err != nil {
		return nil, err
	}
	var dropped scheduler.PoolView
	err := h.P.Mutate(ctx, req.PoolId, func(s *scheduler.Scheduler) error {
		dropped = s.View(0)
		s.Wipe()
		return nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	h.logChange(ctx, "admin: pool wiped", req.PoolId, "dropped_waiting", dropped.NumWaiting,
		"dropped_running", dropped.NumRunning, "dropped_idle_bots", dropped.NumIdle, "dropped_balances", len(dropped.Balances))
	return &qschedulerv1.WipeResponse{}, nil
}
