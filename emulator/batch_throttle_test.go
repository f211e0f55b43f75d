package emulator_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/clade-dev/clade/emulator"
)

// TestFaultResultsRateThrottlesDownload checks the results_rate fault: a results
// download is paced to the rate, its first lines reach the client long before the
// last (they are flushed as they go), and every line still arrives once.
func TestFaultResultsRateThrottlesDownload(t *testing.T) {
	t.Parallel()
	const n, rate = 60, 200.0 // 60 lines at 200 a second: about 300 ms
	em := start(t, emulator.Config{ClockSpeed: 1000})
	var pairs []string
	for i := range n {
		pairs = append(pairs, fmt.Sprintf("r-%02d", i), fmt.Sprintf(`{"model":"claude-haiku-4-5","max_tokens":5,"messages":[{"role":"user","content":"q%d"}]}`, i))
	}
	r := rawCall(t, "POST", em.URL+"/v1/messages/batches", emulator.Version2023, batchBody(pairs...))
	var b struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(r.body, &b); err != nil || b.ID == "" {
		t.Fatalf("create batch: %s (%v)", r.body, err)
	}
	waitBatch(t, sdkFor(em.URL, "v2"), b.ID, "ended")
	if err := em.Server.SetFaults(emulator.Faults{ResultsRate: rate}); err != nil {
		t.Fatalf("SetFaults(results_rate) error = %v", err)
	}

	req, err := http.NewRequest("GET", em.URL+"/v1/messages/batches/"+b.ID+"/results", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("x-api-key", testKey)
	req.Header.Set("anthropic-version", emulator.Version2023)
	began := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	seen := map[string]bool{}
	var first time.Duration
	for sc.Scan() {
		var l struct {
			CustomID string `json:"custom_id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("results line %q: %v", sc.Text(), err)
		}
		if len(seen) == 0 {
			first = time.Since(began)
		}
		seen[l.CustomID] = true
	}
	total := time.Since(began)
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(seen) != n {
		t.Errorf("download has %d distinct custom_ids, want %d", len(seen), n)
	}
	if want := time.Duration(float64(n-1) / rate * float64(time.Second)); total < want {
		t.Errorf("throttled download took %v, want at least %v (%d lines at %v/s)", total, want, n, rate)
	}
	if first > total/2 {
		t.Errorf("first line arrived after %v of %v: lines are not flushed as they are paced", first, total)
	}

	// Faults off: the same download is not paced.
	if err := em.Server.SetFaults(emulator.Faults{}); err != nil {
		t.Fatal(err)
	}
	began = time.Now()
	if got := rawCall(t, "GET", em.URL+"/v1/messages/batches/"+b.ID+"/results", emulator.Version2023, nil); got.status != http.StatusOK {
		t.Fatalf("unthrottled download: status %d", got.status)
	}
	if d := time.Since(began); d >= total {
		t.Errorf("unthrottled download took %v, no faster than the throttled %v", d, total)
	}
}
