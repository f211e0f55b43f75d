package cli_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/jobs/jobstest"
	"github.com/clade-dev/clade/internal/testkit"
)

// TestHostsInNetworkNamespaces is TestSeveralProcessesOneRun with each `clade run`
// a host of its own: a network namespace joined to the root one by a veth pair,
// reaching Postgres, Redis and the emulator (all on loopback in the root
// namespace) only through TCP forwarders on its veth address. The three start at
// once; at 40 % of the results host 0 is SIGKILLed and host 1 is cut off the
// network for 10 s (its root-side veth down), both with requests in flight. Host
// 1 either rides the cut out or stops with "lost its place in the store" and is
// run again; host 2, and host 1 in the end, write every custom_id exactly once,
// and nothing is paid twice beyond what the two had in flight.
func TestHostsInNetworkNamespaces(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-host test: skipped with -short")
	}
	t.Parallel()
	const n, procs, conc = 600, 3, 16
	const cut = 10 * time.Second
	base := jobstest.Postgres().NewDSN(t)
	dsnURL, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	redisURL := testkit.RedisURL(t)
	rURL, err := url.Parse(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	hosts := makeHosts(t, procs)

	var b [6]byte
	rand.Read(b[:])
	limitsNS := "clade-test-netns-" + hex.EncodeToString(b[:])
	t.Cleanup(func() { deleteKeys(t, redisURL, "clade:ratelimit:"+limitsNS+":*") })
	const key = "sk-ant-test-netns"
	reg := prometheus.NewRegistry()
	em := emulator.StartTB(t, emulator.Config{Tier: "tier-4", APIKeys: []string{key}, LatencyScale: 0.3, Registry: reg})
	emAddr := strings.TrimPrefix(em.URL, "http://")
	dir := t.TempDir()
	input := filepath.Join(dir, "in.jsonl")
	writeWorkload(t, input, n)

	// Each host's command line, with the services at its root-side veth address.
	args := make([][]string, procs)
	outs := make([]string, procs)
	for i, h := range hosts {
		db := *dsnURL
		db.Host = forward(t, h.root, dsnURL.Host)
		q := db.Query()
		q.Set("pool_max_conns", "8") // three pools within the server's max_connections
		db.RawQuery = q.Encode()
		rd := *rURL
		rd.Host = forward(t, h.root, rURL.Host)
		outs[i] = filepath.Join(dir, fmt.Sprintf("host%d", i), "out.jsonl")
		if err := os.MkdirAll(filepath.Dir(outs[i]), 0o755); err != nil {
			t.Fatal(err)
		}
		args[i] = []string{"run", input, "-o", outs[i], "--db", db.String(),
			"--base-url", "http://" + forward(t, h.root, emAddr), "--tier", "tier-4",
			"-q", "--concurrency", fmt.Sprint(conc), "--limits-redis", rd.String(), "--limits-namespace", limitsNS}
	}

	store := jobstest.Open(t, context.Background(), base)
	procsRunning := make([]*hostProc, procs)
	for i := range procs {
		procsRunning[i] = startInHost(t, hosts[i], key, args[i]...)
	}
	// Every host at work before the faults (on a loaded machine one may start
	// seconds after the others, which could do 2/5 of the run meanwhile).
	for _, p := range procsRunning {
		waitWorker(t, store, p.pid())
	}
	waitResults(t, store, 2*n/5)

	// Host 0: SIGKILL the clade process itself (ip netns exec execs it, so the
	// exec.Cmd's pid is clade's), with jobs of its own running.
	p0 := procsRunning[0]
	p0.wantClade(t)
	running0 := workerRunning(t, store, base, p0.pid())
	killedAt := time.Now()
	if err := p0.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL host 0: %v", err)
	}
	// Host 1: cut off for 10 s, with jobs of its own running.
	p1 := procsRunning[1]
	p1.wantClade(t)
	running1 := workerRunning(t, store, base, p1.pid())
	ip(t, "link", "set", hosts[1].veth, "down")
	cutAt := time.Now()
	if st := operstate(hosts[1].veth); st != "down" {
		t.Fatalf("host 1's veth is %q after link down, want down", st)
	}
	if running0 == 0 || running1 == 0 {
		t.Fatalf("at the kill host 0 had %d jobs running, at the cut host 1 had %d: want both > 0 (work in flight)", running0, running1)
	}
	linkUp := make(chan struct{})
	var upResults int64
	var beatAge time.Duration
	go func() {
		defer close(linkUp)
		time.Sleep(cut)
		// Still cut off: host 1's heartbeat has not been written since the cut.
		beatAge = heartbeatAge(t, store, p1.pid())
		if s, err := store.Status(context.Background(), 1); err == nil {
			upResults = s.Requests - s.Pending
		}
		if out, err := exec.Command("ip", "link", "set", hosts[1].veth, "up").CombinedOutput(); err != nil {
			t.Errorf("ip link set %s up: %v\n%s", hosts[1].veth, err, out)
		}
	}()

	err0 := p0.wait()
	var ee *exec.ExitError
	if !errors.As(err0, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("host 0 ended with %v, want killed by SIGKILL\n%s", err0, tail(p0.out.String(), 2000))
	}
	err1 := p1.wait()
	<-linkUp
	host1 := "finished through the cut"
	if err1 != nil {
		if !strings.Contains(p1.out.String(), "lost its place in the store") {
			t.Errorf("host 1 after the cut: %v, want success or the lost-store error\n%s", err1, tail(p1.out.String(), 60000))
		}
		host1 = fmt.Sprintf("stopped (%v, lost its place in the store) and was run again", err1)
		p1 = startInHost(t, hosts[1], key, args[1]...)
		if err := p1.wait(); err != nil {
			t.Errorf("host 1 run again: %v\n%s", err, tail(p1.out.String(), 2000))
		}
	}
	if err := procsRunning[2].wait(); err != nil {
		t.Errorf("host 2: %v\n%s", err, tail(procsRunning[2].out.String(), 2000))
	}
	done := time.Since(killedAt)

	// The cut held while the run was on: at link-up host 1's heartbeat was stale
	// and the store still lacked results (host 1's in-flight jobs).
	if beatAge < cut-3*time.Second {
		t.Errorf("at link-up host 1's heartbeat was %v old, want about %v: the cut did not cut it off", beatAge.Round(time.Millisecond), cut)
	}
	if upResults >= n {
		t.Errorf("at link-up the store had all %d results: the cut ended with no work in flight", upResults)
	}
	for _, i := range []int{1, 2} {
		wantEachOnce(t, outs[i], n)
	}
	if done > time.Minute {
		t.Errorf("the run finished %v after the kill, want within a minute", done.Round(time.Second))
	}
	answered := testkit.MetricSum(t, reg, "clade_emulator_responses_total", map[string]string{"endpoint": "messages", "code": "200"})
	n429 := testkit.MetricSum(t, reg, "clade_emulator_rate_limited_total", nil)
	t.Logf("host 0 killed with %d jobs running; host 1 cut off %v after with %d running (heartbeat %v old at link-up, %d/%d results then), %s; run done %v after the kill, %v after the cut began",
		running0, cutAt.Sub(killedAt).Round(time.Millisecond), running1, beatAge.Round(time.Millisecond), upResults, n, host1,
		done.Round(100*time.Millisecond), time.Since(cutAt).Round(100*time.Millisecond))
	t.Logf("%v answers for %d requests, %v 429s", answered, n, n429)
	limit := float64(n + 2*conc) // what the killed and the cut-off host had in flight
	if answered < float64(n) || answered > limit {
		t.Errorf("the emulator answered %v calls with 200 for %d requests; want %d to %v: no host may send another's work", answered, n, n, limit)
	}
	if n429 > 0 {
		t.Errorf("%v calls answered 429: the hosts share one organisation's limits", n429)
	}
}

