package migrate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/checkpoints/storetest"
	"github.com/ferrymigrate/ferry/migrate/certificate"
	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/faulty"
)

// journalRun runs a whole migration on h, the primary stage and the purges in a
// second process (a second journal stream), and reports into a temporary folder.
// With noJournalDelete the second process journals nothing (Options.NoJournal).
func journalRun(t *testing.T, h *harness, noJournalDelete bool) *ReportResult {
	return journalRunState(t, h, noJournalDelete, "")
}

// journalRunState is journalRun on the state named by dsn ("": the spec's SQLite file).
func journalRunState(t *testing.T, h *harness, noJournalDelete bool, dsn string) *ReportResult {
	t.Helper()
	ctx := context.Background()
	o1 := h.options(false)
	o1.StateDSN = dsn
	m, err := Open(ctx, o1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	runThroughVerify(t, m)
	for _, st := range []string{"canary", "backups"} {
		if _, err := deleteStage(t, m, st); err != nil {
			t.Fatalf("delete %s: %v", st, err)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	o := h.options(false)
	o.NoJournal = noJournalDelete
	o.StateDSN = dsn
	m2, err := Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m2.Close() })
	if _, err := deleteStage(t, m2, "primary"); err != nil {
		t.Fatalf("delete primary: %v", err)
	}
	h.advance(25 * time.Hour)
	for _, st := range []string{"canary", "backups"} {
		if _, err := m2.Purge(ctx, st); err != nil {
			t.Fatalf("purge %s: %v", st, err)
		}
	}
	rep, err := m2.Report(ctx, t.TempDir())
	if rep == nil {
		t.Fatalf("report: %v", err)
	}
	return rep
}

func readJournalFile(t *testing.T, path string) ([][]byte, []certificate.JournalEntry) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(b, []byte("\n"))
	if len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	var entries []certificate.JournalEntry
	for _, l := range lines {
		var e certificate.JournalEntry
		if err := json.Unmarshal(l, &e); err != nil {
			t.Fatalf("journal line %q: %v", l, err)
		}
		entries = append(entries, e)
	}
	return lines, entries
}

// verifyJournal runs the offline checks of a report's certificate, manifest and the
// given journal bytes.
func verifyJournal(t *testing.T, rep *ReportResult, journal []byte) (*certificate.Report, error) {
	t.Helper()
	env, err := certificate.ReadEnvelope(rep.CertificatePath)
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := os.ReadFile(rep.ManifestPath)
	if err != nil {
		t.Fatal(err)
	}
	r, err := certificate.VerifyCertificate(env, bytes.NewReader(manifest), nil)
	if err != nil {
		t.Fatalf("the certificate itself does not verify: %v", err)
	}
	return r, certificate.VerifyJournal(r, bytes.NewReader(journal), bytes.NewReader(manifest))
}

func checkStatus(r *certificate.Report, name string) certificate.CheckStatus {
	for _, c := range r.Checks {
		if c.Name == name {
			return c.Status
		}
	}
	return ""
}

