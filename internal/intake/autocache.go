package intake

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"slices"

	"github.com/clade-dev/clade/internal/cacheprefix"
	"github.com/clade-dev/clade/internal/wire"
)

// Automatic cache breakpoints (clade run --cache-breakpoints auto; docs/run.md).
//
// A line with no cache_control anywhere gets one breakpoint,
// "cache_control": {"type": "ephemeral"}, at its candidate block:
//
//   - the last system block (a string system becomes one text block carrying it);
//   - else, when the first message is a user message with 2 or more content blocks
//     in a list, its second-to-last block.
//
// The breakpoint is kept only when the prefix it ends (tools, system, then
// messages, as cacheprefix hashes it) is at least the model's min_cache_tokens and
// the same prefix is the candidate of at least 2 lines of the file. Sharing needs
// the whole file: PlanAutoCache reads it once first, holding a count per distinct
// prefix and each line's prefix, and AutoCache.Apply then adds the breakpoints
// while the file is imported, from what the plan found: a line's params are parsed
// and its prefix hashed once, by the plan. Lines with cache_control of their own
// are left as they are.

// autoBreakpoint is the member added to a candidate block.
const autoBreakpoint = `"cache_control":{"type":"ephemeral"}`

// MinCacheTokens returns the shortest cacheable prefix of a model (catalog
// min_cache_tokens), and false for a model it does not know: such lines get no
// automatic breakpoint.
type MinCacheTokens func(model string) (int64, bool)

// AutoCache is the plan of automatic breakpoints for one input file.
type AutoCache struct {
	min      MinCacheTokens
	index    map[cacheprefix.Key]uint32 // a distinct candidate prefix's place in prefixes, + 1
	prefixes []autoPrefix
	// lines holds each line's candidate prefix (its index + 1), by line number - 1;
	// 0 (or past the end) for a line without one.
	lines []uint32
	added int64
	used  int // prefixes with used set
}

// autoPrefix is one distinct candidate prefix of the file.
type autoPrefix struct {
	cacheprefix.Prefix
	lines int  // lines whose candidate it is
	used  bool // Apply added its breakpoint to a line
}

// PlanAutoCache reads the input r once and counts each candidate prefix. Memory is
// one line, one entry per distinct candidate prefix and 4 bytes per line (its
// prefix).
func PlanAutoCache(r io.Reader, minTokens MinCacheTokens) (*AutoCache, error) {
	a := &AutoCache{min: minTokens, index: make(map[cacheprefix.Key]uint32)}
	rd := NewReader(r, Options{})
	for {
		req, _, err := rd.Next()
		if err == io.EOF {
			return a, nil
		}
		if err != nil {
			return nil, fmt.Errorf("plan cache breakpoints: %w", err)
		}
		if req == nil {
			continue
		}
		_, p, ok := a.candidate(req)
		if !ok {
			continue
		}
		i, seen := a.index[p.Key]
		if !seen {
			if len(a.prefixes) == math.MaxUint32-1 {
				return nil, fmt.Errorf("plan cache breakpoints: more than %d distinct prefixes", math.MaxUint32-1)
			}
			a.prefixes = append(a.prefixes, autoPrefix{Prefix: p})
			i = uint32(len(a.prefixes))
			a.index[p.Key] = i
		}
		a.prefixes[i-1].lines++
		for len(a.lines) < req.Line-1 {
			a.lines = append(a.lines, 0)
		}
		a.lines = append(a.lines, i)
	}
}

// Apply adds the breakpoint to req when its candidate prefix is shared, replacing
// req.Params with a copy that carries it and req.Cache with its prefix, and
// reports whether it did. req must be the line of the file the plan read that
// req.Line numbers: Apply does not parse it again, it looks up the prefix the plan
// found on that line.
func (a *AutoCache) Apply(req *Request) bool {
	n := req.Line - 1
	if n < 0 || n >= len(a.lines) || a.lines[n] == 0 {
		return false
	}
	p := &a.prefixes[a.lines[n]-1]
	if p.lines < 2 || bytes.Contains(req.Params, []byte(`"cache_control"`)) {
		return false
	}
	params, ok := withBreakpoint(req.Params)
	if !ok {
		return false
	}
	req.Params, req.Cache = params, p.Prefix
	a.added++
	if !p.used {
		p.used = true
		a.used++
	}
	return true
}

