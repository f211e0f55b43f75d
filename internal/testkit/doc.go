// Package testkit holds the helpers that clade's tests share: writing JSONL input
// files of request lines in the Message Batches line format, reading results files
// back, and a buffer that a run's goroutines may write while the test reads it.
//
// It is for tests only: import it from _test.go files (and from test-support
// packages such as jobstest), never from code that ships in the binary. Every
// helper that can fail takes a testing.TB and fails the test itself, so callers
// need no error handling.
package testkit
