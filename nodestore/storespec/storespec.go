// Package storespec opens the nodestore.Store a spec names, the value of
// the server's --store flag and of qsstore's -from and -to:
//
//	embedded:<dir>            the embedded store in <dir> (created if absent)
//	memory                    a store in memory, empty at start
//	datastore:<project>[/<database>]
//	                          Cloud Datastore (Firestore in Datastore mode)
//	                          in <project>, its default database unless
//	                          <database> is given (nodestore/datastore); the
//	                          emulator when DATASTORE_EMULATOR_HOST is set
//	delay:<duration>:<spec>   the store <spec> names, every commit made
//	                          <duration> slower (nodestore/faultstore): a
//	                          load-testing aid that gives a local store a
//	                          remote store's commit latency
package storespec

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/datastore"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/embedded"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/faultstore"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/memory"
)

// Options are what every store takes from its opener.
type Options struct {
	// CodeVersion is recorded with what the store writes.
	CodeVersion string
	Logger      *slog.Logger
}

// Kinds lists the specs Open understands, for flag help and errors.
const Kinds = "embedded:<dir> | memory | datastore:<project>[/<database>] | delay:<duration>:<spec>"

// Open opens the store spec names.
func Open(ctx context.Context, spec string, o Options) (nodestore.Store, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	kind, arg, _ := strings.Cut(spec, ":")
	switch kind {
	case "embedded":
		if arg == "" {
			return nil, fmt.Errorf("embedded needs a folder (specs: %s)", Kinds)
		}
		return embedded.Open(arg, embedded.Options{CodeVersion: o.CodeVersion, Logger: o.Logger})
	case "delay":
		ds, inner, ok := strings.Cut(arg, ":")
		d, err := time.ParseDuration(ds)
		if !ok || err != nil || d <= 0 {
			return nil, fmt.Errorf("%q: delay needs a positive duration and a store (delay:100ms:memory; specs: %s)", spec, Kinds)
		}
		s, err := Open(ctx, inner, o)
		if err != nil {
			return nil, err
		}
		fs := faultstore.New(s)
		fs.DelayCommits(d)
		return fs, nil
	case "datastore":
		project, database, hasDB := strings.Cut(arg, "/")
		switch {
		case project == "":
			return nil, fmt.Errorf("%q: datastore needs a project (datastore:<project>[/<database>])", spec)
		case hasDB && database == "":
			return nil, fmt.Errorf("%q: the database after the / is empty (datastore:<project>[/<database>])", spec)
		case strings.ContainsAny(arg, " \t\n") || strings.Contains(database, "/"):
			return nil, fmt.Errorf("%q: the project and the database are one word each (datastore:<project>[/<database>])", spec)
		}
		return datastore.Open(ctx, project, database, datastore.Options{CodeVersion: o.CodeVersion, Logger: o.Logger})
	case "memory":
		if arg != "" {
			return nil, fmt.Errorf("memory takes no argument (got %q; specs: %s)", spec, Kinds)
		}
		return memory.New(memory.Options{}), nil
	}
	return nil, fmt.Errorf("%q is not one of %s", spec, Kinds)
}

// EmbeddedDir returns the folder of an embedded spec, and whether spec is
// one.
func EmbeddedDir(spec string) (string, bool) {
	dir, ok := strings.CutPrefix(spec, "embedded:")
	return dir, ok && dir != ""
}
