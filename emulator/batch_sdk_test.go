package emulator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	anthropic1 "github.com/anthropics/anthropic-sdk-go"
	anthropic "github.com/anthropics/anthropic-sdk-go/v2"
)

// batchReq is one request of a test batch, built into each SDK's params.
type batchReq struct {
	ID        string
	Model     string
	MaxTokens int64
	Text      string
}

// sdkBatch is a batch object as either SDK decoded it.
type sdkBatch struct {
	ID, Status string
	// Counts are processing, succeeded, errored, canceled, expired.
	Counts                                                       [5]int64
	CreatedAt, ExpiresAt, EndedAt, ArchivedAt, CancelInitiatedAt time.Time
	ResultsURL                                                   string
}

// sdkResult is one result line as either SDK decoded it.
type sdkResult struct {
	Type        string // succeeded, errored, canceled, expired
	ErrType     string // errored: error.error.type
	ErrMessage  string
	RequestID   string // errored: error.request_id
	MessageID   string
	Text        string
	ServiceTier string
	InputTokens int64
	Output      int64
}

// batchAPI is the batch surface of one SDK generation, so every test runs on both.
type batchAPI interface {
	create(ctx context.Context, reqs []batchReq) (sdkBatch, error)
	get(ctx context.Context, id string) (sdkBatch, error)
	list(ctx context.Context, limit int64, afterID, beforeID string) (ids []string, hasMore bool, err error)
	listAll(ctx context.Context, limit int64) ([]string, error)
	cancel(ctx context.Context, id string) (sdkBatch, error)
	del(ctx context.Context, id string) (string, error)
	results(ctx context.Context, id string) (map[string]sdkResult, []string, error)
}

// sdks returns both SDK generations pointed at url.
func sdks(url string) []struct {
	name string
	api  batchAPI
} {
	return []struct {
		name string
		api  batchAPI
	}{
		{"v1", v1API{clientV1(url)}},
		{"v2", v2API{clientV2(url)}},
	}
}

type v2API struct{ c anthropic.Client }

func fromV2(b *anthropic.MessageBatch) sdkBatch {
	rc := b.RequestCounts
	return sdkBatch{
		ID: b.ID, Status: string(b.ProcessingStatus),
		Counts:    [5]int64{rc.Processing, rc.Succeeded, rc.Errored, rc.Canceled, rc.Expired},
		CreatedAt: b.CreatedAt, ExpiresAt: b.ExpiresAt, EndedAt: b.EndedAt, ArchivedAt: b.ArchivedAt,
		CancelInitiatedAt: b.CancelInitiatedAt, ResultsURL: b.ResultsURL,
	}
}

func (a v2API) create(ctx context.Context, reqs []batchReq) (sdkBatch, error) {
	rs := make([]anthropic.MessageBatchNewParamsRequest, 0, len(reqs))
	for _, r := range reqs {
		rs = append(rs, anthropic.MessageBatchNewParamsRequest{CustomID: r.ID, Params: anthropic.MessageBatchNewParamsRequestParams{
			Model: anthropic.Model(r.Model), MaxTokens: r.MaxTokens,
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(r.Text))},
		}})
	}
	b, err := a.c.Messages.Batches.New(ctx, anthropic.MessageBatchNewParams{Requests: rs})
	if err != nil {
		return sdkBatch{}, err
	}
	return fromV2(b), nil
}

func (a v2API) get(ctx context.Context, id string) (sdkBatch, error) {
	b, err := a.c.Messages.Batches.Get(ctx, id, anthropic.MessageBatchGetParams{})
	if err != nil {
		return sdkBatch{}, err
	}
	return fromV2(b), nil
}

func (a v2API) list(ctx context.Context, limit int64, afterID, beforeID string) ([]string, bool, error) {
	p := anthropic.MessageBatchListParams{Limit: anthropic.Int(limit)}
	if afterID != "" {
		p.AfterID = anthropic.String(afterID)
	}
	if beforeID != "" {
		p.BeforeID = anthropic.String(beforeID)
	}
	page, err := a.c.Messages.Batches.List(ctx, p)
	if err != nil {
		return nil, false, err
	}
	var ids []string
	for _, b := range page.Data {
		ids = append(ids, b.ID)
	}
	return ids, page.HasMore, nil
}

func (a v2API) listAll(ctx context.Context, limit int64) ([]string, error) {
	it := a.c.Messages.Batches.ListAutoPaging(ctx, anthropic.MessageBatchListParams{Limit: anthropic.Int(limit)})
	var ids []string
	for it.Next() {
		ids = append(ids, it.Current().ID)
	}
	return ids, it.Err()
}

func (a v2API) cancel(ctx context.Context, id string) (sdkBatch, error) {
	b, err := a.c.Messages.Batches.Cancel(ctx, id, anthropic.MessageBatchCancelParams{})
	if err != nil {
		return sdkBatch{}, err
	}
	return fromV2(b), nil
}

