package benchdata

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// harmonic returns H(n, s) = sum_{k=1..n} k^-s.
func harmonic(n int, s float64) float64 {
	var h float64
	for k := 1; k <= n; k++ {
		h += math.Pow(float64(k), -s)
	}
	return h
}

func TestDeterminism(t *testing.T) {
	at := firstPass.Add(time.Minute)
	for _, c := range []struct {
		name string
		gen  func(seed uint64, bots, tasks int) *Workload
	}{{"Lab", Lab}, {"Random", Random}} {
		t.Run(c.name, func(t *testing.T) {
			a, b := c.gen(1, 300, 3000), c.gen(1, 300, 3000)
			if !reflect.DeepEqual(a, b) {
				t.Fatal("same seed, different workloads")
			}
			for i, n := range []int{1, 100, 0, 37} {
				if x, y := a.NewTasks(n, at), b.NewTasks(n, at); !reflect.DeepEqual(x, y) {
					t.Fatalf("NewTasks call %d differs", i)
				}
				if x, y := a.UnmatchableTasks(n), b.UnmatchableTasks(n); !reflect.DeepEqual(x, y) {
					t.Fatalf("UnmatchableTasks call %d differs", i)
				}
				for range n {
					if x, y := a.Duration(), b.Duration(); x != y {
						t.Fatalf("Duration differs: %v, %v", x, y)
					}
				}
			}
			if !reflect.DeepEqual(a, b) {
				t.Fatal("same calls, different generator states")
			}

			d := c.gen(2, 300, 3000)
			if reflect.DeepEqual(a.Bots, d.Bots) {
				t.Error("seeds 1 and 2 give the same bots")
			}
			if reflect.DeepEqual(a.Tasks, d.Tasks) {
				t.Error("seeds 1 and 2 give the same tasks")
			}
			if reflect.DeepEqual(a.Accounts, d.Accounts) {
				t.Error("seeds 1 and 2 give the same accounts")
			}
			if reflect.DeepEqual(a.NewTasks(50, at), d.NewTasks(50, at)) {
				t.Error("seeds 1 and 2 give the same NewTasks")
			}
			if reflect.DeepEqual(a.UnmatchableTasks(50), d.UnmatchableTasks(50)) {
				t.Error("seeds 1 and 2 give the same UnmatchableTasks")
			}
		})
	}
}

// Streams are independent: consuming the other streams does not change what
// NewTasks returns, and NewTasks continues the initial requests' stream.
func TestNewTasksContinues(t *testing.T) {
	at := firstPass.Add(time.Minute)
	for _, c := range []struct {
		name string
		gen  func(seed uint64, bots, tasks int) *Workload
	}{{"Lab", Lab}, {"Random", Random}} {
		t.Run(c.name, func(t *testing.T) {
			long := c.gen(7, 100, 1500).Tasks[1000:]
			w := c.gen(7, 100, 1000)
			w.UnmatchableTasks(10)
			w.Duration()
			got := append(w.NewTasks(200, at), w.NewTasks(300, at)...)
			for i := range got {
				if got[i].Enqueue != at {
					t.Fatalf("task %d enqueued at %v, want %v", i, got[i].Enqueue, at)
				}
				want := long[i]
				want.Enqueue = at
				if !reflect.DeepEqual(got[i], want) {
					t.Fatalf("NewTasks()[%d] = %+v, want %+v", i, got[i], want)
				}
			}
			if got[0].ID != "task-001000" {
				t.Errorf("first new id %q, want task-001000", got[0].ID)
			}
		})
	}
}

func checkEnqueue(t *testing.T, w *Workload, tasks []Task) {
	t.Helper()
	lo := w.FirstPass.Add(-time.Hour)
	var early, late int
	for _, tk := range tasks {
		if tk.Enqueue.Before(lo) || !tk.Enqueue.Before(w.FirstPass) {
			t.Fatalf("%s enqueued at %v, outside [%v, %v)", tk.ID, tk.Enqueue, lo, w.FirstPass)
		}
		if tk.Enqueue.Before(lo.Add(30 * time.Minute)) {
			early++
		} else {
			late++
		}
	}
	if n := len(tasks); n >= 1000 && math.Abs(float64(early)/float64(n)-0.5) > 0.05 {
		t.Errorf("%d of %d enqueued in the first half hour: not uniform", early, n)
	}
}

