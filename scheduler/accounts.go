package scheduler

import (
	"fmt"
	"slices"
	"strings"

	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	"google.golang.org/protobuf/proto"
)

// account is everything known about one account id, configured or not.
// An account object exists while it has a config, a balance or requests
// (refs); maybeDropAccount forgets it when none is left.
//
// The counts the algorithm asks for are counters, updated when a task
// starts, stops or changes level, never computed by scanning in a pass:
//
//   - running[level]: the workers running the account's tasks at each
//     level; worker.levelIdx makes adding and removing O(1). Their lengths
//     are what updateTime charges, reprioritization counts and the ban test
//     (runningBelow, O(levels)) reads.
//   - labelCount[label]: for the labels whose key the account limits, its
//     running tasks on workers carrying the label, updated by countLabels in
//     O(labels of the worker) and only for accounts with per-label limits.
//     Zero counts stay in the map (deleting and re-adding churns it).
//   - fanout[set]: for an account with a max_fanout, its tasks at paid
//     levels per fanout label set (fanoutGroup), changed by attach, detach
//     and setLevel across the paid/FreeBucket boundary. The count at the
//     start of a pass is taken lazily: groupOf records (startEpoch,
//     startPaid) the first time a pass touches the group, before changing
//     it, so fullAtStart is O(1) without copying every group at the start.
//     Requests cache their group (request.grp); gc marks a removed group
//     dead so that caches look it up again.
//
// recount rebuilds labelCount and fanout after the limits change (a config
// change, never in a pass). Accounts sorted by id are cached
// (Scheduler.acctOrder) and sorted again only after an account appears or
// disappears.
type account struct {
	id          AccountID
	cfg         *statev1.AccountConfig // nil: no config
	rate        Vector                 // charge_rate
	cap         Vector                 // rate * max_charge_seconds
	maxFanout   int32
	disableFree bool             // disable_free_tasks
	limits      map[string]int32 // per_label_task_limits
	balance     Vector
	hasBalance  bool // whether the state holds a balance for it
	balanceSeen bool // FromProto: duplicate detection

	running    [NumPaidLevels + 1][]*worker // workers running this account's tasks, by level
	labelCount map[labelID]int32            // for labels whose key it limits: running tasks on workers carrying the label
	fanout     map[*labelSet]*fanoutGroup   // with a max_fanout: paid-level tasks by fanout label set
	waiting    int                          // waiting requests
	refs       int                          // requests (waiting or running)

	// Per pass.
	level   Priority // priority() at the start of the pass
	dormant []*unit  // preemption units waiting for the account's ban to be lifted
}

// limited reports whether the account has a limit (max_fanout or
// per-label limits): its classes are then decided one by one.
func (a *account) limited() bool {
	return a.cfg != nil && (a.maxFanout > 0 || len(a.limits) > 0)
}

// priority is the level a waiting request of this account gets
// (algorithm.md §2.2).
func (a *account) priority() Priority {
	if a.cfg == nil {
		return FreeBucket
	}
	for p := range NumPaidLevels {
		if a.balance[p] > 0 {
			return Priority(p)
		}
	}
	return FreeBucket
}

// runningBelow counts this account's tasks at levels below (numerically
// above) p.
func (a *account) runningBelow(p Priority) int {
	n := 0
	for l := p + 1; l <= FreeBucket; l++ {
		n += len(a.running[l])
	}
	return n
}

// fanoutGroup counts an account's paid-level tasks of one fanout label set
// (the union of a request's base and provisionable labels).
type fanoutGroup struct {
	dead       bool  // removed from its account; requests must look it up again
	paid       int32 // tasks running at paid levels
	startEpoch uint64
	startPaid  int32 // paid at the start of pass startEpoch
}

// groupRef names a fanout group for gc.
type groupRef struct {
	acct *account
	fan  *labelSet
}

// account returns the account with the id, creating an unconfigured one.
func (s *Scheduler) account(id AccountID) *account {
	if a := s.accounts[id]; a != nil {
		return a
	}
	a := &account{id: id, labelCount: map[labelID]int32{}, fanout: map[*labelSet]*fanoutGroup{}}
	s.accounts[id] = a
	s.acctOrderDirty = true
	return a
}

// sortedAccounts returns the accounts by id.
func (s *Scheduler) sortedAccounts() []*account {
	if s.acctOrderDirty {
		s.acctOrder = s.acctOrder[:0]
		for _, a := range s.accounts {
			s.acctOrder = append(s.acctOrder, a)
		}
		slices.SortFunc(s.acctOrder, func(a, b *account) int { return strings.Compare(string(a.id), string(b.id)) })
		s.acctOrderDirty = false
	}
	return s.acctOrder
}

// maybeDropAccount forgets an account object that nothing needs any more.
func (s *Scheduler) maybeDropAccount(a *account) {
	if a.cfg == nil && !a.hasBalance && a.refs == 0 && s.accounts[a.id] == a {
		delete(s.accounts, a.id)
		s.acctOrderDirty = true
	}
}

// AddAccount adds or replaces an account's config and resets its balance to
// balance (nil: zero). Its waiting and running requests keep their places.
func (s *Scheduler) AddAccount(id AccountID, cfg *statev1.AccountConfig, balance []float32) error {
	if err := ValidateID("account_id", string(id)); err != nil {
		return err
	}
	if err := ValidateAccountConfig("config", cfg); err != nil {
		return err
	}
	bal, err := VectorFromFloat32("balance", balance)
	if err != nil {
		return err
	}
	s.touchBalance(id)
	s.touchConfig()
	a := s.account(id)
	s.setAccountConfig(a, proto.CloneOf(cfg))
	a.balance, a.hasBalance = bal, true
	return nil
}

