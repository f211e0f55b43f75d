package jobs_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clade-dev/clade/internal/jobs"
)

func TestOpenOddPath(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "a dir?#%")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "store 1.db")
	s, err := jobs.Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open(%q) error = %v", path, err)
	}
	s.Close()
	if _, err := os.Stat(path); err != nil {
		t.Errorf("store file not at %q: %v", path, err)
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name, dsn, want string
	}{
		{name: "memory", dsn: ":memory:", want: "in-memory SQLite is not supported"},
		{name: "empty", dsn: "", want: "empty path"},
		{name: "missing dir", dsn: filepath.Join(t.TempDir(), "no", "such", "store.db"), want: "open store"},
		{name: "postgres down", dsn: "postgres://clade:s3cret@127.0.0.1:1/db?connect_timeout=2", want: "postgres://clade:xxxxx@127.0.0.1:1/db"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := jobs.Open(ctx, tt.dsn)
			if err == nil {
				s.Close()
				t.Fatalf("Open(%q) error = nil, want one containing %q", tt.dsn, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "s3cret") {
				t.Errorf("Open(%q) error = %q, want it to contain %q and no password", tt.dsn, err, tt.want)
			}
		})
	}
}
