package emulator

import (
	"encoding/json"
	"net/http"
	"time"
)

// handleClock moves the batch clock: POST /_emulator/clock {"advance":"24h"}. It answers
// with the emulator time.
func (s *Server) handleClock(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Advance string `json:"advance"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
		http.Error(w, `{"error":"body must be {\"advance\":\"DURATION\"}"}`, http.StatusBadRequest)
		return
	}
	d, err := time.ParseDuration(req.Advance)
	if err != nil || d < 0 {
		http.Error(w, `{"error":"advance must be a non-negative Go duration such as 24h"}`, http.StatusBadRequest)
		return
	}
	s.clock.Advance(d)
	s.batches.wake()
	writeJSON(w, http.StatusOK, map[string]string{"now": s.clock.Now().UTC().Format(time.RFC3339Nano)})
}