// Added returns how many lines Apply gave a breakpoint, and how many distinct
// prefixes those breakpoints end.
func (a *AutoCache) Added() (lines int64, prefixes int) { return a.added, a.used }

// candidate returns req's params with the breakpoint added at its candidate block
// and the prefix that ends there, or false when req has cache_control, no
// candidate, or a candidate prefix too short to be cached.
func (a *AutoCache) candidate(req *Request) (params []byte, p cacheprefix.Prefix, ok bool) {
	if bytes.Contains(req.Params, []byte(`"cache_control"`)) {
		// Perhaps only inside a text, but then the line is not ours to change.
		return nil, p, false
	}
	minTokens, ok := a.min(req.Model)
	if !ok {
		return nil, p, false
	}
	params, ok = withBreakpoint(req.Params)
	if !ok {
		return nil, p, false
	}
	parsed, err := wire.ParseMessageRequest(params, wire.ParseOptions{AllowSystemRole: true})
	if err != nil {
		return nil, p, false
	}
	last, ok := cacheprefix.Of(req.Model, parsed, params).Last(minTokens)
	if !ok {
		return nil, p, false
	}
	return params, last, true
}

// withBreakpoint returns a copy of params (a valid JSON object) with the breakpoint
// added to the candidate block, or false when there is none.
func withBreakpoint(params []byte) ([]byte, bool) {
	var system, messages []byte
	members(params, func(k, v []byte) {
		switch {
		case keyIs(k, "system"):
			system = v
		case keyIs(k, "messages"):
			messages = v
		}
	})
	if len(system) > 0 && system[0] == '"' && len(system) > 2 {
		block := slices.Concat([]byte(`[{"type":"text","text":`), system, []byte(","+autoBreakpoint+"}]"))
		return replace(params, system, block), true
	}
	if len(system) > 0 && system[0] == '[' {
		if b := last(system, 1); b != nil {
			return addMember(params, b), true
		}
	}
	var first []byte
	elements(messages, func(m []byte) {
		if first == nil {
			first = m
		}
	})
	var role, content []byte
	members(first, func(k, v []byte) {
		switch {
		case keyIs(k, "role"):
			role = v
		case keyIs(k, "content"):
			content = v
		}
	})
	if !stringIs(role, "user") || len(content) == 0 || content[0] != '[' {
		return nil, false
	}
	if b := last(content, 2); b != nil {
		return addMember(params, b), true
	}
	return nil, false
}

// last returns the n-th element from the end of the array arr (n = 1: the last),
// when it is an object, else nil.
func last(arr []byte, n int) []byte {
	var all [][]byte
	elements(arr, func(v []byte) { all = append(all, v) })
	if len(all) < n || all[len(all)-n][0] != '{' {
		return nil
	}
	return all[len(all)-n]
}

// offset is where sub, a sub-slice of b (as members and elements return them),
// starts in b.
func offset(b, sub []byte) int { return cap(b) - cap(sub) }

// replace returns a copy of b with its sub-slice sub replaced by with.
func replace(b, sub, with []byte) []byte {
	i := offset(b, sub)
	return slices.Concat(b[:i], with, b[i+len(sub):])
}

// addMember returns a copy of b with the breakpoint added as the last member of
// the object obj, a sub-slice of b.
func addMember(b, obj []byte) []byte {
	end := len(obj) - 1 // the closing brace
	sep := ","
	if len(trimSpace(obj[1:end])) == 0 {
		sep = ""
	}
	with := slices.Concat(obj[:end], []byte(sep+autoBreakpoint), obj[end:])
	return replace(b, obj, with)
}
