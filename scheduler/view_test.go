package scheduler

import (
	gocmp "cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler/internal/idtable"
	"google.golang.org/protobuf/proto"
)

// byScan is what View and Callbacks read, recomputed from the entities
// alone: every waiting request, running task and idle worker with its key,
// each list sorted by (confirmed time, id).
type byScan struct {
	waiting, running, idle []scanEntry
}

type scanEntry struct {
	k viewKey
	r *request
	w *worker
}

func (s *Scheduler) scan() byScan {
	var b byScan
	s.requests.All(func(r *request) {
		if r.cls != nil {
			b.waiting = append(b.waiting, scanEntry{k: waitingKey(r), r: r})
		}
	})
	for _, w := range s.workers {
		if w.req == nil {
			b.idle = append(b.idle, scanEntry{k: idleKey(w), w: w})
		} else {
			b.running = append(b.running, scanEntry{k: newViewKey(w.latestConfirmed(), string(w.req.id)), r: w.req, w: w})
		}
	}
	for _, l := range [][]scanEntry{b.waiting, b.running, b.idle} {
		slices.SortFunc(l, func(x, y scanEntry) int { return cmpViewKey(x.k, y.k) })
	}
	return b
}

// checkViews: once settled, the orders by confirmed time hold exactly the entities, at
// their keys; View's counts equal counts over the entities; View's pages,
// whatever their size, list each order once through; Callbacks lists the
// oldest entries as a full sort selects them.
func (s *Scheduler) checkViews() error {
	s.SettleOrders()
	if !s.OrdersSettled() {
		return fmt.Errorf("entries stay marked after SettleOrders")
	}
	b := s.scan()
	type ordered struct {
		name string
		want []scanEntry
		got  func(f func(viewKey, any) bool)
	}
	for _, o := range []ordered{
		{"waiting", b.waiting, func(f func(viewKey, any) bool) {
			s.byConf.waiting.Ascend(func(k viewKey, r *request) bool { return f(k, r) })
		}},
		{"running", b.running, func(f func(viewKey, any) bool) {
			s.byConf.running.Ascend(func(k viewKey, w *worker) bool { return f(k, w) })
		}},
		{"idle", b.idle, func(f func(viewKey, any) bool) {
			s.byConf.idle.Ascend(func(k viewKey, w *worker) bool { return f(k, w) })
		}},
	} {
		i := 0
		var err error
		o.got(func(k viewKey, x any) bool {
			switch {
			case i >= len(o.want):
				err = fmt.Errorf("the %s order holds %v beyond the %d entries", o.name, k, len(o.want))
			case k != o.want[i].k:
				err = fmt.Errorf("the %s order holds %v at %d, want %v", o.name, k, i, o.want[i].k)
			case o.name == "waiting" && x != any(o.want[i].r), o.name != "waiting" && x != any(o.want[i].w):
				err = fmt.Errorf("the %s order files another entity under %v", o.name, k)
			}
			i++
			return err == nil
		})
		if err != nil {
			return err
		}
		if i != len(o.want) {
			return fmt.Errorf("the %s order holds %d entries, want %d", o.name, i, len(o.want))
		}
	}
	if n, m := s.byConf.waiting.Len(), s.byConf.running.Len(); n != len(b.waiting) || m != len(b.running) || s.byConf.idle.Len() != len(b.idle) {
		return fmt.Errorf("order lengths %d, %d, %d; want %d, %d, %d", n, m, s.byConf.idle.Len(), len(b.waiting), len(b.running), len(b.idle))
	}

	// Counts.
	v := s.View(0)
	var running, waiting [NumPaidLevels + 1]int
	for _, e := range b.running {
		running[e.w.level]++
	}
	for _, e := range b.waiting {
		waiting[e.r.acct.priority()]++
	}
	balances := map[AccountID]Vector{}
	for _, a := range s.accounts {
		if a.hasBalance {
			balances[a.id] = a.balance
		}
	}
	if v.NumWaiting != len(b.waiting) || v.NumRunning != len(b.running) || v.NumIdle != len(b.idle) ||
		v.RunningByLevel != running || v.WaitingByLevel != waiting {
		return fmt.Errorf("View counts %d waiting %v, %d running %v, %d idle; the entities give %d %v, %d %v, %d",
			v.NumWaiting, v.WaitingByLevel, v.NumRunning, v.RunningByLevel, v.NumIdle, len(b.waiting), waiting, len(b.running), running, len(b.idle))
	}
	if diff := cmp.Diff(balances, v.Balances); diff != "" {
		return fmt.Errorf("View balances differ from the accounts':\n%s", diff)
	}
	if len(v.Running)+len(v.Waiting)+len(v.Idle) != 0 || v.More != (len(b.waiting)+len(b.running)+len(b.idle) > 0) || v.Next != (ViewCursor{}) {
		return fmt.Errorf("View(0) lists %d, %d, %d entries, More %v", len(v.Running), len(v.Waiting), len(v.Idle), v.More)
	}

	// Pages.
	total := len(b.waiting) + len(b.running) + len(b.idle)
	for _, size := range []int{1, 2, 3, 1000} {
		if total/size > 5000 {
			continue // a large state: its pages of 1,000 suffice
		}
		var got byScan
		cur, pages := ViewCursor{}, 0
		for {
			p := s.ViewPage(cur, size)
			pages++
			if p.NumWaiting != v.NumWaiting || p.NumRunning != v.NumRunning || p.NumIdle != v.NumIdle {
				return fmt.Errorf("page %d of %d: other counts than the first", pages, size)
			}
			if len(p.Running) > size || len(p.Waiting) > size || len(p.Idle) > size {
				return fmt.Errorf("page %d of %d lists %d, %d, %d", pages, size, len(p.Running), len(p.Waiting), len(p.Idle))
			}
			for _, e := range p.Running {
				got.running = append(got.running, scanEntry{r: s.requests.Get(e.ID), w: s.workers[e.Worker]})
			}
			for _, e := range p.Waiting {
				got.waiting = append(got.waiting, scanEntry{r: s.requests.Get(e.ID)})
			}
			for _, e := range p.Idle {
				got.idle = append(got.idle, scanEntry{w: s.workers[e.ID]})
			}
			if !p.More {
				break
			}
			if pages > total+1 {
				return fmt.Errorf("pages of %d never end", size)
			}
			cur = p.Next
		}
		for _, l := range []struct {
			name      string
			got, want []scanEntry
		}{{"running", got.running, b.running}, {"waiting", got.waiting, b.waiting}, {"idle", got.idle, b.idle}} {
			if len(l.got) != len(l.want) {
				return fmt.Errorf("pages of %d list %d %s entries, want %d", size, len(l.got), l.name, len(l.want))
			}
			for i := range l.got {
				if l.got[i].r != l.want[i].r || l.got[i].w != l.want[i].w {
					return fmt.Errorf("pages of %d: %s entry %d differs from the full sort's", size, l.name, i)
				}
			}
		}
	}

	// Callbacks.
	var want []RequestID
	for _, part := range []struct {
		l    []scanEntry
		frac float64
	}{{b.waiting, 0.01}, {b.running, 0.05}} {
		if len(part.l) == 0 {
			continue
		}
		for _, e := range part.l[:max(1, int(math.Ceil(part.frac*float64(len(part.l)))))] {
			want = append(want, e.r.id)
		}
	}
	if got := s.Callbacks(); !slices.Equal(got, want) {
		return fmt.Errorf("Callbacks = %v, the full sort gives %v", got, want)
	}
	return nil
}

