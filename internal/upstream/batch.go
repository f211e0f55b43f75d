package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/clade-dev/clade/internal/wire"
)

// Batch processing statuses.
const (
	BatchInProgress = "in_progress"
	BatchCanceling  = "canceling"
	BatchEnded      = "ended"
)

// Batch is a Message Batch object (anthropic-api.md 4.2). Null timestamps are zero.
type Batch struct {
	ID                string        `json:"id"`
	Type              string        `json:"type"`
	ProcessingStatus  string        `json:"processing_status"`
	RequestCounts     RequestCounts `json:"request_counts"`
	CreatedAt         time.Time     `json:"created_at"`
	ExpiresAt         time.Time     `json:"expires_at"`
	EndedAt           time.Time     `json:"ended_at"`
	ArchivedAt        time.Time     `json:"archived_at"`
	CancelInitiatedAt time.Time     `json:"cancel_initiated_at"`
	ResultsURL        string        `json:"results_url"`
	// RequestID is the request-id of the response that returned the batch.
	RequestID string `json:"-"`
	// Raw is the batch JSON as sent.
	Raw []byte `json:"-"`
}

// RequestCounts are a batch's request counts. Every request stays in Processing
// until the whole batch ends.
type RequestCounts struct {
	Processing int64 `json:"processing"`
	Succeeded  int64 `json:"succeeded"`
	Errored    int64 `json:"errored"`
	Canceled   int64 `json:"canceled"`
	Expired    int64 `json:"expired"`
}

// BatchPage is one page of ListBatches, newest first.
type BatchPage struct {
	Data    []Batch
	HasMore bool
	// FirstID and LastID are "" when the page is empty. Pass LastID as afterID for the
	// next (older) page.
	FirstID string
	LastID  string
}

// Body size limit of batch create (anthropic-api.md 2.1).
const MaxBatchCreateBytes = 256 << 20

// ErrEmptyBatchID is returned for a batch call given an empty id.
var ErrEmptyBatchID = errors.New("upstream: empty batch id")

// CreateBatch POSTs body, {"requests":[{"custom_id":...,"params":{...}},...]} built
// from the callers' raw params, to /v1/messages/batches. body is sent as it is; a
// *bytes.Reader, *bytes.Buffer, *strings.Reader or *io.SectionReader (a body spooled
// to a file) goes with a Content-Length, any other reader chunked. The API takes at
// most MaxBatchCreateBytes (else 413, Final).
//
// Creating a batch is not idempotent: a *TransportError after the request may have
// reached the API has MaybeDelivered set (Classify: Final). List batches before
// sending it again.
func (c *Client) CreateBatch(ctx context.Context, body io.Reader) (*Batch, error) {
	const op = "POST /v1/messages/batches"
	if body == nil {
		return nil, errors.New("upstream: create batch: nil body")
	}
	r, err := c.roundTrip(ctx, op, http.MethodPost, "/v1/messages/batches", body, false)
	if err != nil {
		return nil, err
	}
	return decodeBatch(op, r)
}

// GetBatch retrieves a batch; poll it to learn when processing has ended.
func (c *Client) GetBatch(ctx context.Context, id string) (*Batch, error) {
	if id == "" {
		return nil, ErrEmptyBatchID
	}
	op := "GET /v1/messages/batches/" + id
	r, err := c.roundTrip(ctx, op, http.MethodGet, "/v1/messages/batches/"+url.PathEscape(id), nil, true)
	if err != nil {
		return nil, err
	}
	return decodeBatch(op, r)
}

// CancelBatch asks the API to cancel a batch; it returns the batch, usually in
// canceling. It ends as ended, possibly with partial results.
func (c *Client) CancelBatch(ctx context.Context, id string) (*Batch, error) {
	if id == "" {
		return nil, ErrEmptyBatchID
	}
	op := "POST /v1/messages/batches/" + id + "/cancel"
	r, err := c.roundTrip(ctx, op, http.MethodPost, "/v1/messages/batches/"+url.PathEscape(id)+"/cancel", nil, true)
	if err != nil {
		return nil, err
	}
	return decodeBatch(op, r)
}

