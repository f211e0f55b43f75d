package emulator_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/clade-dev/clade/emulator"
)

func TestParseFaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		spec    string
		want    emulator.Faults
		wantErr string // substring of the error; "" for success
	}{
		{name: "empty", spec: "", want: emulator.Faults{}},
		{name: "none", spec: " none ", want: emulator.Faults{}},
		{
			name: "brief example",
			spec: "overloaded=0.05,burst=30s/5s,stream_error=0.02,server_error=0.01,timeout=0.01,drop=0.01,slow=0.1:2s,spend_cap,endpoints=messages+count_tokens",
			want: emulator.Faults{Overloaded: 0.05, BurstEvery: 30 * time.Second, BurstFor: 5 * time.Second,
				StreamError: 0.02, ServerError: 0.01, Timeout: 0.01, Drop: 0.01, Slow: 0.1, SlowDelay: 2 * time.Second,
				SpendCap: true, Endpoints: []string{"messages", "count_tokens"}},
		},
		{name: "percent and spaces", spec: " overloaded = 5% , drop=0.5% ", want: emulator.Faults{Overloaded: 0.05, Drop: 0.005}},
		{name: "slow without delay", spec: "slow=1", want: emulator.Faults{Slow: 1}},
		{name: "ramp with retry-after", spec: "ramp=0.1:30s", want: emulator.Faults{Ramp: 0.1, RampRetryAfter: 30 * time.Second}},
		{name: "spend cap after", spec: "spend_cap=1000", want: emulator.Faults{SpendCap: true, SpendCapAfter: 1000}},
		{name: "all endpoints", spec: "timeout=1,endpoints=all", want: emulator.Faults{Timeout: 1, Endpoints: []string{"all"}}},
		{name: "results rate", spec: "results_rate=500", want: emulator.Faults{ResultsRate: 500}},
		{name: "json results rate", spec: `{"results_rate":2.5}`, want: emulator.Faults{ResultsRate: 2.5}},
		{name: "results rate negative", spec: "results_rate=-1", wantErr: `"results_rate=-1"`},
		{name: "results rate not a number", spec: "results_rate=fast", wantErr: `"results_rate=fast"`},
		{name: "burst equal", spec: "burst=5s/5s", want: emulator.Faults{BurstEvery: 5 * time.Second, BurstFor: 5 * time.Second}},
		{name: "json", spec: ` {"overloaded":0.1,"burst_every":"1m","burst_for":"10s","slow":0.5,"slow_delay":"250ms","endpoints":["models"]}`,
			want: emulator.Faults{Overloaded: 0.1, BurstEvery: time.Minute, BurstFor: 10 * time.Second, Slow: 0.5, SlowDelay: 250 * time.Millisecond, Endpoints: []string{"models"}}},

		{name: "rate above 1", spec: "overloaded=1.5", wantErr: `"overloaded=1.5"`},
		{name: "negative rate", spec: "drop=-0.1", wantErr: `"drop=-0.1"`},
		{name: "NaN", spec: "timeout=NaN", wantErr: `"timeout=NaN"`},
		{name: "percent above 100", spec: "server_error=150%", wantErr: `"server_error=150%"`},
		{name: "not a number", spec: "overloaded=lots", wantErr: `"overloaded=lots"`},
		{name: "unknown key", spec: "overloaded=0.1,explode=1", wantErr: `"explode=1"`},
		{name: "missing value", spec: "overloaded", wantErr: `want overloaded=VALUE`},
		{name: "unknown bare word", spec: "chaos", wantErr: `unknown fault "chaos"`},
		{name: "twice", spec: "drop=0.1,drop=0.2", wantErr: "given twice"},
		{name: "empty item", spec: "drop=0.1,,timeout=0.1", wantErr: "empty item"},
		{name: "burst without slash", spec: "burst=30s", wantErr: `"burst=30s"`},
		{name: "burst longer than period", spec: "burst=5s/30s", wantErr: `"burst=5s/30s"`},
		{name: "burst zero", spec: "burst=0s/0s", wantErr: `"burst=0s/0s"`},
		{name: "slow bad delay", spec: "slow=0.1:fast", wantErr: `"slow=0.1:fast"`},
		{name: "slow delay too long", spec: "slow=0.1:1h", wantErr: `"slow=0.1:1h"`},
		{name: "ramp negative retry", spec: "ramp=0.1:-1s", wantErr: `"ramp=0.1:-1s"`},
		{name: "spend cap bad count", spec: "spend_cap=-3", wantErr: `"spend_cap=-3"`},
		{name: "unknown endpoint", spec: "endpoints=messages+files", wantErr: `unknown endpoint "files"`},
		{name: "rates over 1", spec: "overloaded=0.6,server_error=0.5", wantErr: "at most 1"},
		{name: "json unknown field", spec: `{"overload":0.1}`, wantErr: `"overload"`},
		{name: "json bad rate", spec: `{"stream_error":3}`, wantErr: "stream_error"},
		{name: "json bad duration", spec: `{"slow":1,"slow_delay":"2 seconds"}`, wantErr: "slow_delay"},
		{name: "json burst_for alone", spec: `{"burst_for":"1s"}`, wantErr: "burst_for"},
		{name: "json trailing data", spec: `{} {}`, wantErr: "invalid JSON"},
		{name: "json endpoints", spec: `{"overloaded":1,"endpoints":["everything"]}`, wantErr: `"everything"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := emulator.ParseFaults(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseFaults(%q) = %+v, %v, want an error containing %s", tt.spec, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseFaults(%q) error: %v", tt.spec, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseFaults(%q) = %+v, want %+v", tt.spec, got, tt.want)
			}
		})
	}
}

// FuzzParseFaults checks that ParseFaults never panics, that what it accepts is valid
// for SetFaults, and that it survives a JSON round trip unchanged.
func FuzzParseFaults(f *testing.F) {
	for _, s := range []string{
		"", "none", "overloaded=0.05,burst=30s/5s,stream_error=0.02,server_error=0.01,timeout=0.01,drop=0.01,slow=0.1:2s,spend_cap,endpoints=messages+count_tokens",
		"ramp=0.1:30s,spend_cap=10", "overloaded=5%", "burst=1h/1ns", "endpoints=all", "slow=1:10m",
		`{"overloaded":1,"burst_every":"1s","burst_for":"1s","endpoints":["all"]}`, `{"slow_delay":"-1s"}`, "{", "=,=", "drop=1e-400",
	} {
		f.Add(s)
	}
	srv, err := emulator.New(emulator.Config{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		got, err := emulator.ParseFaults(spec)
		if err != nil {
			if got := err.Error(); !strings.HasPrefix(got, "faults") {
				t.Errorf("ParseFaults(%q) error = %q, want it to start with faults", spec, got)
			}
			return
		}
		if err := srv.SetFaults(got); err != nil {
			t.Fatalf("ParseFaults(%q) = %+v, which SetFaults rejects: %v", spec, got, err)
		}
		b, err := json.Marshal(got)
		if err != nil {
			t.Fatalf("json.Marshal(%+v): %v", got, err)
		}
		again, err := emulator.ParseFaults(string(b))
		if err != nil {
			t.Fatalf("ParseFaults(%s) (the JSON of ParseFaults(%q)) error: %v", b, spec, err)
		}
		if !reflect.DeepEqual(got, again) {
			t.Errorf("JSON round trip of ParseFaults(%q) = %+v, want %+v", spec, again, got)
		}
	})
}