// Every request of every phase that touches user data is in the report's journal,
// chained, with who and where; its heads are in the certificate; every copy and every
// deletion in the manifest has its entries; a failed request is journalled with its
// outcome. Against every store kind.
func TestJournalEndToEnd(t *testing.T) {
	eachKind(t, func(t *testing.T, k storeKind) {
		h := newHarness(t, k, fmt.Sprintf(sitesYAML, "fail"))
		recs := h.standardData(6)
		broken := recs[3].Key
		h.faults["virginia"].FailKey(faulty.Open, broken, errInjected)
		h.faults["singapore"].FailKey(faulty.Open, broken, errInjected)
		h.faults["archive"].FailKey(faulty.Open, broken, errInjected)
		rep := journalRun(t, h, false)
		if rep.JournalPath == "" {
			t.Fatal("the report wrote no journal")
		}
		raw, entries := readJournalFile(t, rep.JournalPath)
		r, err := verifyJournal(t, rep, bytes.Join(raw, nil))
		if err != nil {
			t.Fatalf("the untouched journal does not verify: %v", err)
		}
		for _, c := range []string{certificate.CheckJournalChain, certificate.CheckJournalHeads, certificate.CheckJournalCoverage} {
			if checkStatus(r, c) != certificate.Pass {
				t.Fatalf("check %s: %s (%+v)", c, checkStatus(r, c), r.Checks)
			}
		}
		js := rep.Statement.Predicate.Journal
		if js == nil || js.Entries != int64(len(entries)) || len(js.Streams) != 2 {
			t.Fatalf("the certificate's journal heads %+v; the journal has %d entries in 2 streams", js, len(entries))
		}

		// The oracle: one record's life, entry by entry.
		key := recs[0].Key
		m := h.open()
		rec := record(t, m, key)
		find := func(site, op, outcome string) *certificate.JournalEntry {
			for i := range entries {
				e := &entries[i]
				if e.Site == site && e.Op == op && e.Key == key && e.Outcome == outcome {
					return e
				}
			}
			return nil
		}
		host, _ := os.Hostname()
		need := func(site, op, outcome string) *certificate.JournalEntry {
			t.Helper()
			e := find(site, op, outcome)
			if e == nil {
				t.Fatalf("no %s %s of %q at %s in the journal", outcome, op, key, site)
			}
			if e.Identity == "" || e.Host != host || e.Time == "" || site != "target" && e.URI != m.Sites[site].URI(key) {
				t.Fatalf("entry %+v: identity, host, time or uri missing", e)
			}
			return e
		}
		if e := need(rec.Source, "read", "ok"); e.ETag == "" && e.Version == "" {
			t.Fatalf("the read names no version: %+v", e)
		}
		write := need("target", "write", "ok")
		if write.URI != m.Target.URI(rec.TargetKey) || (write.ETag == "" && write.Version == "") {
			t.Fatalf("the write %+v names no version or the wrong uri", write)
		}
		if strings.HasPrefix(k.name, "s3") {
			// S3 names each request and the key ferry signs with (not the secret).
			if write.RequestID == "" || !strings.HasPrefix(write.Identity, "access_key_id:") || !strings.Contains(write.Identity, " sha256:") {
				t.Fatalf("an S3 write journalled without its request id or access key id: %+v", write)
			}
		}
		if rec.Replica("singapore") != nil {
			if e := need("singapore", "soft_delete", "ok"); e.Handle == "" {
				t.Fatalf("the soft delete names no handle: %+v", e)
			}
			need("singapore", "purge", "ok")
		}
		if e := need("virginia", "delete", "ok"); e.Call != "DeleteIf" {
			t.Fatalf("the primary's delete was %s, want a conditional delete", e.Call)
		}
		need("virginia", "head", "not_found") // absence confirmed after the delete
		if e := need(rec.Source, "read", "ok"); e.Identity != "local_user:"+os.Getenv("USER") && !strings.HasPrefix(e.Identity, "local_uid:") && k.name == "file" {
			t.Fatalf("identity at a file site: %q", e.Identity)
		}

		// The failing reads are journalled with their outcome and error.
		failed := 0
		for _, e := range entries {
			if e.Key == broken && e.Op == "read" {
				if e.Outcome != "error" || !strings.Contains(e.Error, errInjected.Error()) {
					t.Fatalf("a failed read journalled as %+v", e)
				}
				failed++
			}
		}
		if failed == 0 {
			t.Fatal("the failed reads are not in the journal")
		}
	})
}

// rechain recomputes prev for every line after a change, as a forger without the
// signing key would: the chain holds, but its heads are no longer the certificate's.
func rechain(t *testing.T, lines [][]byte) [][]byte {
	t.Helper()
	out := make([][]byte, len(lines))
	heads := map[string]string{}
	seqs := map[string]int64{}
	for i, l := range lines {
		var e certificate.JournalEntry
		if err := json.Unmarshal(l, &e); err != nil {
			t.Fatal(err)
		}
		e.Prev = certificate.JournalGenesis
		if h, ok := heads[e.Stream]; ok {
			e.Prev = h
		}
		seqs[e.Stream]++
		e.Seq = seqs[e.Stream]
		b, h, err := certificate.MarshalJournalEntry(e)
		if err != nil {
			t.Fatal(err)
		}
		heads[e.Stream] = h
		out[i] = append(b, '\n')
	}
	return out
}

