package scheduler

import (
	"maps"
	"math"
	"slices"
	"time"
	"unicode/utf8"

	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	"google.golang.org/protobuf/proto"
)

// Defaults of the pool tunables (algorithm.md §1.2).
const (
	DefaultBotExpiration      = 300 * time.Second
	DefaultPromoteThreshold   = 600.0
	DefaultDemoteThreshold    = -600.0
	DefaultWorkerQueueTimeout = 10 * time.Minute
	DefaultMaxQueueingAge     = 46 * time.Hour
	DefaultTombstoneTTL       = 10 * time.Minute
	DefaultMaxTombstones      = 200000
)

// MaxIDLength is the longest id (request, worker, account) accepted, in
// bytes: Swarming's longest ids (bot ids of up to 256 characters) take at
// most this many in UTF-8.
const MaxIDLength = 1024

// tunables are the effective values of a PoolConfig.
type tunables struct {
	disablePreemption  bool
	botExpiration      int64
	promoteThreshold   float64
	demoteThreshold    float64
	workerQueueTimeout int64
	maxQueueingAge     int64
	tombstoneTTL       int64
	maxTombstones      int
}

func tunablesOf(c *statev1.PoolConfig) tunables {
	t := tunables{
		disablePreemption:  c.GetDisablePreemption(),
		botExpiration:      int64(DefaultBotExpiration),
		promoteThreshold:   DefaultPromoteThreshold,
		demoteThreshold:    DefaultDemoteThreshold,
		workerQueueTimeout: int64(DefaultWorkerQueueTimeout),
		maxQueueingAge:     int64(DefaultMaxQueueingAge),
		tombstoneTTL:       int64(DefaultTombstoneTTL),
		maxTombstones:      DefaultMaxTombstones,
	}
	if c.BotExpirationNanos != nil {
		t.botExpiration = *c.BotExpirationNanos
	}
	if c.PromoteThreshold != nil {
		t.promoteThreshold = float64(*c.PromoteThreshold)
	}
	if c.DemoteThreshold != nil {
		t.demoteThreshold = float64(*c.DemoteThreshold)
	}
	if c.WorkerQueueTimeoutNanos != nil {
		t.workerQueueTimeout = *c.WorkerQueueTimeoutNanos
	}
	if c.MaxQueueingAgeNanos != nil {
		t.maxQueueingAge = *c.MaxQueueingAgeNanos
	}
	if c.TombstoneTtlNanos != nil {
		t.tombstoneTTL = *c.TombstoneTtlNanos
	}
	if c.MaxTombstones != nil {
		t.maxTombstones = int(*c.MaxTombstones)
	}
	return t
}

// Tunables are a pool's effective tunables.
type Tunables struct {
	DisablePreemption  bool
	BotExpiration      time.Duration
	PromoteThreshold   float64
	DemoteThreshold    float64
	WorkerQueueTimeout time.Duration
	MaxQueueingAge     time.Duration
	TombstoneTTL       time.Duration
	MaxTombstones      int
}

// EffectiveTunables returns the values a PoolConfig gives, defaults filled in.
func EffectiveTunables(c *statev1.PoolConfig) Tunables {
	t := tunablesOf(c)
	return Tunables{
		DisablePreemption:  t.disablePreemption,
		BotExpiration:      time.Duration(t.botExpiration),
		PromoteThreshold:   t.promoteThreshold,
		DemoteThreshold:    t.demoteThreshold,
		WorkerQueueTimeout: time.Duration(t.workerQueueTimeout),
		MaxQueueingAge:     time.Duration(t.maxQueueingAge),
		TombstoneTTL:       time.Duration(t.tombstoneTTL),
		MaxTombstones:      t.maxTombstones,
	}
}

// ValidateID checks an id: non-empty, at most MaxIDLength bytes, valid UTF-8.
// field names the input in the error.
func ValidateID(field, id string) error {
	switch {
	case id == "":
		return invalidf("%s: must not be empty", field)
	case len(id) > MaxIDLength:
		return invalidf("%s: %d bytes, at most %d allowed", field, len(id), MaxIDLength)
	case !utf8.ValidString(id):
		return invalidf("%s: not valid UTF-8", field)
	}
	return nil
}

