// Package benchdata generates the deterministic workloads that the
// scheduler's benchmarks and load tests run against.
//
// Every workload is a pure function of its seed: the same seed gives the same
// bots, requests, accounts and the same sequence of later requests and
// durations. The package draws only from math/rand/v2's PCG source, seeded
// from the seed, and never iterates a map into its output. The recorded
// benchmark figures use seed 1.
//
// Two workload shapes exist.
//
// Lab (see [Lab]) resembles a device lab. Every bot carries pool:lab,
// os:linux, cpu:x86-64 and arch:amd64, one of 50 models model:m00..model:m49
// drawn from a Zipf distribution with exponent 1.1 (m00 the most common), one
// of 20 boards board:b00..board:b19 drawn uniformly, and one of 50 images
// image:i00..image:i49 drawn from a Zipf distribution with exponent 1.1; the
// image is the label a request may ask to have provisioned. A request asks for
// pool:lab and the model of a uniformly chosen bot (so demand follows
// supply), and for 30 % of requests also that same bot's board; its
// provisionable label is one image, drawn from the same Zipf distribution
// independently of the bot.
//
// Random (see [Random]) is the reference profiler's shape: a corpus of 1,000
// labels l:0000..l:0999; every bot carries 50 distinct corpus labels chosen
// uniformly plus one image:iNN of 50 chosen uniformly, and every request asks
// for 5 distinct corpus labels chosen uniformly and has one image:iNN of 50,
// chosen uniformly, as its provisionable label. Random requests mostly match
// no bot; that is the point of the shape.
//
// In both shapes there are 20 accounts acct-00..acct-19, every request's
// account is uniform among them, and each account's charge rates per priority
// level are [U(0,100), U(0,200), U(0,200), 0, 0] worker-seconds per second
// with a window (max charge) of 600 s. Initial requests are enqueued at times
// uniform over the hour before [Workload.FirstPass]; the scheduler clock is
// started at [Workload.ClockStart], 300 s before the first pass, so accounts
// have had time to charge. Benchmarks run with preemption enabled; nothing in
// the workload depends on it.
//
// A workload also yields requests no bot can ever match
// ([Workload.UnmatchableTasks]), further requests of its own distribution for
// steady-state arrivals ([Workload.NewTasks]) and lognormal task durations
// with a median of 60 s ([Workload.Duration]). Each of these, the bots, the
// initial requests, their enqueue times and the accounts come from separate
// random streams derived from the seed, so that consuming one never perturbs
// another: for example Lab(s, b, n+k).Tasks[n:] and
// Lab(s, b, n).NewTasks(k, t) differ only in their enqueue times.
package benchdata

import (
	"math"
	"math/rand/v2"
	"strconv"
	"time"
)

// Account is a quota account of a workload.
type Account struct {
	ID               string
	ChargeRate       []float32 // 5 values
	MaxChargeSeconds float32
}

// Bot is a worker of a workload.
type Bot struct {
	ID     string
	Labels []string // sorted
}

// Task is a request of a workload.
type Task struct {
	ID                  string
	Account             string
	Enqueue             time.Time
	BaseLabels          []string // sorted
	ProvisionableLabels []string // sorted
}

// Workload is a generated set of accounts, bots and requests, together with
// the random streams that continue it.
type Workload struct {
	Seed       uint64
	FirstPass  time.Time // time of the first scheduling pass: fixed, e.g. 2026-01-01T00:00:00Z
	ClockStart time.Time // FirstPass - 300 s: when the scheduler clock starts
	Accounts   []Account
	Bots       []Bot
	Tasks      []Task

	kind kind

	// Per-bot indexes for Lab's "model (and board) of a uniformly random
	// bot", kept apart from Bots so that callers editing Bots cannot change
	// what NewTasks generates.
	botModel []uint8
	botBoard []uint8

	taskRNG     *rand.Rand // request labels and accounts (Tasks, NewTasks)
	taskPerm    []uint16   // Random: persistent permutation for distinct draws
	nextTask    int        // index of the next task-NNNNNN
	unmatchRNG  *rand.Rand // UnmatchableTasks, including its enqueue times
	nextUnmatch int        // index of the next unmatchable-NNNNNN
	durationRNG *rand.Rand // Duration
	enqueueRNG  *rand.Rand // enqueue times of the initial Tasks
}