func (a v2API) del(ctx context.Context, id string) (string, error) {
	d, err := a.c.Messages.Batches.Delete(ctx, id, anthropic.MessageBatchDeleteParams{})
	if err != nil {
		return "", err
	}
	if d.ID != id {
		return "", fmt.Errorf("deleted id %q, want %q", d.ID, id)
	}
	return string(d.Type), nil
}

func (a v2API) results(ctx context.Context, id string) (map[string]sdkResult, []string, error) {
	st := a.c.Messages.Batches.ResultsStreaming(ctx, id, anthropic.MessageBatchResultsParams{})
	out := make(map[string]sdkResult)
	var order []string
	for st.Next() {
		r := st.Current()
		var x sdkResult
		switch v := r.Result.AsAny().(type) {
		case anthropic.MessageBatchSucceededResult:
			x = sdkResult{Type: "succeeded", MessageID: v.Message.ID, ServiceTier: string(v.Message.Usage.ServiceTier),
				InputTokens: v.Message.Usage.InputTokens, Output: v.Message.Usage.OutputTokens}
			if len(v.Message.Content) > 0 {
				x.Text = v.Message.Content[0].Text
			}
		case anthropic.MessageBatchErroredResult:
			x = sdkResult{Type: "errored", ErrType: v.Error.Error.Type, ErrMessage: v.Error.Error.Message, RequestID: v.Error.RequestID}
		case anthropic.MessageBatchCanceledResult:
			x.Type = "canceled"
		case anthropic.MessageBatchExpiredResult:
			x.Type = "expired"
		default:
			return nil, nil, fmt.Errorf("result %s: unknown type %q", r.CustomID, r.Result.Type)
		}
		if _, dup := out[r.CustomID]; dup {
			return nil, nil, fmt.Errorf("custom_id %s twice in the results", r.CustomID)
		}
		out[r.CustomID] = x
		order = append(order, r.CustomID)
	}
	err := st.Err()
	st.Close()
	return out, order, err
}

type v1API struct{ c anthropic1.Client }

func fromV1(b *anthropic1.MessageBatch) sdkBatch {
	rc := b.RequestCounts
	return sdkBatch{
		ID: b.ID, Status: string(b.ProcessingStatus),
		Counts:    [5]int64{rc.Processing, rc.Succeeded, rc.Errored, rc.Canceled, rc.Expired},
		CreatedAt: b.CreatedAt, ExpiresAt: b.ExpiresAt, EndedAt: b.EndedAt, ArchivedAt: b.ArchivedAt,
		CancelInitiatedAt: b.CancelInitiatedAt, ResultsURL: b.ResultsURL,
	}
}

func (a v1API) create(ctx context.Context, reqs []batchReq) (sdkBatch, error) {
	rs := make([]anthropic1.MessageBatchNewParamsRequest, 0, len(reqs))
	for _, r := range reqs {
		rs = append(rs, anthropic1.MessageBatchNewParamsRequest{CustomID: r.ID, Params: anthropic1.MessageBatchNewParamsRequestParams{
			Model: anthropic1.Model(r.Model), MaxTokens: r.MaxTokens,
			Messages: []anthropic1.MessageParam{anthropic1.NewUserMessage(anthropic1.NewTextBlock(r.Text))},
		}})
	}
	b, err := a.c.Messages.Batches.New(ctx, anthropic1.MessageBatchNewParams{Requests: rs})
	if err != nil {
		return sdkBatch{}, err
	}
	return fromV1(b), nil
}

func (a v1API) get(ctx context.Context, id string) (sdkBatch, error) {
	b, err := a.c.Messages.Batches.Get(ctx, id, anthropic1.MessageBatchGetParams{})
	if err != nil {
		return sdkBatch{}, err
	}
	return fromV1(b), nil
}

func (a v1API) list(ctx context.Context, limit int64, afterID, beforeID string) ([]string, bool, error) {
	p := anthropic1.MessageBatchListParams{Limit: anthropic1.Int(limit)}
	if afterID != "" {
		p.AfterID = anthropic1.String(afterID)
	}
	if beforeID != "" {
		p.BeforeID = anthropic1.String(beforeID)
	}
	page, err := a.c.Messages.Batches.List(ctx, p)
	if err != nil {
		return nil, false, err
	}
	var ids []string
	for _, b := range page.Data {
		ids = append(ids, b.ID)
	}
	return ids, page.HasMore, nil
}

func (a v1API) listAll(ctx context.Context, limit int64) ([]string, error) {
	it := a.c.Messages.Batches.ListAutoPaging(ctx, anthropic1.MessageBatchListParams{Limit: anthropic1.Int(limit)})
	var ids []string
	for it.Next() {
		ids = append(ids, it.Current().ID)
	}
	return ids, it.Err()
}

