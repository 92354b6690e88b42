package forwarders

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"sync"
)

// Console writes each record as one line to a writer (standard output in the
// daemon's default config). It is for trying outboxd and for debugging.
type Console struct {
	mu sync.Mutex
	w  *bufio.Writer
}

// NewConsole returns a sink that writes JSON lines to w.
func NewConsole(w io.Writer) *Console { return &Console{w: bufio.NewWriter(w)} }

// Send writes the batch and flushes it; a write error is transient.
func (c *Console) Send(ctx context.Context, records [][]byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range records {
		c.w.Write(r)
		c.w.WriteByte('\n')
	}
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("console sink: write: %w", err)
	}
	return nil
}

// Close flushes what is buffered.
func (c *Console) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.w.Flush()
}