// netHost is a network namespace joined to the root one by a veth pair.
type netHost struct {
	ns   string // the namespace
	veth string // the root-side end of the pair
	root string // its address, where the host reaches the services
}

// makeHosts makes k network namespaces, each with a veth pair on a /30 of its
// own (the root side .1, the host .2), and removes them at cleanup. It skips the
// test (fails it under CI) when ip is missing or may not make a namespace.
func makeHosts(t *testing.T, k int) []netHost {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		testkit.Unavailable(t, "ip (iproute2) is not installed: the test makes network namespaces with it")
	}
	var b [4]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:3])
	third := int(b[3]) // 10.241.<third>.0/24, one /30 per host: concurrent runs rarely collide
	hosts := make([]netHost, k)
	for i := range hosts {
		h := netHost{ns: fmt.Sprintf("clade-%s-%d", id, i), veth: fmt.Sprintf("cl%s%d", id, i)}
		if out, err := exec.Command("ip", "netns", "add", h.ns).CombinedOutput(); err != nil {
			if i == 0 {
				testkit.Unavailable(t, "ip netns add failed (%v: %s): the test needs root, or CAP_SYS_ADMIN and CAP_NET_ADMIN, to make network namespaces",
					err, strings.TrimSpace(string(out)))
			}
			t.Fatalf("ip netns add %s: %v\n%s", h.ns, err, out)
		}
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", h.ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v\n%s", h.ns, err, out)
			}
		})
		peer := h.veth + "p"
		h.root = fmt.Sprintf("10.241.%d.%d", third, 4*i+1)
		inside := fmt.Sprintf("10.241.%d.%d/30", third, 4*i+2)
		ip(t, "link", "add", h.veth, "type", "veth", "peer", "name", peer)
		t.Cleanup(func() { exec.Command("ip", "link", "del", h.veth).Run() }) // gone with the namespace, unless the move failed
		ip(t, "link", "set", peer, "netns", h.ns)
		ip(t, "addr", "add", h.root+"/30", "dev", h.veth)
		ip(t, "link", "set", h.veth, "up")
		ip(t, "-n", h.ns, "addr", "add", inside, "dev", peer)
		ip(t, "-n", h.ns, "link", "set", peer, "up")
		ip(t, "-n", h.ns, "link", "set", "lo", "up")
		hosts[i] = h
	}
	return hosts
}