func validFloat(field string, f float32, allowNegative bool) error {
	x := float64(f)
	if math.IsNaN(x) || math.IsInf(x, 0) || (!allowNegative && x < 0) {
		if allowNegative {
			return invalidf("%s: %v is not a finite number", field, f)
		}
		return invalidf("%s: %v is not a finite non-negative number", field, f)
	}
	return nil
}

// ValidateAccountConfig checks an account configuration. field prefixes the
// names in errors (for example "config").
func ValidateAccountConfig(field string, c *statev1.AccountConfig) error {
	if c == nil {
		return invalidf("%s: must be set", field)
	}
	if _, err := VectorFromFloat32(field+".charge_rate", c.ChargeRate); err != nil {
		return err
	}
	if err := validFloat(field+".max_charge_seconds", c.MaxChargeSeconds, false); err != nil {
		return err
	}
	if c.MaxFanout < 0 {
		return invalidf("%s.max_fanout: %d is negative", field, c.MaxFanout)
	}
	for k, v := range c.PerLabelTaskLimits {
		if k == "" {
			return invalidf("%s.per_label_task_limits: empty label key", field)
		}
		if !utf8.ValidString(k) {
			return invalidf("%s.per_label_task_limits: key %q not valid UTF-8", field, k)
		}
		if v < 0 {
			return invalidf("%s.per_label_task_limits[%q]: %d is negative", field, k, v)
		}
	}
	if !utf8.ValidString(c.Description) {
		return invalidf("%s.description: not valid UTF-8", field)
	}
	return nil
}

// ValidatePoolConfig checks the tunables and every account of a pool config.
func ValidatePoolConfig(c *statev1.PoolConfig) error {
	if c == nil {
		return nil
	}
	for _, d := range []struct {
		name string
		v    *int64
	}{
		{"bot_expiration", c.BotExpirationNanos},
		{"worker_queue_timeout", c.WorkerQueueTimeoutNanos},
		{"max_queueing_age", c.MaxQueueingAgeNanos},
		{"tombstone_ttl", c.TombstoneTtlNanos},
	} {
		if d.v != nil && *d.v < 0 {
			return invalidf("%s: %v is negative", d.name, time.Duration(*d.v))
		}
	}
	if c.PromoteThreshold != nil {
		if err := validFloat("promote_threshold", *c.PromoteThreshold, true); err != nil {
			return err
		}
	}
	if c.DemoteThreshold != nil {
		if err := validFloat("demote_threshold", *c.DemoteThreshold, true); err != nil {
			return err
		}
	}
	if c.MaxTombstones != nil && *c.MaxTombstones < 0 {
		return invalidf("max_tombstones: %d is negative", *c.MaxTombstones)
	}
	for _, id := range slices.Sorted(maps.Keys(c.AccountConfigs)) {
		if err := ValidateID("account_configs key", id); err != nil {
			return err
		}
		if err := ValidateAccountConfig("account_configs["+id+"]", c.AccountConfigs[id]); err != nil {
			return err
		}
	}
	return nil
}

// Tunables returns a copy of the pool's tunables (a PoolConfig without
// account configs).
func (s *Scheduler) Tunables() *statev1.PoolConfig {
	return proto.CloneOf(s.tunablesProto)
}

// SetTunables replaces the pool's tunables. Account configs in c are ignored
// (use AddAccount and DeleteAccount). Unset fields take their defaults.
func (s *Scheduler) SetTunables(c *statev1.PoolConfig) error {
	c = proto.CloneOf(c)
	if c == nil {
		c = &statev1.PoolConfig{}
	}
	c.AccountConfigs = nil
	if err := ValidatePoolConfig(c); err != nil {
		return err
	}
	s.touchConfig()
	s.tunablesProto = c
	s.cfg = tunablesOf(c)
	s.enforceMaxTombstones()
	return nil
}
