package frontend

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
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
// request does not say; MaxMaxItems is the most it returns whatever the
// request says (a larger max_items is taken as MaxMaxItems), so that one
// page holds the pool's read lock, which the batcher needs to write, for
// at most a few milliseconds.
const (
	DefaultMaxItems = 1000
	MaxMaxItems     = 10000
)

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

// ListSchedulerPools returns every pool id in the store, sorted, whichever
// process serving it created them.
func (h *View) ListSchedulerPools(ctx context.Context, req *qschedulerv1.ListSchedulerPoolsRequest) (*qschedulerv1.ListSchedulerPoolsResponse, error) {
	ids, err := h.P.ListPools(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &qschedulerv1.ListSchedulerPoolsResponse{PoolIds: ids}, nil
}

// InspectPool returns a pool's state: exact counts, and a page of each list
// (running tasks, waiting tasks, idle bots) after the page token's
// positions, with the token of the next page while any list has more.
func (h *View) InspectPool(ctx context.Context, req *qschedulerv1.InspectPoolRequest) (*qschedulerv1.InspectPoolResponse, error) {
	if err := validPool("pool_id", req.PoolId); err != nil {
		return nil, err
	}
	if req.MaxItems < 0 {
		return nil, invalid("max_items: %d is negative", req.MaxItems)
	}
	maxItems := min(int(req.MaxItems), MaxMaxItems)
	if maxItems == 0 {
		maxItems = DefaultMaxItems
	}
	from, err := decodePageToken(req.PoolId, req.PageToken)
	if err != nil {
		return nil, err
	}
	resp := &qschedulerv1.InspectPoolResponse{}
	err = h.P.Read(ctx, req.PoolId, func(s *scheduler.Scheduler) error {
		v := s.ViewPage(from, maxItems)
		if v.More {
			resp.NextPageToken = encodePageToken(req.PoolId, v.Next)
		}
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

// A page token says where the next InspectPool page starts: the pool it
// belongs to and, for each list, the position after the last entry
// returned. It is base64url (no padding) of: the version byte 1; the pool
// id (a uvarint length, then its bytes); then for the running, waiting and
// idle lists in turn, the byte 0 for "from the start", or the byte 1, the
// entry's confirmed time (a zigzag varint of Unix nanoseconds) and its id
// (a uvarint length, then its bytes). Nothing else may follow.
const (
	pageTokenVersion = 1
	maxPageToken     = 8 << 10 // longer than any token encodePageToken makes
)

func encodePageToken(pool string, c scheduler.ViewCursor) string {
	b := []byte{pageTokenVersion}
	b = binary.AppendUvarint(b, uint64(len(pool)))
	b = append(b, pool...)
	for _, p := range []scheduler.ViewPos{c.Running, c.Waiting, c.Idle} {
		if !p.Set {
			b = append(b, 0)
			continue
		}
		b = append(b, 1)
		b = binary.AppendVarint(b, p.Confirmed)
		b = binary.AppendUvarint(b, uint64(len(p.ID)))
		b = append(b, p.ID...)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodePageToken returns the cursor of a token made by encodePageToken for
// pool; an empty token is the first page. Anything else is InvalidArgument
// naming page_token.
func decodePageToken(pool, tok string) (scheduler.ViewCursor, error) {
	var c scheduler.ViewCursor
	if tok == "" {
		return c, nil
	}
	bad := func(why string) (scheduler.ViewCursor, error) {
		return scheduler.ViewCursor{}, invalid("page_token: %s; pass the next_page_token of an earlier answer, or none for the first page", why)
	}
	if len(tok) > maxPageToken {
		return bad(fmt.Sprintf("%d bytes, longer than any page token", len(tok)))
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return bad("not a page token (not base64url)")
	}
	if len(b) == 0 || b[0] != pageTokenVersion {
		return bad("not a page token (unknown version)")
	}
	b = b[1:]
	str := func() (string, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return "", false
		}
		v := string(b[k : k+int(n)])
		b = b[k+int(n):]
		return v, true
	}
	tokPool, ok := str()
	if !ok {
		return bad("not a page token (truncated)")
	}
	if tokPool != pool {
		return bad(fmt.Sprintf("it continues pool %q, not %q", tokPool, pool))
	}
	for _, p := range []*scheduler.ViewPos{&c.Running, &c.Waiting, &c.Idle} {
		if len(b) == 0 || b[0] > 1 {
			return bad("not a page token (malformed position)")
		}
		set := b[0] == 1
		b = b[1:]
		if !set {
			continue
		}
		t, k := binary.Varint(b)
		if k <= 0 {
			return bad("not a page token (malformed time)")
		}
		b = b[k:]
		id, ok := str()
		if !ok || scheduler.ValidateID("id", id) != nil {
			return bad("not a page token (malformed id)")
		}
		*p = scheduler.ViewPos{Set: true, Confirmed: t, ID: id}
	}
	if len(b) != 0 {
		return bad("not a page token (trailing bytes)")
	}
	return c, nil
}
