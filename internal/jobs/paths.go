package jobs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The rules for a run's files: the results file never overwrites the input or the
// store, and a results file one run wrote is never replaced by another run's.

// SameFileError says that two of a run's files are one file: writing the first
// would destroy the second.
type SameFileError struct {
	What, Path           string // the file that would be written ("output", "store")
	OtherWhat, OtherPath string // the file it would destroy ("input", "store")
}

func (e *SameFileError) Error() string {
	return fmt.Sprintf("the %s %s is the %s %s (the same file): writing it would destroy the %s",
		e.What, e.Path, e.OtherWhat, e.OtherPath, e.OtherWhat)
}

// MissingDirError says that a file's directory does not exist.
type MissingDirError struct {
	What, Path, Dir string
}

func (e *MissingDirError) Error() string {
	return fmt.Sprintf("the %s %s cannot be created: directory %s does not exist", e.What, e.Path, e.Dir)
}

// OutputTakenError says that a results file holds another run's results (or
// results no run of this store wrote), which opening it would replace.
type OutputTakenError struct {
	Path string
	// Input is the input of the run the file belongs to; empty when no run of the
	// store wrote it.
	Input string
}

func (e *OutputTakenError) Error() string {
	if e.Input != "" {
		return fmt.Sprintf("%s holds the results of another run (input %s): this run would replace them", e.Path, e.Input)
	}
	return fmt.Sprintf("%s exists and no run of this store wrote it: this run would replace it", e.Path)
}

// CheckPaths checks a run's input, results file and store (a SQLite path or a
// postgres:// URL) before anything is written: the output and the store must not
// be the input or each other (through a symlink or a hard link too), and the
// directories they go in must exist. output may be empty (no results file).
func CheckPaths(input, output, store string) error {
	var dbFiles []string
	if db, ok := sqlitePath(store); ok {
		// SQLite writes the database and, beside it, its journal files.
		dbFiles = []string{db, db + "-wal", db + "-shm", db + "-journal"}
	}
	if output != "" {
		if SameFile(output, input) {
			return &SameFileError{What: "output", Path: output, OtherWhat: "input", OtherPath: input}
		}
		for _, f := range dbFiles {
			if SameFile(output, f) {
				return &SameFileError{What: "output", Path: output, OtherWhat: "store", OtherPath: f}
			}
		}
	}
	for _, f := range dbFiles {
		if SameFile(f, input) {
			return &SameFileError{What: "store", Path: f, OtherWhat: "input", OtherPath: input}
		}
	}
	if output != "" {
		if err := dirExists("output", output); err != nil {
			return err
		}
	}
	if len(dbFiles) > 0 {
		return dirExists("store", dbFiles[0])
	}
	return nil
}

// sqlitePath returns the file of a SQLite store DSN, as Open reads it.
func sqlitePath(dsn string) (string, bool) {
	if dsn == "" || strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		return "", false
	}
	return strings.TrimPrefix(dsn, "sqlite:"), true
}

func dirExists(what, path string) error {
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return &MissingDirError{What: what, Path: path, Dir: dir}
	case err != nil:
		return fmt.Errorf("%s %s: %w", what, path, err)
	case !fi.IsDir():
		return fmt.Errorf("the %s %s cannot be created: %s is not a directory", what, path, dir)
	}
	return nil
}

// SameFile reports whether a and b name one file: the same inode when both exist
// (a hard link or a symlink), else the same path once symlinks are resolved.
func SameFile(a, b string) bool {
	ai, aerr := os.Stat(a)
	bi, berr := os.Stat(b)
	if aerr == nil && berr == nil {
		return os.SameFile(ai, bi)
	}
	return canonical(a) == canonical(b)
}

// canonical is path made absolute with symlinks resolved, as far as it exists.
func canonical(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return filepath.Clean(path)
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		return r
	}
	if d, err := filepath.EvalSymlinks(filepath.Dir(abs)); err == nil {
		return filepath.Join(d, filepath.Base(abs))
	}
	return abs
}

// RunName is the name Import gives the run of an input file: its absolute path.
func RunName(input string) (string, error) {
	return filepath.Abs(input)
}

// ClaimOutput records that the run of input (named RunName(input)) writes its
// results to output, on this host. It refuses, with an *OutputTakenError, a file
// that another run of the store claimed, and a non-empty file that no run claimed
// (one from another store, or not a results file at all), unless force. A run made
// before the store recorded claims keeps its file. Call it before Import, so that a
// refused file costs nothing.
func (s *Store) ClaimOutput(ctx context.Context, input, output string, force bool) error {
	name, err := RunName(input)
	if err != nil {
		return err
	}
	path := canonical(output)
	host, err := os.Hostname()
	if err != nil {
		return fmt.Errorf("claim output %s: %w", output, err)
	}
	fi, err := os.Stat(path)
	written := err == nil && fi.Mode().IsRegular() && fi.Size() > 0
	err = s.inTx(ctx, func(tx txn) error {
		var owner string
		err := tx.queryRow(ctx, `SELECT run_name FROM clade_output WHERE host = $1 AND path = $2`, host, path).Scan(&owner)
		switch {
		case err == nil && owner == name:
			return nil
		case err == nil && !force:
			return &OutputTakenError{Path: output, Input: owner}
		case err == nil: // forced: the file changes hands
			_, err = tx.exec(ctx, `UPDATE clade_output SET run_name = $3, claimed_at = $4 WHERE host = $1 AND path = $2`,
				host, path, name, s.now().UnixMicro())
			return err
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		if written && !force {
			legacy, err := unclaimedRun(ctx, tx, name)
			if err != nil {
				return err
			}
			if !legacy {
				return &OutputTakenError{Path: output}
			}
		}
		_, err = tx.exec(ctx, `INSERT INTO clade_output (host, path, run_name, claimed_at) VALUES ($1, $2, $3, $4)`,
			host, path, name, s.now().UnixMicro())
		return err
	})
	if err != nil {
		var taken *OutputTakenError
		if errors.As(err, &taken) {
			return err
		}
		return fmt.Errorf("claim output %s: %w", output, err)
	}
	return nil
}

// unclaimedRun reports whether the run named name exists and claims no file: a run
// made before the store recorded claims, whose results file is its own.
func unclaimedRun(ctx context.Context, tx txn, name string) (bool, error) {
	var runs, claims int
	if err := tx.queryRow(ctx, `SELECT count(*) FROM clade_run WHERE name = $1`, name).Scan(&runs); err != nil {
		return false, err
	}
	if err := tx.queryRow(ctx, `SELECT count(*) FROM clade_output WHERE run_name = $1`, name).Scan(&claims); err != nil {
		return false, err
	}
	return runs > 0 && claims == 0, nil
}
