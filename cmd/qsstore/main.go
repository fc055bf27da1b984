// Command qsstore moves pools between state stores: it lists a store's
// pools, exports one pool's latest committed state to a file, and imports
// such a file into a store. It takes the same store specs as the server's
// --store flag (qsstore -h lists them).
//
//	qsstore list   -store <spec>
//	qsstore export -store <spec> -pool <id> [-out <file>]
//	qsstore import -store <spec> [-in <file>] [-pool <id>] [-replace]
//
// export writes to standard output and import reads from standard input
// when no file is given, so that
//
//	qsstore export -store embedded:./qscheduler-data -pool p |
//	  qsstore import -store datastore:my-project
//
// copies pool p, and
//
//	qsstore export -store datastore:my-project -pool p -out p.qsexport
//	qsstore import -store embedded:/tmp/debug -in p.qsexport
//
// brings a production pool to a laptop. The file is the message
// qscheduler.state.v1.PoolExport (the pool id, its generation, the
// exporting version and time, and the state), gzip-compressed. import
// checks that the state is one the scheduler accepts before it writes
// anything, creates the pool at generation 1 (-pool gives it another id),
// and refuses a pool that exists unless -replace is given, which deletes
// the existing pool first. Servers on the store serve a new pool as soon
// as a request names it; after replacing a pool they serve, restart them.
//
// Exit status: 0 on success, 1 when the operation failed, 2 for a bad
// command line.
package main

import (
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/storespec"
	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler"
	"google.golang.org/protobuf/proto"
)

// version is stamped at build time (-ldflags "-X main.version=...").
var version = "dev"

// maxExportBytes bounds what import decompresses: a pool of a million tasks
// is under 100 MB.
const maxExportBytes = 1 << 30

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, time.Now))
}

// errUsage marks a bad command line (exit status 2).
var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, now func() time.Time) int {
	err := dispatch(ctx, args, stdin, stdout, stderr, now)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "qsstore: %v\n", err)
		return 2
	}
	fmt.Fprintf(stderr, "qsstore: %v\n", err)
	return 1
}

const usageText = `Usage:
  qsstore list   -store <spec>
  qsstore export -store <spec> -pool <id> [-out <file>]
  qsstore import -store <spec> [-in <file>] [-pool <id>] [-replace]

Store specs: ` + storespec.Kinds + `
Run "qsstore <command> -h" for a command's flags.
`

func dispatch(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, now func() time.Time) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText)
		return fmt.Errorf("%w: no command", errUsage)
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("qsstore "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	spec := fs.String("store", "", "the store: "+storespec.Kinds)
	switch cmd {
	case "list":
		if err := parse(fs, args); err != nil {
			return err
		}
		return withStore(ctx, *spec, func(s nodestore.Store) error {
			pools, err := s.ListPools(ctx)
			if err != nil {
				return fmt.Errorf("listing pools: %w", err)
			}
			for _, p := range pools {
				fmt.Fprintln(stdout, p)
			}
			return nil
		})
	case "export":
		pool := fs.String("pool", "", "the pool to export (required)")
		out := fs.String("out", "-", "the file to write, - for standard output")
		if err := parse(fs, args); err != nil {
			return err
		}
		if *pool == "" {
			return fmt.Errorf("%w: export: -pool is required", errUsage)
		}
		return withStore(ctx, *spec, func(s nodestore.Store) error {
			return export(ctx, s, *pool, *out, stdout, now)
		})
	case "import":
		in := fs.String("in", "-", "the file to read, - for standard input")
		pool := fs.String("pool", "", "the id to give the pool (default: the id it was exported with)")
		replace := fs.Bool("replace", false, "delete the pool first if the store has it")
		if err := parse(fs, args); err != nil {
			return err
		}
		if *pool != "" {
			if err := nodestore.CheckPoolID(*pool); err != nil {
				return fmt.Errorf("%w: import: -pool: %v", errUsage, err)
			}
		}
		exp, err := readExport(*in, stdin)
		if err != nil {
			return err
		}
		return withStore(ctx, *spec, func(s nodestore.Store) error {
			return importPool(ctx, s, exp, *pool, *replace, stdout)
		})
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usageText)
		return flag.ErrHelp
	}
	fmt.Fprint(stderr, usageText)
	return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: %s: unexpected argument %q", errUsage, fs.Name(), fs.Arg(0))
	}
	if fs.Lookup("store").Value.String() == "" {
		return fmt.Errorf("%w: %s: -store is required (%s)", errUsage, fs.Name(), storespec.Kinds)
	}
	return nil
}

