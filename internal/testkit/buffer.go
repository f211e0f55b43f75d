package testkit

import (
	"bytes"
	"sync"
)

// Buffer is a bytes.Buffer safe for concurrent use: a run's goroutines (or a
// server's handlers, or a logger) write it while the test reads it. Each Write
// also signals Changed, so a test can wait for output without sleeping. The zero
// Buffer is empty and ready to use; it must not be copied after first use.
type Buffer struct {
	mu   sync.Mutex
	b    bytes.Buffer
	once sync.Once
	ch   chan struct{}
}

// Changed returns a channel that receives after a Write. It holds one signal at
// most: several writes before the test looks give one receive.
func (s *Buffer) Changed() <-chan struct{} {
	return s.changed()
}

func (s *Buffer) changed() chan struct{} {
	s.once.Do(func() { s.ch = make(chan struct{}, 1) })
	return s.ch
}

// Write appends p to the buffer and signals Changed.
func (s *Buffer) Write(p []byte) (int, error) {
	ch := s.changed()
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.b.Write(p)
	select {
	case ch <- struct{}{}:
	default:
	}
	return n, err
}

// String returns everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Len returns how many bytes have been written so far.
func (s *Buffer) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Len()
}
