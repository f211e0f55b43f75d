package admit_test

// The lost-class rules of the Redis backend (see admit.Redis) on the shared test
// Redis, where a loss is the class's key deleted; redis_restart_test.go restarts a
// Redis of its own.

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/clade-dev/clade/admit"
	"github.com/clade-dev/clade/admit/admittest"
)

// TestRedisInitAfterLossStartsEmpty: a class missing at Init starts full when this
// instance never initialised it (the Backend contract: a new namespace), and empty when
// it did, as then Redis lost it.
func TestRedisInitAfterLossStartsEmpty(t *testing.T) {
	t.Parallel()
	opts := redisOptions(t)
	client := redisClient(t, opts)
	ctx := context.Background()
	be := newRedis(t, admit.RedisConfig{Client: client, Prefix: testPrefix(t, opts), Clock: admit.ClockCaller})
	t0 := admittest.T0
	if err := be.Init(ctx, "sonnet-5", spec60, t0); err != nil {
		t.Fatal(err)
	}
	if s, _ := be.State(ctx, "sonnet-5", t0); s.Requests.Level != 60 {
		t.Fatalf("first Init: requests level %v, want 60 (full)", s.Requests.Level)
	}
	if err := client.Del(ctx, be.Key("sonnet-5")).Err(); err != nil {
		t.Fatal(err)
	}
	// A second limiter on the same backend initialises the class again.
	if err := be.Init(ctx, "sonnet-5", spec60, t0); err != nil {
		t.Fatal(err)
	}
	s, err := be.State(ctx, "sonnet-5", t0)
	if err != nil {
		t.Fatal(err)
	}
	if s.Requests.Level != 0 || s.InputTokens.Level != 0 || s.OutputTokens.Level != 0 {
		t.Errorf("Init after the key was lost: levels %v, %v, %v, want 0 (empty)", s.Requests.Level, s.InputTokens.Level, s.OutputTokens.Level)
	}
}

// TestRedisSettleAfterLoss: a call reserved before Redis lost the class settles into
// the recreated, empty buckets without a refund (they never charged it) and with its
// whole output charged (the API counted it as it was generated, partly after the
// loss); a call reserved after the loss settles as usual. No field of the instance is
// left behind once its calls have settled.
func TestRedisSettleAfterLoss(t *testing.T) {
	t.Parallel()
	opts := redisOptions(t)
	client := redisClient(t, opts)
	ctx := context.Background()
	be := newRedis(t, admit.RedisConfig{Client: client, Prefix: testPrefix(t, opts), Clock: admit.ClockCaller})
	t0 := admittest.T0
	if err := be.Init(ctx, "sonnet-5", spec60, t0); err != nil {
		t.Fatal(err)
	}
	before := admit.Cost{Requests: 1, InputTokens: 1000, OutputTokens: 100}
	if w, err := be.Reserve(ctx, "sonnet-5", before, t0); w != 0 || err != nil {
		t.Fatalf("Reserve = %v, %v", w, err)
	}
	if err := client.Del(ctx, be.Key("sonnet-5")).Err(); err != nil {
		t.Fatal(err)
	}
	// A minute after the loss the buckets are full again; a call reserved then holds
	// its output there.
	t1 := t0.Add(time.Minute)
	if _, err := be.State(ctx, "sonnet-5", t0); err != nil { // recreates the class at t0
		t.Fatal(err)
	}
	after := admit.Cost{Requests: 1, InputTokens: 500, OutputTokens: 50}
	if w, err := be.Reserve(ctx, "sonnet-5", after, t1); w != 0 || err != nil {
		t.Fatalf("Reserve after the loss = %v, %v", w, err)
	}
	if err := be.Settle(ctx, "sonnet-5", after, admit.Cost{}, t1); err != nil { // refused: full refund
		t.Fatal(err)
	}
	s, _ := be.State(ctx, "sonnet-5", t1)
	if s.Requests.Level != 60 || s.InputTokens.Level != 6000 || s.OutputTokens.Level != 600 || s.OutputTokens.Held != 0 {
		t.Fatalf("after refunding a call reserved after the loss: %+v, want full buckets, nothing held", s)
	}
	// The call from before the loss used less than it reserved, and more input.
	if err := be.Settle(ctx, "sonnet-5", before, admit.Cost{Requests: 1, InputTokens: 1200, OutputTokens: 40}, t1); err != nil {
		t.Fatal(err)
	}
	s, _ = be.State(ctx, "sonnet-5", t1)
	if s.Requests.Level != 60 || s.InputTokens.Level != 5800 || s.OutputTokens.Level != 560 {
		t.Errorf("after settling a call reserved before the loss: levels %v, %v, %v, want 60 (no refund), 5800 (the 200 above its estimate), 560 (its 40 output)",
			s.Requests.Level, s.InputTokens.Level, s.OutputTokens.Level)
	}
	fields, err := client.HKeys(ctx, be.Key("sonnet-5")).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fields {
		if strings.Contains(f, ":") {
			t.Errorf("field %s left in the class's hash after every call settled", f)
		}
	}
}

