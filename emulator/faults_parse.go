package emulator

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseFaults parses the --faults flag (and the body of PUT /_emulator/faults): either
// a JSON Faults object (the spec starts with "{") or a compact comma-separated list:
//
//	spec     = "" | "none" | item *("," item)
//	item     = "overloaded=" RATE                529 overloaded_error
//	         | "burst=" DURATION "/" DURATION    every/for: 529 to every request in the last FOR of each EVERY
//	         | "stream_error=" RATE              streams: 200, then an SSE overloaded error mid-output
//	         | "server_error=" RATE              500 api_error
//	         | "timeout=" RATE                   504 timeout_error
//	         | "drop=" RATE                      connection closed (mid-output for streams)
//	         | "slow=" RATE [":" DURATION]       added delay, default 2s
//	         | "ramp=" RATE [":" DURATION]       429 ramp_limit_exceeded with retry-after, default 10s
//	         | "spend_cap" ["=" COUNT]           429 enforced_spend_limit_reached after COUNT requests (default 0)
//	         | "error=" TYPE ":" RATE            any API error type with its status (billing_error, permission_error, conflict_error, ...)
//	         | "endpoints=" NAME *("+" NAME)     messages (default), count_tokens, batches, models, all
//	RATE     = a probability such as 0.05, or a percentage such as 5%
//	DURATION = a Go duration such as 500ms, 2s or 1m30s
//
// Spaces around items are ignored and each key may appear once. For example:
//
//	overloaded=0.05,burst=30s/5s,stream_error=0.02,server_error=0.01,timeout=0.01,drop=0.01,slow=0.1:2s,spend_cap,endpoints=messages+count_tokens,results_rate=1000
//
// The result is validated (see Faults); an error names the bad item or field.
func ParseFaults(spec string) (Faults, error) {
	spec = strings.TrimSpace(spec)
	if strings.HasPrefix(spec, "{") {
		var f Faults
		if err := json.Unmarshal([]byte(spec), &f); err != nil {
			return Faults{}, fmt.Errorf("faults: invalid JSON: %w", err)
		}
		if err := f.validate(); err != nil {
			return Faults{}, err
		}
		return f, nil
	}
	var f Faults
	if spec == "" || spec == "none" {
		return f, nil
	}
	seen := map[string]bool{}
	for _, raw := range strings.Split(spec, ",") {
		item := strings.TrimSpace(raw)
		key, val, hasVal := strings.Cut(item, "=")
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		bad := func(format string, args ...any) error {
			return fmt.Errorf("faults item %q: %s", item, fmt.Sprintf(format, args...))
		}
		if item == "" {
			return Faults{}, fmt.Errorf("faults: empty item in %q", spec)
		}
		if seen[key] {
			return Faults{}, bad("%s is given twice", key)
		}
		seen[key] = true
		if !hasVal && key != "spend_cap" {
			if isFaultKey(key) {
				return Faults{}, bad("want %s=VALUE", key)
			}
			return Faults{}, bad("unknown fault %q", key)
		}
		var err error
		switch key {
		case "overloaded":
			f.Overloaded, err = parseRate(val)
		case "stream_error":
			f.StreamError, err = parseRate(val)
		case "server_error":
			f.ServerError, err = parseRate(val)
		case "timeout":
			f.Timeout, err = parseRate(val)
		case "drop":
			f.Drop, err = parseRate(val)
		case "slow":
			f.Slow, f.SlowDelay, err = parseRateDelay(val, maxSlowDelay)
		case "ramp":
			f.Ramp, f.RampRetryAfter, err = parseRateDelay(val, maxRampRetryAfter)
		case "error":
			typ, rate, ok := strings.Cut(val, ":")
			if !ok {
				err = fmt.Errorf("want error=TYPE:RATE, e.g. error=billing_error:0.1")
				break
			}
			f.Error = typ
			f.ErrorRate, err = parseRate(rate)
		case "burst":
			f.BurstEvery, f.BurstFor, err = parseBurst(val)
		case "spend_cap":
			f.SpendCap = true
			if hasVal {
				f.SpendCapAfter, err = strconv.ParseInt(val, 10, 64)
				if err != nil || f.SpendCapAfter < 0 {
					err = fmt.Errorf("want spend_cap or spend_cap=COUNT, a number of requests served before the cap")
				}
			}
		case "endpoints":
			f.Endpoints, err = parseEndpoints(val)
		case "results_rate":
			f.ResultsRate, err = strconv.ParseFloat(val, 64)
			if err != nil || !(f.ResultsRate >= 0) {
				err = fmt.Errorf("want results_rate=LINES, lines per second (e.g. 1000)")
			}
		default:
			err = fmt.Errorf("unknown fault %q", key)
		}
		if err != nil {
			return Faults{}, bad("%v", err)
		}
	}
	if err := f.validate(); err != nil {
		return Faults{}, err
	}
	return f, nil
}

func isFaultKey(k string) bool {
	switch k {
	case "overloaded", "stream_error", "server_error", "timeout", "drop", "slow", "ramp", "burst", "spend_cap", "endpoints", "results_rate":
		return true
	}
	return false
}

// parseRate parses a probability: 0.05 or 5%.
func parseRate(s string) (float64, error) {
	pct := strings.HasSuffix(s, "%")
	num := strings.TrimSuffix(s, "%")
	v, err := strconv.ParseFloat(num, 64)
	if pct {
		v /= 100
	}
	if err != nil || !(v >= 0 && v <= 1) {
		return 0, fmt.Errorf("want a rate in [0, 1] such as 0.05, or a percentage such as 5%%")
	}
	return v, nil
}

// parseRateDelay parses RATE[:DURATION].
func parseRateDelay(s string, max time.Duration) (float64, time.Duration, error) {
	rs, ds, hasD := strings.Cut(s, ":")
	rate, err := parseRate(strings.TrimSpace(rs))
	if err != nil {
		return 0, 0, err
	}
	if !hasD {
		return rate, 0, nil
	}
	d, err := time.ParseDuration(strings.TrimSpace(ds))
	if err != nil || d <= 0 || d > max {
		return 0, 0, fmt.Errorf("want RATE:DURATION with a duration in (0, %v] such as 2s", max)
	}
	return rate, d, nil
}

// parseBurst parses EVERY/FOR.
func parseBurst(s string) (every, dur time.Duration, err error) {
	es, fs, ok := strings.Cut(s, "/")
	if ok {
		every, err = time.ParseDuration(strings.TrimSpace(es))
		if err == nil {
			dur, err = time.ParseDuration(strings.TrimSpace(fs))
		}
	}
	if !ok || err != nil || every <= 0 || dur <= 0 || dur > every {
		return 0, 0, fmt.Errorf("want burst=EVERY/FOR with 0 < FOR <= EVERY, such as 30s/5s")
	}
	return every, dur, nil
}

// parseEndpoints parses NAME+NAME.
func parseEndpoints(s string) ([]string, error) {
	var out []string
	for _, n := range strings.Split(s, "+") {
		n = strings.TrimSpace(n)
		if endpointBit(n) == 0 {
			return nil, fmt.Errorf("unknown endpoint %q, want messages, count_tokens, batches, models or all, joined with +", n)
		}
		out = append(out, n)
	}
	return out, nil
}
