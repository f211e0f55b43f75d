package jobs_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/jobs/jobstest"
)

// TestClaimOutput: on every backend, a results file belongs to the run that first
// claimed it; another run is refused (named), a file no run claimed is refused when
// it has content, force hands it over, and a run made before claims existed keeps its
// file.
func TestClaimOutput(t *testing.T) {
	t.Parallel()
	for _, b := range jobstest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			s := jobstest.Open(t, ctx, b.NewDSN(t))
			dir := t.TempDir()
			a, bIn := jobstest.WriteInput(t, 2), jobstest.WriteInput(t, 3)
			out := filepath.Join(dir, "out.jsonl")

			if err := s.ClaimOutput(ctx, a, out, false); err != nil {
				t.Fatalf("ClaimOutput(a, new file) = %v, want nil", err)
			}
			if err := os.WriteFile(out, []byte("{}\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := s.ClaimOutput(ctx, a, out, false); err != nil {
				t.Errorf("ClaimOutput(a, its own file) = %v, want nil", err)
			}
			// Through a symlink it is the same file, and still a's.
			link := filepath.Join(dir, "link.jsonl")
			if err := os.Symlink(out, link); err != nil {
				t.Fatal(err)
			}
			var taken *jobs.OutputTakenError
			err := s.ClaimOutput(ctx, bIn, link, false)
			if !errors.As(err, &taken) || taken.Input != mustAbs(t, a) {
				t.Fatalf("ClaimOutput(b, a's file via a symlink) = %v, want *OutputTakenError naming %s", err, a)
			}
			if err := s.ClaimOutput(ctx, bIn, out, true); err != nil {
				t.Fatalf("ClaimOutput(b, a's file, force) = %v, want nil", err)
			}
			if err := s.ClaimOutput(ctx, a, out, false); !errors.As(err, &taken) || taken.Input != mustAbs(t, bIn) {
				t.Errorf("ClaimOutput(a, the file b took) = %v, want *OutputTakenError naming %s", err, bIn)
			}

			// A non-empty file no run claimed.
			notes := filepath.Join(dir, "notes.txt")
			if err := os.WriteFile(notes, []byte("mine\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := s.ClaimOutput(ctx, a, notes, false); !errors.As(err, &taken) || taken.Input != "" {
				t.Errorf("ClaimOutput(a, a file no run wrote) = %v, want *OutputTakenError with no input", err)
			}
			// An empty one is free.
			empty := filepath.Join(dir, "empty.jsonl")
			if err := os.WriteFile(empty, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := s.ClaimOutput(ctx, a, empty, false); err != nil {
				t.Errorf("ClaimOutput(a, an empty file) = %v, want nil", err)
			}

			// A run imported before claims were recorded keeps its (non-empty) file.
			c := jobstest.WriteInput(t, 1)
			jobstest.Import(t, ctx, s, jobs.ImportOptions{Path: c})
			legacy := filepath.Join(dir, "legacy.jsonl")
			if err := os.WriteFile(legacy, []byte("{}\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := s.ClaimOutput(ctx, c, legacy, false); err != nil {
				t.Errorf("ClaimOutput(a run with no claim, its file) = %v, want nil", err)
			}
		})
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

func TestCheckPaths(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	if err := os.WriteFile(in, []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	hard := filepath.Join(dir, "hard.jsonl")
	if err := os.Link(in, hard); err != nil {
		t.Fatal(err)
	}
	var same *jobs.SameFileError
	var missing *jobs.MissingDirError
	for _, tt := range []struct {
		name          string
		output, store string
		wantSame      string // SameFileError.What, or ""
		wantMissing   string // MissingDirError.What, or ""
	}{
		{name: "fine", output: filepath.Join(dir, "out.jsonl"), store: filepath.Join(dir, "out.db")},
		{name: "postgres store", output: filepath.Join(dir, "out.jsonl"), store: "postgres://u@h/db"},
		{name: "output is input", output: in, store: filepath.Join(dir, "s.db"), wantSame: "output"},
		{name: "output is a hard link", output: hard, store: filepath.Join(dir, "s.db"), wantSame: "output"},
		{name: "output is the store's WAL", output: filepath.Join(dir, "s.db-wal"), store: filepath.Join(dir, "s.db"), wantSame: "output"},
		{name: "store is input", output: filepath.Join(dir, "out.jsonl"), store: "sqlite:" + in, wantSame: "store"},
		{name: "output dir missing", output: filepath.Join(dir, "nope", "o.jsonl"), store: filepath.Join(dir, "s.db"), wantMissing: "output"},
		{name: "store dir missing", output: filepath.Join(dir, "o.jsonl"), store: filepath.Join(dir, "nope", "s.db"), wantMissing: "store"},
	} {
		err := jobs.CheckPaths(in, tt.output, tt.store)
		switch {
		case tt.wantSame != "":
			if !errors.As(err, &same) || same.What != tt.wantSame {
				t.Errorf("%s: CheckPaths = %v, want a SameFileError for the %s", tt.name, err, tt.wantSame)
			}
		case tt.wantMissing != "":
			if !errors.As(err, &missing) || missing.What != tt.wantMissing {
				t.Errorf("%s: CheckPaths = %v, want a MissingDirError for the %s", tt.name, err, tt.wantMissing)
			}
		case err != nil:
			t.Errorf("%s: CheckPaths = %v, want nil", tt.name, err)
		}
	}
}