func checkAccountsAndClock(t *testing.T, w *Workload) {
	t.Helper()
	if want := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC); !w.FirstPass.Equal(want) {
		t.Errorf("FirstPass %v, want %v", w.FirstPass, want)
	}
	if d := w.FirstPass.Sub(w.ClockStart); d != 300*time.Second {
		t.Errorf("ClockStart is %v before FirstPass, want 300s", d)
	}
	if len(w.Accounts) != 20 {
		t.Fatalf("%d accounts, want 20", len(w.Accounts))
	}
	for i, a := range w.Accounts {
		if want := fmt.Sprintf("acct-%02d", i); a.ID != want {
			t.Errorf("account %d is %q, want %q", i, a.ID, want)
		}
		if a.MaxChargeSeconds != 600 {
			t.Errorf("%s: MaxChargeSeconds %v, want 600", a.ID, a.MaxChargeSeconds)
		}
		r := a.ChargeRate
		if len(r) != 5 {
			t.Fatalf("%s: %d rates, want 5", a.ID, len(r))
		}
		if r[0] < 0 || r[0] >= 100 || r[1] < 0 || r[1] >= 200 || r[2] < 0 || r[2] >= 200 || r[3] != 0 || r[4] != 0 {
			t.Errorf("%s: rates %v out of bounds", a.ID, r)
		}
	}
}

func checkTaskBasics(t *testing.T, tasks []Task, idPrefix string, firstID int) {
	t.Helper()
	for i, tk := range tasks {
		if want := fmt.Sprintf("%s%06d", idPrefix, firstID+i); tk.ID != want {
			t.Fatalf("task %d has id %q, want %q", i, tk.ID, want)
		}
		if !strings.HasPrefix(tk.Account, "acct-") || len(tk.Account) != 7 || tk.Account > "acct-19" {
			t.Fatalf("%s: account %q", tk.ID, tk.Account)
		}
		if !slices.IsSorted(tk.BaseLabels) || !slices.IsSorted(tk.ProvisionableLabels) {
			t.Fatalf("%s: labels not sorted: %v %v", tk.ID, tk.BaseLabels, tk.ProvisionableLabels)
		}
		if len(tk.ProvisionableLabels) != 1 || !isNumbered(tk.ProvisionableLabels[0], "image:i", 2, 50) {
			t.Fatalf("%s: provisionable labels %v", tk.ID, tk.ProvisionableLabels)
		}
	}
}

// isNumbered reports whether l is prefix followed by a width-digit number
// below n.
func isNumbered(l, prefix string, width, n int) bool {
	s, ok := strings.CutPrefix(l, prefix)
	if !ok || len(s) != width {
		return false
	}
	var k int
	if _, err := fmt.Sscanf(s, "%d", &k); err != nil {
		return false
	}
	return k >= 0 && k < n && fmt.Sprintf("%0*d", width, k) == s
}

func labelWith(labels []string, prefix string) (string, int) {
	var found string
	n := 0
	for _, l := range labels {
		if strings.HasPrefix(l, prefix) {
			found = l
			n++
		}
	}
	return found, n
}

func TestLabShape(t *testing.T) {
	const bots, tasks = 5000, 10000
	w := Lab(1, bots, tasks)
	checkAccountsAndClock(t, w)
	if len(w.Bots) != bots || len(w.Tasks) != tasks {
		t.Fatalf("%d bots, %d tasks", len(w.Bots), len(w.Tasks))
	}

	zipfShare := 1 / harmonic(50, 1.1)
	checkZipf := func(what string, counts map[string]int, first string, total int) {
		t.Helper()
		for l, n := range counts {
			if n > counts[first] {
				t.Errorf("%s: %s (%d) more frequent than %s (%d)", what, l, n, first, counts[first])
			}
		}
		if share := float64(counts[first]) / float64(total); math.Abs(share-zipfShare) > 0.03 {
			t.Errorf("%s: %s share %.4f, want %.4f ± 0.03", what, first, share, zipfShare)
		}
	}

	fixed := []string{"arch:amd64", "cpu:x86-64", "os:linux", "pool:lab"}
	models := map[string]int{}
	images := map[string]int{}
	boards := map[string]int{}
	modelBoard := map[[2]string]bool{}
	for i, b := range w.Bots {
		if want := fmt.Sprintf("bot-%05d", i); b.ID != want {
			t.Fatalf("bot %d has id %q, want %q", i, b.ID, want)
		}
		if len(b.Labels) != 7 || !slices.IsSorted(b.Labels) {
			t.Fatalf("%s: labels %v", b.ID, b.Labels)
		}
		for _, f := range fixed {
			if !slices.Contains(b.Labels, f) {
				t.Fatalf("%s: no %s in %v", b.ID, f, b.Labels)
			}
		}
		m, nm := labelWith(b.Labels, "model:")
		bd, nb := labelWith(b.Labels, "board:")
		img, ni := labelWith(b.Labels, "image:")
		if nm != 1 || nb != 1 || ni != 1 ||
			!isNumbered(m, "model:m", 2, 50) || !isNumbered(bd, "board:b", 2, 20) || !isNumbered(img, "image:i", 2, 50) {
			t.Fatalf("%s: labels %v", b.ID, b.Labels)
		}
		models[m]++
		boards[bd]++
		images[img]++
		modelBoard[[2]string{m, bd}] = true
	}
	checkZipf("bot models", models, "model:m00", bots)
	checkZipf("bot images", images, "image:i00", bots)
	for k := range 20 {
		// Uniform: expected 250 per board, sd ~15.4.
		if n := boards[fmt.Sprintf("board:b%02d", k)]; n < 170 || n > 330 {
			t.Errorf("board b%02d on %d bots, want about 250", k, n)
		}
	}

	checkTaskBasics(t, w.Tasks, "task-", 0)
	checkEnqueue(t, w, w.Tasks)
	taskModels := map[string]int{}
	taskImages := map[string]int{}
	accounts := map[string]int{}
	withBoard := 0
	for _, tk := range w.Tasks {
		bl := tk.BaseLabels
		m, nm := labelWith(bl, "model:")
		bd, nb := labelWith(bl, "board:")
		if nm != 1 || nb > 1 || !slices.Contains(bl, "pool:lab") || len(bl) != 2+nb {
			t.Fatalf("%s: base labels %v", tk.ID, bl)
		}
		if models[m] == 0 {
			t.Fatalf("%s: model %s carried by no bot", tk.ID, m)
		}
		if nb == 1 {
			withBoard++
			if !modelBoard[[2]string{m, bd}] {
				t.Fatalf("%s: no bot has both %s and %s", tk.ID, m, bd)
			}
		}
		taskModels[m]++
		taskImages[tk.ProvisionableLabels[0]]++
		accounts[tk.Account]++
	}
	if share := float64(withBoard) / tasks; math.Abs(share-0.3) > 0.03 {
		t.Errorf("board share %.4f, want 0.30 ± 0.03", share)
	}
	checkZipf("task models", taskModels, "model:m00", tasks)
	checkZipf("task images", taskImages, "image:i00", tasks)
	if len(accounts) != 20 {
		t.Errorf("%d accounts used, want 20", len(accounts))
	}
	for a, n := range accounts {
		// Uniform: expected 500 per account, sd ~21.8.
		if n < 390 || n > 610 {
			t.Errorf("%s has %d tasks, want about 500", a, n)
		}
	}
}

