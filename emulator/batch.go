package emulator

// STUB: replaced by the batch engine. Keeps the package compiling.

import "net/http"

type batchEngine struct{ s *Server }

func newBatchEngine(s *Server) *batchEngine { return &batchEngine{s: s} }

func (s *Server) handleBatchCreate(w http.ResponseWriter, r *http.Request, c *call)  {}
func (s *Server) handleBatchList(w http.ResponseWriter, r *http.Request, c *call)    {}
func (s *Server) handleBatchGet(w http.ResponseWriter, r *http.Request, c *call)     {}
func (s *Server) handleBatchCancel(w http.ResponseWriter, r *http.Request, c *call)  {}
func (s *Server) handleBatchDelete(w http.ResponseWriter, r *http.Request, c *call)  {}
func (s *Server) handleBatchResults(w http.ResponseWriter, r *http.Request, c *call) {}

// wake makes the engine re-check its batches (after the clock moved).
func (b *batchEngine) wake() {}

// start launches the engine's background work; stop ends it and waits.
func (b *batchEngine) start() {}
func (b *batchEngine) stop()  {}
