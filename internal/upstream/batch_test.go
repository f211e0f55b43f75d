package upstream_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clade-dev/clade/internal/upstream"
)

// TODO(batch engine): the emulator's batch endpoints are stubs today (emulator/batch.go).
// Once the batch engine lands, run these against emulator.StartTB with a fast clock and
// keep this handler only for what the emulator cannot send (a dropped results body).

const batchJSON = `{"id":"msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d","type":"message_batch","processing_status":"ended",` +
	`"request_counts":{"processing":0,"succeeded":2,"errored":1,"canceled":0,"expired":1},` +
	`"ended_at":"2026-11-26T12:30:00.123456Z","created_at":"2026-11-26T12:00:00.100435Z","expires_at":"2026-11-27T12:00:00.100435Z",` +
	`"archived_at":null,"cancel_initiated_at":null,"results_url":"https://api.anthropic.com/v1/messages/batches/msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d/results"}`

type batchServer struct {
	t        *testing.T
	created  atomic.Value // []byte
	results  string
	dropAt   int // if > 0, the results body is cut after this many bytes
	lastPath atomic.Value
}

func (s *batchServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.lastPath.Store(r.URL.RequestURI())
	if r.Header.Get("x-api-key") != testKey || r.Header.Get("anthropic-version") == "" {
		w.WriteHeader(401)
		io.WriteString(w, `{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"},"request_id":"req_401"}`)
		return
	}
	w.Header().Set("request-id", "req_batch")
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == "POST" && r.URL.Path == "/v1/messages/batches":
		b, _ := io.ReadAll(r.Body)
		s.created.Store(b)
		io.WriteString(w, strings.Replace(batchJSON, `"ended"`, `"in_progress"`, 1))
	case r.Method == "GET" && r.URL.Path == "/v1/messages/batches":
		io.WriteString(w, `{"data":[`+batchJSON+`,`+strings.Replace(batchJSON, "msgbatch_01Hk", "msgbatch_02Hk", 1)+`],"has_more":true,"first_id":"msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d","last_id":"msgbatch_02HkcTjaV5uDC8jWR4ZsDV8d"}`)
	case r.Method == "GET" && r.URL.Path == "/v1/messages/batches/msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d":
		io.WriteString(w, batchJSON)
	case r.Method == "POST" && r.URL.Path == "/v1/messages/batches/msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d/cancel":
		io.WriteString(w, strings.Replace(batchJSON, `"cancel_initiated_at":null`, `"cancel_initiated_at":"2026-11-26T12:10:00Z"`, 1))
	case r.Method == "DELETE" && r.URL.Path == "/v1/messages/batches/msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d":
		io.WriteString(w, `{"id":"msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d","type":"message_batch_deleted"}`)
	case r.Method == "GET" && r.URL.Path == "/v1/messages/batches/msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d/results":
		if r.Header.Get("Accept") != "application/x-jsonl" {
			s.t.Errorf("results Accept = %q", r.Header.Get("Accept"))
		}
		w.Header().Set("Content-Type", "application/x-jsonl")
		if s.dropAt > 0 {
			w.Header().Set("Content-Length", "100000000")
			io.WriteString(w, s.results[:s.dropAt])
			return // the server closes with the body short of its length
		}
		io.WriteString(w, s.results)
	default:
		w.Header().Del("request-id") // the id then comes from the envelope
		w.WriteHeader(404)
		io.WriteString(w, `{"type":"error","error":{"type":"not_found_error","message":"Not found"},"request_id":"req_404"}`)
	}
}

