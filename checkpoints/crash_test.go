package checkpoints_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/checkpoints"
)

// crashChildEnv names the state file a re-executed test binary writes to until it is
// killed (see crashChild).
const crashChildEnv = "FERRY_CHECKPOINTS_CRASH_CHILD"

func TestMain(m *testing.M) {
	if path := os.Getenv(crashChildEnv); path != "" {
		crashChild(path)
		os.Exit(3) // not reached: the parent kills the child
	}
	os.Exit(m.Run())
}

// The counter record's Attempts is the number of the last iteration whose Save
// returned; each iteration also saves new records named after it.
const counterKey = "0-counter"

func iterKeys(i int) []string {
	keys := make([]string, 1+i%7)
	for j := range keys {
		keys[j] = fmt.Sprintf("it%06d/%02d", i, j)
	}
	return keys
}

// crashChild saves in a loop, through Save and through a Batcher, and prints
// "saved <iteration>" to stdout after each write has returned: from then on the
// iteration must survive a kill -9.
func crashChild(path string) {
	ctx := context.Background()
	s, err := checkpoints.OpenSQLite(ctx, path, checkpoints.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	start := 1
	if r, ok, err := s.Get(ctx, counterKey); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	} else if ok {
		start = r.Attempts + 1
	}
	b := checkpoints.NewBatcher(s, 16, time.Hour)
	for i := start; ; i++ {
		batch := []checkpoints.Record{rec(counterKey, i)}
		for _, k := range iterKeys(i) {
			batch = append(batch, rec(k, i))
		}
		if i%2 == 0 {
			err = s.Save(ctx, batch)
		} else {
			for _, r := range batch {
				if err = b.Add(ctx, r); err != nil {
					break
				}
			}
			if err == nil {
				err = b.Flush(ctx)
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		// One write(2) per line: a line is either whole in the pipe or not there.
		os.Stdout.WriteString("saved " + strconv.Itoa(i) + "\n")
	}
}

// TestSQLiteCrash kills a writing process (SIGKILL) at random moments, several times
// over the same state: the state opens, passes integrity_check, and holds every
// write the process reported as returned, and nothing it never tried.
func TestSQLiteCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	path := filepath.Join(t.TempDir(), "state.db")
	reported := 0
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan int, 1<<16)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if n, ok := strings.CutPrefix(sc.Text(), "saved "); ok {
					if i, err := strconv.Atoi(n); err == nil {
						lines <- i
					}
				}
			}
		}()
		// Kill once the child is well into its loop, at a random point of a write.
		var first int
		select {
		case i, ok := <-lines:
			if !ok {
				cmd.Wait()
				t.Fatalf("round %d: the child wrote nothing: %s", round, stderr.String())
			}
			first = i
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("round %d: the child wrote nothing in 60s: %s", round, stderr.String())
		}
		if first != reported+1 {
			// The child resumes after the last iteration the state holds.
			t.Errorf("round %d: child resumed at iteration %d, want %d", round, first, reported+1)
		}
		time.Sleep(time.Duration(100+rand.IntN(400)) * time.Millisecond)
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		last := first
		for i := range lines {
			if i != last+1 {
				t.Fatalf("round %d: child reported iteration %d after %d", round, i, last)
			}
			last = i
		}
		cmd.Wait()
		if last-first < 5 {
			t.Logf("round %d: only %d iterations before the kill (stderr %q)", round, last-first+1, stderr.String())
		}
		reported = last

		integrityCheck(t, path)
		s := openPath(t, path, checkpoints.Options{ReadOnly: true})
		ctx := context.Background()
		counter, ok, err := s.Get(ctx, counterKey)
		if err != nil || !ok {
			t.Fatalf("round %d: counter record: %v %v", round, ok, err)
		}
		// Every reported iteration is there; at most the one in flight beyond it.
		if counter.Attempts != reported && counter.Attempts != reported+1 {
			t.Fatalf("round %d: the state's last iteration is %d, the child reported %d", round, counter.Attempts, reported)
		}
		// One scan: every record of every iteration up to the counter, as saved, and
		// nothing of a later one (an iteration is one transaction).
		have := map[string]bool{}
		if err := s.Records(ctx, checkpoints.Query{After: counterKey}, func(r checkpoints.Record) error {
			it, err := strconv.Atoi(strings.TrimPrefix(strings.SplitN(r.Key, "/", 2)[0], "it"))
			if err != nil || it > counter.Attempts {
				return fmt.Errorf("record %s from an iteration the counter (%d) does not show", r.Key, counter.Attempts)
			}
			if err := consistent(r); err != nil || r.Attempts != it {
				return fmt.Errorf("record %s: %v (want iteration %d)", r.Key, err, it)
			}
			have[r.Key] = true
			return nil
		}); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		n := 0
		for i := 1; i <= counter.Attempts; i++ {
			for _, k := range iterKeys(i) {
				if !have[k] {
					t.Fatalf("round %d: record %s of saved iteration %d is missing", round, k, i)
				}
				n++
			}
		}
		if len(have) != n {
			t.Fatalf("round %d: %d records, want %d", round, len(have), n)
		}
		t.Logf("round %d: %d iterations reported, %d records", round, reported, n)
		closeStore(t, s)
		// The in-flight iteration, if it landed, is the one the next child starts after.
		reported = counter.Attempts
	}
}
