package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer a command writes while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

const watchSpec = `migration: watch-test
sources:
  - {name: virginia, role: primary, url: file://./sites/virginia}
target:
  url: file://./target
records:
  user: '^(?P<user>[^/]+)/'
delete:
  mode: hard
  stages:
    - {name: primary, sites: [virginia]}
`

// ferry status --watch redraws, at each tick, what other processes changed in the
// state since the last redraw (it holds no lock and no snapshot of its own), and an
// interrupt while it waits for the next tick ends it with exit 0; with --json it
// prints once and returns. (SQLite in the current layout: the reopen of an older
// layout's state at each tick is checkpoints' Reopen, tested there.)
func TestStatusWatch(t *testing.T) {
	dir := t.TempDir()
	for _, k := range []string{"alice/mail.txt", "alice/photo.jpg", "bob/mail.txt"} {
		p := filepath.Join(dir, "sites", "virginia", k)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("bytes of "+k), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "target"), 0o755); err != nil {
		t.Fatal(err)
	}
	spec := filepath.Join(dir, "ferry.yaml")
	if err := os.WriteFile(spec, []byte(watchSpec), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	must := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if code := run(append([]string{"-c", spec, "--no-progress"}, args...), &out, &errb); code != 0 {
			t.Fatalf("ferry %v: exit %d\n%s%s", args, code, out.String(), errb.String())
		}
		return out.String()
	}
	must("plan")

	ctx, cancel := context.WithCancel(context.Background())
	var out, errb lockedBuffer
	done := make(chan int, 1) // the watch's exit code; ended is closed after it is sent
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		done <- runContext(ctx, []string{"-c", spec, "--no-progress", "status", "--watch", "--interval", "1"}, &out, &errb)
	}()
	t.Cleanup(func() { // on a failure too: the watch ends before its folder is removed
		cancel()
		<-ended
	})
	// waitFor waits until the watch's output holds n redraws that match re.
	waitFor := func(re string, n int) {
		t.Helper()
		rx := regexp.MustCompile(re)
		deadline := time.Now().Add(30 * time.Second)
		for len(rx.FindAllString(out.String(), -1)) < n {
			select {
			case code := <-done:
				t.Fatalf("status --watch ended (exit %d) before %q:\n%s%s", code, re, out.String(), errb.String())
			case <-time.After(50 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %q in status --watch after 30 s:\n%s%s", re, out.String(), errb.String())
			}
		}
	}
	waitFor(`(?m)^  planned +3 `, 1)
	must("copy")
	waitFor(`(?m)^  copied +3 `, 1)
	must("verify")
	waitFor(`(?m)^  verified +3 `, 1)
	redraws := strings.Count(out.String(), "migration watch-test")
	waitFor(`migration watch-test`, redraws+1) // it goes on redrawing
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("status --watch interrupted: exit %d, want 0\n%s", code, errb.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("status --watch did not end within 30 s of its interrupt")
	}

	// --json prints one result and returns: a CI job cannot read a redrawn screen.
	jctx, jcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer jcancel()
	var jout, jerr bytes.Buffer
	code := runContext(jctx, []string{"-c", spec, "--no-progress", "status", "--watch", "--json"}, &jout, &jerr)
	if jctx.Err() != nil {
		t.Fatal("status --watch --json did not return within 30 s")
	}
	if code != 0 || strings.Count(jout.String(), `"ok": true`) != 1 {
		t.Fatalf("status --watch --json: exit %d, printed:\n%s%s", code, jout.String(), jerr.String())
	}
}