// viewPool builds a pool of n waiting requests, n/10 running tasks and n/5
// idle workers, confirmed at times with ties (ids decide), and an account.
// Idle workers never expire.
func viewPool(t testing.TB, n int) *Scheduler {
	s, err := New(&statev1.PoolConfig{BotExpirationNanos: proto.Int64(int64(1000 * time.Hour))})
	must(t, err)
	must(t, s.AddAccount("a", acctCfg(600, 1), nil))
	must(t, s.UpdateTime(at(0)))
	for i := range n {
		task := Task{ID: RequestID(fmt.Sprintf("r%06d", i)), Account: "a", EnqueueTime: at(0), BaseLabels: []string{"pool:x"}}
		must(t, s.AddRequest(task, at(float64(1+i/4)), false))
	}
	for i := range n / 10 {
		must(t, s.Notify(Notification{Kind: NotifyRunning, Time: at(float64(1 + n/4 + i/3)), Task: Task{ID: RequestID(fmt.Sprintf("r%06d", i*7))}, Worker: WorkerID(fmt.Sprintf("busy%05d", i))}, false))
	}
	for i := range n / 5 {
		must(t, s.MarkIdle(WorkerID(fmt.Sprintf("idle%05d", i)), []string{"pool:y"}, at(float64(1+i/2)), false))
	}
	s.DiscardEvents()
	must(t, s.checkViews())
	return s
}

