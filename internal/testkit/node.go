package testkit

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// Node is the module's real-client directory, testdata/node: its package.json pins
// the npm packages the tests drive (Playwright, the TypeScript SDK, the Vercel AI
// SDK, LangChain JS, Claude Code) and its scripts are run with Node.js from there,
// so that their imports resolve to its node_modules. `make node-deps` installs them.
type Node struct {
	// Dir is testdata/node, absolute.
	Dir string
	// Exe is the node executable.
	Exe string
}

// NodeClients returns the real-client directory with its packages installed, or
// ends the test as Unavailable does (skip, or fail under CI) when Node.js or the
// packages are missing, saying how to install them.
func NodeClients(tb testing.TB) Node {
	tb.Helper()
	exe, err := exec.LookPath("node")
	if err != nil {
		Unavailable(tb, "Node.js is not installed: the real-client tests need node and npm (then make node-deps)")
		return Node{}
	}
	dir := filepath.Join(moduleRoot(), "testdata", "node")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", ".package-lock.json")); err != nil {
		Unavailable(tb, "the real clients are not installed in %s: run make node-deps", dir)
		return Node{}
	}
	return Node{Dir: dir, Exe: exe}
}

// Command returns a command running the script (a file in Dir) with node, in Dir.
func (n Node) Command(script string, args ...string) *exec.Cmd {
	cmd := exec.Command(n.Exe, append([]string{filepath.Join(n.Dir, script)}, args...)...)
	cmd.Dir = n.Dir
	return cmd
}

// Bin returns the path of an executable the packages install (node_modules/.bin).
func (n Node) Bin(name string) string { return filepath.Join(n.Dir, "node_modules", ".bin", name) }

// Chromium returns the path of Debian's chromium for Playwright, or ends the test
// as Unavailable does when it is not installed (CI installs it).
func Chromium(tb testing.TB) string {
	tb.Helper()
	for _, p := range []string{os.Getenv("CLADE_TEST_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	Unavailable(tb, "chromium is not installed (apt-get install chromium, or set CLADE_TEST_CHROMIUM): the browser tests need it")
	return ""
}

// moduleRoot is the directory of the module's go.mod, found from this file's path.
func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}
