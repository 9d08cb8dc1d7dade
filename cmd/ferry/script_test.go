package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/file"
)

// The CLI tests are testscript scripts in testdata/script at the repository root:
// each runs the real ferry binary (this test binary, re-executed as "ferry") against
// local file:// sites in a fresh $WORK folder.
//
// Custom commands (the Cmds of TestScripts):
//
//	exitcode N                  the last ferry process exited with code N
//	jsonget FILE PATH [WANT]    print the value at PATH (a.b.0.c; a quoted "#" segment is a length), or compare it with WANT
//	jsoneq FILE1 FILE2 PATH...  the two files hold equal values at every PATH
//	setenvjson VAR FILE PATH    set $VAR to FILE's value at PATH
//	setenvmatch VAR FILE RE     set $VAR to RE's first group in FILE
//	mutate FILE [OFFSET]        flip one byte of FILE, keeping its size and mtime
//	filemode FILE MODE          FILE's permission bits are MODE (octal)
//	waitfile FILE [SECONDS]     wait until FILE exists (default 30s)
//	freeport VAR                set $VAR to a TCP port free on 127.0.0.1 now
//	scrape HOST:PORT            GET http://HOST:PORT/metrics; its body is the stdout
//
// FILE may be "stdout" or "stderr": the last command's output.
//
// Test hooks in the ferry process (environment variables):
//
//	FERRY_TEST_BLOCK_PUT=MARKER  every Put to a file:// store creates MARKER, then
//	                             blocks until $FERRY_TEST_RELEASE exists, the command
//	                             is interrupted, or 60 seconds pass: a slow target.
//	FERRY_TEST_EXIT_FILE         where ferry writes its exit code (set for every script)

const exitFileEnv = "FERRY_TEST_EXIT_FILE"

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"ferry": func() {
			installTestHooks()
			if p := os.Getenv(exitFileEnv); p != "" {
				os.Remove(p)
			}
			code := run(os.Args[1:], os.Stdout, os.Stderr)
			if p := os.Getenv(exitFileEnv); p != "" {
				_ = os.WriteFile(p, []byte(strconv.Itoa(code)+"\n"), 0o644)
			}
			os.Exit(code)
		},
	})
}

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: filepath.Join("..", "..", "testdata", "script"),
		Setup: func(env *testscript.Env) error {
			env.Setenv(exitFileEnv, filepath.Join(env.WorkDir, ".ferry-exit-code"))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exitcode":    cmdExitCode,
			"jsonget":     cmdJSONGet,
			"jsoneq":      cmdJSONEq,
			"setenvjson":  cmdSetenvJSON,
			"setenvmatch": cmdSetenvMatch,
			"mutate":      cmdMutate,
			"filemode":    cmdFileMode,
			"waitfile":    cmdWaitFile,
			"freeport":    cmdFreePort,
			"scrape":      cmdScrape,
		},
	})
}

// installTestHooks applies the FERRY_TEST_* hooks to this ferry process.
func installTestHooks() {
	marker := os.Getenv("FERRY_TEST_BLOCK_PUT")
	if marker == "" {
		return
	}
	release := os.Getenv("FERRY_TEST_RELEASE")
	providers.Register("file", func(_ context.Context, cfg providers.Config) (providers.Store, error) {
		dir, err := file.DirFromURL(cfg.URL)
		if err != nil {
			return nil, err
		}
		s, err := file.New(dir, file.Options{Quarantine: cfg.Quarantine, Migration: cfg.Migration})
		if err != nil {
			return nil, err
		}
		return &blockingStore{Store: s, marker: marker, release: release}, nil
	})
}

// blockingStore is a file store whose Put waits for a release file: a target slow
// enough for a test to act while ferry holds the migration lock mid-copy.
type blockingStore struct {
	*file.Store
	marker, release string
}

func (s *blockingStore) Put(ctx context.Context, key string, r io.Reader, size int64, opts providers.PutOptions) (providers.Object, error) {
	_ = os.WriteFile(s.marker, []byte(key+"\n"), 0o644)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if s.release != "" {
			if _, err := os.Stat(s.release); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return providers.Object{}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return s.Store.Put(ctx, key, r, size, opts)
}

func (s *blockingStore) Unwrap() providers.Store { return s.Store }

func cmdExitCode(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: exitcode N")
	}
	data, err := os.ReadFile(ts.Getenv(exitFileEnv))
	if err != nil {
		ts.Fatalf("ferry recorded no exit code (did it panic, or was it killed?): %v", err)
	}
	got := strings.TrimSpace(string(data))
	if (got == args[0]) == neg {
		if neg {
			ts.Fatalf("ferry exited with %s, want anything else", got)
		}
		ts.Fatalf("ferry exited with %s, want %s", got, args[0])
	}
}

// jsonPath returns the value at a dotted path: object keys, array indexes, and "#"
// for the length of an array or object.
func jsonPath(ts *testscript.TestScript, name, path string) any {
	var v any
	if err := json.Unmarshal([]byte(ts.ReadFile(name)), &v); err != nil {
		ts.Fatalf("%s is not JSON: %v", name, err)
	}
	if path == "" || path == "." {
		return v
	}
	for _, seg := range strings.Split(strings.TrimPrefix(path, "."), ".") {
		switch x := v.(type) {
		case map[string]any:
			if seg == "#" {
				v = float64(len(x))
				continue
			}
			var ok bool
			if v, ok = x[seg]; !ok {
				ts.Fatalf("%s: no key %q at %s", name, seg, path)
			}
		case []any:
			if seg == "#" {
				v = float64(len(x))
				continue
			}
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(x) {
				ts.Fatalf("%s: no index %q at %s (length %d)", name, seg, path, len(x))
			}
			v = x[i]
		default:
			ts.Fatalf("%s: %s: %q is not inside an object or array", name, path, seg)
		}
	}
	return v
}

