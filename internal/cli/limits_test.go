package cli_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/cli"
	"github.com/clade-dev/clade/internal/testkit"
)

// TestRunLimitsRedisShared: two `clade run` processes sharing one Redis (--limits-redis)
// against one emulator at tier-1 (50 requests per minute) stay within the limit
// together: no 429. Each alone would burst its 28 requests at once, 56 in all
// against a bucket of 50.
func TestRunLimitsRedisShared(t *testing.T) {
	t.Parallel()
	redisURL := testkit.RedisURL(t)
	var b [6]byte
	rand.Read(b[:])
	namespace := "clade-test-" + hex.EncodeToString(b[:])
	t.Cleanup(func() { deleteKeys(t, redisURL, "clade:ratelimit:"+namespace+":*") })

	const key = "sk-ant-test-limits-redis"
	reg := prometheus.NewRegistry()
	em := emulator.StartTB(t, emulator.Config{Tier: "tier-1", APIKeys: []string{key}, LatencyScale: 0.1, Registry: reg})
	dir := t.TempDir()
	const perRun = 28
	var wg sync.WaitGroup
	start := time.Now()
	for i := range 2 {
		input := filepath.Join(dir, "in"+string(rune('a'+i))+".jsonl")
		writeWorkload(t, input, perRun)
		out := input + ".results.jsonl"
		cmd := cladeCmd(key, "run", input, "-o", out, "--base-url", em.URL, "--tier", "tier-1", "-q",
			"--limits-redis", redisURL, "--limits-namespace", namespace)
		wg.Go(func() {
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("clade run %d: %v\n%s", i, err, b)
				return
			}
			if got := len(countResults(t, out)); got != perRun {
				t.Errorf("clade run %d: %d results, want %d", i, got, perRun)
			}
		})
	}
	wg.Wait()
	n429 := testkit.MetricSum(t, reg, "clade_emulator_rate_limited_total", nil)
	t.Logf("2 × %d requests in %v, %v 429s", perRun, time.Since(start).Round(time.Millisecond), n429)
	if n429 > 0 {
		t.Errorf("the emulator answered %v requests with 429, want none: the two runs share one budget", n429)
	}
}

// TestRunLimitsRedisHidesPassword: a Redis that does not answer fails the run at
// start, naming the URL without its password.
func TestRunLimitsRedisHidesPassword(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	input := filepath.Join(dir, "in.jsonl")
	writeWorkload(t, input, 1)
	for _, url := range []string{"redis://:s3cret-pw@127.0.0.1:1/0", "redis://user:s3cret-pw@127.0.0.1:notaport/0"} {
		var stdout, stderr bytes.Buffer
		args := []string{"run", input, "-o", filepath.Join(dir, "out.jsonl"), "--emulate", "tier-4", "-q", "--log-level", "debug", "--limits-redis", url}
		code := cli.Run(context.Background(), args, strings.NewReader(""), &stdout, &stderr)
		if code == cli.ExitOK {
			t.Errorf("clade run --limits-redis %s: exit 0, want a failure", url)
		}
		if strings.Contains(stderr.String(), "s3cret") || strings.Contains(stdout.String(), "s3cret") {
			t.Errorf("clade run --limits-redis printed the password:\n%s%s", stdout.String(), stderr.String())
		}
		if !strings.Contains(stderr.String(), "xxxxx@127.0.0.1") || !strings.Contains(stderr.String(), "Try:") {
			t.Errorf("clade run --limits-redis %s: stderr lacks the redacted URL or a Try line:\n%s", url, stderr.String())
		}
	}
}

func deleteKeys(t *testing.T, rawURL, pattern string) {
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		t.Error(err)
		return
	}
	c := redis.NewClient(opts)
	defer c.Close()
	ctx := context.Background()
	keys, err := c.Keys(ctx, pattern).Result()
	if err == nil && len(keys) > 0 {
		err = c.Del(ctx, keys...).Err()
	}
	if err != nil {
		t.Errorf("delete %s: %v", pattern, err)
	}
}
