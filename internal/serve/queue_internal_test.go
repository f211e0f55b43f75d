package serve

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clade-dev/clade/admit"
)

// TestServeFairQueueWeights: with two teams flooding one class, the queue serves them in
// proportion to their weights, and a third team arriving late goes next but one.
func TestServeFairQueueWeights(t *testing.T) {
	t.Parallel()
	f := newFairQueue()
	ctx := context.Background()
	hold, err := f.acquire(ctx, &Team{Name: "first", Weight: 1}, DefaultPriority, need100, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, b := &Team{Name: "a", Weight: 2}, &Team{Name: "b", Weight: 1}
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	enqueue := func(team *Team, n int) {
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				release, err := f.acquire(ctx, team, DefaultPriority, need100, nil)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				order = append(order, team.Name)
				mu.Unlock()
				release(true)
			}()
		}
	}
	enqueue(a, 60)
	enqueue(b, 30)
	waitDepth(t, f, 90)
	hold(true) // the baton goes round
	wg.Wait()
	counts := map[string]int{}
	for _, name := range order[:30] {
		counts[name]++
	}
	if counts["a"] < 19 || counts["a"] > 21 {
		t.Errorf("first 30 served: %v, want a (weight 2) about 20 and b (weight 1) about 10; order %v", counts, order)
	}

	// A late team waits behind at most one call of each team already queued (of
	// equal weight).
	hold, _ = f.acquire(ctx, &Team{Name: "first", Weight: 1}, DefaultPriority, need100, nil)
	order = nil
	enqueue(b, 20)
	waitDepth(t, f, 20)
	enqueue(&Team{Name: "late", Weight: 1}, 1)
	waitDepth(t, f, 21)
	hold(true)
	wg.Wait()
	for i, name := range order {
		if name == "late" {
			if i > 1 {
				t.Errorf("the late team's call was served %dth, want within the first 2; order %v", i+1, order)
			}
			break
		}
	}
}

var need100 = admit.Need{InputTokens: 100}