func withStore(ctx context.Context, spec string, f func(nodestore.Store) error) error {
	s, err := storespec.Open(ctx, spec, storespec.Options{CodeVersion: version})
	if err != nil {
		return fmt.Errorf("-store: %w", err)
	}
	err = f(s)
	if cerr := s.Close(); err == nil && cerr != nil {
		return fmt.Errorf("closing the store: %w", cerr)
	}
	return err
}

func export(ctx context.Context, s nodestore.Store, pool, out string, stdout io.Writer, now func() time.Time) error {
	st, gen, err := s.Load(ctx, pool)
	if err != nil {
		return fmt.Errorf("loading pool %q: %w", pool, err)
	}
	data, err := proto.Marshal(&statev1.PoolExport{
		PoolId: pool, Generation: gen, CodeVersion: version, ExportedUnixNanos: now().UnixNano(), State: st,
	})
	if err != nil {
		return fmt.Errorf("encoding pool %q: %w", pool, err)
	}
	write := func(w io.Writer) error {
		zw := gzip.NewWriter(w)
		if _, err := zw.Write(data); err != nil {
			return err
		}
		return zw.Close()
	}
	if out == "-" {
		bw := bufio.NewWriter(stdout)
		if err := write(bw); err != nil {
			return fmt.Errorf("writing the export: %w", err)
		}
		return bw.Flush()
	}
	// Written beside the target and renamed into place, so that a failed
	// export never leaves a partial file under the name asked for.
	f, err := os.CreateTemp(filepath.Dir(out), ".qsstore-export-*")
	if err != nil {
		return fmt.Errorf("-out: %w", err)
	}
	defer os.Remove(f.Name())
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", out, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", out, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	if err := os.Rename(f.Name(), out); err != nil {
		return fmt.Errorf("-out: %w", err)
	}
	return nil
}

func readExport(in string, stdin io.Reader) (*statev1.PoolExport, error) {
	r, name := stdin, "standard input"
	if in != "-" {
		f, err := os.Open(in)
		if err != nil {
			return nil, fmt.Errorf("-in: %w", err)
		}
		defer f.Close()
		r, name = f, in
	}
	zr, err := gzip.NewReader(bufio.NewReader(r))
	if err != nil {
		return nil, fmt.Errorf("%s is not a qsstore export (gzip: %v)", name, err)
	}
	data, err := io.ReadAll(io.LimitReader(zr, maxExportBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s is damaged (gzip: %v)", name, err)
	}
	if len(data) > maxExportBytes {
		return nil, fmt.Errorf("%s decompresses to more than %d bytes", name, maxExportBytes)
	}
	exp := &statev1.PoolExport{}
	if err := proto.Unmarshal(data, exp); err != nil {
		return nil, fmt.Errorf("%s is not a qsstore export: %v", name, err)
	}
	if exp.State == nil {
		return nil, fmt.Errorf("%s holds no pool state", name)
	}
	if err := nodestore.CheckPoolID(exp.PoolId); err != nil {
		return nil, fmt.Errorf("%s: pool_id: %v", name, err)
	}
	if _, err := scheduler.FromProto(exp.State); err != nil {
		return nil, fmt.Errorf("%s: the scheduler does not accept its state: %v", name, err)
	}
	return exp, nil
}

func importPool(ctx context.Context, s nodestore.Store, exp *statev1.PoolExport, pool string, replace bool, stdout io.Writer) error {
	if pool == "" {
		pool = exp.PoolId
	}
	err := s.CreatePool(ctx, pool, exp.State)
	if errors.Is(err, nodestore.ErrAlreadyExists) && replace {
		if err := s.DeletePool(ctx, pool); err != nil && !errors.Is(err, nodestore.ErrNotFound) {
			return fmt.Errorf("deleting the existing pool %q: %w", pool, err)
		}
		err = s.CreatePool(ctx, pool, exp.State)
	}
	if errors.Is(err, nodestore.ErrAlreadyExists) {
		return fmt.Errorf("pool %q already exists in the store (-replace deletes it first)", pool)
	}
	if err != nil {
		return fmt.Errorf("creating pool %q: %w", pool, err)
	}
	fmt.Fprintf(stdout, "imported pool %q (exported as %q at generation %d by %s, %s): %d waiting, %d workers\n",
		pool, exp.PoolId, exp.Generation, exp.CodeVersion, time.Unix(0, exp.ExportedUnixNanos).UTC().Format(time.RFC3339),
		len(exp.State.Waiting), len(exp.State.Workers))
	return nil
}