// jsonText is a value as a script sees it: strings bare, everything else as JSON.
func jsonText(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func cmdJSONGet(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 || len(args) > 3 {
		ts.Fatalf("usage: jsonget FILE PATH [WANT]")
	}
	got := jsonText(jsonPath(ts, args[0], args[1]))
	if len(args) == 2 {
		if neg {
			ts.Fatalf("unsupported: ! jsonget without WANT")
		}
		fmt.Fprintln(ts.Stdout(), got)
		return
	}
	if (got == args[2]) == neg {
		if neg {
			ts.Fatalf("%s %s is %s, want anything else", args[0], args[1], got)
		}
		ts.Fatalf("%s %s is %s, want %s", args[0], args[1], got, args[2])
	}
}

func cmdJSONEq(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 3 {
		ts.Fatalf("usage: jsoneq FILE1 FILE2 PATH...")
	}
	same := true
	for _, path := range args[2:] {
		a, b := jsonText(jsonPath(ts, args[0], path)), jsonText(jsonPath(ts, args[1], path))
		if a != b {
			same = false
			if !neg {
				ts.Logf("%s: %s\n%s: %s", args[0], a, args[1], b)
				ts.Fatalf("%s differs between %s and %s", path, args[0], args[1])
			}
		}
	}
	if neg && same {
		ts.Fatalf("%s and %s are equal at %v", args[0], args[1], args[2:])
	}
}

func cmdSetenvJSON(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 || neg {
		ts.Fatalf("usage: setenvjson VAR FILE PATH")
	}
	ts.Setenv(args[0], jsonText(jsonPath(ts, args[1], args[2])))
}

func cmdSetenvMatch(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 || neg {
		ts.Fatalf("usage: setenvmatch VAR FILE REGEXP")
	}
	re, err := regexp.Compile(args[2])
	if err != nil {
		ts.Fatalf("bad regexp: %v", err)
	}
	m := re.FindStringSubmatch(ts.ReadFile(args[1]))
	if len(m) < 2 {
		ts.Fatalf("no match for %q (with a group) in %s", args[2], args[1])
	}
	ts.Setenv(args[0], m[1])
}

func cmdMutate(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 1 || len(args) > 2 || neg {
		ts.Fatalf("usage: mutate FILE [OFFSET]")
	}
	name := ts.MkAbs(args[0])
	fi, err := os.Stat(name)
	ts.Check(err)
	data, err := os.ReadFile(name)
	ts.Check(err)
	if len(data) == 0 {
		ts.Fatalf("mutate: %s is empty", args[0])
	}
	off := len(data) / 2
	if len(args) == 2 {
		off, err = strconv.Atoi(args[1])
		ts.Check(err)
		if off < 0 || off >= len(data) {
			ts.Fatalf("mutate: offset %d outside %s (%d bytes)", off, args[0], len(data))
		}
	}
	data[off] ^= 0x01
	// Rewrite in place (same inode), then put the mtime back: bit rot that no
	// metadata shows.
	f, err := os.OpenFile(name, os.O_WRONLY, 0)
	ts.Check(err)
	_, err = f.WriteAt(data[off:off+1], int64(off))
	ts.Check(errors.Join(err, f.Close()))
	ts.Check(os.Chtimes(name, fi.ModTime(), fi.ModTime()))
}

func cmdFileMode(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: filemode FILE MODE")
	}
	want, err := strconv.ParseUint(args[1], 8, 32)
	ts.Check(err)
	fi, err := os.Stat(ts.MkAbs(args[0]))
	ts.Check(err)
	got := fi.Mode().Perm()
	if (got == os.FileMode(want)) == neg {
		ts.Fatalf("%s has mode %#o, want %s%#o", args[0], got, map[bool]string{true: "anything but ", false: ""}[neg], want)
	}
}

func cmdWaitFile(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 1 || len(args) > 2 || neg {
		ts.Fatalf("usage: waitfile FILE [SECONDS]")
	}
	limit := 30 * time.Second
	if len(args) == 2 {
		s, err := strconv.Atoi(args[1])
		ts.Check(err)
		limit = time.Duration(s) * time.Second
	}
	name := ts.MkAbs(args[0])
	deadline := time.Now().Add(limit)
	for {
		if _, err := os.Stat(name); err == nil {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("%s did not appear within %v", args[0], limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ferry runs its collector at gcPercent unless GOGC says otherwise.
func TestTuneGC(t *testing.T) {
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)
	t.Setenv("GOGC", "")
	tuneGC()
	if got := debug.SetGCPercent(100); got != gcPercent {
		t.Errorf("GC percent %d without GOGC, want %d", got, gcPercent)
	}
	t.Setenv("GOGC", "50")
	tuneGC()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GOGC=50 set, but ferry changed the GC percent to %d", got)
	}
}

func cmdFreePort(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 || neg {
		ts.Fatalf("usage: freeport VAR")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ts.Check(ln.Close())
	ts.Setenv(args[0], port)
}

func cmdScrape(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: scrape HOST:PORT")
	}
	c := http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get("http://" + args[0] + "/metrics")
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s", resp.Status)
	}
	if err != nil {
		if !neg {
			ts.Fatalf("scrape %s: %v", args[0], err)
		}
		return
	}
	defer resp.Body.Close()
	if neg {
		ts.Fatalf("scrape %s: metrics served, want none", args[0])
	}
	_, err = io.Copy(ts.Stdout(), resp.Body)
	ts.Check(err)
}
