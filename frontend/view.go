package frontend

import (
	"context"
	"math"
	"time"

	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	qschedulerv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/v1"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler"
	"github.com/qscheduler-swarming/qscheduler-swarming/state"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// View implements qscheduler.v1.QSchedulerView.
type View struct {
	qschedulerv1.UnimplementedQSchedulerViewServer
	P *state.Pipeline
}

// DefaultMaxItems is the most entries each InspectPool list returns when the
// request does not say.
const DefaultMaxItems = 1000

// ListAccounts returns a pool's accounts.
func (h *View) ListAccounts(ctx context.Context, req *qschedulerv1.ListAccountsRequest) (*qschedulerv1.ListAccountsResponse, error) {
	if err := validPool("pool_id", req.PoolId); err != nil {
		return nil, err
	}
	resp := &qschedulerv1.ListAccountsResponse{}
	err := h.P.Read(ctx, req.PoolId, func(s *scheduler.Scheduler) error {
		resp.Accounts = s.AccountConfigs()
		return nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return resp, nil
}

// ListSchedulerPools returns every pool id, sorted.
func (h *View) ListSchedulerPools(ctx context.Context, req *qschedulerv1.ListSchedulerPoolsRequest) (*qschedulerv1.ListSchedulerPoolsResponse, error) {
	if !h.P.Ready() {
		return nil, toStatus(state.ErrLoading)
	}
	return &qschedulerv1.ListSchedulerPoolsResponse{PoolIds: h.P.Pools()}, nil
}

// InspectPool returns a pool's state.
func (h *View) InspectPool(ctx context.Context, req *qschedulerv1.InspectPoolRequest) (*qschedulerv1.InspectPoolResponse, error) {
	if err := validPool("pool_id", req.PoolId); err != nil {
		return nil, err
	}
	if req.MaxItems < 0 {
		return nil, invalid("max_items: %d is negative", req.MaxItems)
	}
	maxItems := int(req.MaxItems)
	if maxItems == 0 {
		maxItems = DefaultMaxItems
	}
	resp := &qschedulerv1.InspectPoolResponse{}
	err := h.P.Read(ctx, req.PoolId, func(s *scheduler.Scheduler) error {
		v := s.View(maxItems)
		t := s.Tunables()
		resp.NumWaitingTasks, resp.NumRunningTasks, resp.NumIdleBots = int32(v.NumWaiting), int32(v.NumRunning), int32(v.NumIdle)
		resp.AccountBalances = map[string]*statev1.Balance{}
		for id, b := range v.Balances {
			bal := &statev1.Balance{}
			for _, x := range b {
				bal.Value = append(bal.Value, float32(x))
			}
			resp.AccountBalances[string(id)] = bal
		}
		for _, r := range v.Running {
			resp.RunningTasks = append(resp.RunningTasks, &qschedulerv1.InspectPoolResponse_RunningTask{
				Id: string(r.ID), BotId: string(r.Worker), Priority: int32(r.Priority), AccountId: string(r.Account), AgeSeconds: seconds32(r.Age),
			})
		}
		for _, r := range v.Waiting {
			resp.WaitingTasks = append(resp.WaitingTasks, &qschedulerv1.InspectPoolResponse_WaitingTask{
				Id: string(r.ID), AccountId: string(r.Account), AgeSeconds: seconds32(r.Age),
			})
		}
		for _, w := range v.Idle {
			resp.IdleBots = append(resp.IdleBots, &qschedulerv1.InspectPoolResponse_IdleBot{
				Id: string(w.ID), Dimensions: w.Labels, AgeSeconds: seconds32(w.Age),
			})
		}
		resp.AccountConfigs = s.AccountConfigs()
		resp.DisablePreemption = t.DisablePreemption
		eff := scheduler.EffectiveTunables(t)
		resp.BotExpirationSeconds = seconds32(eff.BotExpiration)
		resp.PromoteThreshold = float32(eff.PromoteThreshold)
		resp.DemoteThreshold = float32(eff.DemoteThreshold)
		resp.WorkerQueueTimeoutSeconds = seconds32(eff.WorkerQueueTimeout)
		resp.MaxQueueingAgeSeconds = seconds32(eff.MaxQueueingAge)
		resp.TombstoneTtlSeconds = seconds32(eff.TombstoneTTL)
		resp.MaxTombstones = int32(eff.MaxTombstones)
		if v.HasClock {
			resp.SchedulerTime = timestamppb.New(v.Now)
		}
		for _, e := range v.Excess {
			resp.LimitExcess = append(resp.LimitExcess, &qschedulerv1.InspectPoolResponse_LimitExcess{
				AccountId: string(e.Account), Kind: e.Kind, Key: e.Key, Running: int32(e.Running), Limit: int32(e.Limit),
			})
		}
		for l := range v.RunningByLevel {
			resp.NumRunningByPriority = append(resp.NumRunningByPriority, int32(v.RunningByLevel[l]))
			resp.NumWaitingByPriority = append(resp.NumWaitingByPriority, int32(v.WaitingByLevel[l]))
		}
		return nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return resp, nil
}

func seconds32(d time.Duration) int32 {
	s := d / time.Second
	if s > math.MaxInt32 {
		return math.MaxInt32
	}
	return int32(s)
}