// A walk through the pages of a pool of a few thousand entries, with
// entries arriving, leaving and re-confirmed between pages, lists in each
// list's order: every entry present throughout and never re-confirmed
// exactly once; every entry that arrives after the list's position exactly
// once; nothing that arrives before the position or leaves before its
// turn; an entry re-confirmed past the position once more.
func TestViewPagesWhileThePoolChanges(t *testing.T) {
	s := viewPool(t, 4000)
	rng := rand.New(rand.NewPCG(1, 2))
	clock := float64(2000)
	must(t, s.UpdateTime(at(clock)))

	type list struct {
		name   string
		last   viewKey // the key of the last entry listed
		listed map[string]int
		keyOf  func(id string) viewKey
	}
	lists := map[string]*list{
		"running": {name: "running", listed: map[string]int{}, keyOf: func(id string) viewKey {
			return runningKey(s.requests.Get(RequestID(id)).w)
		}},
		"waiting": {name: "waiting", listed: map[string]int{}, keyOf: func(id string) viewKey { return waitingKey(s.requests.Get(RequestID(id))) }},
		"idle":    {name: "idle", listed: map[string]int{}, keyOf: func(id string) viewKey { return idleKey(s.workers[WorkerID(id)]) }},
	}
	record := func(l *list, id string) {
		k := l.keyOf(id)
		if len(l.listed) > 0 {
			if cmpViewKey(l.last, k) >= 0 {
				t.Fatalf("%s: %v listed after %v", l.name, k, l.last)
			}
		}
		l.last = k
		l.listed[id]++
	}
	// What each list must show at the end: entries never touched once;
	// those that left before their turn or arrived before the position
	// never; those re-confirmed past the position twice.
	present := func() map[string]map[string]bool {
		b := s.scan()
		m := map[string]map[string]bool{"running": {}, "waiting": {}, "idle": {}}
		for _, e := range b.running {
			m["running"][string(e.r.id)] = true
		}
		for _, e := range b.waiting {
			m["waiting"][string(e.r.id)] = true
		}
		for _, e := range b.idle {
			m["idle"][string(e.w.id)] = true
		}
		return m
	}
	start := present()
	touched := map[string]bool{}
	wantOnce := map[string]map[string]bool{"running": {}, "waiting": {}, "idle": {}}
	never := map[string]map[string]bool{"running": {}, "waiting": {}, "idle": {}}
	wantTwice := map[string]bool{}
	seq := 0

	cur, pages := ViewCursor{}, 0
	for {
		v := s.ViewPage(cur, 97)
		pages++
		for _, e := range v.Running {
			record(lists["running"], string(e.ID))
		}
		for _, e := range v.Waiting {
			record(lists["waiting"], string(e.ID))
		}
		for _, e := range v.Idle {
			record(lists["idle"], string(e.ID))
		}
		if !v.More {
			break
		}
		cur = v.Next
		clock++
		// Changes before the waiting list's position reaches the times they
		// set (every original entry is confirmed before 2,000 s, every
		// change after it, each later than the one before).
		pos := lists["waiting"].last
		inOriginals := pos.t < ns(2000)
		b := s.scan()
		var notListed []string
		for _, e := range b.waiting {
			if id := string(e.r.id); !touched[id] && cmpViewKey(e.k, pos) > 0 {
				notListed = append(notListed, id)
			}
		}
		if len(notListed) > 2 {
			// A waiting request not yet listed leaves (absent).
			id := notListed[rng.IntN(len(notListed))]
			touched[id] = true
			never["waiting"][id] = true
			must(t, s.Notify(Notification{Kind: NotifyAbsent, Time: at(clock), Task: Task{ID: RequestID(id)}}, false))
			// Another one is re-confirmed: it moves later, past the
			// position, and is still listed once.
			for _, id := range notListed {
				if !touched[id] && inOriginals {
					touched[id] = true
					wantOnce["waiting"][id] = true
					must(t, s.Notify(Notification{Kind: NotifyWaiting, Time: at(clock + 0.1), Task: Task{ID: RequestID(id), Account: "a", EnqueueTime: at(0)}}, false))
					break
				}
			}
		}
		// One already listed is re-confirmed: it moves past the position
		// and is listed again.
		if pages%5 == 0 && inOriginals {
			for _, e := range b.waiting {
				if id := string(e.r.id); lists["waiting"].listed[id] > 0 && !touched[id] {
					touched[id] = true
					wantTwice[id] = true
					must(t, s.Notify(Notification{Kind: NotifyWaiting, Time: at(clock + 0.2), Task: Task{ID: RequestID(id), Account: "a", EnqueueTime: at(0)}}, false))
					break
				}
			}
		}
		// Arrivals: after every position (listed once), and before the
		// waiting list's position (never listed).
		seq++
		late := fmt.Sprintf("late%04d", seq)
		touched[late] = true
		must(t, s.Notify(Notification{Kind: NotifyWaiting, Time: at(clock + 0.3), Task: Task{ID: RequestID(late), Account: "a", EnqueueTime: at(0)}}, false))
		wantOnce["waiting"][late] = true
		early := fmt.Sprintf("early%04d", seq)
		touched[early] = true
		must(t, s.AddRequest(Task{ID: RequestID(early), Account: "a", EnqueueTime: at(0)}, Time(pos.t), false))
		if cmpViewKey(waitingKey(s.requests.Get(RequestID(early))), pos) >= 0 {
			t.Fatalf("%s arrived at %v, not before the position %v", early, waitingKey(s.requests.Get(RequestID(early))), pos)
		}
		never["waiting"][early] = true
		bot := fmt.Sprintf("newbot%04d", seq)
		touched[bot] = true
		must(t, s.MarkIdle(WorkerID(bot), nil, at(clock+0.3), false))
		wantOnce["idle"][bot] = true
		// An idle worker not yet listed starts a waiting request not yet
		// listed: both leave their lists; the task arrives in the running
		// list after its position (confirmed now), listed once.
		var idleNotListed []string
		for _, e := range b.idle {
			if id := string(e.w.id); !touched[id] && cmpViewKey(e.k, lists["idle"].last) > 0 {
				idleNotListed = append(idleNotListed, id)
			}
		}
		for _, id := range notListed {
			if touched[id] || len(idleNotListed) == 0 {
				continue
			}
			w := idleNotListed[0]
			touched[id], touched[w] = true, true
			never["waiting"][id], never["idle"][w] = true, true
			wantOnce["running"][id] = true
			must(t, s.Notify(Notification{Kind: NotifyRunning, Time: at(clock + 0.4), Task: Task{ID: RequestID(id)}, Worker: WorkerID(w)}, false))
			break
		}
		s.DiscardEvents()
		if pages > 1000 {
			t.Fatal("the walk does not end")
		}
	}
	if pages < 20 {
		t.Fatalf("%d pages; the test means to walk a pool in many", pages)
	}
	for name, ids := range start {
		for id := range ids {
			if !touched[id] {
				wantOnce[name][id] = true
			}
		}
	}
	for name, l := range lists {
		for id := range wantOnce[name] {
			if l.listed[id] != 1 {
				t.Errorf("%s %s listed %d times, want once", name, id, l.listed[id])
			}
		}
		for id := range never[name] {
			if l.listed[id] != 0 {
				t.Errorf("%s %s listed %d times, want never", name, id, l.listed[id])
			}
		}
		for id, n := range l.listed {
			if !wantOnce[name][id] && !never[name][id] && !(name == "waiting" && wantTwice[id]) {
				t.Errorf("%s %s listed %d times, unexpected", name, id, n)
			}
		}
	}
	for id := range wantTwice {
		if n := lists["waiting"].listed[id]; n != 2 {
			t.Errorf("waiting %s re-confirmed past the position listed %d times, want twice", id, n)
		}
	}
	if len(never["waiting"]) == 0 || len(wantTwice) == 0 || len(wantOnce["running"]) == 0 {
		t.Fatal("the walk made none of some kind of change")
	}
	must(t, s.checkViews())
}