// DeleteBatch deletes an ended batch and its results.
func (c *Client) DeleteBatch(ctx context.Context, id string) error {
	if id == "" {
		return ErrEmptyBatchID
	}
	op := "DELETE /v1/messages/batches/" + id
	_, err := c.roundTrip(ctx, op, http.MethodDelete, "/v1/messages/batches/"+url.PathEscape(id), nil, true)
	return err
}

// ListBatches returns one page of batches, newest first: those older than afterID
// ("" for the newest), at most limit of them (the API accepts 1 to 1000; 0 leaves the
// API's default of 20).
func (c *Client) ListBatches(ctx context.Context, afterID string, limit int) (*BatchPage, error) {
	const op = "GET /v1/messages/batches"
	if limit < 0 || limit > 1000 {
		return nil, fmt.Errorf("upstream: list batches: limit %d: want 1 to 1000 (0 for the default)", limit)
	}
	q := url.Values{}
	if afterID != "" {
		q.Set("after_id", afterID)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := "/v1/messages/batches"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	r, err := c.roundTrip(ctx, op, http.MethodGet, path, nil, true)
	if err != nil {
		return nil, err
	}
	var page struct {
		Data    []json.RawMessage `json:"data"`
		HasMore bool              `json:"has_more"`
		FirstID *string           `json:"first_id"`
		LastID  *string           `json:"last_id"`
	}
	if err := json.Unmarshal(r.body, &page); err != nil {
		return nil, decodeError(op, r, err)
	}
	out := &BatchPage{HasMore: page.HasMore, Data: make([]Batch, 0, len(page.Data))}
	if page.FirstID != nil {
		out.FirstID = *page.FirstID
	}
	if page.LastID != nil {
		out.LastID = *page.LastID
	}
	for _, raw := range page.Data {
		var b Batch
		if err := json.Unmarshal(raw, &b); err != nil {
			return nil, decodeError(op, r, err)
		}
		b.Raw, b.RequestID = raw, r.rl.RequestID
		out.Data = append(out.Data, b)
	}
	return out, nil
}

func decodeBatch(op string, r *result) (*Batch, error) {
	var b Batch
	if err := json.Unmarshal(r.body, &b); err != nil {
		return nil, decodeError(op, r, err)
	}
	if b.ID == "" {
		return nil, decodeError(op, r, errors.New("batch has no id"))
	}
	b.Raw, b.RequestID = r.body, r.rl.RequestID
	return &b, nil
}

func decodeError(op string, r *result, err error) error {
	return &TransportError{Op: op, Status: r.status, RequestID: r.rl.RequestID, ShouldRetry: r.rl.ShouldRetry,
		Err: fmt.Errorf("decode response: %w", err)}
}

// Results opens the JSONL results of an ended batch
// (GET /v1/messages/batches/{id}/results). The download is bounded only by ctx, not
// by Config.RequestTimeout. Close the reader when done.
func (c *Client) Results(ctx context.Context, id string) (*ResultsReader, error) {
	if id == "" {
		return nil, ErrEmptyBatchID
	}
	op := "GET /v1/messages/batches/" + id + "/results"
	resp, _, err := c.send(ctx, http.MethodGet, "/v1/messages/batches/"+url.PathEscape(id)+"/results", nil, "application/x-jsonl", true)
	if err != nil {
		return nil, c.transportError(ctx, ctx, op, nil, true, true, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return nil, newAPIError(resp.StatusCode, resp.Header, b, c.cfg.APIKey, c.now())
	}
	rr := NewResultsReader(resp.Body)
	rr.closer = resp.Body
	rr.RequestID = c.cfg.APIKey.scrubString(resp.Header.Get(wire.HeaderRequestID))
	// A read that fails mid-download is a transport failure (download again), or the
	// caller's ctx ending.
	rr.wrapErr = func(err error) error {
		if ctx.Err() != nil {
			return fmt.Errorf("upstream: %s: %w", op, ctx.Err())
		}
		return &TransportError{Op: op, Status: resp.StatusCode, RequestID: rr.RequestID, Err: err}
	}
	return rr, nil
}
