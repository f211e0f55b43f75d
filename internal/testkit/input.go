package testkit

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
)

// Input generates request lines in the Message Batches line format, line i being
//
//	{"custom_id":ID(i),"params":{"model":Model,"max_tokens":MaxTokens,"messages":[{"role":"user","content":Content(i)}]}}
//
// Each field's zero value takes its default, so Input{} gives custom_ids
// req-00000, req-00001, …, model claude-haiku-4-5, max_tokens 64 and the message
// "question i". Strings are put into the line as they are: they must need no JSON
// escaping.
type Input struct {
	// IDFormat is the fmt format of line i's custom_id, given i; default "req-%05d".
	IDFormat string
	// Model is each line's model, an ID or an alias; default "claude-haiku-4-5".
	Model string
	// MaxTokens is each line's max_tokens; default 64.
	MaxTokens int
	// MaxTokensOf, when set, gives line i's max_tokens in place of MaxTokens.
	MaxTokensOf func(i int) int
	// Content is line i's user message; a fmt verb in it (such as %d) is given i.
	// Default "question %d".
	Content string
}

// Defaults of Input's fields.
const (
	DefaultIDFormat  = "req-%05d"
	DefaultModel     = "claude-haiku-4-5"
	DefaultMaxTokens = 64
	DefaultContent   = "question %d"
)

// ID returns the custom_id of line i (0-based).
func (in Input) ID(i int) string {
	return fmt.Sprintf(or(in.IDFormat, DefaultIDFormat), i)
}

// Line returns line i (0-based), without its newline.
func (in Input) Line(i int) string {
	maxTokens := in.MaxTokens
	if maxTokens == 0 {
		maxTokens = DefaultMaxTokens
	}
	if in.MaxTokensOf != nil {
		maxTokens = in.MaxTokensOf(i)
	}
	content := or(in.Content, DefaultContent)
	if strings.Contains(content, "%") {
		content = fmt.Sprintf(content, i)
	}
	return fmt.Sprintf(`{"custom_id":"%s","params":{"model":"%s","max_tokens":%d,"messages":[{"role":"user","content":"%s"}]}}`,
		in.ID(i), or(in.Model, DefaultModel), maxTokens, content)
}

// Generate writes lines 0 to n-1, each ending in a newline, then the extra lines
// as they are (a bad line, a duplicate custom_id, …), each given a newline. It
// streams, so n may be large.
func (in Input) Generate(w io.Writer, n int, extra ...string) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	for i := range n {
		bw.WriteString(in.Line(i))
		bw.WriteByte('\n')
	}
	for _, l := range extra {
		bw.WriteString(l)
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

// Write writes what Generate does to the file at path (created or truncated, mode
// 0644) and returns path.
func (in Input) Write(tb testing.TB, path string, n int, extra ...string) string {
	tb.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		tb.Fatal(err)
	}
	if err := in.Generate(f, n, extra...); err != nil {
		f.Close()
		tb.Fatalf("write %s: %v", path, err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	return path
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