func (a v1API) cancel(ctx context.Context, id string) (sdkBatch, error) {
	b, err := a.c.Messages.Batches.Cancel(ctx, id, anthropic1.MessageBatchCancelParams{})
	if err != nil {
		return sdkBatch{}, err
	}
	return fromV1(b), nil
}

func (a v1API) del(ctx context.Context, id string) (string, error) {
	d, err := a.c.Messages.Batches.Delete(ctx, id, anthropic1.MessageBatchDeleteParams{})
	if err != nil {
		return "", err
	}
	if d.ID != id {
		return "", fmt.Errorf("deleted id %q, want %q", d.ID, id)
	}
	return string(d.Type), nil
}

func (a v1API) results(ctx context.Context, id string) (map[string]sdkResult, []string, error) {
	st := a.c.Messages.Batches.ResultsStreaming(ctx, id, anthropic1.MessageBatchResultsParams{})
	out := make(map[string]sdkResult)
	var order []string
	for st.Next() {
		r := st.Current()
		var x sdkResult
		switch v := r.Result.AsAny().(type) {
		case anthropic1.MessageBatchSucceededResult:
			x = sdkResult{Type: "succeeded", MessageID: v.Message.ID, ServiceTier: string(v.Message.Usage.ServiceTier),
				InputTokens: v.Message.Usage.InputTokens, Output: v.Message.Usage.OutputTokens}
			if len(v.Message.Content) > 0 {
				x.Text = v.Message.Content[0].Text
			}
		case anthropic1.MessageBatchErroredResult:
			x = sdkResult{Type: "errored", ErrType: v.Error.Error.Type, ErrMessage: v.Error.Error.Message, RequestID: v.Error.RequestID}
		case anthropic1.MessageBatchCanceledResult:
			x.Type = "canceled"
		case anthropic1.MessageBatchExpiredResult:
			x.Type = "expired"
		default:
			return nil, nil, fmt.Errorf("result %s: unknown type %q", r.CustomID, r.Result.Type)
		}
		if _, dup := out[r.CustomID]; dup {
			return nil, nil, fmt.Errorf("custom_id %s twice in the results", r.CustomID)
		}
		out[r.CustomID] = x
		order = append(order, r.CustomID)
	}
	err := st.Err()
	if err == nil {
		st.Close()
	}
	return out, order, err
}

// apiStatus returns the HTTP status and error type of an SDK error (0, "" if it is not
// an API error).
func apiStatus(err error) (int, string) {
	var e2 *anthropic.Error
	if errors.As(err, &e2) {
		return e2.StatusCode, string(e2.Type())
	}
	var e1 *anthropic1.Error
	if errors.As(err, &e1) {
		return e1.StatusCode, string(e1.Type())
	}
	return 0, ""
}

// waitBatch polls, backing off from 1 ms to 50 ms, until the batch's processing_status
// is want, failing the test after 60 s.
func waitBatch(t *testing.T, api batchAPI, id, want string) sdkBatch {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	wait := time.Millisecond
	for {
		b, err := api.get(context.Background(), id)
		if err != nil {
			t.Fatalf("get %s: %v", id, err)
		}
		if b.Status == want {
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("batch %s is %s after 60 s, want %s", id, b.Status, want)
		}
		<-time.After(wait)
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// rawResponse is a response read whole.
type rawResponse struct {
	status int
	header http.Header
	body   []byte
}

// errEnvelope decodes an error body.
func (r rawResponse) errEnvelope(t *testing.T) (typ, msg string) {
	t.Helper()
	var env struct {
		Type  string `json:"type"`
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
		RequestID string `json:"request_id"`
	}
	if err := json.Unmarshal(r.body, &env); err != nil || env.Type != "error" || !strings.HasPrefix(env.RequestID, "req_") {
		t.Fatalf("body %q is not an error envelope with a request id", r.body)
	}
	return env.Error.Type, env.Error.Message
}

// rawCall sends one request with the test key and the given anthropic-version.
func rawCall(t *testing.T, method, url, version string, body []byte, header ...string) rawResponse {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("x-api-key", testKey)
	req.Header.Set("anthropic-version", version)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s %s: %v", method, url, err)
	}
	return rawResponse{status: resp.StatusCode, header: resp.Header, body: b}
}

// batchBody builds a create body from (custom_id, params JSON) pairs.
func batchBody(pairs ...string) []byte {
	var b bytes.Buffer
	b.WriteString(`{"requests":[`)
	for i := 0; i+1 < len(pairs); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		id, _ := json.Marshal(pairs[i])
		fmt.Fprintf(&b, `{"custom_id":%s,"params":%s}`, id, pairs[i+1])
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

const okParams = `{"model":"claude-haiku-4-5","max_tokens":50,"messages":[{"role":"user","content":"hi"}]}`
