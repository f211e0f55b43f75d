package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/riverqueue/river/rivertype"

	"github.com/clade-dev/clade/catalog"
)

// ResultType is the type of a result line: what became of a request.
type ResultType string

// The result types of the Message Batches results format.
const (
	Succeeded ResultType = "succeeded"
	Errored   ResultType = "errored"
	Canceled  ResultType = "canceled"
	Expired   ResultType = "expired"
)

// Valid reports whether t is one of the four result types.
func (t ResultType) Valid() bool {
	return t == Succeeded || t == Errored || t == Canceled || t == Expired
}

// Result is the outcome of one request, as written to results.jsonl:
//
//	{"custom_id":"a","result":{"type":"succeeded","message":{...}}}
//	{"custom_id":"b","result":{"type":"errored","error":{"type":"error","error":{...},"request_id":"req_..."}}}
//	{"custom_id":"c","result":{"type":"canceled"}}
type Result struct {
	Type ResultType
	// Message is the Message object of a Succeeded result, as the API sent it.
	Message json.RawMessage
	// Error is the complete error envelope of an Errored result
	// ({"type":"error","error":{"type":...,"message":...},"request_id":...}).
	Error json.RawMessage
	// Usage and CostUSD are stored in columns for status and cost reports.
	Usage   catalog.Usage
	CostUSD float64
}

// ErrorEnvelope returns the API's error envelope for an error type
// ("invalid_request_error", "api_error", ...) and message; requestID may be empty
// (null).
func ErrorEnvelope(errType, message, requestID string) json.RawMessage {
	env := struct {
		Type  string `json:"type"`
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
		RequestID *string `json:"request_id"`
	}{Type: "error"}
	env.Error.Type, env.Error.Message = errType, message
	if requestID != "" {
		env.RequestID = &requestID
	}
	b, _ := json.Marshal(env)
	return b
}

// ResultLine returns the results.jsonl line (without newline) for customID.
func (r Result) ResultLine(customID string) ([]byte, error) {
	if !r.Type.Valid() {
		return nil, fmt.Errorf("result of %s: unknown type %q", customID, r.Type)
	}
	b := make([]byte, 0, 64+len(customID)+len(r.Message)+len(r.Error))
	b = append(b, `{"custom_id":`...)
	b = strconv.AppendQuote(b, customID)
	b = append(b, `,"result":{"type":"`...)
	b = append(b, r.Type...)
	b = append(b, '"')
	switch r.Type {
	case Succeeded:
		if !isJSONObject(r.Message) {
			return nil, fmt.Errorf("result of %s: message is not a JSON object", customID)
		}
		b = append(b, `,"message":`...)
		b = append(b, r.Message...)
	case Errored:
		if !isJSONObject(r.Error) {
			return nil, fmt.Errorf("result of %s: error is not a JSON object", customID)
		}
		b = append(b, `,"error":`...)
		b = append(b, r.Error...)
	}
	return append(b, "}}"...), nil
}

func isJSONObject(raw json.RawMessage) bool {
	for _, c := range raw {
		if c == ' ' || c == '\t' || c == '\n' || c == '\r' {
			continue
		}
		return c == '{' && json.Valid(raw)
	}
	return false
}

// errJobNotRunning means the job was no longer running when its completion was
// committed (rescued, or cancelled): nothing was written, and River runs it again
// or already did.
var errJobNotRunning = errors.New("job is no longer running; result not written")

// completeTimeout bounds the completing transaction. It runs even when the job's
// context is cancelled by shutdown: a result that was paid for is not thrown away.
const completeTimeout = 30 * time.Second

// Complete writes the job's result and marks its River job completed in the same
// transaction (river.JobCompleteTx): after a crash either both happened or
// neither did, and the job runs again. It must be called from the job's WorkFunc
// (ctx carries River's client); the Client calls it with the Result a WorkFunc
// returns, so a WorkFunc seldom needs to. If the request already has a result
// (a rescued job that ran twice), the job is completed and the first result kept.
// If the job was released from this worker to another (Store.ReleaseDead: this
// one was found dead, e.g. behind a network partition), nothing is written and
// the error says so: the released copy's run gives the result.
func (s *Store) Complete(ctx context.Context, job *Job, res Result) error {
	_, err := s.complete(ctx, job, res)
	return err
}

// complete is Complete, also reporting whether this call wrote the result (false
// when the request already had one).
func (s *Store) complete(ctx context.Context, job *Job, res Result) (inserted bool, err error) {
	line, err := res.ResultLine(job.Request.CustomID)
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), completeTimeout)
	defer cancel()
	err = s.inTx(ctx, func(tx txn) error {
		inserted = false
		if job.rj == nil {
			return errors.New("complete: job was not given by a Client")
		}
		// First, before the result: an attempt whose job was released from its
		// worker, found dead, writes nothing.
		if err := s.lockAttempt(ctx, tx, job.ID); err != nil {
			return err
		}
		u := res.Usage
		n, err := tx.exec(ctx, `INSERT INTO clade_result (request_id, run_id, custom_id, line, type, result_line,
				input_tokens, output_tokens, cache_write_5m_tokens, cache_write_1h_tokens, cache_read_tokens,
				cost_usd, attempt, finished_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
			ON CONFLICT (request_id) DO NOTHING`,
			job.Request.ID, job.Request.RunID, job.Request.CustomID, job.Request.Line, string(res.Type), line,
			u.InputTokens, u.OutputTokens, u.CacheWrite5mTokens, u.CacheWrite1hTokens, u.CacheReadTokens,
			res.CostUSD, job.Attempt, s.now().UnixMicro())
		if err != nil {
			return fmt.Errorf("write result of %s: %w", job.Request.CustomID, err)
		}
		inserted = n > 0
		if err := tx.completeJob(ctx, job.rj); err != nil {
			if errors.Is(err, rivertype.ErrNotFound) {
				return errJobNotRunning
			}
			return fmt.Errorf("complete job %d: %w", job.ID, err)
		}
		if job.beforeCommit != nil {
			return job.beforeCommit(ctx, job)
		}
		return nil
	})
	return inserted && err == nil, err
}

// completeOnly marks the job completed without writing a result: its request
// already has one.
func (s *Store) completeOnly(ctx context.Context, job *Job) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), completeTimeout)
	defer cancel()
	return s.inTx(ctx, func(tx txn) error {
		if err := tx.completeJob(ctx, job.rj); err != nil {
			if errors.Is(err, rivertype.ErrNotFound) {
				return errJobNotRunning
			}
			return fmt.Errorf("complete job %d: %w", job.ID, err)
		}
		return nil
	})
}
