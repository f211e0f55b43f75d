package emulator

// STUB: replaced by the faults implementation (see the brief). Keeps the package compiling.

import (
	"net/http"
	"time"

	"github.com/clade-dev/clade/internal/wire"
)

// Faults configures injected failures.
type Faults struct{}

func (f Faults) validate() error { return nil }

// faultAction is what the fault model decided for one request.
type faultAction struct {
	// err, when set, is returned instead of the response (before any token is charged).
	err *wire.Error
	// drop closes the connection without a response.
	drop bool
	// delay is extra latency before the response starts.
	delay time.Duration
	// streamErr, for a streaming response, is sent as an SSE error event after a 200,
	// once streamAfter output tokens have been sent.
	streamErr *wire.Error
	// streamDrop, for a streaming response, drops the connection after streamAfter
	// output tokens.
	streamDrop  bool
	streamAfter int64
}

type faultState struct{}

func newFaultState(f Faults, seed int64) *faultState { return &faultState{} }

// decide returns the faults for one request to endpoint ("messages", "count_tokens",
// "batches", "models"); stream says whether the response is SSE.
func (f *faultState) decide(endpoint string, stream bool, now time.Time) faultAction {
	return faultAction{}
}

func (s *Server) handleFaultsGet(w http.ResponseWriter, r *http.Request) {}
func (s *Server) handleFaultsPut(w http.ResponseWriter, r *http.Request) {}
