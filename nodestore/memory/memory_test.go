package memory_test

import (
	"testing"
	"time"

	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/memory"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/storetest"
)

func TestConformance(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) nodestore.Store {
			clock := storetest.NewClock()
			return storetest.WithClock(memory.New(memory.Options{Now: clock.Now}), clock, memory.DefaultGCLag)
		})
	})
	// Snapshots after every few commits, taken inside Commit.
	t.Run("frequent_snapshots", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) nodestore.Store {
			clock := storetest.NewClock()
			const lag = 30 * time.Second
			s := memory.New(memory.Options{Now: clock.Now, SnapshotEvery: 3, SnapshotBytes: 20_000, GCLag: lag})
			return storetest.WithClock(s, clock, lag)
		})
	})
	// Without a clock the suite skips what needs one.
	t.Run("no_clock", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) nodestore.Store { return memory.New(memory.Options{}) })
	})
}