type kind uint8

const (
	kindLab kind = iota + 1
	kindRandom
)

// Shape constants. They are normative: the recorded figures depend on them.
const (
	numAccounts     = 20
	numLevels       = 5
	maxChargeSecs   = 600
	clockLead       = 300 * time.Second
	enqueueSpread   = time.Hour
	numModels       = 50
	numBoards       = 20
	numImages       = 50
	numUnmatchable  = 50
	zipfExponent    = 1.1
	boardShare      = 0.3
	corpusSize      = 1000
	randomBotLabels = 50
	randomReqLabels = 5
	durationMedian  = 60 * time.Second
	durationSigma   = 1.0
)

// firstPass is the fixed time of the first scheduling pass.
var firstPass = time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC)

// Stream identifiers: the second PCG seed word of each stream.
const (
	streamAccounts uint64 = 0x6163636f756e7473 // "accounts"
	streamBots     uint64 = 0x626f747300000000 // "bots"
	streamTasks    uint64 = 0x7461736b73000000 // "tasks"
	streamEnqueue  uint64 = 0x656e717565756500 // "enqueue"
	streamUnmatch  uint64 = 0x756e6d6174636800 // "unmatch"
	streamDuration uint64 = 0x6475726174696f6e // "duration"
)

// Label names, built once.
var (
	modelLabels       = numbered("model:m", numModels, 2)
	boardLabels       = numbered("board:b", numBoards, 2)
	imageLabels       = numbered("image:i", numImages, 2)
	unmatchableModels = numbered("model:x", numUnmatchable, 2)
	corpusLabels      = numbered("l:", corpusSize, 4)
	accountNames      = numbered("acct-", numAccounts, 2)

	// zipf50 is the Zipf(s = 1.1) distribution over 50 items shared by
	// models, images and unmatchable models.
	zipf50 = newZipf(numModels, zipfExponent)
)

func numbered(prefix string, n, width int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = padded(prefix, i, width)
	}
	return out
}

// padded returns prefix followed by i in decimal, zero-padded to width.
func padded(prefix string, i, width int) string {
	var buf [32]byte
	digits := strconv.AppendInt(buf[:0], int64(i), 10)
	b := make([]byte, 0, len(prefix)+max(width, len(digits)))
	b = append(b, prefix...)
	for range width - len(digits) {
		b = append(b, '0')
	}
	b = append(b, digits...)
	return string(b)
}

// zipf samples k in [0, n) with probability proportional to 1/(k+1)^s by
// inverting its cumulative distribution.
type zipf struct {
	cdf []float64 // cdf[k] = P(X <= k); cdf[n-1] == 1
}

func newZipf(n int, s float64) zipf {
	cdf := make([]float64, n)
	var sum float64
	for k := range n {
		sum += math.Pow(float64(k+1), -s)
		cdf[k] = sum
	}
	for k := range cdf {
		cdf[k] /= sum
	}
	cdf[n-1] = 1
	return zipf{cdf: cdf}
}

func (z zipf) sample(r *rand.Rand) int {
	u := r.Float64() // [0, 1)
	// The first k with cdf[k] > u: item k owns [cdf[k-1], cdf[k]).
	lo, hi := 0, len(z.cdf)-1
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if z.cdf[mid] > u {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

func newStream(seed, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, stream))
}

// newWorkload fills in what Lab and Random share: times, accounts and
// streams.
func newWorkload(k kind, seed uint64, bots, tasks int) *Workload {
	if bots < 0 || tasks < 0 {
		panic("benchdata: negative count")
	}
	w := &Workload{
		Seed:        seed,
		FirstPass:   firstPass,
		ClockStart:  firstPass.Add(-clockLead),
		kind:        k,
		taskRNG:     newStream(seed, streamTasks),
		unmatchRNG:  newStream(seed, streamUnmatch),
		durationRNG: newStream(seed, streamDuration),
		enqueueRNG:  newStream(seed, streamEnqueue),
	}
	ar := newStream(seed, streamAccounts)
	rates := make([]float32, numAccounts*numLevels)
	w.Accounts = make([]Account, numAccounts)
	for i := range w.Accounts {
		r := rates[i*numLevels : (i+1)*numLevels : (i+1)*numLevels]
		r[0] = float32(ar.Float64() * 100)
		r[1] = float32(ar.Float64() * 200)
		r[2] = float32(ar.Float64() * 200)
		w.Accounts[i] = Account{ID: accountNames[i], ChargeRate: r, MaxChargeSeconds: maxChargeSecs}
	}
	return w
}