func TestRandomShape(t *testing.T) {
	const bots, tasks = 1000, 5000
	w := Random(1, bots, tasks)
	checkAccountsAndClock(t, w)
	if len(w.Bots) != bots || len(w.Tasks) != tasks {
		t.Fatalf("%d bots, %d tasks", len(w.Bots), len(w.Tasks))
	}
	corpus := map[string]int{}
	for i, b := range w.Bots {
		if want := fmt.Sprintf("bot-%05d", i); b.ID != want {
			t.Fatalf("bot %d has id %q, want %q", i, b.ID, want)
		}
		if len(b.Labels) != 51 || !slices.IsSorted(b.Labels) || len(slices.Compact(slices.Clone(b.Labels))) != 51 {
			t.Fatalf("%s: labels %v not 51 distinct sorted", b.ID, b.Labels)
		}
		if !isNumbered(b.Labels[0], "image:i", 2, 50) {
			t.Fatalf("%s: labels %v", b.ID, b.Labels)
		}
		for _, l := range b.Labels[1:] {
			if !isNumbered(l, "l:", 4, 1000) {
				t.Fatalf("%s: label %q not in the corpus", b.ID, l)
			}
			corpus[l]++
		}
	}
	// 50,000 draws over 1,000 labels: every label is used, about 50 times.
	if len(corpus) != 1000 {
		t.Errorf("bots use %d corpus labels, want 1000", len(corpus))
	}
	checkTaskBasics(t, w.Tasks, "task-", 0)
	checkEnqueue(t, w, w.Tasks)
	checkRandomTasks(t, w.Tasks)
	checkRandomTasks(t, w.NewTasks(500, w.FirstPass))
}

func checkRandomTasks(t *testing.T, tasks []Task) {
	t.Helper()
	for _, tk := range tasks {
		bl := tk.BaseLabels
		if len(bl) != 5 || len(slices.Compact(slices.Clone(bl))) != 5 {
			t.Fatalf("%s: base labels %v not 5 distinct", tk.ID, bl)
		}
		for _, l := range bl {
			if !isNumbered(l, "l:", 4, 1000) {
				t.Fatalf("%s: label %q not in the corpus", tk.ID, l)
			}
		}
	}
}

