package oracle

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Table is the name of the table a Workload writes.
const Table = "coffer_oracle"

// Row is one row of the oracle table.
type Row struct {
	ID          int64
	CommittedAt time.Time // SYSDATETIME() as the INSERT evaluated it, datetime2(3)
	Payload     string
}

// Tx is one committed INSERT. It committed at some server time in
// [NotBefore, NotAfter]; on the simulator with a clock that does not move
// during the statement, both are the commit time.
type Tx struct {
	NotBefore, NotAfter time.Time
	// Count and Checksum are the table's COUNT(*) and
	// CHECKSUM_AGG(CHECKSUM(*)) just after the transaction, as the
	// source server computed them (Checksum is NULL for no rows).
	Count    int64
	Checksum sql.NullInt64
}

// Workload inserts rows into one database's oracle table and records what
// it committed. It is not safe for concurrent use; it must be the table's
// only writer.
type Workload struct {
	db       *sql.DB
	database string
	rows     []Row
	txs      []Tx
	offset   time.Duration // the server's local time less UTC, read by New
}

// quote quotes an identifier as QUOTENAME does.
func quote(name string) string { return "[" + strings.ReplaceAll(name, "]", "]]") + "]" }

// tableIn is the three-part name of the oracle table in database.
func tableIn(database string) string { return quote(database) + ".dbo." + Table }

// New creates the oracle table in database (dropping one left by an
// earlier run) and returns a Workload that writes it. The table's
// creation is itself a transaction: restore to a moment after New
// returned.
func New(ctx context.Context, db *sql.DB, database string) (*Workload, error) {
	t := tableIn(database)
	if _, err := db.ExecContext(ctx, "DROP TABLE IF EXISTS "+t); err != nil {
		return nil, fmt.Errorf("drop the oracle table of %s: %w", database, err)
	}
	q := "CREATE TABLE " + t + " (id bigint IDENTITY(1,1) PRIMARY KEY, committed_at datetime2(3) NOT NULL, payload nvarchar(100) NOT NULL)"
	if _, err := db.ExecContext(ctx, q); err != nil {
		return nil, fmt.Errorf("create the oracle table in %s: %w", database, err)
	}
	var local, utc time.Time
	if err := db.QueryRowContext(ctx, "SELECT SYSDATETIME(), SYSUTCDATETIME()").Scan(&local, &utc); err != nil {
		return nil, fmt.Errorf("read the server's time zone: %w", err)
	}
	return &Workload{db: db, database: database, offset: local.Sub(utc).Round(15 * time.Minute)}, nil
}

// ServerTime is a UTC moment (coffer's restore times are UTC) on the
// server's clock, in which the workload's times are, by the offset the
// server had when New ran. A daylight-saving change during the workload
// is not accounted for: run it within one offset.
func (w *Workload) ServerTime(utc time.Time) time.Time {
	return utc.UTC().Add(w.offset)
}

// Database returns the name of the database the workload writes.
func (w *Workload) Database() string { return w.database }

// Txs returns the transactions committed so far, oldest first.
func (w *Workload) Txs() []Tx { return append([]Tx(nil), w.txs...) }

// serverNow reads the server's clock.
func serverNow(ctx context.Context, db *sql.DB) (time.Time, error) {
	var t time.Time
	if err := db.QueryRowContext(ctx, "SELECT SYSDATETIME()").Scan(&t); err != nil {
		return time.Time{}, fmt.Errorf("read the server's clock: %w", err)
	}
	return t, nil
}

// Insert commits one transaction of n rows (1 to 1000) and returns it.
func (w *Workload) Insert(ctx context.Context, n int) (Tx, error) {
	if n < 1 || n > 1000 {
		return Tx{}, fmt.Errorf("insert %d rows: want 1 to 1000", n)
	}
	t := tableIn(w.database)
	before, err := serverNow(ctx, w.db)
	if err != nil {
		return Tx{}, err
	}
	var b strings.Builder
	b.WriteString("INSERT INTO " + t + " (committed_at, payload) VALUES ")
	args := make([]any, n)
	for k := range n {
		if k > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "(SYSDATETIME(), @p%d)", k+1)
		args[k] = fmt.Sprintf("tx %d row %d: %s", len(w.txs)+1, k+1, strings.Repeat("é", k%7))
	}
	if _, err := w.db.ExecContext(ctx, b.String(), args...); err != nil {
		return Tx{}, fmt.Errorf("insert into the oracle table of %s: %w", w.database, err)
	}
	after, err := serverNow(ctx, w.db)
	if err != nil {
		return Tx{}, err
	}
	var last int64
	if k := len(w.rows); k > 0 {
		last = w.rows[k-1].ID
	}
	added, err := readRows(ctx, w.db, w.database, last)
	if err != nil {
		return Tx{}, err
	}
	if len(added) != n {
		return Tx{}, fmt.Errorf("insert into the oracle table of %s: %d rows appeared, want %d: is something else writing it?", w.database, len(added), n)
	}
	w.rows = append(w.rows, added...)
	count, sum, err := state(ctx, w.db, w.database)
	if err != nil {
		return Tx{}, err
	}
	tx := Tx{NotBefore: before, NotAfter: after, Count: count, Checksum: sum}
	if count != int64(len(w.rows)) {
		return Tx{}, fmt.Errorf("oracle table of %s: %d rows, want %d: is something else writing it?", w.database, count, len(w.rows))
	}
	w.txs = append(w.txs, tx)
	return tx, nil
}