// Changing, dropping or reordering any entry of journal.jsonl is detected (exit 4), and
// so is a journal that lacks a deletion the manifest states.
func TestJournalTamperDetected(t *testing.T) {
	h := newHarness(t, storeKinds[1], fmt.Sprintf(sitesYAML, "fail"))
	h.standardData(4)
	rep := journalRun(t, h, false)
	lines, entries := readJournalFile(t, rep.JournalPath)
	// Where the second stream starts; a delete entry of the first stream.
	second, del := -1, -1
	for i, e := range entries {
		if second < 0 && e.Stream != entries[0].Stream {
			second = i
		}
		if del < 0 && (e.Op == "soft_delete" || e.Op == "delete") && e.Outcome == "ok" {
			del = i
		}
	}
	if second < 2 || del < 1 || del >= second-1 {
		t.Fatalf("unexpected journal layout: second stream at %d, first delete at %d of %d", second, del, len(entries))
	}
	join := func(ls [][]byte) []byte { return bytes.Join(ls, nil) }
	without := func(i int) [][]byte {
		return append(append([][]byte{}, lines[:i]...), lines[i+1:]...)
	}
	swap := func(i, j int) [][]byte {
		ls := append([][]byte{}, lines...)
		ls[i], ls[j] = ls[j], ls[i]
		return ls
	}
	changed := func(i int, from, to string) [][]byte {
		ls := append([][]byte{}, lines...)
		if !bytes.Contains(ls[i], []byte(from)) {
			t.Fatalf("line %d has no %q: %s", i, from, ls[i])
		}
		ls[i] = bytes.Replace(ls[i], []byte(from), []byte(to), 1)
		return ls
	}
	cases := []struct {
		name    string
		journal []byte
		fails   string
	}{
		{"outcome changed", join(changed(del, `"outcome":"ok"`, `"outcome":"error"`)), certificate.CheckJournalChain},
		{"identity changed", join(changed(1, `"identity":"`, `"identity":"x`)), certificate.CheckJournalChain},
		{"last entry of a stream changed", join(changed(second-1, `"host":"`, `"host":"x`)), certificate.CheckJournalHeads},
		{"entry dropped", join(without(del)), certificate.CheckJournalChain},
		{"first entry dropped", join(without(0)), certificate.CheckJournalChain},
		{"last entry dropped", join(lines[:len(lines)-1]), certificate.CheckJournalHeads},
		{"stream dropped", join(lines[:second]), certificate.CheckJournalHeads},
		{"entries swapped", join(swap(del, del+1)), certificate.CheckJournalChain},
		{"streams interleaved", join(swap(second-1, second)), certificate.CheckJournalChain},
		{"deletion dropped, chain recomputed", join(rechain(t, without(del))), certificate.CheckJournalHeads},
		{"deletion changed, chain recomputed", join(rechain(t, changed(del, `"outcome":"ok"`, `"outcome":"denied"`))), certificate.CheckJournalHeads},
		{"line duplicated", join(append(append([][]byte{}, lines[:del+1]...), lines[del:]...)), certificate.CheckJournalChain},
		{"newline removed", join(lines)[:len(join(lines))-1], certificate.CheckJournalChain},
	}
	if r, err := verifyJournal(t, rep, join(lines)); err != nil || !r.OK() {
		t.Fatalf("the untouched journal does not verify: %v", err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := verifyJournal(t, rep, c.journal)
			if !errors.Is(err, certificate.ErrVerification) || r.OK() {
				t.Fatalf("tampering went unnoticed: err %v", err)
			}
			if checkStatus(r, c.fails) != certificate.Fail {
				t.Fatalf("check %s: %s, want fail (%+v)", c.fails, checkStatus(r, c.fails), r.Checks)
			}
		})
	}

	// A migration whose deletions were not journalled: the chain and heads are
	// whole, and the manifest's deletions have no entries.
	h2 := newHarness(t, storeKinds[1], fmt.Sprintf(sitesYAML, "fail"))
	h2.standardData(4)
	rep2 := journalRun(t, h2, true)
	raw2, _ := readJournalFile(t, rep2.JournalPath)
	r, err := verifyJournal(t, rep2, bytes.Join(raw2, nil))
	if !errors.Is(err, certificate.ErrVerification) || checkStatus(r, certificate.CheckJournalCoverage) != certificate.Fail ||
		checkStatus(r, certificate.CheckJournalChain) != certificate.Pass || checkStatus(r, certificate.CheckJournalHeads) != certificate.Pass {
		t.Fatalf("deletions without journal entries: err %v, checks %+v", err, r.Checks)
	}
	for _, c := range r.Checks {
		if c.Name == certificate.CheckJournalCoverage && !strings.Contains(c.Message, "no delete of") {
			t.Fatalf("coverage message %q does not name the missing delete", c.Message)
		}
	}
}

var _ = providers.ErrNotFound

