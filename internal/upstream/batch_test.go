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
	"testing"
	"time"

	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/upstream"
)

// The batch control calls run against the emulator's Message Batches engine. This
// handler stays for what the emulator does not send: a 1 MiB results line (its
// answers are at most max_tokens long), a results body cut short, and one batch
// object as the API documents it (every count, microsecond times) to parse.

const batchJSON = `{"id":"msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d","type":"message_batch","processing_status":"ended",` +
	`"request_counts":{"processing":0,"succeeded":2,"errored":1,"canceled":0,"expired":1},` +
	`"ended_at":"2026-11-26T12:30:00.123456Z","created_at":"2026-11-26T12:00:00.100435Z","expires_at":"2026-11-27T12:00:00.100435Z",` +
	`"archived_at":null,"cancel_initiated_at":null,"results_url":"https://api.anthropic.com/v1/messages/batches/msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d/results"}`

type batchServer struct {
	t       *testing.T
	results string
	dropAt  int // if > 0, the results body is cut after this many bytes
}

func (s *batchServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("x-api-key") != testKey || r.Header.Get("anthropic-version") == "" {
		w.WriteHeader(401)
		io.WriteString(w, `{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"},"request_id":"req_401"}`)
		return
	}
	w.Header().Set("request-id", "req_batch")
	if r.Method == "GET" && r.URL.Path == "/v1/messages/batches/msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d" {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, batchJSON)
		return
	}
	if r.Method != "GET" || r.URL.Path != "/v1/messages/batches/msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d/results" {
		w.Header().Del("request-id") // the id then comes from the envelope
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(404)
		io.WriteString(w, `{"type":"error","error":{"type":"not_found_error","message":"Not found"},"request_id":"req_404"}`)
		return
	}
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
}

// TestBatchParsed: a batch object with every count and the API's microsecond
// times is read field by field.
func TestBatchParsed(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(&batchServer{t: t})
	t.Cleanup(srv.Close)
	b, err := newClient(t, srv.URL).GetBatch(context.Background(), "msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d")
	if err != nil {
		t.Fatalf("GetBatch: %v", err)
	}
	wantCreated := time.Date(2026, 11, 26, 12, 0, 0, 100435000, time.UTC)
	if b.ProcessingStatus != upstream.BatchEnded || b.RequestCounts != (upstream.RequestCounts{Succeeded: 2, Errored: 1, Expired: 1}) ||
		!b.CreatedAt.Equal(wantCreated) || !b.ExpiresAt.Equal(wantCreated.Add(24*time.Hour)) ||
		!b.EndedAt.Equal(time.Date(2026, 11, 26, 12, 30, 0, 123456000, time.UTC)) || !b.ArchivedAt.IsZero() ||
		!b.CancelInitiatedAt.IsZero() || !strings.HasSuffix(b.ResultsURL, "/results") || b.RequestID != "req_batch" {
		t.Errorf("GetBatch = %+v", b)
	}
}

