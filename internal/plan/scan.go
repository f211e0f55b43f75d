package plan

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"sort"
	"time"

	"github.com/clade-dev/clade/internal/cacheprefix"
	"github.com/clade-dev/clade/internal/intake"
)

// DefaultOutputRatio is the expected output of a request as a fraction of its
// max_tokens when neither OutputAssumption field is set: 0.5. The API counts only the
// tokens a model generates toward OTPM and the bill, and bulk prompts rarely use their
// whole max_tokens; half is a middle guess, and the output says it is one.
const DefaultOutputRatio = 0.5

// MaxProblems is how many bad lines a Workload keeps word for word; the rest are
// counted.
const MaxProblems = 20

// OutputAssumption says how many output tokens a request is expected to generate.
// At most one field is set; the zero value means Ratio DefaultOutputRatio.
type OutputAssumption struct {
	// Ratio is the expected output as a fraction of the request's max_tokens, in (0, 1].
	Ratio float64
	// Tokens is a fixed expected output per request, capped at its max_tokens.
	Tokens int64
}

// Expected returns the output tokens expected of a request with max_tokens maxTokens.
func (a OutputAssumption) Expected(maxTokens int64) int64 {
	if a.Tokens > 0 {
		return min(a.Tokens, maxTokens)
	}
	r := a.Ratio
	if r <= 0 {
		r = DefaultOutputRatio
	}
	return int64(math.Ceil(r * float64(maxTokens)))
}

// String describes the assumption for the report.
func (a OutputAssumption) String() string {
	if a.Tokens > 0 {
		return fmt.Sprintf("%d tokens per request, at most its max_tokens", a.Tokens)
	}
	r := a.Ratio
	if r <= 0 {
		r = DefaultOutputRatio
	}
	return fmt.Sprintf("%g × max_tokens per request", r)
}

// ModelLoad is the work of one model, as written in the input's params.model.
type ModelLoad struct {
	Model string
	// Requests, InputTokens, OutputTokens and MaxTokens are totals over the model's
	// valid lines (estimates scaled up from the sample when the input was sampled).
	// InputTokens is intake.EstimateInputTokens' estimate; OutputTokens follows the
	// OutputAssumption; MaxTokens is the sum of max_tokens.
	Requests     int64
	InputTokens  int64
	OutputTokens int64
	MaxTokens    int64
	// LargestInput and LargestMaxTokens are the largest single request seen (in the
	// lines read): a request larger than a bucket can never be admitted.
	LargestInput     int64
	LargestMaxTokens int64
	LargestOutput    int64
	// Prefixes are the prompt-cache prefixes of the model's lines by key (intake's
	// Request.Cache: a line's last cache_control breakpoint, the prefix clade run
	// schedules by); nil when no line has cache_control. One entry per distinct
	// prefix, so this is the one part of a Workload that grows with the input.
	Prefixes map[cacheprefix.Key]*PrefixLoad
}

// PrefixLoad is one prompt-cache prefix of a model's lines.
type PrefixLoad struct {
	// Tokens is the prefix's input tokens (cacheprefix's count), TTL its lifetime.
	Tokens int64
	TTL    time.Duration
	// Lines is how many lines end their cacheable part with it (scaled up when the
	// input was sampled).
	Lines int64
}

// Workload is what a planner needs to know about an input file.
type Workload struct {
	Input string
	// Lines is the number of non-blank lines in the file; Read how many of them
	// were parsed (all of them unless Sampled).
	Lines   int64
	Read    int64
	Sampled bool
	// Stride is k when Sampled: one line was parsed in each run of k.
	Stride int64
	Output OutputAssumption
	// Models holds one entry per model, sorted by model id.
	Models []*ModelLoad
	// BadLines is the number of bad lines (scaled up when Sampled); Problems the
	// first MaxProblems of those read, formatted "file:line: field: reason".
	BadLines int64
	Problems []string
}

// ScanOptions tune Scan.
type ScanOptions struct {
	// Sample, when positive, parses about this many lines: after a quick count of the
	// file's newlines, one line at a random (seeded) position in each run of
	// k = ceil(lines / Sample) non-blank lines; the totals are scaled by lines / lines
	// parsed. Zero parses every line.
	Sample int64
	// Output is the expected output assumption.
	Output OutputAssumption
}

// Scan reads the JSONL input at path as a stream and sums its work per model.
// Memory stays constant in the file's size (one line at a time, plus one entry per
// model and one per distinct prompt-cache prefix). Bad lines are counted and the first MaxProblems kept; they do not stop it.
func Scan(path string, opt ScanOptions) (*Workload, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	w := &Workload{Input: path, Output: opt.Output}
	acc := newAccumulator(w)
	if opt.Sample <= 0 {
		r := intake.NewReader(f, intake.Options{})
		for {
			req, prob, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", path, err)
			}
			acc.add(req, prob)
		}
		w.Lines = w.Read
		acc.finish(1)
		return w, nil
	}

	lines, err := countLines(f)
	if err != nil {
		return nil, fmt.Errorf("count lines of %s: %w", path, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("rewind %s: %w", path, err)
	}
	k := max(1, (lines+opt.Sample-1)/opt.Sample)
	w.Sampled, w.Stride = k > 1, k
	s := &lineScanner{br: bufio.NewReaderSize(f, 64<<10)}
	// One line at a random position in each run of k non-blank lines (systematic
	// sampling with a random offset per run, so a pattern that repeats every k lines
	// cannot alias). The generator is seeded, so a plan is reproducible.
	rnd := rand.New(rand.NewPCG(1, 2))
	var nonBlank, pick int64
	for {
		if nonBlank%k == 0 && nonBlank >= pick {
			pick = nonBlank + rnd.Int64N(k)
		}
		// Decided before reading: lines are counted among the non-blank ones, so
		// blank runs do not skew the sample.
		keep := nonBlank == pick
		line, n, blank, err := s.next(keep)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		if blank {
			continue
		}
		nonBlank++
		if !keep {
			continue
		}
		if line == nil {
			acc.add(nil, &intake.Problem{Line: n, Reason: fmt.Sprintf("line is longer than %d bytes", intake.MaxLineBytes)})
			continue
		}
		acc.add(intake.ParseLine(n, line))
	}
	w.Lines = nonBlank
	scale := 1.0
	if w.Read > 0 {
		scale = float64(w.Lines) / float64(w.Read)
	}
	acc.finish(scale)
	return w, nil
}