// readmeJournalCheck is the independent check script of README.md's Journal section.
func readmeJournalCheck(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "<!-- journal-check.py -->\n```python\n")
	script, _, ok2 := strings.Cut(rest, "```\n")
	if !ok || !ok2 {
		t.Fatal("README.md has no journal-check.py block")
	}
	path := t.TempDir() + "/journal-check.py"
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// The README's script, run by python3 on a real report, accepts the journal and
// catches a changed, a dropped and a reordered entry, as report verify does.
func TestReadmeJournalCheck(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed")
	}
	script := readmeJournalCheck(t)
	h := newHarness(t, storeKinds[1], fmt.Sprintf(sitesYAML, "fail"))
	h.standardData(3)
	rep := journalRun(t, h, false)
	lines, entries := readJournalFile(t, rep.JournalPath)
	run := func(journal []byte) (string, error) {
		path := t.TempDir() + "/journal.jsonl"
		if err := os.WriteFile(path, journal, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(python, script, path, rep.CertificatePath).CombinedOutput()
		return string(out), err
	}
	out, err := run(bytes.Join(lines, nil))
	if err != nil || !strings.Contains(out, fmt.Sprintf("journal OK: %d entries in 2 streams", len(entries))) {
		t.Fatalf("the script rejects the untouched journal: %v\n%s", err, out)
	}
	mid := len(lines) / 2
	changed := append([][]byte{}, lines...)
	changed[mid] = bytes.Replace(changed[mid], []byte(`"outcome":"`), []byte(`"outcome":"x`), 1)
	dropped := append(append([][]byte{}, lines[:mid]...), lines[mid+1:]...)
	swapped := append([][]byte{}, lines...)
	swapped[mid], swapped[mid+1] = swapped[mid+1], swapped[mid]
	for name, j := range map[string][][]byte{
		"changed": changed, "dropped": dropped, "swapped": swapped,
		"last dropped": lines[:len(lines)-1], "rechained": rechain(t, dropped),
	} {
		if out, err := run(bytes.Join(j, nil)); err == nil {
			t.Errorf("%s: the script accepted a tampered journal:\n%s", name, out)
		}
	}
}

// The journal on a PostgreSQL state: two processes' streams, written in runs, read
// back in order; the report's journal verifies whole.
func TestJournalPostgresState(t *testing.T) {
	h := newHarness(t, storeKinds[1], fmt.Sprintf(sitesYAML, "fail"))
	h.standardData(4)
	rep := journalRunState(t, h, false, storetest.PostgresState(t, "ferry_journal_test_"))
	raw, entries := readJournalFile(t, rep.JournalPath)
	r, err := verifyJournal(t, rep, bytes.Join(raw, nil))
	if err != nil || checkStatus(r, certificate.CheckJournalCoverage) != certificate.Pass {
		t.Fatalf("journal on PostgreSQL: %v (%+v)", err, r.Checks)
	}
	if js := rep.Statement.Predicate.Journal; js == nil || len(js.Streams) != 2 || js.Entries != int64(len(entries)) || len(entries) < 50 {
		t.Fatalf("journal heads %+v for %d entries", js, len(entries))
	}
}

// Workers of a shared phase each write their own stream, and every entry names the
// worker that made the request.
func TestJournalWorkers(t *testing.T) {
	h := newHarness(t, storeKinds[1], fmt.Sprintf(sitesYAML, "fail"))
	h.standardData(6)
	ctx := context.Background()
	m := h.open()
	if _, err := m.Plan(ctx); err != nil {
		t.Fatal(err)
	}
	m.Close()
	var ws []*Migration
	for i := 0; i < 2; i++ {
		o := h.options(false)
		o.Worker, o.RangeSize = true, 4
		w, err := Open(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.Close() })
		ws = append(ws, w)
	}
	errs := make(chan error, 2)
	for _, w := range ws {
		go func() { _, err := w.Copy(ctx); errs <- err }()
	}
	for range ws {
		if err := <-errs; err != nil {
			t.Fatalf("worker copy: %v", err)
		}
	}
	for _, w := range ws {
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	streams := map[string]map[string]bool{} // stream -> worker ids of its writes
	err := h.open().State.Journal(ctx, func(e checkpoints.JournalEntry) error {
		var je certificate.JournalEntry
		if err := json.Unmarshal([]byte(e.Line), &je); err != nil {
			return err
		}
		if je.Op == "write" && je.Site == "target" && !isMarkerKey(je.Key) {
			if je.Worker == "" {
				return fmt.Errorf("a worker's write names no worker: %s", e.Line)
			}
			if streams[je.Stream] == nil {
				streams[je.Stream] = map[string]bool{}
			}
			streams[je.Stream][je.Worker] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for s, ids := range streams {
		if len(ids) != 1 {
			t.Fatalf("stream %s names workers %v, want one", s, ids)
		}
		for id := range ids {
			if seen[id] {
				t.Fatalf("worker %s writes in two streams", id)
			}
			seen[id] = true
		}
	}
	if len(streams) == 0 {
		t.Fatal("no worker wrote anything")
	}
}