// TestBatchControl drives the batch calls against the emulator: create (the body
// sent as given), get as it processes and once ended (the fields parsed, the
// errored line counted), results, cancel of a batch in progress and of an ended
// one, delete, list with its paging, an unknown id (a Final 404 with its request
// id), an empty id (refused before any call) and an id that is not one path
// segment (escaped into one).
func TestBatchControl(t *testing.T) {
	t.Parallel()
	em := startEmulator(t, emulator.Config{BatchProcessingRate: 1})
	clock := em.Server.Clock()
	var rec recorder
	c := newClient(t, rec.start(t, em.URL))
	ctx := context.Background()

	// b's params lack max_tokens: the batch is created, the line ends errored.
	const noMax = `{"messages":[{"role":"user","content":"Say hi"}],"model":"claude-haiku-4-5"}`
	body := `{"requests":[{"custom_id":"a","params":` + params + `},{"custom_id":"b","params":` + noMax + `}]}`
	b, err := c.CreateBatch(ctx, strings.NewReader(body))
	if err != nil {
		t.Fatalf("CreateBatch: %v", err)
	}
	if got := string(rec.last(t).body); got != body {
		t.Errorf("create body on the wire = %q, want it unchanged", got)
	}
	id := b.ID
	if !strings.HasPrefix(id, "msgbatch_") || b.ProcessingStatus != upstream.BatchInProgress || !strings.HasPrefix(b.RequestID, "req_") ||
		!bytes.Contains(b.Raw, []byte(id)) || b.RequestCounts != (upstream.RequestCounts{Processing: 2}) ||
		!b.ExpiresAt.Equal(b.CreatedAt.Add(24*time.Hour)) || !b.EndedAt.IsZero() || b.ResultsURL != "" {
		t.Errorf("CreateBatch = %+v, want in progress with 2 processing", b)
	}

	clock.Advance(time.Minute) // 1 request a second: both processed
	b, err = c.GetBatch(ctx, id)
	if err != nil {
		t.Fatalf("GetBatch: %v", err)
	}
	if b.ProcessingStatus != upstream.BatchEnded || b.RequestCounts != (upstream.RequestCounts{Succeeded: 1, Errored: 1}) ||
		b.EndedAt.IsZero() || !b.EndedAt.After(b.CreatedAt) || !b.ArchivedAt.IsZero() || !b.CancelInitiatedAt.IsZero() ||
		!strings.HasSuffix(b.ResultsURL, "/"+id+"/results") {
		t.Errorf("GetBatch once processed = %+v, want ended, 1 succeeded and 1 errored, a results URL", b)
	}
	rr, err := c.Results(ctx, id)
	if err != nil {
		t.Fatalf("Results: %v", err)
	}
	var got []string
	for rr.Next() {
		got = append(got, rr.Result().CustomID+":"+rr.Result().Type)
	}
	if err := errors.Join(rr.Err(), rr.Close()); err != nil {
		t.Fatalf("results: %v", err)
	}
	slices.Sort(got)
	if strings.Join(got, " ") != "a:succeeded b:errored" || !strings.HasPrefix(rr.RequestID, "req_") {
		t.Errorf("results = %v (request id %q), want a:succeeded b:errored", got, rr.RequestID)
	}

	// Cancelling an ended batch is the API's 400: Final, not retried.
	_, err = c.CancelBatch(ctx, id)
	var ae *upstream.APIError
	if !errors.As(err, &ae) || ae.Status != 400 || upstream.Classify(err) != upstream.Final {
		t.Errorf("CancelBatch(ended) = %v, want a Final 400", err)
	}
	more, err := c.CreateBatch(ctx, strings.NewReader(`{"requests":[{"custom_id":"c","params":`+params+`}]}`))
	if err != nil {
		t.Fatalf("CreateBatch: %v", err)
	}
	cb, err := c.CancelBatch(ctx, more.ID)
	if err != nil || cb.ProcessingStatus != upstream.BatchCanceling || cb.CancelInitiatedAt.IsZero() {
		t.Errorf("CancelBatch(in progress) = %+v, %v; want canceling, cancel_initiated_at set", cb, err)
	}
	third, err := c.CreateBatch(ctx, strings.NewReader(`{"requests":[{"custom_id":"d","params":`+params+`}]}`))
	if err != nil {
		t.Fatalf("CreateBatch: %v", err)
	}

	// Newest first: a page of 2 of the 3 batches, and the next page after it.
	page, err := c.ListBatches(ctx, "", 2)
	if err != nil {
		t.Fatalf("ListBatches: %v", err)
	}
	if got := rec.last(t).uri; got != "/v1/messages/batches?limit=2" {
		t.Errorf("ListBatches path = %v", got)
	}
	if len(page.Data) != 2 || !page.HasMore || page.Data[0].ID != third.ID || page.Data[1].ID != more.ID ||
		page.FirstID != third.ID || page.LastID != more.ID {
		t.Errorf("ListBatches(limit 2) = %+v, want the two newest and has_more", page)
	}
	page, err = c.ListBatches(ctx, page.LastID, 2)
	if err != nil {
		t.Fatalf("ListBatches: %v", err)
	}
	if got := rec.last(t).uri; got != "/v1/messages/batches?after_id="+more.ID+"&limit=2" {
		t.Errorf("ListBatches path = %v", got)
	}
	if len(page.Data) != 1 || page.HasMore || page.Data[0].ID != id {
		t.Errorf("ListBatches(after %s) = %+v, want the first batch alone", more.ID, page)
	}
	if _, err := c.ListBatches(ctx, "", 1001); err == nil {
		t.Error("ListBatches(limit 1001) = nil error")
	}

	if err := c.DeleteBatch(ctx, id); err != nil {
		t.Errorf("DeleteBatch: %v", err)
	}
	_, err = c.GetBatch(ctx, id)
	if !errors.As(err, &ae) || ae.Status != 404 || !strings.HasPrefix(ae.RequestID, "req_") || upstream.Classify(err) != upstream.Final {
		t.Errorf("GetBatch(deleted) = %v, want a Final 404 with its request id", err)
	}
	calls := len(rec.requests())
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
	if n := len(rec.requests()); n != calls {
		t.Errorf("%d calls sent for empty ids, want none", n-calls)
	}
	// An id is one path segment, whatever it holds.
	if _, err := c.GetBatch(ctx, "../../v1/models?x=1"); !errors.As(err, &ae) || ae.Status != 404 {
		t.Errorf("GetBatch(odd id) = %v, want the API's 404", err)
	}
	if got := rec.last(t).uri; got != "/v1/messages/batches/..%2F..%2Fv1%2Fmodels%3Fx=1" {
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
// section's bytes are sent; the emulator creates the batch.
func TestCreateBatchSpooled(t *testing.T) {
	t.Parallel()
	em := startEmulator(t, emulator.Config{})
	var rec recorder
	c := newClient(t, rec.start(t, em.URL))

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
	b, err := c.CreateBatch(context.Background(), io.NewSectionReader(f, 0, int64(len(body))))
	if err != nil || b.RequestCounts.Processing+b.RequestCounts.Succeeded != 1 {
		t.Fatalf("CreateBatch(section of a file) = %+v, %v; want a batch of 1", b, err)
	}
	s := rec.last(t)
	if s.length != int64(len(body)) || string(s.body) != body {
		t.Errorf("CreateBatch(section of a file) sent Content-Length %d (-1: chunked), body %q; want %d, %q", s.length, s.body, len(body), body)
	}
}