// accumulator sums parsed lines into a Workload.
type accumulator struct {
	w      *Workload
	models map[string]*ModelLoad
	bad    int64
}

func newAccumulator(w *Workload) *accumulator {
	return &accumulator{w: w, models: map[string]*ModelLoad{}}
}

func (a *accumulator) add(req *intake.Request, prob *intake.Problem) {
	a.w.Read++
	if prob != nil {
		a.bad++
		if len(a.w.Problems) < MaxProblems {
			a.w.Problems = append(a.w.Problems, prob.Format(a.w.Input))
		}
		return
	}
	m := a.models[req.Model]
	if m == nil {
		m = &ModelLoad{Model: req.Model}
		a.models[req.Model] = m
	}
	out := a.w.Output.Expected(req.MaxTokens)
	m.Requests++
	m.InputTokens += req.EstInputTokens
	m.OutputTokens += out
	m.MaxTokens += req.MaxTokens
	m.LargestInput = max(m.LargestInput, req.EstInputTokens)
	m.LargestMaxTokens = max(m.LargestMaxTokens, req.MaxTokens)
	m.LargestOutput = max(m.LargestOutput, out)
	if c := req.Cache; c.Key != (cacheprefix.Key{}) {
		if m.Prefixes == nil {
			m.Prefixes = map[cacheprefix.Key]*PrefixLoad{}
		}
		pl := m.Prefixes[c.Key]
		if pl == nil {
			pl = &PrefixLoad{Tokens: c.Tokens, TTL: c.TTL}
			m.Prefixes[c.Key] = pl
		}
		pl.Lines++
	}
}

// finish scales the sums by scale and sorts the models.
func (a *accumulator) finish(scale float64) {
	sc := func(n int64) int64 { return int64(math.Round(float64(n) * scale)) }
	a.w.BadLines = sc(a.bad)
	for _, m := range a.models {
		m.Requests, m.InputTokens, m.OutputTokens, m.MaxTokens = sc(m.Requests), sc(m.InputTokens), sc(m.OutputTokens), sc(m.MaxTokens)
		// A sampled prefix's lines scale like the rest; the distinct prefixes are
		// those seen in the sample (see CacheEstimate).
		for _, pl := range m.Prefixes {
			pl.Lines = sc(pl.Lines)
		}
		a.w.Models = append(a.w.Models, m)
	}
	sort.Slice(a.w.Models, func(i, j int) bool { return a.w.Models[i].Model < a.w.Models[j].Model })
}

// countLines counts the lines of r fast, a buffer at a time with no parsing: its
// '\n' bytes, plus one for a last line without one. Blank lines count.
func countLines(r io.Reader) (int64, error) {
	buf := make([]byte, 1<<20)
	var n int64
	last := byte('\n')
	for {
		k, err := r.Read(buf)
		n += int64(bytes.Count(buf[:k], []byte{'\n'}))
		if k > 0 {
			last = buf[k-1]
		}
		if errors.Is(err, io.EOF) {
			if last != '\n' {
				n++
			}
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// lineScanner splits input into lines, keeping only the lines asked for: a skipped
// line is read through without being copied. It follows intake.Reader's rules:
// numbering from 1, a UTF-8 byte order mark dropped, "\r\n" endings, blank lines
// reported as blank, lines longer than intake.MaxLineBytes refused.
type lineScanner struct {
	br   *bufio.Reader
	line int
	buf  []byte
}

// next reads one line. keep asks for its bytes; a kept line longer than
// intake.MaxLineBytes comes back as nil, not blank.
func (s *lineScanner) next(keep bool) (line []byte, n int, blank bool, err error) {
	s.buf = s.buf[:0]
	if cap(s.buf) > 4<<20 {
		s.buf = nil
	}
	read := 0
	blank = true
	tooLong := false
	for {
		chunk, err := s.br.ReadSlice('\n')
		read += len(chunk)
		if s.line == 0 && read == len(chunk) {
			chunk = bytes.TrimPrefix(chunk, []byte("\xef\xbb\xbf"))
		}
		if blank && len(bytes.TrimSpace(chunk)) > 0 {
			blank = false
		}
		if keep && !tooLong {
			if len(s.buf)+len(chunk) > intake.MaxLineBytes+2 {
				tooLong, s.buf = true, s.buf[:0]
			} else {
				s.buf = append(s.buf, chunk...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, 0, false, err
		}
		if errors.Is(err, io.EOF) && read == 0 {
			return nil, 0, false, io.EOF
		}
		break
	}
	s.line++
	if blank || !keep {
		return nil, s.line, blank, nil
	}
	if tooLong {
		return nil, s.line, false, nil
	}
	b := bytes.TrimSuffix(s.buf, []byte{'\n'})
	b = bytes.TrimSuffix(b, []byte{'\r'})
	return b, s.line, false, nil
}