func TestBatchControl(t *testing.T) {
	t.Parallel()
	bs := &batchServer{t: t}
	srv := httptest.NewServer(bs)
	t.Cleanup(srv.Close)
	c := newClient(t, srv.URL)
	ctx := context.Background()
	const id = "msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d"

	body := `{"requests":[{"custom_id":"a","params":` + params + `}]}`
	b, err := c.CreateBatch(ctx, strings.NewReader(body))
	if err != nil {
		t.Fatalf("CreateBatch: %v", err)
	}
	if got, _ := bs.created.Load().([]byte); string(got) != body {
		t.Errorf("create body on the wire = %q, want it unchanged", got)
	}
	if b.ID != id || b.ProcessingStatus != upstream.BatchInProgress || b.RequestID != "req_batch" || !bytes.Contains(b.Raw, []byte(id)) {
		t.Errorf("CreateBatch = %+v", b)
	}

	b, err = c.GetBatch(ctx, id)
	if err != nil {
		t.Fatalf("GetBatch: %v", err)
	}
	wantCreated := time.Date(2026, 11, 26, 12, 0, 0, 100435000, time.UTC)
	if b.ProcessingStatus != upstream.BatchEnded || b.RequestCounts != (upstream.RequestCounts{Succeeded: 2, Errored: 1, Expired: 1}) ||
		!b.CreatedAt.Equal(wantCreated) || !b.ExpiresAt.Equal(wantCreated.Add(24*time.Hour)) || b.EndedAt.IsZero() ||
		!b.ArchivedAt.IsZero() || !b.CancelInitiatedAt.IsZero() || !strings.HasSuffix(b.ResultsURL, "/results") {
		t.Errorf("GetBatch = %+v", b)
	}

	b, err = c.CancelBatch(ctx, id)
	if err != nil || b.CancelInitiatedAt.IsZero() {
		t.Errorf("CancelBatch = %+v, %v; want cancel_initiated_at set", b, err)
	}
	if err := c.DeleteBatch(ctx, id); err != nil {
		t.Errorf("DeleteBatch: %v", err)
	}

	page, err := c.ListBatches(ctx, "msgbatch_00", 2)
	if err != nil {
		t.Fatalf("ListBatches: %v", err)
	}
	if got := bs.lastPath.Load(); got != "/v1/messages/batches?after_id=msgbatch_00&limit=2" {
		t.Errorf("ListBatches path = %v", got)
	}
	if len(page.Data) != 2 || !page.HasMore || page.LastID != "msgbatch_02HkcTjaV5uDC8jWR4ZsDV8d" || page.Data[1].ID != page.LastID {
		t.Errorf("ListBatches = %+v", page)
	}
	if _, err := c.ListBatches(ctx, "", 1001); err == nil {
		t.Error("ListBatches(limit 1001) = nil error")
	}

	_, err = c.GetBatch(ctx, "msgbatch_nope")
	var ae *upstream.APIError
	if !errors.As(err, &ae) || ae.Status != 404 || ae.RequestID != "req_404" || upstream.Classify(err) != upstream.Final {
		t.Errorf("GetBatch(unknown) = %v, want a Final 404 with its request id", err)
	}
	for name, f := range map[string]func() error{
		"get":     func() error { _, err := c.GetBatch(ctx, ""); return err },
		"cancel":  func() error { _, err := c.CancelBatch(ctx, ""); return err },
		"delete":  func() error { return c.DeleteBatch(ctx, "") },
		"results": func() error { _, err := c.Results(ctx, ""); return err },
	} {
		if err := f(); !errors.Is(err, upstream.ErrEmptyBatchID) {
			t.Errorf("%s with empty id: %v, want ErrEmptyBatchID", name, err)
		}
	}
	// An id is one path segment, whatever it holds.
	_, _ = c.GetBatch(ctx, "../../v1/models?x=1")
	if got := bs.lastPath.Load(); got != "/v1/messages/batches/..%2F..%2Fv1%2Fmodels%3Fx=1" {
		t.Errorf("GetBatch path with odd id = %v, want it escaped into one segment", got)
	}
}

func TestBatchCreateMaybeDelivered(t *testing.T) {
	t.Parallel()
	// The server reads the request and then drops the connection: the batch may
	// exist, so the error must say so and must not be classed retryable.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	t.Cleanup(srv.Close)
	_, err := newClient(t, srv.URL).CreateBatch(context.Background(), strings.NewReader(`{"requests":[]}`))
	var te *upstream.TransportError
	if !errors.As(err, &te) || !te.MaybeDelivered || upstream.Classify(err) != upstream.Final {
		t.Errorf("CreateBatch dropped after sending: %v, want a Final TransportError with MaybeDelivered", err)
	}

	// A refused connection never delivered anything: retryable.
	closed := httptest.NewServer(http.NotFoundHandler())
	u := closed.URL
	closed.Close()
	_, err = newClient(t, u).CreateBatch(context.Background(), strings.NewReader(`{"requests":[]}`))
	if !errors.As(err, &te) || te.MaybeDelivered || upstream.Classify(err) != upstream.Retry {
		t.Errorf("CreateBatch to a closed port: %v, want a Retry TransportError", err)
	}
}

