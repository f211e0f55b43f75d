package jobs

import (
	"reflect"
	"testing"
)

// toSQLite rewrites $N placeholders to anonymous ? ones, with the arguments in
// the order the placeholders take them.
func TestToSQLite(t *testing.T) {
	for _, tt := range []struct {
		name, q, text string
		args, want    []any
		wantErr       bool
	}{
		{name: "in order", q: `INSERT INTO t VALUES ($1, $2, $3)`, text: `INSERT INTO t VALUES (?, ?, ?)`,
			args: []any{1, "a", 3.5}, want: []any{1, "a", 3.5}},
		{name: "repeated", q: `SELECT 1 WHERE ($1 = 0 OR run_id = $1) AND x = $2`, text: `SELECT 1 WHERE (? = 0 OR run_id = ?) AND x = ?`,
			args: []any{7, "b"}, want: []any{7, 7, "b"}},
		{name: "out of order", q: `UPDATE t SET a = $2 WHERE id = $1`, text: `UPDATE t SET a = ? WHERE id = ?`,
			args: []any{1, "z"}, want: []any{"z", 1}},
		{name: "json path is not a placeholder", q: `SELECT json_extract(args, '$.run') FROM j WHERE k = $1`,
			text: `SELECT json_extract(args, '$.run') FROM j WHERE k = ?`, args: []any{"x"}, want: []any{"x"}},
		{name: "missing argument", q: `SELECT $1, $3`, text: `SELECT ?, ?`, args: []any{1, 2}, wantErr: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sq := toSQLite(tt.q)
			if sq.text != tt.text {
				t.Errorf("toSQLite(%q) = %q, want %q", tt.q, sq.text, tt.text)
			}
			got, err := sq.args(tt.args)
			if (err != nil) != tt.wantErr || !tt.wantErr && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("args(%v) = %v, %v; want %v (error %v)", tt.args, got, err, tt.want, tt.wantErr)
			}
		})
	}
}