func waitDepth(t *testing.T, f *fairQueue, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f.mu.Lock()
		d := f.depth
		f.mu.Unlock()
		if d >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue depth %d, want %d", d, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// FuzzParseKeys: a client-keys file never panics the parser, and what it accepts has
// teams with valid names and weights.
func FuzzParseKeys(f *testing.F) {
	f.Add([]byte("keys:\n  ck-search-0001: search\n  ck-ads-000002: {team: ads, weight: 2}\n"))
	f.Add([]byte("keys: {}\n"))
	f.Add([]byte("keys:\n  short: x\n"))
	f.Add([]byte("- a\n- b\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParseKeys(data)
		if err != nil {
			return
		}
		for _, team := range k.Teams() {
			if !teamName.MatchString(team.Name) || team.Weight < 1 || team.Weight > maxWeight {
				t.Errorf("ParseKeys accepted team %+v", team)
			}
		}
	})
}

// FuzzEventReader: the relay's event splitter gives back every byte of any stream, in
// order, so what reaches the client is what the API sent.
func FuzzEventReader(f *testing.F) {
	f.Add([]byte("event: message_start\ndata: {\"type\":\"message_start\"}\n\nevent: ping\ndata: {}\n\n"))
	f.Add([]byte("data: a\r\n\r\n\n\nevent: x\ndata: partial"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		er := newEventReader(bytesReader(data))
		var got []byte
		for {
			raw, _, err := er.next()
			if err != nil {
				break
			}
			got = append(got, raw...)
		}
		if string(got) != string(data) {
			t.Errorf("events joined = %q, want the stream %q", got, data)
		}
	})
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

// TestServeEventReaderLongLines: a data line longer than the read buffer, ending right at
// its edge, is still one line of one event.
func TestServeEventReaderLongLines(t *testing.T) {
	t.Parallel()
	long := "data: " + strings.Repeat("x", 32<<10-len("data: ")) // fills the buffer exactly
	stream := "event: message_delta\n" + long + "\n\nevent: message_stop\ndata: {}\n\n"
	er := newEventReader(strings.NewReader(stream))
	var names []string
	for {
		raw, name, err := er.next()
		if err != nil {
			break
		}
		names = append(names, string(name))
		if string(name) == "message_delta" && len(eventData(raw)) != len(long)-len("data: ") {
			t.Errorf("message_delta data has %d bytes, want %d", len(eventData(raw)), len(long)-len("data: "))
		}
	}
	if strings.Join(names, ",") != "message_delta,message_stop" {
		t.Errorf("events = %v, want message_delta, message_stop", names)
	}
}

// TestServeParseKeysErrors: a client-keys file's errors never quote a client key (they
// reach the terminal and the logs), and a misspelt field is an error, not a weight of 1.
func TestServeParseKeysErrors(t *testing.T) {
	t.Parallel()
	const key = "ck-secret-key-1"
	for _, tc := range []struct {
		name, in, want string
	}{
		{name: "key outside keys", in: key + ": search\n", want: `outside "keys:"`},
		{name: "key given twice", in: "keys:\n  " + key + ": search\n  " + key + ": ads\n", want: "given twice (at line 2)"},
		{name: "misspelt weight", in: "keys:\n  " + key + ": {team: a, wieght: 2}\n", want: `unknown field "wieght"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseKeys([]byte(tc.in))
			if err == nil || strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseKeys(%q) = %v, want an error saying %q without the key", tc.in, err, tc.want)
			}
		})
	}
}

// TestPriorityOrderAndAging: within a team the highest effective priority goes
// first, a priority plus one level per aging waited: a low call that has waited 3
// agings (0 + 3) passes a high call that has waited 0 (2 + 0), but not one that has
// waited 2 (2 + 2); ties go in arrival order.
func TestPriorityOrderAndAging(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Unix(1_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	f := newFairQueue()
	f.now, f.aging = clock, time.Second
	team := &Team{Name: "t", Weight: 1}
	ctx := context.Background()
	hold, err := f.acquire(ctx, team, PriorityNormal, need100, nil)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	var omu sync.Mutex
	var wg sync.WaitGroup
	join := func(name string, prio int) {
		n := f.depth
		wg.Add(1)
		go func() {
			defer wg.Done()
			release, err := f.acquire(ctx, team, prio, need100, nil)
			if err != nil {
				t.Error(err)
				return
			}
			omu.Lock()
			order = append(order, name)
			omu.Unlock()
			release(true)
		}()
		waitDepth(t, f, n+1)
	}
	join("low", PriorityLow)
	join("normal-1", PriorityNormal)
	advance(time.Second)
	join("high-1", PriorityHigh)
	join("normal-2", PriorityNormal)
	advance(2 * time.Second)
	join("high-2", PriorityHigh)
	// Effective now: low 0+3, normal-1 1+3, high-1 2+2, normal-2 1+2, high-2 2+0.
	hold(true)
	wg.Wait()
	want := "normal-1,high-1,low,normal-2,high-2"
	if got := strings.Join(order, ","); got != want {
		t.Errorf("served %s, want %s", got, want)
	}
}

// TestPriorityWithinTeamOnly: a team's high-priority calls do not take another
// team's share: two teams of equal weight alternate, whatever their priorities.
func TestPriorityWithinTeamOnly(t *testing.T) {
	t.Parallel()
	f := newFairQueue()
	ctx := context.Background()
	hold, err := f.acquire(ctx, &Team{Name: "first", Weight: 1}, PriorityNormal, need100, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	for i := range 20 {
		team, prio := &Team{Name: "hi", Weight: 1}, MaxPriority
		if i%2 == 1 {
			team, prio = &Team{Name: "lo", Weight: 1}, PriorityLow
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			release, err := f.acquire(ctx, team, prio, need100, nil)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, team.Name)
			mu.Unlock()
			release(true)
		}()
	}
	waitDepth(t, f, 20)
	hold(true)
	wg.Wait()
	hi := 0
	for _, name := range order[:10] {
		if name == "hi" {
			hi++
		}
	}
	if hi < 4 || hi > 6 {
		t.Errorf("first 10 served %v: team hi (priority 9) had %d, want about 5: priority orders within a team", order, hi)
	}
}
