package serve_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	anthropic "github.com/anthropics/anthropic-sdk-go/v2"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/emulator"
)

// settled waits until the gateway's limiter holds no reservation: every call that
// was admitted has been committed, refunded or failed.
func settled(t *testing.T, gw *gateway) {
	t.Helper()
	waitFor(t, func() bool { return gw.G.Status(context.Background()).InFlight == 0 }, "every reservation settled")
}

// TestServeStreamCutReachesClient: a stream the API cuts off midway reaches the
// client cut off, as a transport error, not as a stream that ended cleanly (which
// an SDK takes for a whole, if short, answer); and its reservation is settled.
func TestServeStreamCutReachesClient(t *testing.T) {
	t.Parallel()
	faults, err := emulator.ParseFaults("drop=1")
	if err != nil {
		t.Fatal(err)
	}
	gw := startGateway(t, setup{emCfg: emulator.Config{Faults: faults, Seed: 11}})
	ctx := context.Background()
	c := v2(gw.URL, clientKey)
	for i := range 3 {
		st := c.Messages.NewStreaming(ctx, hello("claude-haiku-4-5", 400, "Tell me a long story"))
		var acc anthropic.Message
		for st.Next() {
			acc.Accumulate(st.Current())
		}
		err := st.Err()
		st.Close()
		if err == nil {
			t.Errorf("stream %d cut off upstream ended with no error (stop_reason %q); want the client to see it cut off", i, acc.StopReason)
		}
	}
	settled(t, gw)
}

// tinyOutput is a catalog whose tier "tinyout" allows otpm output tokens a minute and
// requests and input enough never to bind.
func tinyOutput(t *testing.T, otpm int) *catalog.Catalog {
	t.Helper()
	cat, err := catalog.Overlay(catalog.Default(), []byte(
		"tiers:\n  tinyout:\n    batch: {rpm: 100, queue: 1000, max_requests: 1000}\n    limits:\n      default: {rpm: 100000, itpm: 100000000, otpm: "+
			itoa(otpm)+"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// TestServeClientLeavesMidStream: a client that hangs up after the first delta
// leaves the API charging what it generated meanwhile, which the gateway cannot see
// (message_delta's usage never came). The gateway charges the output it reserved,
// not the 1 token message_start reported, and the reservation is settled.
func TestServeClientLeavesMidStream(t *testing.T) {
	t.Parallel()
	// 600 output tokens a minute (10 a second), a bucket of a whole minute.
	gw := startGateway(t, setup{cat: tinyOutput(t, 600), tier: "tinyout", emCfg: emulator.Config{Seed: 4, LatencyScale: 1}})
	body := `{"model":"claude-haiku-4-5","max_tokens":400,"stream":true,"messages":[{"role":"user","content":"Tell me about rivers"}]}`
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, gw.URL+"/v1/messages", strings.NewReader(body))
	req.Header.Set("x-api-key", clientKey)
	req.Header.Set("anthropic-version", "2023-06-01")
	req.Header.Set("content-type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended before a delta: %v", err)
		}
		if strings.HasPrefix(line, "event: content_block_delta") {
			break
		}
	}
	cancel()
	resp.Body.Close()
	settled(t, gw)
	st := gw.G.Status(context.Background())
	if len(st.Classes) != 1 {
		t.Fatalf("status classes = %+v, want one", st.Classes)
	}
	// Without the charge the bucket would be back near its 600 within seconds; with
	// it, 400 below, refilling at 10 a second.
	if left := st.Classes[0].OutputTokensLeft; left > 450 {
		t.Errorf("output tokens available after a client left mid-stream = %.0f, want the 400 reserved charged (≤ 450)", left)
	}
}

// TestServeSettlesEveryPath drives calls through each way a call can end (success,
// an API 400, 500, spend-cap 429, a stream's error event, a client that leaves while
// queued) and checks that every reservation is settled afterwards.
func TestServeSettlesEveryPath(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		faults string
		stream bool
		status int // what the client gets; 200 for a stream
	}{
		{name: "ok", status: 200},
		{name: "server error", faults: "server_error=1", status: 500},
		{name: "spend cap", faults: "spend_cap", status: 429},
		{name: "stream error event", faults: "stream_error=1", stream: true, status: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var f emulator.Faults
			if tc.faults != "" {
				var err error
				if f, err = emulator.ParseFaults(tc.faults); err != nil {
					t.Fatal(err)
				}
			}
			gw := startGateway(t, setup{emCfg: emulator.Config{Faults: f, Seed: 2}})
			c := v2(gw.URL, clientKey)
			if tc.stream {
				st := c.Messages.NewStreaming(ctx, hello("claude-haiku-4-5", 200, "Tell me a story"))
				for st.Next() {
				}
				st.Close()
			} else {
				_, err := c.Messages.New(ctx, hello("claude-haiku-4-5", 20, "hi"))
				var e *anthropic.Error
				if got := 200; err != nil {
					if !errors.As(err, &e) {
						t.Fatalf("Messages.New: %v", err)
					}
					got = e.StatusCode
					if got != tc.status {
						t.Errorf("Messages.New = %d, want %d", got, tc.status)
					}
				} else if tc.status != 200 {
					t.Errorf("Messages.New succeeded, want %d", tc.status)
				}
			}
			settled(t, gw)
		})
	}
}

// TestServeResultsCutReachesClient: a batch results download the API cuts off midway
// reaches the client cut off (an error), not as a clean end that reads as a shorter
// list of results.
func TestServeResultsCutReachesClient(t *testing.T) {
	t.Parallel()
	em, err := emulator.Start(emulator.Config{APIKeys: []string{orgKey}, Tier: "unlimited", BatchProcessingRate: 1e6})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			em.Close()
		}
	})
	gw := startGateway(t, setup{em: em})
	ctx := context.Background()
	c := v2(gw.URL, clientKey)
	var reqs []anthropic.MessageBatchNewParamsRequest
	for i := range 40 {
		reqs = append(reqs, anthropic.MessageBatchNewParamsRequest{CustomID: "r" + itoa(i), Params: anthropic.MessageBatchNewParamsRequestParams{
			Model: "claude-haiku-4-5", MaxTokens: 10, Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("x"))}}})
	}
	b, err := c.Messages.Batches.New(ctx, anthropic.MessageBatchNewParams{Requests: reqs})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		got, err := c.Messages.Batches.Get(ctx, b.ID, anthropic.MessageBatchGetParams{})
		return err == nil && got.ProcessingStatus == "ended"
	}, "the batch to end")
	// Results at 20 lines a second: the download is in progress when the API goes away.
	if err := em.Server.SetFaults(emulator.Faults{ResultsRate: 20}); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, gw.URL+"/v1/messages/batches/"+b.ID+"/results", nil)
	req.Header.Set("x-api-key", clientKey)
	req.Header.Set("anthropic-version", "2023-06-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatalf("first result line: %v", err)
	}
	closed = true
	em.Close()
	lines := 1
	for {
		_, err = br.ReadString('\n')
		if err != nil {
			break
		}
		lines++
	}
	if errors.Is(err, io.EOF) && lines < 40 {
		t.Errorf("results download cut off upstream after %d of 40 lines ended cleanly, want an error", lines)
	}
}