// enqueueTime draws a time uniform over [FirstPass - 1 h, FirstPass).
func (w *Workload) enqueueTime(r *rand.Rand) time.Time {
	return w.FirstPass.Add(-time.Duration(1 + r.Int64N(int64(enqueueSpread))))
}

// Lab returns the device-lab workload with the given number of bots and
// initial requests. It panics if tasks > 0 and bots == 0, since requests copy
// the labels of a bot.
func Lab(seed uint64, bots, tasks int) *Workload {
	if tasks > 0 && bots == 0 {
		panic("benchdata: Lab requests need at least one bot")
	}
	w := newWorkload(kindLab, seed, bots, tasks)
	br := newStream(seed, streamBots)
	w.botModel = make([]uint8, bots)
	w.botBoard = make([]uint8, bots)
	const perBot = 7
	labels := make([]string, bots*perBot)
	w.Bots = make([]Bot, bots)
	for i := range w.Bots {
		m := zipf50.sample(br)
		b := br.IntN(numBoards)
		img := zipf50.sample(br)
		w.botModel[i], w.botBoard[i] = uint8(m), uint8(b)
		l := labels[i*perBot : (i+1)*perBot : (i+1)*perBot]
		// Already in sorted order.
		l[0] = "arch:amd64"
		l[1] = boardLabels[b]
		l[2] = "cpu:x86-64"
		l[3] = imageLabels[img]
		l[4] = modelLabels[m]
		l[5] = "os:linux"
		l[6] = "pool:lab"
		w.Bots[i] = Bot{ID: padded("bot-", i, 5), Labels: l}
	}
	w.Tasks = w.genTasks(tasks, time.Time{}, true)
	return w
}

// Random returns the reference profiler's workload with the given number of
// bots and initial requests.
func Random(seed uint64, bots, tasks int) *Workload {
	w := newWorkload(kindRandom, seed, bots, tasks)
	br := newStream(seed, streamBots)
	perm := identityPerm()
	const perBot = randomBotLabels + 1
	labels := make([]string, bots*perBot)
	w.Bots = make([]Bot, bots)
	for i := range w.Bots {
		l := labels[i*perBot : (i+1)*perBot : (i+1)*perBot]
		// image:... sorts before l:..., and l:NNNN sorts numerically.
		l[0] = imageLabels[br.IntN(numImages)]
		fillDistinct(br, perm, l[1:])
		w.Bots[i] = Bot{ID: padded("bot-", i, 5), Labels: l}
	}
	w.taskPerm = identityPerm()
	w.Tasks = w.genTasks(tasks, time.Time{}, true)
	return w
}

func identityPerm() []uint16 {
	p := make([]uint16, corpusSize)
	for i := range p {
		p[i] = uint16(i)
	}
	return p
}

// fillDistinct fills dst with len(dst) distinct corpus labels, chosen
// uniformly, in sorted order. It runs a partial Fisher-Yates shuffle on perm,
// which may start as any permutation: the chosen set is uniform either way.
func fillDistinct(r *rand.Rand, perm []uint16, dst []string) {
	var idx [randomBotLabels]uint16
	n := len(dst)
	for j := range n {
		k := j + r.IntN(len(perm)-j)
		perm[j], perm[k] = perm[k], perm[j]
		// Insertion into the sorted prefix idx[:j].
		v := perm[j]
		p := j
		for p > 0 && idx[p-1] > v {
			idx[p] = idx[p-1]
			p--
		}
		idx[p] = v
	}
	for j := range n {
		dst[j] = corpusLabels[idx[j]]
	}
}

