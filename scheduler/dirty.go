package scheduler

// dirtySet records which entities changed, so that a commit can write in
// proportion to what changed (docs/service.md §4). The entity marks are kept
// only after TrackChanges (on); TakeDelta turns them into a PoolDelta.
type dirtySet struct {
	on         bool
	config     bool // tunables or account configs
	clock      bool
	reset      bool // Wipe
	requests   map[RequestID]struct{}
	workers    map[WorkerID]struct{}
	tombstones map[RequestID]struct{}
	pendings   map[WorkerID]struct{}
	errors     map[RequestID]struct{}
	balances   map[AccountID]struct{}
}

func mark[K comparable](on bool, m *map[K]struct{}, k K) {
	if !on {
		return
	}
	if *m == nil {
		*m = make(map[K]struct{})
	}
	(*m)[k] = struct{}{}
}

func (d *dirtySet) request(id RequestID)   { mark(d.on, &d.requests, id) }
func (d *dirtySet) worker(id WorkerID)     { mark(d.on, &d.workers, id) }
func (d *dirtySet) tombstone(id RequestID) { mark(d.on, &d.tombstones, id) }
func (d *dirtySet) pending(id WorkerID)    { mark(d.on, &d.pendings, id) }
func (d *dirtySet) taskError(id RequestID) { mark(d.on, &d.errors, id) }
func (d *dirtySet) balance(id AccountID)   { mark(d.on, &d.balances, id) }
