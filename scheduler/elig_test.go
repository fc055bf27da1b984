package scheduler

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestEligibilityAgainstBruteForce: on populations large enough for the
// bitsets to span many words and for the walk to take all its branches
// (bitset steps, per-worker walks, dense and sparse child rows), whatever
// the row layout, every worker's kept base sets are exactly the base sets
// in the trie its labels contain, and the rows kept for a preemption step
// list exactly the workers carrying each label of a provisionable set.
func TestEligibilityAgainstBruteForce(t *testing.T) {
	for _, mode := range []rowMode{rowsByDensity, rowsAllDense, rowsAllSparse} {
		for seed := range uint64(4) {
			t.Run(fmt.Sprintf("mode%d/seed%d", mode, seed), func(t *testing.T) {
				checkEligibilityBruteForce(t, mode, seed)
			})
		}
	}
}

func checkEligibilityBruteForce(t *testing.T, mode rowMode, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 0x656c6967))
	t0 := time.Unix(1000, 0)
	s, err := New(nil)
	must(t, err)
	s.elig.mode = mode
	const nWorkers = 3000
	// Keys with few values (common labels), one with many (rare labels),
	// and every worker's unique id.
	label := func() string {
		switch k := r.IntN(10); {
		case k < 6:
			return fmt.Sprintf("k%d:%d", k, r.IntN(3))
		case k < 9:
			return fmt.Sprintf("rare:%d", r.IntN(400))
		default:
			return fmt.Sprintf("id:w%04d", r.IntN(nWorkers))
		}
	}
	labelsOf := func(i int) []string {
		ls := []string{fmt.Sprintf("id:w%04d", i)}
		for range 2 + r.IntN(8) {
			ls = append(ls, label())
		}
		return ls
	}
	nReq := 0
	addRequests := func(n int) {
		for range n {
			nReq++
			var base, prov []string
			for range 1 + r.IntN(3) {
				base = append(base, label())
			}
			if r.IntN(2) == 0 {
				prov = append(prov, label())
			}
			task := Task{ID: RequestID(fmt.Sprintf("r%05d", nReq)), EnqueueTime: t0, BaseLabels: base, ProvisionableLabels: prov}
			must(t, s.AddRequest(task, t0, false))
		}
	}
	addRequests(300)
	for i := range nWorkers {
		must(t, s.MarkIdle(WorkerID(fmt.Sprintf("w%04d", i)), labelsOf(i), t0, false))
	}
	check := func(round int) {
		t.Helper()
		ws := slices.Clone(s.idle.Items)
		s.eligibleKeep(ws)
		defer s.elig.release()
		for _, w := range ws {
			if w.eligGen != s.trieGen() {
				t.Fatalf("round %d: worker %s not brought up to date", round, w.id)
			}
		}
		if err := s.checkKeptEligibility(); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		for l, name := range s.labels.names {
			if name == "" || s.labels.inProv[l] == 0 {
				continue
			}
			var want []int
			for i, w := range ws {
				if _, ok := slices.BinarySearch(w.labelIDs, labelID(l)); ok {
					want = append(want, i)
				}
			}
			dense, sparse, ok := s.elig.row(labelID(l))
			var got []int
			switch {
			case dense != nil:
				for i := range ws {
					if dense[i/64]&(1<<(i%64)) != 0 {
						got = append(got, i)
					}
				}
			default:
				for _, i := range sparse {
					got = append(got, int(i))
				}
			}
			if ok != (len(want) > 0) || !slices.Equal(got, want) {
				t.Fatalf("round %d: row of %s (ok %v) holds %v, want %v", round, name, ok, got, want)
			}
		}
	}
	check(0)
	// Change the trie (the log patches the kept results) and some
	// workers' labels (those are walked again), then check again.
	for round := 1; round <= 3; round++ {
		addRequests(40)
		for range 200 {
			i := r.IntN(nWorkers)
			must(t, s.MarkIdle(WorkerID(fmt.Sprintf("w%04d", i)), labelsOf(i), t0, false))
		}
		check(round)
	}
}

// rowWords is the memory the eligibility rows hold, in words: the dense
// rows' bitsets and the sparse rows' lists (two int32 a word), as
// allocated.
func (e *eligibility) rowWords() int { return cap(e.slab) + cap(e.post)/2 }