func TestLabNewTasksShape(t *testing.T) {
	w := Lab(3, 200, 1000)
	at := w.FirstPass.Add(time.Hour)
	nt := w.NewTasks(2000, at)
	checkTaskBasics(t, nt, "task-", 1000)
	models := map[string]bool{}
	for _, b := range w.Bots {
		m, _ := labelWith(b.Labels, "model:")
		models[m] = true
	}
	for _, tk := range nt {
		if m, _ := labelWith(tk.BaseLabels, "model:"); !models[m] {
			t.Fatalf("%s: model %s carried by no bot", tk.ID, m)
		}
		if tk.Enqueue != at {
			t.Fatalf("%s enqueued at %v, want %v", tk.ID, tk.Enqueue, at)
		}
	}
	if got := w.NewTasks(1, at)[0].ID; got != "task-003000" {
		t.Errorf("id after 3000 tasks %q, want task-003000", got)
	}
}

func TestUnmatchable(t *testing.T) {
	for _, w := range []*Workload{Lab(1, 2000, 0), Random(1, 500, 0)} {
		carried := map[string]bool{}
		for _, b := range w.Bots {
			for _, l := range b.Labels {
				carried[l] = true
			}
		}
		first := w.UnmatchableTasks(3000)
		rest := w.UnmatchableTasks(10)
		checkTaskBasics(t, first, "unmatchable-", 0)
		checkTaskBasics(t, rest, "unmatchable-", 3000)
		checkEnqueue(t, w, first)
		models := map[string]int{}
		for _, tk := range slices.Concat(first, rest) {
			bl := tk.BaseLabels
			m, nm := labelWith(bl, "model:")
			if _, nb := labelWith(bl, "board:"); nb != 0 || nm != 1 || len(bl) != 2 || bl[1] != "pool:lab" {
				t.Fatalf("%s: base labels %v", tk.ID, bl)
			}
			if !isNumbered(m, "model:x", 2, 50) || carried[m] {
				t.Fatalf("%s: model %s is carried by a bot or malformed", tk.ID, m)
			}
			models[m]++
		}
		if len(models) < 40 {
			t.Errorf("only %d unmatchable models used", len(models))
		}
	}
	// Deterministic given the seed, whatever else was generated.
	a := Lab(5, 10, 10).UnmatchableTasks(100)
	b := Lab(5, 300, 2000).UnmatchableTasks(100)
	if !reflect.DeepEqual(a, b) {
		t.Error("UnmatchableTasks depends on more than the seed")
	}
}

func TestDuration(t *testing.T) {
	w := Lab(1, 1, 0)
	const n = 20001
	ds := make([]time.Duration, n)
	var sumLog, sumLog2 float64
	for i := range ds {
		d := w.Duration()
		if d <= 0 {
			t.Fatalf("duration %v", d)
		}
		ds[i] = d
		l := math.Log(d.Seconds() / 60)
		sumLog += l
		sumLog2 += l * l
	}
	slices.Sort(ds)
	if med := ds[n/2]; med < 57*time.Second || med > 63*time.Second {
		t.Errorf("median %v, want about 60s", med)
	}
	mean := sumLog / n
	sd := math.Sqrt(sumLog2/n - mean*mean)
	if math.Abs(mean) > 0.05 || math.Abs(sd-1) > 0.05 {
		t.Errorf("log(d/60s) has mean %.3f and sd %.3f, want 0 and 1", mean, sd)
	}
}

// The sampler gives k probability 1/(k+1)^s / H(n, s).
func TestZipfSampler(t *testing.T) {
	z := newZipf(50, 1.1)
	h := harmonic(50, 1.1)
	r := rand.New(rand.NewPCG(1, 2))
	const n = 400000
	counts := make([]int, 50)
	for range n {
		counts[z.sample(r)]++
	}
	for k, c := range counts {
		p := math.Pow(float64(k+1), -1.1) / h
		sd := math.Sqrt(n * p * (1 - p))
		if math.Abs(float64(c)-n*p) > 5*sd {
			t.Errorf("k=%d: %d samples, want %.0f ± %.0f", k, c, n*p, 5*sd)
		}
	}
	if !slices.IsSorted(z.cdf) || z.cdf[49] != 1 {
		t.Errorf("cdf not increasing to exactly 1: %v", z.cdf)
	}
}

// The full-size workload of the recorded figures.
func TestLabFullSize(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	start := time.Now()
	w := Lab(1, 5000, 100000)
	t.Logf("Lab(1, 5000, 100000) took %v", time.Since(start))
	if got := w.Tasks[len(w.Tasks)-1].ID; got != "task-099999" {
		t.Errorf("last id %q", got)
	}
	if got := w.NewTasks(1, w.FirstPass)[0].ID; got != "task-100000" {
		t.Errorf("first new id %q, want task-100000", got)
	}
	if got := w.Bots[len(w.Bots)-1].ID; got != "bot-04999" {
		t.Errorf("last bot id %q", got)
	}
}

func BenchmarkLab(b *testing.B) {
	for b.Loop() {
		Lab(1, 5000, 100000)
	}
}

func BenchmarkRandom(b *testing.B) {
	for b.Loop() {
		Random(1, 5000, 100000)
	}
}