// readRows returns the rows with id > after, by id.
func readRows(ctx context.Context, db *sql.DB, database string, after int64) ([]Row, error) {
	rows, err := db.QueryContext(ctx, "SELECT id, committed_at, payload FROM "+tableIn(database)+" WHERE id > @p1", after)
	if err != nil {
		return nil, fmt.Errorf("read the oracle table of %s: %w", database, err)
	}
	defer rows.Close()
	var out []Row
	for rows.Next() {
		var r Row
		if err := rows.Scan(&r.ID, &r.CommittedAt, &r.Payload); err != nil {
			return nil, fmt.Errorf("read the oracle table of %s: %w", database, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the oracle table of %s: %w", database, err)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].ID < out[b].ID })
	return out, nil
}

// state returns COUNT(*) and CHECKSUM_AGG(CHECKSUM(*)) of the oracle table.
func state(ctx context.Context, db *sql.DB, database string) (int64, sql.NullInt64, error) {
	var n int64
	var sum sql.NullInt64
	q := "SELECT COUNT(*), CHECKSUM_AGG(CHECKSUM(*)) FROM " + tableIn(database)
	if err := db.QueryRowContext(ctx, q).Scan(&n, &sum); err != nil {
		return 0, sum, fmt.Errorf("count the oracle table of %s: %w", database, err)
	}
	return n, sum, nil
}

// Expect returns how many of the transactions a restore as of asOf must
// hold (those that surely committed at or before it) and may hold (also
// those whose commit interval contains it).
func (w *Workload) Expect(asOf time.Time) (must, may int) {
	for k, tx := range w.txs {
		if !tx.NotAfter.After(asOf) {
			must = k + 1
		}
		if !tx.NotBefore.After(asOf) {
			may = k + 1
		}
	}
	return must, may
}

// Check compares the oracle table of database restored, on the server db
// reaches, with the transactions committed at or before asOf: the restored
// table must hold exactly the rows of the first k transactions, for a k
// the commit intervals allow, with the COUNT(*) and CHECKSUM_AGG the
// source had after transaction k. The error lists every difference.
func (w *Workload) Check(ctx context.Context, db *sql.DB, restored string, asOf time.Time) error {
	return w.CheckBetween(ctx, db, restored, asOf, asOf)
}

// CheckBetween is Check for a restore known only to be as of some moment
// in [from, to]: the end of a backup, which holds the transactions that
// committed before it started and may hold those that committed while it
// ran.
func (w *Workload) CheckBetween(ctx context.Context, db *sql.DB, restored string, from, to time.Time) error {
	must, _ := w.Expect(from)
	_, may := w.Expect(to)
	asOf := to
	count, sum, err := state(ctx, db, restored)
	if err != nil {
		return err
	}
	k := -1
	var want Tx // Count 0 and a NULL checksum before the first transaction
	for j := 0; j <= len(w.txs); j++ {
		if j > 0 {
			want = w.txs[j-1]
		}
		if want.Count == count {
			k = j
			break
		}
	}
	switch {
	case k < 0:
		return fmt.Errorf("%s as of %s: %d rows, which is no transaction's boundary", restored, asOf.Format(time.RFC3339Nano), count)
	case k < must || k > may:
		return fmt.Errorf("%s as of %s: the rows of %d transactions, want %s", restored, asOf.Format(time.RFC3339Nano), k, between(must, may))
	}
	var errs []error
	if sum != want.Checksum {
		errs = append(errs, fmt.Errorf("CHECKSUM_AGG %s, want %s as the source had after transaction %d", nullString(sum), nullString(want.Checksum), k))
	}
	got, err := readRows(ctx, db, restored, 0)
	if err != nil {
		return err
	}
	expected := w.rows[:count]
	for j := 0; j < max(len(got), len(expected)); j++ {
		switch {
		case j >= len(got):
			errs = append(errs, fmt.Errorf("row %d missing", expected[j].ID))
		case j >= len(expected):
			errs = append(errs, fmt.Errorf("row %d not expected", got[j].ID))
		case !sameRow(got[j], expected[j]):
			errs = append(errs, fmt.Errorf("row %d is %+v, want %+v", got[j].ID, got[j], expected[j]))
		}
		if len(errs) > 10 {
			break
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s as of %s: %w", restored, asOf.Format(time.RFC3339Nano), errors.Join(errs...))
	}
	return nil
}

func sameRow(a, b Row) bool {
	return a.ID == b.ID && a.CommittedAt.Equal(b.CommittedAt) && a.Payload == b.Payload
}

func between(lo, hi int) string {
	if lo == hi {
		return fmt.Sprint(lo)
	}
	return fmt.Sprintf("%d to %d", lo, hi)
}

func nullString(n sql.NullInt64) string {
	if !n.Valid {
		return "NULL"
	}
	return fmt.Sprint(n.Int64)
}
