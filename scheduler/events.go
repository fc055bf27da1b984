package scheduler

// EventType is the kind of an Event (algorithm.md §5).
type EventType int

// Event types.
const (
	EventEnqueued EventType = iota + 1
	EventAssigned
	EventPreempted
	EventReprioritized
	EventCompleted
	EventUnassigned
	// EventTaskError: a task error was recorded (SetTaskError), which
	// Cancellations reports until Swarming reports the task absent.
	EventTaskError
)

var eventTypeNames = [...]string{"", "ENQUEUED", "ASSIGNED", "PREEMPTED", "REPRIORITIZED", "COMPLETED", "UNASSIGNED", "TASK_ERROR"}

func (t EventType) String() string {
	if t > 0 && int(t) < len(eventTypeNames) {
		return eventTypeNames[t]
	}
	return "UNKNOWN"
}

// CompletedReason says why a request completed.
type CompletedReason int

// Completion reasons.
const (
	ReasonNone CompletedReason = iota
	// ReasonBotIdle: the worker running the request polled idle.
	ReasonBotIdle
	// ReasonIdleTaskAbsent: a waiting request was reported absent.
	ReasonIdleTaskAbsent
	// ReasonRunningTaskAbsent: a running request was reported absent.
	ReasonRunningTaskAbsent
	// ReasonInconsistentBotForTask: the request was reported running on
	// another worker (OtherWorker).
	ReasonInconsistentBotForTask
	// ReasonInconsistentTaskForBot: the worker was reported running another
	// request (OtherTask).
	ReasonInconsistentTaskForBot
)

var reasonNames = [...]string{"", "BOT_IDLE", "IDLE_TASK_ABSENT", "RUNNING_TASK_ABSENT", "INCONSISTENT_BOT_FOR_TASK", "INCONSISTENT_TASK_FOR_BOT"}

func (r CompletedReason) String() string {
	if r >= 0 && int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "UNKNOWN"
}

// Event records one state change for the event log and metrics. Slices are
// shared with the scheduler's state and must not be modified.
type Event struct {
	Type EventType
	// Time is the Swarming time of the notification that caused the change
	// (ENQUEUED, COMPLETED) or the scheduler clock (decisions, TASK_ERROR;
	// 0 before the clock is set), Unix ns.
	Time int64
	Task RequestID
	// Account of the task; AccountValid says whether it has a config.
	Account      AccountID
	AccountValid bool
	// Balance of the account after the change; Cost of the task.
	Balance             Vector
	Cost                Vector
	BaseLabels          []string
	ProvisionableLabels []string
	// Worker is the bot involved ("" when none) and WorkerLabels its
	// dimensions.
	Worker       WorkerID
	WorkerLabels []string
	FromCallback bool

	// ENQUEUED: the task's tags.
	Tags []string
	// COMPLETED: why, and the other task or worker of an inconsistency.
	Reason      CompletedReason
	OtherTask   RequestID
	OtherWorker WorkerID
	// ASSIGNED: the level it runs at; REPRIORITIZED: the new level (OldLevel
	// the previous one); PREEMPTED: the level of the preempting request.
	Level    Priority
	OldLevel Priority
	// ASSIGNED.
	ProvisionRequired bool
	Preempting        bool
	PreemptionCost    Vector
	PreemptedTask     RequestID
	// PREEMPTED: the request that took the worker.
	PreemptorTask RequestID
	// TASK_ERROR: the text Cancellations reports for the task (reason
	// ERROR, ExtraInfo) until Swarming reports it absent. The task may be
	// unknown to the scheduler; then the event names only Task (no account,
	// labels or worker).
	Error string
}

// TakeEvents returns the events recorded since the last call and forgets
// them. The caller owns the slice; ReuseEvents may hand it back.
func (s *Scheduler) TakeEvents() []Event { return s.events.Take() }

// ReuseEvents hands back a slice returned by TakeEvents that the caller no
// longer uses (nor any copy of it), so that later events are recorded into
// its memory instead of new memory: a pool whose batches are alike then
// records events without allocating.
func (s *Scheduler) ReuseEvents(evs []Event) { s.events.Keep(evs) }

// DiscardEvents forgets recorded events without returning them.
func (s *Scheduler) DiscardEvents() { s.events.Recycle() }

// Events are recorded in a chunkbuf.Buffer: a pass with thousands of
// changes never copies its events to grow a buffer, and records into memory
// handed back before it allocates, so that a storm of thousands of events
// writes mostly into memory the last storm used instead of zeroing
// megabytes of new memory in the middle of a pass.

// eventChunk is the capacity of a newly allocated chunk of events (390 KB):
// a batch of steady traffic fits in one, which TakeEvents hands over
// without copying.
const eventChunk = 1024

// maxSpare bounds the event memory kept for reuse (3 MiB): a batch that
// recorded more (loading a pool's backlog) does not make the pool hold it
// for good.
const maxSpare = 8192

// event records an event of type typ at time t about r and w (either may
// be nil) as they are now, and returns it for the caller to fill in the
// fields of its type. It is written once, in place: storms record
// thousands.
func (s *Scheduler) event(typ EventType, t int64, r *request, w *worker, fromCallback bool) *Event {
	p := s.events.Slot()
	p.Type, p.Time = typ, t
	if r != nil {
		p.Task = r.id
		p.Account = r.acct.id
		p.AccountValid = r.acct.cfg != nil
		p.Balance = r.acct.balance
		p.BaseLabels = r.base.names
		p.ProvisionableLabels = r.prov.names
		if r.w != nil {
			p.Cost = r.w.costAt(s.now)
		}
	}
	if w != nil {
		p.Worker = w.id
		p.WorkerLabels = w.names
	}
	p.FromCallback = fromCallback
	return p
}
