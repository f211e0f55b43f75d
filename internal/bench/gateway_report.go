package bench

import (
	"fmt"
	"io"
	"time"
)

// WriteMarkdown writes the report as docs/benchmarks.md shows it: one table of the
// fixed rates (per rate, mode and target: p50, p99, p99.9 and max from when each
// call was due, the achieved rate, failures, and the p99 added over direct calls and
// over the bare proxy, the CPU time per call of the whole process and of Redis, the share of CPU time stolen by the hypervisor), the search's steps, the maximum sustainable rates, and the
// machine's conditions.
func (r *GatewayReport) WriteMarkdown(w io.Writer) {
	limits := "in memory"
	if r.Redis {
		limits = "shared through Redis"
	}
	gc := "Go's default garbage collector"
	if r.GCFloor > 0 {
		gc = fmt.Sprintf("garbage collector floor %d MiB (clade serve's --gc-floor)", r.GCFloor>>20)
	}
	fmt.Fprintf(w, "Started %s; %d CPUs, GOMAXPROCS %d, one process for the load generator, emulator, proxy and gateway, %s; load average %.2f before, %.2f after; gateway limits %s, budgets on (team and key) on the spend store.\n\n",
		r.Started.Format(time.RFC3339), r.CPUs, r.GOMAXPROCS, gc, r.LoadBefore, r.LoadAfter, limits)
	fmt.Fprintf(w, "| rate | mode | target | p50 | p99 | p99.9 | max | achieved | not 200 | p99 added vs direct | vs proxy | CPU/call | Redis CPU/call | steal |\n")
	fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, p := range r.Points {
		if p.Search {
			continue
		}
		added := func(base string) string {
			b := r.Point(base, p.Mode, p.Rate)
			if b == nil || base == p.Target {
				return "—"
			}
			return fmt.Sprintf("%+.2f ms", ms(p.Result.Latency.P99-b.Result.Latency.P99))
		}
		cpu, rcpu := "—", "—"
		if p.HasCPU {
			cpu = fmt.Sprintf("%.0f µs", us(p.CPUPerCall()))
		}
		if r.Redis && p.Target == TargetGateway {
			rcpu = fmt.Sprintf("%.0f µs", us(p.RedisPerCall()))
		}
		steal := "—"
		if p.Steal >= 0 {
			steal = fmt.Sprintf("%.1f %%", 100*p.Steal)
		}
		fmt.Fprintf(w, "| %.0f | %s | %s | %.2f ms | %.2f ms | %.2f ms | %.1f ms | %.0f/s | %d | %s | %s | %s | %s | %s |\n",
			p.Rate, p.Mode, p.Target, ms(p.Result.Latency.P50), ms(p.Result.Latency.P99), ms(p.Result.Latency.P999),
			ms(p.Result.Latency.Max), p.Result.AchievedRate, failed(p), added(TargetDirect), added(TargetProxy), cpu, rcpu, steal)
	}
	var steps []GatewayPoint
	for _, p := range r.Points {
		if p.Search {
			steps = append(steps, p)
		}
	}
	if len(steps) > 0 {
		fmt.Fprintf(w, "\nSearch for the gateway's maximum sustainable rate (%s per step; sustained: every call 200, achieved ≥ 99 %% of offered, p99 ≤ %v):\n\n",
			r.Config.SearchDuration, r.Config.MaxP99)
		fmt.Fprintf(w, "| rate | mode | p50 | p99 | p99.9 | achieved | not 200 | sustained |\n|---|---|---|---|---|---|---|---|\n")
		for _, p := range steps {
			fmt.Fprintf(w, "| %.0f | %s | %.2f ms | %.2f ms | %.2f ms | %.0f/s | %d | %v |\n", p.Rate, p.Mode, ms(p.Result.Latency.P50),
				ms(p.Result.Latency.P99), ms(p.Result.Latency.P999), p.Result.AchievedRate, failed(p), p.Sustainable(r.Config.MaxP99))
		}
	}
	if len(r.MaxRate) > 0 {
		fmt.Fprintln(w)
		for _, mode := range r.Config.Modes {
			rate, ok := r.MaxRate[mode]
			if !ok {
				continue
			}
			capped := ""
			if r.MaxRateCapped[mode] {
				capped = " (the search's cap: not reached)"
			}
			if rate == 0 {
				fmt.Fprintf(w, "Gateway %s: no rate measured was sustained.\n", mode)
				continue
			}
			fmt.Fprintf(w, "Gateway %s: maximum sustainable rate %.0f req/s%s.\n", mode, rate, capped)
		}
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// failed counts the calls of p that did not end in a complete 200.
func failed(p GatewayPoint) int64 {
	r := p.Result
	return r.Errors + r.Incomplete + r.Requests - r.Status[200]
}