// A page and Callbacks read the orders by confirmed time and nothing else:
// on a copy of a pool whose request table and workers are emptied they
// answer the same, and they compare O(log n) keys. A page that scanned the
// requests or workers would list nothing on the copy; one that scanned an
// order to find its start would compare thousands of keys.
func TestViewAndCallbacksReadOnlyTheOrders(t *testing.T) {
	s := viewPool(t, 20000)
	from := s.View(1000).Next // inside each list
	wantPage, wantCallbacks := s.ViewPage(from, 100), s.Callbacks()
	if len(wantPage.Waiting) != 100 || len(wantPage.Running) != 100 || len(wantPage.Idle) != 100 || len(wantCallbacks) != 180+100 {
		t.Fatalf("the page lists %d, %d, %d and Callbacks %d; the test needs full ones", len(wantPage.Waiting), len(wantPage.Running), len(wantPage.Idle), len(wantCallbacks))
	}

	c := *s
	c.requests = idtable.New(func(r *request) RequestID { return r.id })
	c.workers = nil
	var compared int
	counting := func(a, b viewKey) int { compared++; return cmpViewKey(a, b) }
	c.byConf.waiting.Cmp, c.byConf.running.Cmp, c.byConf.idle.Cmp = counting, counting, counting
	if diff := cmp.Diff(wantPage, c.ViewPage(from, 100)); diff != "" {
		t.Errorf("a page of a pool without its request table and workers differs:\n%s", diff)
	}
	// Three lists of 18,000, 2,000 and 4,000 entries: at most 4 levels of
	// nodes of at most 31 keys, a binary search of at most 5 comparisons
	// in each.
	if compared > 3*4*5 {
		t.Errorf("a page compared %d keys, want O(log n)", compared)
	}
	compared = 0
	if diff := cmp.Diff(wantCallbacks, c.Callbacks()); diff != "" {
		t.Errorf("Callbacks of a pool without its request table and workers differ:\n%s", diff)
	}
	if compared != 0 {
		t.Errorf("Callbacks compared %d keys; reading the oldest entries needs none", compared)
	}
}

