package frontend

import (
	"fmt"
	"strconv"
	"unicode/utf8"

	swarmingv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/swarming/v1"
)

// Limits bound what one ExternalScheduler request may carry, so that no
// single request costs a pool more than real Swarming traffic does many
// times over. A zero field means its DefaultLimits value. The size of a
// request as a whole is bounded by the transports (--max-request-bytes).
type Limits struct {
	// BotDimensions: dimensions of one idle bot (--max-bot-dimensions).
	BotDimensions int
	// SliceDimensions: dimensions of one task slice (--max-slice-dimensions).
	SliceDimensions int
	// DimensionBytes: bytes of one dimension, of a bot or of a slice
	// (--max-dimension-bytes).
	DimensionBytes int
	// TagBytes: bytes of one task tag (--max-tag-bytes).
	TagBytes int
	// TaskTags: tags of one task (--max-task-tags).
	TaskTags int
	// AssignBots: idle bots of one AssignTasks call (--max-assign-bots).
	AssignBots int
	// NotifyItems: items of one NotifyTasks call (--max-notify-items).
	NotifyItems int
}

// DefaultLimits are the limits of a Swarming whose Limits are zero. Swarming
// sends one bot per AssignTasks call, one item per NotifyTasks call made
// while it creates a task and up to 1,000 in its batched ones, dimensions and
// tags of at most 321 characters (a key of 64, a colon, a value of 256) and a
// few dozen dimensions per bot or slice and tags per task: every default is
// many times that.
var DefaultLimits = Limits{
	BotDimensions:   1024,
	SliceDimensions: 256,
	DimensionBytes:  2048,
	TagBytes:        2048,
	TaskTags:        1024,
	AssignBots:      1000,
	NotifyItems:     10000,
}

// orDefault returns l with every zero field set to its default.
func (l Limits) orDefault() Limits {
	d := DefaultLimits
	for _, f := range []struct{ v, def *int }{
		{&l.BotDimensions, &d.BotDimensions},
		{&l.SliceDimensions, &d.SliceDimensions},
		{&l.DimensionBytes, &d.DimensionBytes},
		{&l.TagBytes, &d.TagBytes},
		{&l.TaskTags, &d.TaskTags},
		{&l.AssignBots, &d.AssignBots},
		{&l.NotifyItems, &d.NotifyItems},
	} {
		if *f.v <= 0 {
			*f.v = *f.def
		}
	}
	return l
}

// countError describes a list longer than its limit, or is "".
func countError(field string, n, limit int, noun, flag string) string {
	if n <= limit {
		return ""
	}
	return fmt.Sprintf("%s: %d %s, at most %d allowed (%s)", field, n, noun, limit, flag)
}

// stringsError describes the first of values longer than limit bytes, or
// is "".
func stringsError(field string, values []string, limit int, flag string) string {
	for i, v := range values {
		if len(v) > limit {
			return fmt.Sprintf("%s[%d]: %d bytes, at most %d allowed (%s)", field, i, len(v), limit, flag)
		}
	}
	return ""
}

// botsError checks the idle bots of an AssignTasks call; a non-empty answer
// makes the call InvalidArgument.
func (l Limits) botsError(bots []*swarmingv1.IdleBot) string {
	if msg := countError("idle_bots", len(bots), l.AssignBots, "bots", "--max-assign-bots"); msg != "" {
		return msg
	}
	for i, b := range bots {
		field := "idle_bots[" + strconv.Itoa(i) + "].dimensions"
		if msg := l.dimensionsError(field, b.GetDimensions(), l.BotDimensions, "--max-bot-dimensions"); msg != "" {
			return msg
		}
	}
	return ""
}

// tagsError checks a waiting task's tags; a non-empty answer is the task's
// error.
func (l Limits) tagsError(tags []string) string {
	if msg := countError("tags", len(tags), l.TaskTags, "values", "--max-task-tags"); msg != "" {
		return msg
	}
	return stringsError("tags", tags, l.TagBytes, "--max-tag-bytes")
}

// slicesError checks a waiting task's slices; a non-empty answer is the
// task's error.
func (l Limits) slicesError(slices []*swarmingv1.SliceSpec) string {
	for i, s := range slices {
		field := "slices[" + strconv.Itoa(i) + "].dimensions"
		if msg := l.dimensionsError(field, s.GetDimensions(), l.SliceDimensions, "--max-slice-dimensions"); msg != "" {
			return msg
		}
	}
	return ""
}

func (l Limits) dimensionsError(field string, dims []string, limit int, flag string) string {
	if msg := countError(field, len(dims), limit, "values", flag); msg != "" {
		return msg
	}
	return stringsError(field, dims, l.DimensionBytes, "--max-dimension-bytes")
}

// quoteMax is how many bytes of a client's string an error or a log line
// quotes.
const quoteMax = 128

// quoteBounded quotes s for an error text or a log line, cut to its first
// quoteMax bytes (at a character boundary) and followed by its length when
// cut, so that no text grows with what a client sends.
func quoteBounded(s string) string {
	if len(s) <= quoteMax {
		return strconv.Quote(s)
	}
	cut := quoteMax
	for cut > quoteMax-utf8.UTFMax && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%q… (%d bytes)", s[:cut], len(s))
}