// TestIdleBotRowsGrowLinearly: n idle bots, each with a unique id:<bot>
// label, and requests no bot matches. The eligibility rows a pass builds
// (and keeps as scratch) grow linearly with n: the ids no request asks for
// get no row, and the ids requests do ask for get a list, not a bitset of
// n bits. A bitset per label, as before, made this n²/64 words; a row per
// asked-for id as a bitset would make it (requests) × n/64.
func TestIdleBotRowsGrowLinearly(t *testing.T) {
	t0 := time.Unix(1000, 0)
	words := func(n int) (idle, victims int) {
		s := newIdleBotsPool(t, t0)
		// n/8 requests asking for one bot each, with an OS it lacks, and
		// one whose provisionable label every bot has.
		for i := 0; i < n; i += 8 {
			task := Task{ID: RequestID("for-" + pad6(i)), EnqueueTime: t0, BaseLabels: []string{"id:bot-" + pad6(i), "os:Fuchsia"}}
			must(t, s.AddRequest(task, t0, false))
		}
		task := Task{ID: "prov", EnqueueTime: t0, BaseLabels: []string{"os:Fuchsia"}, ProvisionableLabels: []string{"python:3"}}
		must(t, s.AddRequest(task, t0, false))
		out, err := s.AssignTasks(t0, idleFleet(n))
		must(t, err)
		if len(out) != 0 {
			t.Fatalf("%d assignments, want none", len(out))
		}
		idle = s.elig.rowWords()
		// The rows a preemption step keeps over n victims, in fresh
		// memory.
		s.elig.slab, s.elig.post = nil, nil
		ws := slices.Clone(s.idle.Items)
		s.eligibleKeep(ws)
		victims = s.elig.rowWords()
		s.elig.release()
		return idle, victims
	}
	const n = 4000
	idle1, vict1 := words(n)
	idle4, vict4 := words(4 * n)
	t.Logf("row words: %d idle bots %d (victims %d), %d idle bots %d (victims %d)", n, idle1, vict1, 4*n, idle4, vict4)
	for _, c := range []struct {
		what   string
		n, got int
	}{{"idle", n, idle1}, {"idle", 4 * n, idle4}, {"victims", n, vict1}, {"victims", 4 * n, vict4}} {
		// Three dense rows (pool, os:Ubuntu, cpu:x86-64), n/8 one-worker
		// lists and a dense row of python:3 need about n/10 words; a
		// bitset per label, n²/64.
		if c.got > c.n/4 {
			t.Errorf("%s rows for %d bots take %d words, more than n/4", c.what, c.n, c.got)
		}
	}
	if idle4 > 5*idle1 || vict4 > 5*vict1 {
		t.Errorf("rows grow more than linearly: %d → %d words (victims %d → %d) for 4× the bots", idle1, idle4, vict1, vict4)
	}
}

// TestIdleExpiryWithLazyKeys: idle workers that poll only raise their
// confirmed time, their keys in the idle heap catching up at expiry; the
// workers forgotten are exactly those not confirmed within bot_expiration,
// whether few or many keys catch up (one by one, or by a rebuild), and the
// resulting state is the one of a copy whose keys are exact.
func TestIdleExpiryWithLazyKeys(t *testing.T) {
	for _, polled := range []int{10, 500} {
		t.Run(fmt.Sprint(polled), func(t *testing.T) {
			s, err := New(nil)
			must(t, err)
			t0 := time.Unix(1_000_000, 0)
			must(t, s.UpdateTime(t0))
			const n = 600
			var bots []IdleWorker
			for i := range n {
				bots = append(bots, IdleWorker{ID: WorkerID(fmt.Sprintf("w%03d", (i*7)%n)), Labels: []string{"pool:p"}})
			}
			_, err = s.AssignTasks(t0, bots)
			must(t, err)
			// polled of them poll again, at two later times.
			t1 := t0.Add(DefaultBotExpiration / 2)
			_, err = s.AssignTasks(t1, bots[:polled/2])
			must(t, err)
			t2 := t1.Add(time.Second)
			_, err = s.AssignTasks(t2, bots[polled/2:polled])
			must(t, err)
			must(t, s.checkIndexes())
			exact, err := FromProto(s.ToProto())
			must(t, err)
			t3 := t0.Add(DefaultBotExpiration + time.Second)
			must(t, s.UpdateTime(t3))
			must(t, exact.UpdateTime(t3))
			must(t, s.checkIndexes())
			if len(s.workers) != polled {
				t.Fatalf("%d workers left, want the %d that polled", len(s.workers), polled)
			}
			for _, b := range bots[:polled] {
				if s.workers[b.ID] == nil {
					t.Fatalf("worker %s polled at %v and was forgotten at %v", b.ID, t2, t3)
				}
			}
			got, want := s.ToProto(), exact.ToProto()
			if g, w := fmt.Sprint(got.Workers), fmt.Sprint(want.Workers); g != w {
				t.Fatalf("workers differ from a copy with exact keys:\n%s\n%s", g, w)
			}
			// Later expiry forgets the rest in (confirmed, id) order.
			must(t, s.UpdateTime(t2.Add(DefaultBotExpiration+time.Second)))
			must(t, s.checkIndexes())
			if len(s.workers) != 0 || s.idle.Len() != 0 {
				t.Fatalf("%d workers left after every one expired", len(s.workers))
			}
		})
	}
}
