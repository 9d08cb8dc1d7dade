package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/ferrymigrate/ferry/migrate"
)

// profile runs ferry (its migrate API, as `ferry run --through verify` does) and the
// bare loop in this process once per data set, each into a fresh bucket, and writes
// for each a CPU profile and allocation profiles before and after into dir:
//
//	go tool pprof -top DIR/ferry-small.cpu.pprof
//	go tool pprof -sample_index=alloc_space -base DIR/ferry-small.allocs-before.pprof DIR/ferry-small.allocs.pprof
//
// These runs are not measured (the profiler costs a little, and this process also
// holds the generator's memory).
func (b *bench) profile(ctx context.Context, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, set := range b.sets {
		for _, tool := range []string{toolFerry, toolBare} {
			bucket := fmt.Sprintf("prof-%s-%s", set.name, tool)
			if err := b.dst.createBucket(ctx, bucket); err != nil {
				return err
			}
			var fn func() error
			switch tool {
			case toolFerry:
				spec, err := b.writeFerrySpec(set, bucket)
				if err != nil {
					return err
				}
				fn = func() error { return b.runFerry(ctx, spec) }
			case toolBare:
				fn = func() error {
					_, err := bareCopy(ctx, b.bareJob(set, bucket))
					return err
				}
			}
			prefix := filepath.Join(dir, tool+"-"+set.name)
			wall, err := profiled(prefix, fn)
			if err != nil {
				return fmt.Errorf("%s on %s: %w", tool, set.name, err)
			}
			got, err := b.dst.list(ctx, bucket)
			if err != nil {
				return err
			}
			if err := sameObjects(set.want, got); err != nil {
				return fmt.Errorf("%s on %s (profiled): %w", tool, set.name, err)
			}
			if err := b.dst.removeBucket(ctx, bucket); err != nil {
				return err
			}
			logf("profiled %s on %s in-process: %.2f s, %s records/s, %.1f MB/s; wrote %s.{cpu,allocs-before,allocs}.pprof",
				tool, set.name, wall.Seconds(), rate(float64(len(set.recs))/wall.Seconds()), float64(set.bytes)/1e6/wall.Seconds(), prefix)
		}
	}
	return nil
}

// runFerry is `ferry run --through verify -c spec` through package migrate, one
// phase at a time, logging how long each took and the S3 requests it made.
func (b *bench) runFerry(ctx context.Context, spec string) error {
	m, err := migrate.Open(ctx, migrate.Options{SpecPath: spec})
	if err != nil {
		return err
	}
	phases := []struct {
		name string
		fn   func() error
	}{
		{"plan", func() error { _, err := m.Plan(ctx); return err }},
		{"copy", func() error { _, err := m.Copy(ctx); return err }},
		{"verify", func() error { _, err := m.Verify(ctx, false); return err }},
	}
	for _, p := range phases {
		before, rerr := b.requests(ctx)
		start := time.Now()
		if err = p.fn(); err != nil {
			err = fmt.Errorf("%s: %w", p.name, err)
			break
		}
		took := time.Since(start)
		after, rerr2 := b.requests(ctx)
		var reqs []string
		if rerr == nil && rerr2 == nil {
			for k, n := range after {
				if d := n - before[k]; d > 0 {
					reqs = append(reqs, fmt.Sprintf("%s %d", k, d))
				}
			}
			slices.Sort(reqs)
		}
		logf("ferry in-process: %s %.2f s; requests: %s", p.name, took.Seconds(), strings.Join(reqs, ", "))
	}
	if cerr := m.Close(); err == nil {
		err = cerr
	}
	return err
}

// profiled runs fn under the CPU profiler, writing prefix.cpu.pprof, and writes the
// allocation profile before and after it.
func profiled(prefix string, fn func() error) (time.Duration, error) {
	runtime.GC()
	if err := writeProfile("allocs", prefix+".allocs-before.pprof"); err != nil {
		return 0, err
	}
	f, err := os.Create(prefix + ".cpu.pprof")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return 0, err
	}
	start := time.Now()
	err = fn()
	wall := time.Since(start)
	pprof.StopCPUProfile()
	if err != nil {
		return wall, err
	}
	return wall, writeProfile("allocs", prefix+".allocs.pprof")
}

func writeProfile(name, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup(name).WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
