package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"time"
)

// Activity is what `clade status` shows beyond the counts: how fast results came
// and when, why lines failed, and whether a process works the run now.
type Activity struct {
	// First and Last are when the first and the last result were written (zero
	// without results); LastMinute counts the results of the minute before now.
	First, Last time.Time
	LastMinute  int64
	// Errors groups the errored results by error type and message (digits folded,
	// so "prompt is too long: 210345 tokens" groups with its kind), most first.
	Errors []ErrorGroup
	// Running is how many of the run's requests are being sent now (running
	// jobs); Workers are the store's live processes (heartbeat within their window).
	Running int64
	Workers []WorkerInfo
}

// ErrorGroup is one kind of error of a run's errored results.
type ErrorGroup struct {
	Type    string // the API's error.type, e.g. invalid_request_error
	Message string // the first such message
	Count   int64
	// FirstLine is the input line of the first such result.
	FirstLine int64
}

// maxErrorsRead bounds how many errored results Activity reads to group them.
const maxErrorsRead = 200_000

var digits = regexp.MustCompile(`[0-9]+`)

// Activity returns the run's activity as of now.
func (s *Store) Activity(ctx context.Context, runID int64, now time.Time) (*Activity, error) {
	a := &Activity{}
	rd := s.b.reader()
	var first, last, recent int64
	err := rd.queryRow(ctx, `SELECT coalesce(min(finished_at), 0), coalesce(max(finished_at), 0),
			coalesce(sum(CASE WHEN finished_at >= $2 THEN 1 ELSE 0 END), 0)
		FROM clade_result WHERE run_id = $1`, runID, now.Add(-time.Minute).UnixMicro()).Scan(&first, &last, &recent)
	if err != nil {
		return nil, fmt.Errorf("activity: %w", err)
	}
	if first > 0 {
		a.First, a.Last = time.UnixMicro(first), time.UnixMicro(last)
	}
	a.LastMinute = recent

	rs, err := rd.query(ctx, `SELECT line, result_line FROM clade_result WHERE run_id = $1 AND type = $2 ORDER BY line LIMIT $3`,
		runID, string(Errored), maxErrorsRead)
	if err != nil {
		return nil, fmt.Errorf("activity: errors: %w", err)
	}
	groups := map[string]*ErrorGroup{}
	for rs.Next() {
		var line int64
		var b []byte
		if err := rs.Scan(&line, &b); err != nil {
			rs.Close()
			return nil, fmt.Errorf("activity: errors: %w", err)
		}
		typ, msg := errorOf(b)
		key := typ + "\x00" + digits.ReplaceAllString(msg, "#")
		g := groups[key]
		if g == nil {
			g = &ErrorGroup{Type: typ, Message: msg, FirstLine: line}
			groups[key] = g
		}
		g.Count++
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("activity: errors: %w", err)
	}
	for _, g := range groups {
		a.Errors = append(a.Errors, *g)
	}
	sort.Slice(a.Errors, func(i, j int) bool {
		if a.Errors[i].Count != a.Errors[j].Count {
			return a.Errors[i].Count > a.Errors[j].Count
		}
		return a.Errors[i].FirstLine < a.Errors[j].FirstLine
	})

	counts, err := s.JobCounts(ctx, runID)
	if err != nil {
		return nil, err
	}
	a.Running = counts["running"]
	workers, err := s.Workers(ctx)
	if err != nil {
		return nil, err
	}
	for _, w := range workers {
		if !w.Dead {
			a.Workers = append(a.Workers, w)
		}
	}
	return a, nil
}

// errorOf reads the error type and message of an errored result line
// ({"custom_id":…,"result":{"type":"errored","error":{"type":"error","error":{…}}}}).
func errorOf(line []byte) (typ, msg string) {
	var r struct {
		Result struct {
			Error struct {
				Type  string `json:"type"`
				Error struct {
					Type    string `json:"type"`
					Message string `json:"message"`
				} `json:"error"`
				Message string `json:"message"`
			} `json:"error"`
		} `json:"result"`
	}
	if json.Unmarshal(line, &r) != nil {
		return "unknown", ""
	}
	e := r.Result.Error
	switch {
	case e.Error.Type != "":
		return e.Error.Type, e.Error.Message
	case e.Type != "":
		return e.Type, e.Message
	}
	return "unknown", ""
}
