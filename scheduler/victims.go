package scheduler

import (
	"math/bits"
	"slices"

	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler/internal/bitset"
)

// victimSet is the victims of one preemption step, indexed in victim order
// (cost, then worker id). Each base index touched holds a bitset of the
// victims its requests are eligible for (baseIndex.victimBits), and the
// eligibility scratch holds a row of victims per label of a provisionable
// set (trie.go), so that "the first victim not taken" is a word scan of
// victimBits &^ taken from a per-base-index cursor (firstFree), and "the
// first provision match not taken" ANDs the provisionable labels' dense
// rows into that scan, or looks only at the victims of the shortest
// sparse row, resuming where the last scan for the same base index and
// provisionable set stopped (provVariant.matchFrom; exact because victims
// are only taken).
//
// Victims are sorted once per step (sortVictims): victims share few
// distinct costs (tens among thousands in the heaviest steady passes), so the sort
// ranks the distinct costs (costRanks) and places the victims into
// cost-rank buckets in the order of their workers' ranks (rankWorkers): a
// counting sort without comparisons, O(V + W) for V victims among W ranked
// workers, plus O(D log D) to order the D distinct costs.
type victimSet struct {
	ws    []*worker // by victim index
	costs []Vector  // by victim index: the task's cost at the step
	taken []uint64  // bitset of the victims taken in the step
	words int       // bitset width
	epoch uint64    // of the step
}

// take marks victim i taken.
func (vs *victimSet) take(i int) { bitset.Add(vs.taken, i) }

// firstFree returns the first victim of bi not taken, advancing bi's
// cursor past fully taken words, or -1.
func (vs *victimSet) firstFree(bi *baseIndex) int {
	for j := bi.victimCur; j < vs.words; j++ {
		if x := bi.victimBits[j] &^ vs.taken[j]; x != 0 {
			bi.victimCur = j
			return j*64 + bits.TrailingZeros64(x)
		}
	}
	bi.victimCur = vs.words
	return -1
}

// firstProvMatch returns the first victim of bi, not taken, from index from
// on, that carries every label of prov, or -1.
func (vs *victimSet) firstProvMatch(s *Scheduler, pv *provVariant, from int) int {
	if pv.matchEpoch == vs.epoch && pv.matchFrom > from {
		from = pv.matchFrom
	}
	m := vs.scanProvMatch(s, pv.bi, pv.prov, from)
	pv.matchEpoch, pv.matchFrom = vs.epoch, m
	if m < 0 {
		pv.matchFrom = vs.words * 64
	}
	return m
}

// scanProvMatch is firstProvMatch without the remembered start. With only
// dense rows it scans words; when some label's row is sparse, the victims
// carrying every label of prov are among that row's, so it looks at those
// from from on, the shortest such row.
func (vs *victimSet) scanProvMatch(s *Scheduler, bi *baseIndex, prov *labelSet, from int) int {
	var buf [4][]uint64
	lbits := buf[:0]
	var few []int32
	sparse := false
	for _, l := range prov.ids {
		b, p, ok := s.elig.row(l)
		switch {
		case !ok:
			return -1 // no victim carries l
		case b != nil:
			lbits = append(lbits, b)
		case !sparse || len(p) < len(few):
			few, sparse = p, true
		}
	}
	if sparse {
		k, _ := slices.BinarySearch(few, int32(from))
		for _, i := range few[k:] {
			if bitset.Has(bi.victimBits, int(i)) && !bitset.Has(vs.taken, int(i)) && subsetOf(prov.ids, vs.ws[i].labelIDs) {
				return int(i)
			}
		}
		return -1
	}
	for j := from / 64; j < vs.words; j++ {
		x := bi.victimBits[j] &^ vs.taken[j]
		for _, b := range lbits {
			x &= b[j]
		}
		if j == from/64 {
			x &^= (1 << (from % 64)) - 1
		}
		if x != 0 {
			return j*64 + bits.TrailingZeros64(x)
		}
	}
	return -1
}

// findVictim returns the index of the victim the head request of class c
// (account a) takes at level l, or -1 and whether a limit refused an
// otherwise suitable victim. Victims are in cost order, so the first affordable one
// not taken is the cheapest and, without limits, the first provision match
// not taken is the cheapest provision match.
func (p *pass) findVictim(vs *victimSet, bi *baseIndex, c *class, a *account, l Priority) (int, bool) {
	first := vs.firstFree(bi)
	if first < 0 || !vs.costs[first].Less(a.balance) {
		return -1, false
	}
	if !a.limited() {
		if len(c.prov.ids) == 0 {
			return first, false
		}
		if m := vs.firstProvMatch(p.s, c.variant, first); m >= 0 && vs.costs[m].Less(a.balance) {
			return m, false
		}
		return first, false
	}
	fanOK := true
	if a.maxFanout > 0 {
		if g := a.fanout[c.fan]; g != nil && g.paid >= a.maxFanout {
			fanOK = false
		}
	}
	firstOK := -1
	refused := false
	for j := first / 64; j < vs.words; j++ {
		x := bi.victimBits[j] &^ vs.taken[j]
		for x != 0 {
			i := j*64 + bits.TrailingZeros64(x)
			x &= x - 1
			if !vs.costs[i].Less(a.balance) {
				return firstOK, refused && firstOK < 0
			}
			v := vs.ws[i]
			if !fanOK || !p.labelsAllow(a, v) {
				refused = true
				continue
			}
			if subsetOf(c.prov.ids, v.labelIDs) {
				return i, false
			}
			if firstOK < 0 {
				firstOK = i
			}
		}
	}
	return firstOK, refused && firstOK < 0
}

// victimKey is a victim with its cost.
type victimKey struct {
	w *worker
	c Vector
}

// sortVictims sorts sc.keys by (cost Less, worker id) through each
// victim's cost rank and worker rank, without comparisons. The workers must
// be ranked (rankWorkers), their ranks below nWorkers.
func (sc *preemptScratch) sortVictims(nWorkers int) {
	vs := sc.keys
	costRank := costRanks(&sc.costs, len(vs), func(i int) Vector { return vs[i].c }, false)
	// A counting sort: victims are placed in cost-rank buckets in the
	// order of their workers' ranks, which are distinct and below nWorkers.
	var nRanks int32
	for _, r := range costRank {
		nRanks = max(nRanks, r+1)
	}
	pos := slices.Grow(sc.pos[:0], int(nRanks))[:nRanks]
	clear(pos)
	for _, r := range costRank {
		pos[r]++
	}
	next := int32(0)
	for r, n := range pos {
		pos[r], next = next, next+n
	}
	byRank := slices.Grow(sc.byRank[:0], nWorkers)[:nWorkers]
	clear(byRank)
	for i := range vs {
		byRank[vs[i].w.rank] = int32(i + 1) // 0: no victim
	}
	sorted := slices.Grow(sc.sorted[:0], len(vs))[:len(vs)]
	for _, k := range byRank {
		if k != 0 {
			r := costRank[k-1]
			sorted[pos[r]] = vs[k-1]
			pos[r]++
		}
	}
	sc.byRank, sc.pos = byRank, pos
	sc.keys, sc.sorted = sorted, vs
}