// genTasks draws n requests of the workload's distribution from taskRNG. If
// initial, enqueue times are drawn from enqueueRNG; otherwise every request
// gets enqueue.
func (w *Workload) genTasks(n int, enqueue time.Time, initial bool) []Task {
	if n < 0 {
		panic("benchdata: negative count")
	}
	if n > 0 && w.kind == kindLab && len(w.botModel) == 0 {
		panic("benchdata: Lab requests need at least one bot")
	}
	r := w.taskRNG
	var perTask int
	switch w.kind {
	case kindLab:
		perTask = 4 // up to 3 base + 1 provisionable
	case kindRandom:
		perTask = randomReqLabels + 1
	default:
		panic("benchdata: Workload not made by Lab or Random")
	}
	labels := make([]string, n*perTask)
	tasks := make([]Task, n)
	for i := range tasks {
		l := labels[i*perTask : (i+1)*perTask : (i+1)*perTask]
		t := &tasks[i]
		t.ID = padded("task-", w.nextTask, 6)
		w.nextTask++
		switch w.kind {
		case kindLab:
			bot := r.IntN(len(w.botModel))
			withBoard := r.Float64() < boardShare
			img := zipf50.sample(r)
			base := l[:0:3]
			if withBoard {
				base = append(base, boardLabels[w.botBoard[bot]])
			}
			base = append(base, modelLabels[w.botModel[bot]], "pool:lab")
			t.BaseLabels = base
			l[3] = imageLabels[img]
			t.ProvisionableLabels = l[3:4:4]
		case kindRandom:
			fillDistinct(r, w.taskPerm, l[:randomReqLabels])
			t.BaseLabels = l[:randomReqLabels:randomReqLabels]
			l[randomReqLabels] = imageLabels[r.IntN(numImages)]
			t.ProvisionableLabels = l[randomReqLabels:]
		}
		t.Account = accountNames[r.IntN(numAccounts)]
		if initial {
			t.Enqueue = w.enqueueTime(w.enqueueRNG)
		} else {
			t.Enqueue = enqueue
		}
	}
	return tasks
}

// NewTasks returns n more requests of the workload's distribution (Lab or
// Random, whichever made it), all enqueued at enqueue, with ids continuing
// the sequence of Tasks (task-100000 follows 100,000 initial requests).
// Successive calls continue one stream, so a sequence of calls is
// deterministic for the seed and independent of other methods' use.
func (w *Workload) NewTasks(n int, enqueue time.Time) []Task {
	return w.genTasks(n, enqueue, false)
}

// UnmatchableTasks returns n requests shaped like Lab's that no bot of either
// workload shape can match: their base labels are pool:lab and one of 50
// models no bot has (model:x00..model:x49, drawn from the Zipf(1.1)
// distribution Lab's models follow), never a board; their provisionable label
// is one image:iNN (Zipf 1.1), their account is uniform and their enqueue
// time is uniform over the hour before FirstPass. Ids are
// unmatchable-000000, ... and continue across calls, as does the random
// stream, which is separate from every other stream of the workload.
func (w *Workload) UnmatchableTasks(n int) []Task {
	if n < 0 {
		panic("benchdata: negative count")
	}
	r := w.unmatchRNG
	labels := make([]string, n*3)
	tasks := make([]Task, n)
	for i := range tasks {
		l := labels[i*3 : (i+1)*3 : (i+1)*3]
		l[0] = unmatchableModels[zipf50.sample(r)]
		l[1] = "pool:lab"
		l[2] = imageLabels[zipf50.sample(r)]
		tasks[i] = Task{
			ID:                  padded("unmatchable-", w.nextUnmatch, 6),
			Account:             accountNames[r.IntN(numAccounts)],
			Enqueue:             w.enqueueTime(r),
			BaseLabels:          l[0:2:2],
			ProvisionableLabels: l[2:3:3],
		}
		w.nextUnmatch++
	}
	return tasks
}

// Duration draws a task duration from a lognormal distribution with median
// 60 s and sigma 1.0 (of the underlying normal), from its own stream.
func (w *Workload) Duration() time.Duration {
	return time.Duration(float64(durationMedian) * math.Exp(durationSigma*w.durationRNG.NormFloat64()))
}
