package emulator_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/clade-dev/clade/emulator"
)

// batchCacheUsage creates one batch of pairs on em, waits for it to end and
// returns each custom_id's cache read and write tokens.
func batchCacheUsage(t *testing.T, em *emulator.Running, pairs []string) (read, write map[string]int64) {
	t.Helper()
	r := rawCall(t, "POST", em.URL+"/v1/messages/batches", emulator.Version2023, batchBody(pairs...))
	var b struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(r.body, &b); err != nil || b.ID == "" {
		t.Fatalf("create batch: %d %s", r.status, r.body)
	}
	waitBatch(t, sdkFor(em.URL, "v1"), b.ID, "ended")
	res := rawCall(t, "GET", em.URL+"/v1/messages/batches/"+b.ID+"/results", emulator.Version2023, nil)
	read, write = map[string]int64{}, map[string]int64{}
	for _, l := range strings.Split(strings.TrimSuffix(string(res.body), "\n"), "\n") {
		var x struct {
			CustomID string `json:"custom_id"`
			Result   struct {
				Message struct {
					Usage struct {
						Read  int64 `json:"cache_read_input_tokens"`
						Write int64 `json:"cache_creation_input_tokens"`
					} `json:"usage"`
				} `json:"message"`
			} `json:"result"`
		}
		if err := json.Unmarshal([]byte(l), &x); err != nil {
			t.Fatalf("result line %q: %v", l, err)
		}
		read[x.CustomID], write[x.CustomID] = x.Result.Message.Usage.Read, x.Result.Message.Usage.Write
	}
	return read, write
}

// cachedBatchPairs is n custom_id/params pairs ("q0", ...) sharing a 5,000-token
// system prompt in a cache_control block, then plain lines ("p0", ...) without.
func cachedBatchPairs(system string, n, plain int) []string {
	var pairs []string
	for i := range n {
		pairs = append(pairs, fmt.Sprintf("q%d", i), fmt.Sprintf(`{"model":"claude-haiku-4-5","max_tokens":5,"system":[{"type":"text","text":%q,"cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":"question %d"}]}`, system, i))
	}
	for i := range plain {
		pairs = append(pairs, fmt.Sprintf("p%d", i), fmt.Sprintf(`{"model":"claude-haiku-4-5","max_tokens":5,"messages":[{"role":"user","content":"plain %d"}]}`, i))
	}
	return pairs
}

// TestBatchCacheBestEffort checks BatchCacheGroup: a batch's requests are looked
// up in consecutive groups of that many, so a cold prefix's lines in its first
// group all write it, and the later groups read it. 1 is request order (one
// write); the default, 4, writes 4 of 10 lines (the rest read: 60 %); a prefix
// already cached when the batch is created (a realtime call before it) is read
// by every line.
func TestBatchCacheBestEffort(t *testing.T) {
	t.Parallel()
	system := strings.Repeat("wxyz", 5000)
	for _, tt := range []struct {
		name       string
		group      int
		warm       bool
		wantWrites int
	}{
		{name: "request order", group: 1, wantWrites: 1},
		{name: "default", group: 0, wantWrites: emulator.DefaultBatchCacheGroup},
		{name: "group of 3", group: 3, wantWrites: 3},
		{name: "whole batch", group: 10, wantWrites: 10},
		{name: "warmed by a realtime call", group: 4, warm: true, wantWrites: 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			em := start(t, emulator.Config{ClockSpeed: 1000, BatchCacheGroup: tt.group})
			if tt.warm {
				m := send(t, clientV2(em.URL), cachedParams("claude-haiku-4-5", system, "warm"))
				if m.err != nil || m.msg.Usage.CacheCreationInputTokens < 5000 {
					t.Fatalf("warming call: %v, usage %+v; want a cache write", m.err, m.msg)
				}
			}
			read, write := batchCacheUsage(t, em, cachedBatchPairs(system, 10, 2))
			group := tt.group
			if group == 0 {
				group = emulator.DefaultBatchCacheGroup
			}
			writes := 0
			for i := range 10 {
				id := fmt.Sprintf("q%d", i)
				switch {
				case write[id] >= 5000 && read[id] == 0:
					writes++
					if i >= group {
						t.Errorf("%s (group %d) wrote the prefix: its group is after the first", id, group)
					}
				case read[id] >= 5000 && write[id] == 0:
				default:
					t.Errorf("%s: read %d, wrote %d: want one of them, ≥ 5,000", id, read[id], write[id])
				}
			}
			if writes != tt.wantWrites {
				t.Errorf("BatchCacheGroup %d: %d of 10 lines wrote the prefix, want %d", tt.group, writes, tt.wantWrites)
			}
			for _, id := range []string{"p0", "p1"} {
				if read[id] != 0 || write[id] != 0 {
					t.Errorf("%s (no cache_control): read %d, wrote %d; want 0, 0", id, read[id], write[id])
				}
			}
		})
	}
}

func TestBatchCacheGroupInvalid(t *testing.T) {
	t.Parallel()
	if _, err := emulator.New(emulator.Config{BatchCacheGroup: -1}); err == nil {
		t.Errorf("New(BatchCacheGroup -1) error = nil, want an error")
	}
}