func (s *Scheduler) setAccountConfig(a *account, cfg *statev1.AccountConfig) {
	a.cfg = cfg
	a.rate, _ = VectorFromFloat32("", cfg.ChargeRate)
	for p := range a.cap {
		a.cap[p] = float64(a.rate[p] * float64(cfg.MaxChargeSeconds))
	}
	old := a.limits
	oldFanout := a.maxFanout
	a.maxFanout = cfg.MaxFanout
	a.disableFree = cfg.DisableFreeTasks
	a.limits = cfg.PerLabelTaskLimits
	if !sameKeys(old, a.limits) || (oldFanout > 0) != (a.maxFanout > 0) {
		s.recount(a)
	}
}

func sameKeys(a, b map[string]int32) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			return false
		}
	}
	return true
}

// UpdateAccount replaces a configured account's config and keeps its
// balance (ModAccount without reset_balance).
func (s *Scheduler) UpdateAccount(id AccountID, cfg *statev1.AccountConfig) error {
	a := s.accounts[id]
	if a == nil || a.cfg == nil {
		return fmt.Errorf("%w: account %q", ErrNotFound, id)
	}
	if err := ValidateAccountConfig("config", cfg); err != nil {
		return err
	}
	s.touchConfig()
	s.setAccountConfig(a, proto.CloneOf(cfg))
	return nil
}

// DeleteAccount removes an account's config and balance. Its waiting
// requests become FreeBucket requests; its running tasks move to FreeBucket
// at the next pass.
func (s *Scheduler) DeleteAccount(id AccountID) error {
	a := s.accounts[id]
	if a == nil || a.cfg == nil {
		return fmt.Errorf("%w: account %q", ErrNotFound, id)
	}
	s.touchBalance(id)
	s.touchConfig()
	s.unconfigure(a)
	a.balance, a.hasBalance = Vector{}, false
	s.maybeDropAccount(a)
	return nil
}

// unconfigure removes a's config, keeping its balance.
func (s *Scheduler) unconfigure(a *account) {
	hadLimits := a.limited()
	a.cfg, a.rate, a.cap, a.maxFanout, a.disableFree, a.limits = nil, Vector{}, Vector{}, 0, false, nil
	if hadLimits {
		s.recount(a)
	}
}

// AccountConfig returns a copy of an account's config, or nil.
func (s *Scheduler) AccountConfig(id AccountID) *statev1.AccountConfig {
	if a := s.accounts[id]; a != nil && a.cfg != nil {
		return proto.CloneOf(a.cfg)
	}
	return nil
}

// AccountConfigs returns copies of all account configs.
func (s *Scheduler) AccountConfigs() map[string]*statev1.AccountConfig {
	out := make(map[string]*statev1.AccountConfig)
	for _, a := range s.accounts {
		if a.cfg != nil {
			out[string(a.id)] = proto.CloneOf(a.cfg)
		}
	}
	return out
}

// Balance returns an account's balance and whether it has one.
func (s *Scheduler) Balance(id AccountID) (Vector, bool) {
	if a := s.accounts[id]; a != nil && a.hasBalance {
		return a.balance, true
	}
	return Vector{}, false
}

// groupOf returns r's fanout group, creating it, with its paid count at
// the start of the current pass recorded.
func (s *Scheduler) groupOf(r *request) *fanoutGroup {
	g := r.grp
	if g == nil || g.dead {
		a := r.acct
		g = a.fanout[r.fan]
		if g == nil {
			g = &fanoutGroup{}
			a.fanout[s.sets.ref(r.fan)] = g
		}
		r.grp = g
	}
	if g.startEpoch != s.epoch {
		g.startEpoch, g.startPaid = s.epoch, g.paid
	}
	return g
}

// ungroup counts one task of r's group less at paid levels.
func (s *Scheduler) ungroup(r *request) {
	g := s.groupOf(r)
	if g.paid--; g.paid == 0 {
		s.gcGroups = append(s.gcGroups, groupRef{r.acct, r.fan})
	}
}

// countLabels adds d to a's per-label counts for the labels of w whose key a
// limits. Zero counts stay: deleting and re-adding them churns the map, and
// a zero is right even after the label id is reused.
func (s *Scheduler) countLabels(a *account, w *worker, d int32) {
	if len(a.limits) == 0 {
		return
	}
	keys := s.labels.keys
	for _, l := range w.labelIDs {
		if _, ok := a.limits[keys[l]]; ok {
			a.labelCount[l] += d
		}
	}
}

// recount rebuilds a's limit counters from its running tasks after its
// limits changed: per-label counts for the keys it limits, fanout groups when
// it has a max_fanout. This is the only place counters are computed by
// scanning; it runs on a config change, never in a pass.
func (s *Scheduler) recount(a *account) {
	for fan, g := range a.fanout {
		g.dead = true
		s.sets.unref(fan)
	}
	a.fanout = make(map[*labelSet]*fanoutGroup)
	a.labelCount = make(map[labelID]int32)
	for l := range a.running {
		for _, w := range a.running[l] {
			s.countLabels(a, w, 1)
			if Priority(l) < FreeBucket && a.maxFanout > 0 {
				s.groupOf(w.req).paid++
			}
		}
	}
}
