package eventlog

import (
	"sync"

	eventsv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/events/v1"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler"
)

// Memory keeps rows in memory, for tests.
type Memory struct {
	mu   sync.Mutex
	rows []*eventsv1.TaskEvent
}

// Emit records the rows of events.
func (m *Memory) Emit(pool string, events []scheduler.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range events {
		m.rows = append(m.rows, Row("test", pool, e))
	}
}

// Rows returns the rows so far.
func (m *Memory) Rows() []*eventsv1.TaskEvent {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*eventsv1.TaskEvent(nil), m.rows...)
}
