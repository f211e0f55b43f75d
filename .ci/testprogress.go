//go:build ignore

// testprogress reads `go test -json` on stdin and prints one line per package as
// it finishes (go test's own output waits for the packages before it, so a long
// one hides every later line), the whole output of a package that fails, every
// minute the packages still running, and at the end the slowest tests. It exits
// 1 when a package failed or did not build.
//
//	go test -json ./... 2>&1 | go run .ci/testprogress.go
package main

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

type event struct {
	Action     string
	Package    string
	ImportPath string // build events
	Test       string
	Elapsed    float64
	Output     string
}

type test struct {
	name    string
	elapsed float64
}

func main() {
	out := map[string]*strings.Builder{} // a package's output, printed if it fails
	started := map[string]time.Time{}
	var slow []test
	failed := false
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	buf := func(pkg string) *strings.Builder {
		if out[pkg] == nil {
			out[pkg] = &strings.Builder{}
		}
		return out[pkg]
	}
	for {
		var line string
		var ok bool
		select {
		case <-tick.C:
			var running []string
			for p, at := range started {
				running = append(running, fmt.Sprintf("%s (%s)", p, time.Since(at).Round(time.Second)))
			}
			slices.Sort(running)
			if len(running) > 0 {
				fmt.Printf("… still running: %s\n", strings.Join(running, ", "))
			}
			continue
		case line, ok = <-lines:
		}
		if !ok {
			break
		}
		var e event
		if !strings.HasPrefix(line, "{") || json.Unmarshal([]byte(line), &e) != nil {
			fmt.Println(line) // not an event: go's own messages
			if strings.HasPrefix(line, "FAIL") || strings.Contains(line, "[setup failed]") {
				failed = true
			}
			continue
		}
		switch e.Action {
		case "build-output":
			buf(e.ImportPath).WriteString(e.Output)
		case "build-fail":
			fmt.Print(buf(e.ImportPath).String())
			failed = true
		case "start":
			started[e.Package] = time.Now()
		case "output":
			buf(e.Package).WriteString(e.Output)
		case "pass", "fail", "skip":
			if e.Test != "" {
				// Top-level tests only: a subtest's time is in its parent's.
				if (e.Action == "pass" || e.Action == "fail") && !strings.Contains(e.Test, "/") {
					slow = append(slow, test{e.Package + " " + e.Test, e.Elapsed})
				}
				continue
			}
			delete(started, e.Package)
			switch e.Action {
			case "pass":
				fmt.Printf("ok   %-50s %6.1fs\n", e.Package, e.Elapsed)
			case "skip":
				fmt.Printf("?    %-50s [no test files]\n", e.Package)
			default:
				fmt.Print(buf(e.Package).String())
				fmt.Printf("FAIL %-50s %6.1fs\n", e.Package, e.Elapsed)
				failed = true
			}
			delete(out, e.Package)
		}
	}
	slices.SortFunc(slow, func(a, b test) int { return cmp.Compare(b.elapsed, a.elapsed) })
	for i, t := range slow[:min(len(slow), 10)] {
		if i == 0 {
			fmt.Println("slowest tests:")
		}
		fmt.Printf("  %6.1fs %s\n", t.elapsed, t.name)
	}
	if failed {
		os.Exit(1)
	}
}