func TestResultsDownload(t *testing.T) {
	t.Parallel()
	long := bigLine("long", 1<<20)
	results := lineSucceeded + "\n" + long + "\n" + lineErrored + "\n" + lineExpired + "\n"
	bs := &batchServer{t: t, results: results}
	srv := httptest.NewServer(bs)
	t.Cleanup(srv.Close)
	c := newClient(t, srv.URL)

	rr, err := c.Results(context.Background(), "msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d")
	if err != nil {
		t.Fatalf("Results: %v", err)
	}
	var ids []string
	for rr.Next() {
		r := rr.Result()
		ids = append(ids, r.CustomID+":"+r.Type)
		if r.CustomID == "long" && string(r.Line) != long {
			t.Errorf("1 MiB line came back as %d bytes", len(r.Line))
		}
	}
	if err := rr.Err(); err != nil {
		t.Fatalf("Err() = %v", err)
	}
	if err := rr.Close(); err != nil {
		t.Errorf("Close() = %v", err)
	}
	if strings.Join(ids, " ") != "a:succeeded long:succeeded b:errored d-1_x:expired" || rr.RequestID != "req_batch" {
		t.Errorf("results = %v (request id %q)", ids, rr.RequestID)
	}

	_, err = c.Results(context.Background(), "msgbatch_unknown")
	if upstream.Classify(err) != upstream.Final {
		t.Errorf("Results(unknown) = %v, want Final", err)
	}

	// A download cut mid-line is a TransportError: download again.
	cut := &batchServer{t: t, results: results, dropAt: len(lineSucceeded) + 1 + 5000}
	srv2 := httptest.NewServer(cut)
	t.Cleanup(srv2.Close)
	rr, err = newClient(t, srv2.URL).Results(context.Background(), "msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d")
	if err != nil {
		t.Fatalf("Results: %v", err)
	}
	defer rr.Close()
	n := 0
	for rr.Next() {
		n++
	}
	var te *upstream.TransportError
	if n != 1 || !errors.As(rr.Err(), &te) || upstream.Classify(rr.Err()) != upstream.Retry {
		t.Errorf("cut download: %d results, Err() = %v; want 1 and a Retry TransportError", n, rr.Err())
	}
}

// TestCreateBatchSpooled sends a create body from a file through an
// *io.SectionReader: it goes with its Content-Length (not chunked), and only the
// section's bytes are sent.
func TestCreateBatchSpooled(t *testing.T) {
	t.Parallel()
	type seen struct {
		length  int64
		chunked bool
		body    string
	}
	got := make(chan seen, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.ContentLength, slices.Contains(r.TransferEncoding, "chunked"), string(b)}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, strings.Replace(batchJSON, `"ended"`, `"in_progress"`, 1))
	}))
	t.Cleanup(srv.Close)

	body := `{"requests":[{"custom_id":"a","params":` + params + `}]}`
	f, err := os.Create(filepath.Join(t.TempDir(), "body.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Stale bytes after the body (a longer body spooled earlier) must not be sent.
	if _, err := f.WriteString(body + strings.Repeat("x", 100)); err != nil {
		t.Fatal(err)
	}
	if _, err := newClient(t, srv.URL).CreateBatch(context.Background(), io.NewSectionReader(f, 0, int64(len(body)))); err != nil {
		t.Fatalf("CreateBatch(section of a file) error = %v", err)
	}
	s := <-got
	if s.length != int64(len(body)) || s.chunked || s.body != body {
		t.Errorf("CreateBatch(section of a file) sent Content-Length %d, chunked %v, body %q; want %d, false, %q", s.length, s.chunked, s.body, len(body), body)
	}
}
