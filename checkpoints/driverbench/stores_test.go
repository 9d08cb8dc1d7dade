package driverbench

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/ncruces/go-sqlite3"
	_ "github.com/ncruces/go-sqlite3/driver" // registers "sqlite3"
	_ "modernc.org/sqlite"                   // registers "sqlite"
)

// store is the hot path under test: Save (one transaction) and the keyset scan of
// Records (pages of pageN in key order from lo through hi, one read transaction per
// page, fn called after the page's transaction ended, as keysetRecords does).
type store interface {
	save(recs []Record) error
	scan(lo, hi string, fn func(*Record)) (int, error)
	close() error
}

var bg = context.Background()

// dsn is ferry's openDB DSN (checkpoints/sqlite.go): the same pragmas and _txlock.
// Both drivers take _pragma and _txlock with the same meaning.
func dsn(path string) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(15000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(OFF)")
	q.Set("_txlock", "immediate")
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

func schema(one bool) string {
	if one {
		return oneRowSchema
	}
	return twoTableSchema
}

func scanPages(lo, hi string, fn func(*Record), page func(after, hi string, first bool) ([]Record, error)) (int, error) {
	after, first, total := lo, true, 0
	for {
		recs, err := page(after, hi, first)
		if err != nil {
			return total, err
		}
		for i := range recs {
			fn(&recs[i])
		}
		total += len(recs)
		if len(recs) < pageN {
			return total, nil
		}
		after, first = recs[len(recs)-1].Key, false
	}
}

// attach appends replicas to the records of a page by key, as loadReplicas does.
type attach struct {
	page []Record
	idx  map[string]int
}

func newAttach(page []Record) attach {
	idx := make(map[string]int, len(page))
	for i, r := range page {
		idx[r.Key] = i
	}
	return attach{page, idx}
}

func (a attach) add(key string, p Replica) {
	if i, ok := a.idx[key]; ok {
		a.page[i].Replicas = append(a.page[i].Replicas, p)
	}
}

// ---- database/sql (variants 1, 2a, 3 and 5 with modernc) ----

type sqlStore struct {
	db     *sql.DB
	one    bool
	reuse  bool                 // one connection; statements prepared once, used in each tx with tx.Stmt
	shared map[string]*sql.Stmt // reuse: prepared on db
	buf    []byte
}

func openSQL(driverName, path string, one, reuse bool) (store, error) {
	db, err := sql.Open(driverName, dsn(path))
	if err != nil {
		return nil, err
	}
	if reuse {
		db.SetMaxOpenConns(1)
	} else {
		db.SetMaxOpenConns(4) // as ferry
	}
	db.SetConnMaxIdleTime(time.Minute)
	if _, err := db.Exec(schema(one)); err != nil {
		db.Close()
		return nil, err
	}
	s := &sqlStore{db: db, one: one, reuse: reuse, shared: map[string]*sql.Stmt{}}
	if reuse {
		// Prepared before any transaction holds the one connection.
		qs := []string{recUpsert, repUpsert, dropQ(0), dropQ(1), dropQ(2), dropQ(3), recFirstQ, recNextQ, repRangeQ}
		if one {
			qs = []string{oneUpsert, oneFirstQ, oneNextQ}
		}
		for _, q := range qs {
			st, err := db.PrepareContext(bg, q)
			if err != nil {
				s.close()
				return nil, err
			}
			s.shared[q] = st
		}
	}
	return s, nil
}

func (s *sqlStore) close() error {
	for _, st := range s.shared {
		st.Close()
	}
	return s.db.Close()
}

// prep is a statement for q in tx: prepared in tx (ferry today), or the shared one
// bound to tx (reuse; with one connection database/sql reuses the driver statement).
func (s *sqlStore) prep(tx *sql.Tx, q string) (*sql.Stmt, error) {
	if !s.reuse {
		return tx.PrepareContext(bg, q)
	}
	st, ok := s.shared[q]
	if !ok {
		return nil, fmt.Errorf("not prepared: %s", q)
	}
	return tx.StmtContext(bg, st), nil
}

func (s *sqlStore) save(recs []Record) error {
	tx, err := s.db.BeginTx(bg, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if s.one {
		err = s.saveOne(tx, recs)
	} else {
		err = s.saveTwo(tx, recs)
	}
	if err != nil {
		return err
	}
	return tx.Commit()
}

// saveTwo is checkpoints.saveTx.
func (s *sqlStore) saveTwo(tx *sql.Tx, recs []Record) error {
	recSt, err := s.prep(tx, recUpsert)
	if err != nil {
		return err
	}
	defer recSt.Close()
	repSt, err := s.prep(tx, repUpsert)
	if err != nil {
		return err
	}
	defer repSt.Close()
	drops := map[int]*sql.Stmt{}
	defer func() {
		for _, st := range drops {
			st.Close()
		}
	}()
	now := time.Now().UnixNano()
	args := make([]any, 0, 8)
	for _, r := range recs {
		if _, err := recSt.ExecContext(bg, r.Key, r.User, r.Size, r.State, r.SHA256, r.CRC32C, r.Source, r.TargetKey, r.TargetETag, r.TargetVersion,
			nanos(r.CopiedAt), nanos(r.VerifiedAt), int64(r.Attempts), r.LastError, r.Conflict, now); err != nil {
			return err
		}
		n := len(r.Replicas)
		args = append(args[:0], r.Key)
		for _, p := range r.Replicas {
			args = append(args, p.Site)
		}
		drop, ok := drops[n]
		if !ok {
			if drop, err = s.prep(tx, dropQ(n)); err != nil {
				return err
			}
			drops[n] = drop
		}
		if _, err := drop.ExecContext(bg, args...); err != nil {
			return err
		}
		for _, p := range r.Replicas {
			if _, err := repSt.ExecContext(bg, r.Key, p.Site, p.SiteKey, b2i(p.Primary), p.Size, p.ETag, p.Version, nanos(p.ModTime), p.SHA256,
				p.State, p.Stage, p.Mode, p.Handle, nanos(p.IntentAt), nanos(p.DeletedAt), nanos(p.PurgedAt), b2i(p.ConfirmedAbsent), p.LastError); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *sqlStore) saveOne(tx *sql.Tx, recs []Record) error {
	st, err := s.prep(tx, oneUpsert)
	if err != nil {
		return err
	}
	defer st.Close()
	now := time.Now().UnixNano()
	for i := range recs {
		r := &recs[i]
		s.buf = encodeRecord(s.buf[:0], r)
		if _, err := st.ExecContext(bg, r.Key, r.User, r.State, stagesOf(r), s.buf, now); err != nil {
			return err
		}
	}
	return nil
}

func (s *sqlStore) query(tx *sql.Tx, q string, args ...any) (*sql.Rows, error) {
	if !s.reuse {
		return tx.QueryContext(bg, q, args...) // as ferry: not prepared
	}
	st, err := s.prep(tx, q)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(bg, args...) // st is closed with tx
}

func (s *sqlStore) scan(lo, hi string, fn func(*Record)) (int, error) {
	return scanPages(lo, hi, fn, s.page)
}

func (s *sqlStore) page(after, hi string, first bool) ([]Record, error) {
	tx, err := s.db.BeginTx(bg, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	q := recNextQ
	if s.one {
		q = oneNextQ
	}
	if first {
		q = recFirstQ
		if s.one {
			q = oneFirstQ
		}
	}
	rows, err := s.query(tx, q, after, hi, pageN)
	if err != nil {
		return nil, err
	}
	var page []Record
	for rows.Next() {
		var r Record
		var up int64
		if s.one {
			var data []byte
			if err = rows.Scan(&r.Key, &r.User, &r.State, &data, &up); err == nil {
				err = decodeRecord(&r, data)
			}
		} else {
			var cp, vf int64
			err = rows.Scan(&r.Key, &r.User, &r.Size, &r.State, &r.SHA256, &r.CRC32C, &r.Source, &r.TargetKey, &r.TargetETag, &r.TargetVersion,
				&cp, &vf, &r.Attempts, &r.LastError, &r.Conflict, &up)
			r.CopiedAt, r.VerifiedAt = fromNanos(cp), fromNanos(vf)
		}
		if err != nil {
			rows.Close()
			return nil, err
		}
		r.UpdatedAt = fromNanos(up)
		page = append(page, r)
	}
	err = rows.Err()
	rows.Close()
	if err != nil || len(page) == 0 || s.one {
		return page, err
	}
	rows, err = s.query(tx, repRangeQ, page[0].Key, page[len(page)-1].Key)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	a := newAttach(page)
	for rows.Next() {
		var key string
		var p Replica
		var mt, in, de, pu int64
		var prim, abs int
		if err := rows.Scan(&key, &p.Site, &p.SiteKey, &prim, &p.Size, &p.ETag, &p.Version, &mt, &p.SHA256, &p.State, &p.Stage, &p.Mode, &p.Handle,
			&in, &de, &pu, &abs, &p.LastError); err != nil {
			return nil, err
		}
		p.Primary, p.ConfirmedAbsent = prim != 0, abs != 0
		p.ModTime, p.IntentAt, p.DeletedAt, p.PurgedAt = fromNanos(mt), fromNanos(in), fromNanos(de), fromNanos(pu)
		a.add(key, p)
	}
	return page, rows.Err()
}

// ---- modernc without database/sql's locking (variant 2b and 5) ----

// rawStore drives the modernc driver's own driver.Conn, reached once per
// transaction through sql.Conn.Raw: no database/sql mutex per call (db, driverConn,
// Tx, Stmt, Rows), statements prepared once on the one connection. modernc's own
// per-call cost (libc TLS, C-string binds, SQLite's serialized-mode mutexes, which
// modernc hard-codes with SQLITE_OPEN_FULLMUTEX) remains.
type rawStore struct {
	db    *sql.DB
	conn  *sql.Conn
	one   bool
	stmts map[string]driver.Stmt
	nv    []driver.NamedValue
	dest  []driver.Value
	buf   []byte
}

func openRaw(path string, one bool) (store, error) {
	db, err := sql.Open("sqlite", dsn(path))
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(schema(one)); err != nil {
		db.Close()
		return nil, err
	}
	conn, err := db.Conn(bg)
	if err != nil {
		db.Close()
		return nil, err
	}
	return &rawStore{db: db, conn: conn, one: one, stmts: map[string]driver.Stmt{}, dest: make([]driver.Value, 18)}, nil
}

func (s *rawStore) close() error {
	s.conn.Raw(func(any) error {
		for _, st := range s.stmts {
			st.Close()
		}
		return nil
	})
	s.conn.Close()
	return s.db.Close()
}

func (s *rawStore) stmt(dc driver.Conn, q string) (driver.Stmt, error) {
	st, ok := s.stmts[q]
	if !ok {
		var err error
		if st, err = dc.(driver.ConnPrepareContext).PrepareContext(bg, q); err != nil {
			return nil, err
		}
		s.stmts[q] = st
	}
	return st, nil
}

func (s *rawStore) args(args ...any) []driver.NamedValue {
	s.nv = s.nv[:0]
	for i, a := range args {
		s.nv = append(s.nv, driver.NamedValue{Ordinal: i + 1, Value: a})
	}
	return s.nv
}

func (s *rawStore) exec(st driver.Stmt, args ...any) error {
	_, err := st.(driver.StmtExecContext).ExecContext(bg, s.args(args...))
	return err
}

func (s *rawStore) save(recs []Record) error {
	return s.conn.Raw(func(c any) (err error) {
		dc := c.(driver.Conn)
		tx, err := dc.(driver.ConnBeginTx).BeginTx(bg, driver.TxOptions{})
		if err != nil {
			return err
		}
		defer func() {
			if err != nil {
				tx.Rollback()
			}
		}()
		now := time.Now().UnixNano()
		if s.one {
			st, err := s.stmt(dc, oneUpsert)
			if err != nil {
				return err
			}
			for i := range recs {
				r := &recs[i]
				s.buf = encodeRecord(s.buf[:0], r)
				if err := s.exec(st, r.Key, r.User, r.State, stagesOf(r), s.buf, now); err != nil {
					return err
				}
			}
			return tx.Commit()
		}
		recSt, err := s.stmt(dc, recUpsert)
		if err != nil {
			return err
		}
		repSt, err := s.stmt(dc, repUpsert)
		if err != nil {
			return err
		}
		args := make([]any, 0, 8)
		for _, r := range recs {
			if err := s.exec(recSt, r.Key, r.User, r.Size, r.State, r.SHA256, r.CRC32C, r.Source, r.TargetKey, r.TargetETag, r.TargetVersion,
				nanos(r.CopiedAt), nanos(r.VerifiedAt), int64(r.Attempts), r.LastError, r.Conflict, now); err != nil {
				return err
			}
			args = append(args[:0], r.Key)
			for _, p := range r.Replicas {
				args = append(args, p.Site)
			}
			drop, err := s.stmt(dc, dropQ(len(r.Replicas)))
			if err != nil {
				return err
			}
			if err := s.exec(drop, args...); err != nil {
				return err
			}
			for _, p := range r.Replicas {
				if err := s.exec(repSt, r.Key, p.Site, p.SiteKey, b2i(p.Primary), p.Size, p.ETag, p.Version, nanos(p.ModTime), p.SHA256,
					p.State, p.Stage, p.Mode, p.Handle, nanos(p.IntentAt), nanos(p.DeletedAt), nanos(p.PurgedAt), b2i(p.ConfirmedAbsent), p.LastError); err != nil {
					return err
				}
			}
		}
		return tx.Commit()
	})
}

func (s *rawStore) scan(lo, hi string, fn func(*Record)) (int, error) {
	return scanPages(lo, hi, fn, s.page)
}

func (s *rawStore) rows(dc driver.Conn, q string, args ...any) (driver.Rows, error) {
	st, err := s.stmt(dc, q)
	if err != nil {
		return nil, err
	}
	return st.(driver.StmtQueryContext).QueryContext(bg, s.args(args...))
}

func str(v driver.Value) string {
	switch v := v.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	}
	return ""
}

func i64(v driver.Value) int64 {
	n, _ := v.(int64)
	return n
}

func (s *rawStore) page(after, hi string, first bool) (page []Record, err error) {
	err = s.conn.Raw(func(c any) (err error) {
		dc := c.(driver.Conn)
		tx, err := dc.(driver.ConnBeginTx).BeginTx(bg, driver.TxOptions{ReadOnly: true})
		if err != nil {
			return err
		}
		defer tx.Rollback()
		q := recNextQ
		if s.one {
			q = oneNextQ
		}
		if first {
			q = recFirstQ
			if s.one {
				q = oneFirstQ
			}
		}
		rows, err := s.rows(dc, q, after, hi, int64(pageN))
		if err != nil {
			return err
		}
		d := s.dest[:len(rows.Columns())]
		for {
			if err = rows.Next(d); err != nil {
				break
			}
			var r Record
			if s.one {
				r.Key, r.User, r.State, r.UpdatedAt = str(d[0]), str(d[1]), str(d[2]), fromNanos(i64(d[4]))
				blob, _ := d[3].([]byte)
				if err = decodeRecord(&r, blob); err != nil {
					break
				}
			} else {
				r = Record{Key: str(d[0]), User: str(d[1]), Size: i64(d[2]), State: str(d[3]), SHA256: str(d[4]), CRC32C: str(d[5]),
					Source: str(d[6]), TargetKey: str(d[7]), TargetETag: str(d[8]), TargetVersion: str(d[9]),
					CopiedAt: fromNanos(i64(d[10])), VerifiedAt: fromNanos(i64(d[11])), Attempts: int(i64(d[12])),
					LastError: str(d[13]), Conflict: str(d[14]), UpdatedAt: fromNanos(i64(d[15]))}
			}
			page = append(page, r)
		}
		rows.Close()
		if !errors.Is(err, io.EOF) {
			return err
		}
		if len(page) == 0 || s.one {
			return nil
		}
		rows, err = s.rows(dc, repRangeQ, page[0].Key, page[len(page)-1].Key)
		if err != nil {
			return err
		}
		defer rows.Close()
		a := newAttach(page)
		d = s.dest[:len(rows.Columns())]
		for {
			if err = rows.Next(d); err != nil {
				break
			}
			a.add(str(d[0]), Replica{Site: str(d[1]), SiteKey: str(d[2]), Primary: i64(d[3]) != 0, Size: i64(d[4]), ETag: str(d[5]),
				Version: str(d[6]), ModTime: fromNanos(i64(d[7])), SHA256: str(d[8]), State: str(d[9]), Stage: str(d[10]),
				Mode: str(d[11]), Handle: str(d[12]), IntentAt: fromNanos(i64(d[13])), DeletedAt: fromNanos(i64(d[14])),
				PurgedAt: fromNanos(i64(d[15])), ConfirmedAbsent: i64(d[16]) != 0, LastError: str(d[17])})
		}
		if !errors.Is(err, io.EOF) {
			return err
		}
		return nil
	})
	return page, err
}

// ---- ncruces/go-sqlite3 direct (variants 4 and 5) ----

// ncStore uses ncruces' Conn and Stmt: no database/sql, statements prepared once and
// bound with typed calls. The wasm2go build of SQLite is single-threaded (no
// SQLite mutexes); a Conn must not be used by two goroutines at once.
type ncStore struct {
	c     *sqlite3.Conn
	one   bool
	stmts map[string]*sqlite3.Stmt
	buf   []byte
}

func openNC(path string, one bool) (store, error) {
	c, err := sqlite3.Open(dsn(path))
	if err != nil {
		return nil, err
	}
	if err := c.Exec(schema(one)); err != nil {
		c.Close()
		return nil, err
	}
	return &ncStore{c: c, one: one, stmts: map[string]*sqlite3.Stmt{}}, nil
}

func (s *ncStore) close() error {
	for _, st := range s.stmts {
		st.Close()
	}
	return s.c.Close()
}

func (s *ncStore) stmt(q string) (*sqlite3.Stmt, error) {
	st, ok := s.stmts[q]
	if !ok {
		var tail string
		var err error
		if st, tail, err = s.c.Prepare(q); err != nil {
			return nil, err
		}
		if tail != "" {
			st.Close()
			return nil, fmt.Errorf("prepare: trailing %q", tail)
		}
		s.stmts[q] = st
	}
	return st, nil
}

// bind binds values of the types the layouts use, by position.
func bind(st *sqlite3.Stmt, args ...any) error {
	var err error
	for i, a := range args {
		switch v := a.(type) {
		case string:
			err = st.BindText(i+1, v)
		case int64:
			err = st.BindInt64(i+1, v)
		case []byte:
			err = st.BindBlob(i+1, v)
		default:
			err = fmt.Errorf("bind: %T", a)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *ncStore) save(recs []Record) (err error) {
	tx, err := s.c.BeginImmediate()
	if err != nil {
		return err
	}
	defer tx.End(&err)
	now := time.Now().UnixNano()
	if s.one {
		st, err := s.stmt(oneUpsert)
		if err != nil {
			return err
		}
		for i := range recs {
			r := &recs[i]
			s.buf = encodeRecord(s.buf[:0], r)
			st.BindText(1, r.Key)
			st.BindText(2, r.User)
			st.BindText(3, r.State)
			st.BindText(4, stagesOf(r))
			st.BindBlob(5, s.buf)
			st.BindInt64(6, now)
			if err := st.Exec(); err != nil {
				return err
			}
		}
		return nil
	}
	recSt, err := s.stmt(recUpsert)
	if err != nil {
		return err
	}
	repSt, err := s.stmt(repUpsert)
	if err != nil {
		return err
	}
	for i := range recs {
		r := &recs[i]
		recSt.BindText(1, r.Key)
		recSt.BindText(2, r.User)
		recSt.BindInt64(3, r.Size)
		recSt.BindText(4, r.State)
		recSt.BindText(5, r.SHA256)
		recSt.BindText(6, r.CRC32C)
		recSt.BindText(7, r.Source)
		recSt.BindText(8, r.TargetKey)
		recSt.BindText(9, r.TargetETag)
		recSt.BindText(10, r.TargetVersion)
		recSt.BindInt64(11, nanos(r.CopiedAt))
		recSt.BindInt64(12, nanos(r.VerifiedAt))
		recSt.BindInt64(13, int64(r.Attempts))
		recSt.BindText(14, r.LastError)
		recSt.BindText(15, r.Conflict)
		recSt.BindInt64(16, now)
		if err := recSt.Exec(); err != nil {
			return err
		}
		drop, err := s.stmt(dropQ(len(r.Replicas)))
		if err != nil {
			return err
		}
		drop.BindText(1, r.Key)
		for j, p := range r.Replicas {
			drop.BindText(j+2, p.Site)
		}
		if err := drop.Exec(); err != nil {
			return err
		}
		for j := range r.Replicas {
			p := &r.Replicas[j]
			repSt.BindText(1, r.Key)
			repSt.BindText(2, p.Site)
			repSt.BindText(3, p.SiteKey)
			repSt.BindInt64(4, b2i(p.Primary))
			repSt.BindInt64(5, p.Size)
			repSt.BindText(6, p.ETag)
			repSt.BindText(7, p.Version)
			repSt.BindInt64(8, nanos(p.ModTime))
			repSt.BindText(9, p.SHA256)
			repSt.BindText(10, p.State)
			repSt.BindText(11, p.Stage)
			repSt.BindText(12, p.Mode)
			repSt.BindText(13, p.Handle)
			repSt.BindInt64(14, nanos(p.IntentAt))
			repSt.BindInt64(15, nanos(p.DeletedAt))
			repSt.BindInt64(16, nanos(p.PurgedAt))
			repSt.BindInt64(17, b2i(p.ConfirmedAbsent))
			repSt.BindText(18, p.LastError)
			if err := repSt.Exec(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *ncStore) scan(lo, hi string, fn func(*Record)) (int, error) {
	return scanPages(lo, hi, fn, s.page)
}

func (s *ncStore) page(after, hi string, first bool) (page []Record, err error) {
	tx := s.c.Begin() // deferred: a read transaction
	defer tx.End(&err)
	q := recNextQ
	if s.one {
		q = oneNextQ
	}
	if first {
		q = recFirstQ
		if s.one {
			q = oneFirstQ
		}
	}
	st, err := s.stmt(q)
	if err != nil {
		return nil, err
	}
	defer st.Reset()
	if err := bind(st, after, hi, int64(pageN)); err != nil {
		return nil, err
	}
	for st.Step() {
		var r Record
		if s.one {
			r.Key, r.User, r.State, r.UpdatedAt = st.ColumnText(0), st.ColumnText(1), st.ColumnText(2), fromNanos(st.ColumnInt64(4))
			if err := decodeRecord(&r, st.ColumnRawBlob(3)); err != nil {
				return nil, err
			}
		} else {
			r = Record{Key: st.ColumnText(0), User: st.ColumnText(1), Size: st.ColumnInt64(2), State: st.ColumnText(3), SHA256: st.ColumnText(4),
				CRC32C: st.ColumnText(5), Source: st.ColumnText(6), TargetKey: st.ColumnText(7), TargetETag: st.ColumnText(8),
				TargetVersion: st.ColumnText(9), CopiedAt: fromNanos(st.ColumnInt64(10)), VerifiedAt: fromNanos(st.ColumnInt64(11)),
				Attempts: st.ColumnInt(12), LastError: st.ColumnText(13), Conflict: st.ColumnText(14), UpdatedAt: fromNanos(st.ColumnInt64(15))}
		}
		page = append(page, r)
	}
	if err := st.Reset(); err != nil {
		return nil, err
	}
	if len(page) == 0 || s.one {
		return page, nil
	}
	rs, err := s.stmt(repRangeQ)
	if err != nil {
		return nil, err
	}
	defer rs.Reset()
	if err := bind(rs, page[0].Key, page[len(page)-1].Key); err != nil {
		return nil, err
	}
	a := newAttach(page)
	for rs.Step() {
		a.add(rs.ColumnText(0), Replica{Site: rs.ColumnText(1), SiteKey: rs.ColumnText(2), Primary: rs.ColumnInt64(3) != 0, Size: rs.ColumnInt64(4),
			ETag: rs.ColumnText(5), Version: rs.ColumnText(6), ModTime: fromNanos(rs.ColumnInt64(7)), SHA256: rs.ColumnText(8),
			State: rs.ColumnText(9), Stage: rs.ColumnText(10), Mode: rs.ColumnText(11), Handle: rs.ColumnText(12),
			IntentAt: fromNanos(rs.ColumnInt64(13)), DeletedAt: fromNanos(rs.ColumnInt64(14)), PurgedAt: fromNanos(rs.ColumnInt64(15)),
			ConfirmedAbsent: rs.ColumnInt64(16) != 0, LastError: rs.ColumnText(17)})
	}
	return page, rs.Reset()
}