// ip runs ip with args, failing the test if it fails.
func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// operstate is the state the kernel gives the link dev ("up", "down", …).
func operstate(dev string) string {
	b, _ := os.ReadFile("/sys/class/net/" + dev + "/operstate")
	return strings.TrimSpace(string(b))
}

// forward listens on addr (any port) and copies each connection both ways to
// target, until cleanup; it returns the address it listens on.
func forward(t *testing.T, addr, target string) string {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		t.Fatalf("forwarder on %s: %v", addr, err)
	}
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	track := func(c net.Conn) bool {
		mu.Lock()
		defer mu.Unlock()
		if conns == nil {
			c.Close()
			return false
		}
		conns[c] = struct{}{}
		return true
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				if !track(c) {
					return
				}
				u, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer u.Close()
				if !track(u) {
					return
				}
				done := make(chan struct{}, 2)
				go func() { io.Copy(u, c); done <- struct{}{} }()
				go func() { io.Copy(c, u); done <- struct{}{} }()
				<-done // either side closed: close both, which ends the other copy
				c.Close()
				u.Close()
				<-done
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		conns = nil
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// hostProc is a clade process running in a host's namespace.
type hostProc struct {
	cmd  *exec.Cmd
	out  testkit.Buffer
	done chan struct{}
	err  error
}

// startInHost starts `ip netns exec <ns> <this binary> args…` with cladeCmd's
// environment; cleanup kills it if it is still running.
func startInHost(t *testing.T, h netHost, key string, args ...string) *hostProc {
	t.Helper()
	cmd := cladeCmd(key, args...)
	path, err := exec.LookPath("ip")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Path = path
	cmd.Args = append([]string{"ip", "netns", "exec", h.ns, os.Args[0]}, args...)
	cmd.Dir = filepath.Dir(args[3]) // the host's -o directory
	p := &hostProc{cmd: cmd, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &p.out, &p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *hostProc) pid() int { return p.cmd.Process.Pid }

// wait waits for the process to end, at most two minutes, and returns how.
func (p *hostProc) wait() error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(90 * time.Second):
		// SIGQUIT: the Go runtime prints every goroutine's stack, to show where
		// it hangs; then kill it.
		p.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
		return fmt.Errorf("still running after 90 s (SIGQUIT, its goroutines below): %v", p.err)
	}
}

// wantClade fails the test unless the process's pid runs this binary (ip netns
// exec has exec'd it), not ip, so that a signal to it reaches clade.
func (p *hostProc) wantClade(t *testing.T) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.pid()))
	if err != nil {
		t.Fatalf("pid %d: %v", p.pid(), err)
	}
	if exe != self {
		t.Fatalf("pid %d runs %s, want %s (ip netns exec should exec it)", p.pid(), exe, self)
	}
}

// worker returns the store's live worker of pid.
func worker(t *testing.T, st *jobs.Store, pid int) jobs.WorkerInfo {
	t.Helper()
	ws, err := st.Workers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range ws {
		if w.PID == int64(pid) && !w.Dead {
			return w
		}
	}
	t.Fatalf("no live worker of pid %d in the store (%+v)", pid, ws)
	return jobs.WorkerInfo{}
}

// waitWorker waits, at most a minute, until pid has a live worker in the store.
func waitWorker(t *testing.T, st *jobs.Store, pid int) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		ws, err := st.Workers(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range ws {
			if w.PID == int64(pid) && !w.Dead {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no live worker of pid %d in the store after a minute (%+v)", pid, ws)
		}
	}
}

// workerRunning counts the running jobs whose last attempt is pid's worker's.
func workerRunning(t *testing.T, st *jobs.Store, dsn string, pid int) int64 {
	t.Helper()
	w := worker(t, st, pid)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var c int64
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM river_job
		WHERE state = 'running' AND attempted_by[array_length(attempted_by, 1)] = $1`, w.ID).Scan(&c); err != nil {
		t.Fatal(err)
	}
	return c
}

// heartbeatAge is how old pid's worker's heartbeat is (0 if it has none).
func heartbeatAge(t *testing.T, st *jobs.Store, pid int) time.Duration {
	ws, err := st.Workers(context.Background())
	if err != nil {
		t.Error(err)
		return 0
	}
	for _, w := range ws {
		if w.PID == int64(pid) {
			return time.Since(w.HeartbeatAt)
		}
	}
	return 0
}