// The first page is what View answered before pages: the oldest entries of
// each list by a full sort. checkViews compares every page with the full
// sort on small random states; this is the same on a larger pool.
func TestViewFirstPageIsTheOldest(t *testing.T) {
	s := viewPool(t, 3000)
	b := s.scan()
	v := s.View(50)
	for i, e := range v.Waiting {
		if e.ID != b.waiting[i].r.id || e.Age != time.Duration(s.now-b.waiting[i].k.t) {
			t.Fatalf("waiting %d: %v, want %s", i, e, b.waiting[i].r.id)
		}
	}
	for i, e := range v.Running {
		if e.ID != b.running[i].r.id || e.Worker != b.running[i].w.id {
			t.Fatalf("running %d: %v, want %s", i, e, b.running[i].r.id)
		}
	}
	for i, e := range v.Idle {
		if e.ID != b.idle[i].w.id {
			t.Fatalf("idle %d: %v, want %s", i, e, b.idle[i].w.id)
		}
	}
	if len(v.Waiting) != 50 || len(v.Running) != 50 || len(v.Idle) != 50 || !v.More {
		t.Fatalf("the first page lists %d, %d, %d, More %v", len(v.Waiting), len(v.Running), len(v.Idle), v.More)
	}
}

// TestViewKeyOrder: viewKeys order by time, then by id bytewise, whatever
// the ids' lengths and bytes (zero bytes, shared prefixes of 16 bytes and
// more, prefixes of one another).
func TestViewKeyOrder(t *testing.T) {
	ids := []string{"", "\x00", "\x00\x00", "a", "a\x00", "a\x00\x00b", "ab", "b",
		"task-0000000001", "task-0000000001\x00", "task-00000000010", "task-00000000011",
		"task-000000000100", "task-000000000101", "swarm-bot-0001-abcdef", "swarm-bot-0001-abcdeg",
		"\xff", "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x00"}
	for _, ta := range []int64{-1, 0, 1} {
		for _, tb := range []int64{-1, 0, 1} {
			for _, a := range ids {
				for _, b := range ids {
					want := gocmp.Compare(ta, tb)
					if want == 0 {
						want = strings.Compare(a, b)
					}
					if got := cmpViewKey(newViewKey(ta, a), newViewKey(tb, b)); got != want {
						t.Errorf("cmpViewKey((%d, %q), (%d, %q)) = %d, want %d", ta, a, tb, b, got, want)
					}
				}
			}
		}
	}
}