// TestRedisSyncAfterLoss: the first report of a limit other than the spec's (auto
// mode starts from a cautious tier) does not move a recreated bucket's level with the
// capacity, as it would move one holding calls in flight: raised, the level would be
// the report's remaining (output not generated yet counted as room); lowered, far
// below zero. Later limit changes move the level as usual.
func TestRedisSyncAfterLoss(t *testing.T) {
	t.Parallel()
	opts := redisOptions(t)
	client := redisClient(t, opts)
	ctx := context.Background()
	be := newRedis(t, admit.RedisConfig{Client: client, Prefix: testPrefix(t, opts), Clock: admit.ClockCaller})
	t0 := admittest.T0
	if err := be.Init(ctx, "sonnet-5", spec60, t0); err != nil {
		t.Fatal(err)
	}
	if err := client.Del(ctx, be.Key("sonnet-5")).Err(); err != nil {
		t.Fatal(err)
	}
	rd := func(limit, remaining, slack int64) admit.Reading {
		return admit.Reading{Valid: true, Limit: limit, Remaining: remaining, Slack: slack}
	}
	// 10 s after the loss: requests up to 600/min with plenty remaining, input down
	// to 600/min, output unchanged.
	t1 := t0.Add(10 * time.Second)
	if _, err := be.State(ctx, "sonnet-5", t0); err != nil { // recreates the class at t0
		t.Fatal(err)
	}
	rep := admit.Report{Requests: rd(600, 500, 1), InputTokens: rd(600, 5000, 500), OutputTokens: rd(600, 5000, 500)}
	if err := be.Sync(ctx, "sonnet-5", rep, t1); err != nil {
		t.Fatal(err)
	}
	s, _ := be.State(ctx, "sonnet-5", t1)
	want := []admit.BucketState{{Limit: 600, Capacity: 600, Level: 10}, {Limit: 600, Capacity: 600, Level: 600}, {Limit: 600, Capacity: 600, Level: 100}}
	for i, got := range []admit.BucketState{s.Requests, s.InputTokens, s.OutputTokens} {
		if got != want[i] {
			t.Errorf("first report after the loss: bucket %d = %+v, want %+v (what refilled in 10s, capped at the new capacity)", i, got, want[i])
		}
	}
	rep = admit.Report{Requests: rd(1200, 1000, 1)}
	if err := be.Sync(ctx, "sonnet-5", rep, t1); err != nil {
		t.Fatal(err)
	}
	if s, _ := be.State(ctx, "sonnet-5", t1); s.Requests.Level != 610 {
		t.Errorf("second report (requests 600 → 1200/min): level %v, want 610 (moved by the 600 more capacity)", s.Requests.Level)
	}
}

// TestRedisFailClosedThenLost: Redis goes away with a call in flight and comes back
// without the class (a restart): the call's settle, kept during the outage, is applied
// to the recreated, empty buckets without a refund, and its output is charged.
func TestRedisFailClosedThenLost(t *testing.T) {
	t.Parallel()
	be, p, direct := viaProxy(t, admit.RedisConfig{})
	ctx := context.Background()
	if err := be.Init(ctx, "sonnet-5", spec60, time.Now()); err != nil {
		t.Fatal(err)
	}
	c := admit.Cost{Requests: 1, InputTokens: 1000, OutputTokens: 300}
	if w, err := be.Reserve(ctx, "sonnet-5", c, time.Now()); w != 0 || err != nil {
		t.Fatalf("Reserve before the outage = %v, %v, want admitted", w, err)
	}
	p.down()
	if err := be.Settle(ctx, "sonnet-5", c, admit.Cost{Requests: 1, InputTokens: 400, OutputTokens: 50}, time.Now()); err != nil {
		t.Fatalf("Settle during an outage = %v, want nil (kept for later)", err)
	}
	if be.Available() {
		t.Fatalf("Available() = true after a Settle with Redis down: the outage was not seen")
	}
	if err := direct.Del(ctx, be.Key("sonnet-5")).Err(); err != nil {
		t.Fatal(err)
	}
	p.up()
	eventually(t, "Redis used again", func() bool {
		_, err := be.State(ctx, "sonnet-5", time.Now())
		return err == nil && be.Available()
	})
	s, err := be.State(ctx, "sonnet-5", time.Now()) // after the replay
	if err != nil {
		t.Fatal(err)
	}
	// Seconds at most have passed: each bucket holds what refilled since it was
	// recreated (1 request, 100 input and 10 output tokens a second), the output less
	// the 50 used.
	if s.Requests.Level > 5 || s.InputTokens.Level > 500 || s.OutputTokens.Level > 0 {
		t.Errorf("after the outage and the loss: levels %v, %v, %v, want at most 5, 500 and 0 (50 output charged, no refund)",
			s.Requests.Level, s.InputTokens.Level, s.OutputTokens.Level)
	}
}
