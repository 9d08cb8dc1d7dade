package migrate

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/migrate/certificate"
	"github.com/ferrymigrate/ferry/migrate/spec"
	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/journaled"
)

// The journal of ferry's own access (DESIGN.md "Journal and audit"). Every store is
// wrapped in a providers/journaled decorator whose events land here: each becomes a
// certificate.JournalEntry, numbered and chained in this process's stream (each names
// the SHA-256 of the stream's previous entry), and is written to the state in batches
// by a buffered writer of its own (one transaction per batch, like the record
// batcher's group commit), so journalling costs one insert per entry in a shared
// transaction, not a transaction per request. `ferry report` writes the state's
// journal to journal.jsonl and its heads into the certificate.
//
// One stream per process (per opened migration): its id starts with the time the
// process opened the migration, so the streams' byte order (the order of journal.jsonl) is the order in
// which ferry processes started. Entries still in the buffer when a process is killed
// (at most journalInterval's worth) are lost with it; a clean exit writes them all.

const (
	journalBatch    = 1024                   // entries per transaction
	journalInterval = 200 * time.Millisecond // the longest an entry waits in the buffer
	journalMaxQueue = 64 * 1024              // Record waits for the writer beyond this
)

type journal struct {
	state  checkpoints.JournalStore
	stream string
	host   string
	worker func() string

	mu      sync.Mutex
	cond    *sync.Cond // signalled when the queue shrinks
	seq     int64
	prev    string
	pending []checkpoints.JournalEntry
	err     error

	flushMu sync.Mutex // one AppendJournal at a time, in queue order
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

func newJournal(state checkpoints.JournalStore, worker func() string) *journal {
	host, _ := os.Hostname()
	// The wall clock, not the migration's (a test's clock stands still), and a random
	// tail: two migrations opened by one process at once are two streams.
	var tail [4]byte
	_, _ = rand.Read(tail[:])
	j := &journal{
		state:  state,
		stream: fmt.Sprintf("%s-%s-%d-%x", time.Now().UTC().Format("20060102T150405.000000000Z"), host, os.Getpid(), tail),
		host:   host, worker: worker, prev: certificate.JournalGenesis,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	j.cond = sync.NewCond(&j.mu)
	go j.loop()
	return j
}

func (j *journal) loop() {
	defer close(j.done)
	t := time.NewTicker(journalInterval)
	defer t.Stop()
	for {
		select {
		case <-j.stop:
			return
		case <-t.C:
		case <-j.kick:
		}
		_ = j.flush(context.Background())
	}
}

// add chains e into the stream and queues it.
func (j *journal) add(e certificate.JournalEntry) {
	e.Stream, e.Host = j.stream, j.host
	if j.worker != nil {
		e.Worker = j.worker()
	}
	j.mu.Lock()
	for len(j.pending) >= journalMaxQueue && j.err == nil {
		j.cond.Wait()
	}
	j.seq++
	e.Seq, e.Prev = j.seq, j.prev
	line, hash, err := certificate.MarshalJournalEntry(e)
	if err != nil {
		// Cannot happen for the strings we build (all UTF-8); keep the chain whole.
		j.seq--
		if j.err == nil {
			j.err = fmt.Errorf("journal: %w", err)
		}
		j.mu.Unlock()
		return
	}
	j.prev = hash
	j.pending = append(j.pending, checkpoints.JournalEntry{Stream: e.Stream, Seq: e.Seq, Line: string(line)})
	full := len(j.pending) >= journalBatch
	j.mu.Unlock()
	if full {
		select {
		case j.kick <- struct{}{}:
		default:
		}
	}
}

// flush writes what is queued; nil means it is durable.
func (j *journal) flush(ctx context.Context) error {
	j.flushMu.Lock()
	defer j.flushMu.Unlock()
	for {
		j.mu.Lock()
		if j.err != nil {
			err := j.err
			j.mu.Unlock()
			return err
		}
		batch := j.pending
		if len(batch) > journalBatch {
			batch = batch[:journalBatch]
		}
		j.mu.Unlock()
		if len(batch) == 0 {
			return nil
		}
		err := j.state.AppendJournal(ctx, batch)
		j.mu.Lock()
		if err != nil {
			j.err = fmt.Errorf("journal: %w", err)
		} else {
			j.pending = j.pending[len(batch):]
		}
		j.cond.Broadcast()
		j.mu.Unlock()
		if err != nil {
			return j.err
		}
	}
}

// close stops the writer and writes the rest.
func (j *journal) close(ctx context.Context) error {
	close(j.stop)
	<-j.done
	return j.flush(ctx)
}

// siteJournal turns one store's events into entries.
type siteJournal struct {
	j        *journal
	site     string
	identity string
	store    providers.Store // for URIs
}

// Record implements journaled.Recorder.
func (s *siteJournal) Record(ev journaled.Event) {
	odd := !utf8.ValidString(ev.Key)
	e := certificate.JournalEntry{
		Time: ev.Time.UTC().Format(time.RFC3339Nano), Site: s.site, Op: ev.Op, Call: ev.Call,
		Key: certificate.EscapeKey(ev.Key), Version: ev.Version, ETag: ev.ETag, Handle: certificate.EscapeKey(ev.Handle),
		Count: ev.Count, RequestID: strings.Join(ev.RequestIDs, " "), Identity: s.identity,
		Outcome: journalOutcome(ev.Err),
	}
	if ev.Call != "List" && ev.Call != "ListRange" && ev.Call != "SplitKeys" {
		e.URI = storeURI(s.store, ev.Key, odd)
	}
	if ev.Err != nil {
		e.Error = truncateRunes(certificate.EscapeKey(ev.Err.Error()), 300)
	}
	s.j.add(e)
}

func journalOutcome(err error) string {
	switch {
	case err == nil:
		return certificate.OutcomeOK
	case errors.Is(err, providers.ErrNotFound):
		return certificate.OutcomeNotFound
	case errors.Is(err, providers.ErrPrecondition):
		return certificate.OutcomePrecondition
	case errors.Is(err, providers.ErrPermission):
		return certificate.OutcomeDenied
	}
	return certificate.OutcomeError
}

func truncateRunes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// journalStore wraps a freshly opened store in the journal decorator. No journal in a
// dry run (its state is a scratch copy), without a state, or with Options.NoJournal.
func (m *Migration) journalStore(ctx context.Context, name string, creds spec.Credentials, url string, s providers.Store) providers.Store {
	if m.journal == nil {
		return s
	}
	return journaled.Wrap(s, &siteJournal{j: m.journal, site: name, identity: identityOf(ctx, s, creds, url), store: s})
}

// openJournal starts this process's stream, when the migration journals.
func (m *Migration) openJournal() {
	if m.State == nil || m.Opts.DryRun || m.Opts.ReadOnlyState || m.Opts.NoJournal || m.Opts.Offline {
		return
	}
	m.journal = newJournal(m.State, func() string {
		if w := m.worker; w != nil {
			return w.id
		}
		return ""
	})
}

// closeJournal writes the rest of the journal; its error fails the phase's close.
func (m *Migration) closeJournal() error {
	if m.journal == nil {
		return nil
	}
	return m.journal.close(context.Background())
}

// identityOf names who ferry acts as at a store, never a secret: what the store says
// (providers.Principal: an access key id, a user), else what the spec's credentials
// name (a profile, the access key id in the named variable (AccessKeyIdentity), a service account's
// e-mail from its key file, a principal), else "default credentials".
func identityOf(ctx context.Context, s providers.Store, c spec.Credentials, url string) string {
	if p, ok := providers.As[providers.Principal](s); ok {
		if id, err := p.Principal(ctx); err == nil && id != "" {
			return id
		}
	}
	switch {
	case c.AccessKeyEnv != "" && os.Getenv(c.AccessKeyEnv) != "":
		return providers.AccessKeyIdentity(os.Getenv(c.AccessKeyEnv))
	case c.AccessKeyEnv != "":
		return "access_key_env:" + c.AccessKeyEnv
	case c.Profile != "":
		return "aws_profile:" + c.Profile
	case c.OCIProfile != "":
		return "oci_profile:" + c.OCIProfile
	case c.Auth != "":
		return "auth:" + c.Auth
	case c.GCPCredentialsFile != "":
		var sa struct {
			ClientEmail string `json:"client_email"`
		}
		if b, err := os.ReadFile(c.GCPCredentialsFile); err == nil && json.Unmarshal(b, &sa) == nil && sa.ClientEmail != "" {
			return "service_account:" + sa.ClientEmail
		}
		return "gcp_credentials_file:" + c.GCPCredentialsFile
	case c.AccountKeyEnv != "":
		return "account_key:" + accountOf(url)
	case c.SASTokenEnv != "":
		return "sas_token_env:" + c.SASTokenEnv
	}
	if strings.HasPrefix(url, "file://") {
		if u := os.Getenv("USER"); u != "" {
			return "local_user:" + u
		}
		return fmt.Sprintf("local_uid:%d", os.Getuid())
	}
	return "default credentials"
}

// accountOf is the storage account of an azblob:// URL.
func accountOf(url string) string {
	rest, _ := strings.CutPrefix(url, "azblob://")
	account, _, _ := strings.Cut(rest, "/")
	return account
}