// TestSettleTakesOutBeforeFilingIn: a task reported running on a second bot
// at the time it was last confirmed on the first takes the key the first
// bot's entry held. Settling must take the first entry out before filing
// the second, whichever of the two bots was marked first; the other way
// round the running order would lose the task.
func TestSettleTakesOutBeforeFilingIn(t *testing.T) {
	s, err := New(nil)
	must(t, err)
	t0, t1 := time.Unix(1000, 0), time.Unix(1001, 0)
	must(t, s.AddRequest(Task{ID: "X", EnqueueTime: t0}, t0, false))
	must(t, s.MarkIdle("w1", nil, t0, false))
	must(t, s.MarkIdle("w2", nil, t0, false))
	as, err := s.AssignTasks(t0, []IdleWorker{{ID: "w1"}})
	must(t, err)
	if len(as) != 1 || as[0].Worker != "w1" {
		t.Fatalf("assignments %v, want X on w1", as)
	}
	must(t, s.Notify(Notification{Kind: NotifyRunning, Time: t1, Task: Task{ID: "X"}, Worker: "w1"}, false))
	s.SettleOrders() // X at (t1, X) in the running order, on w1

	must(t, s.MarkIdle("w2", nil, t1, false)) // marks w2 first
	must(t, s.Notify(Notification{Kind: NotifyRunning, Time: t1, Task: Task{ID: "X"}, Worker: "w2"}, false))
	if s.OrdersSettled() {
		t.Fatal("nothing marked: the test no longer sets up the collision")
	}
	must(t, s.checkIndexes())
	v := s.View(10)
	if len(v.Running) != 1 || v.Running[0].Worker != "w2" || v.NumRunning != 1 {
		t.Fatalf("running %+v (%d), want X on w2", v.Running, v.NumRunning)
	}
}
