package jobs

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riversqlite"

	"github.com/clade-dev/clade/internal/intake"
)

// TestSQLiteJobRow checks that the SQLite import path writes the same river_job
// row as River's own InsertManyFastTx (see sqliteTx.insertJobs).
func TestSQLiteJobRow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := s.b.(*sqliteBackend)
	ins, err := river.NewClient(riversqlite.New(b.db), &river.Config{Logger: discardLogger})
	if err != nil {
		t.Fatal(err)
	}
	var runID int64
	if err := s.b.queryRow(ctx, `INSERT INTO clade_run (name, input_path, input_size, input_sha256, created_at)
		VALUES ('r', 'p', 0, '', 0) RETURNING id`).Scan(&runID); err != nil {
		t.Fatal(err)
	}
	err = s.inTx(ctx, func(tx txn) error {
		ids, err := tx.insertRequests(ctx, runID, []*intake.Request{{Line: 1, CustomID: "a", Model: "m", MaxTokens: 1, Params: []byte(`{}`)}})
		if err != nil {
			return err
		}
		if err := tx.insertJobs(ctx, runID, ids, 7); err != nil {
			return err
		}
		_, err = ins.InsertManyFastTx(ctx, tx.(*sqliteTx).tx, []river.InsertManyParams{
			{Args: requestArgs{Run: runID, Request: ids[0]}, InsertOpts: &river.InsertOpts{MaxAttempts: 7}}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	cols := []string{"json(args)", "attempt", "attempted_at", "attempted_by", "typeof(created_at)", "length(created_at)",
		"errors", "finalized_at", "kind", "max_attempts", "json(metadata)", "priority", "queue", "state",
		"typeof(scheduled_at)", "length(scheduled_at)", "json(tags)", "unique_key", "unique_states",
		"scheduled_at <= datetime('now', 'subsec')"}
	rs, err := s.b.query(ctx, `SELECT `+strings.Join(cols, ", ")+` FROM river_job ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	var rows []string
	for rs.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rs.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		var sb strings.Builder
		for i, v := range vals {
			if b, ok := v.([]byte); ok {
				v = string(b)
			}
			fmt.Fprintf(&sb, "%s=%v ", cols[i], v)
		}
		rows = append(rows, sb.String())
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 {
		t.Fatalf("river_job has %d rows, want 2 (clade's insert and River's)", len(rows))
	}
	if rows[0] != rows[1] {
		t.Errorf("river_job rows differ:\nclade: %s\nriver: %s", rows[0], rows[1])
	}
}
