package ingest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outboxd/outboxd/outbox"
)

// SyslogConfig configures one syslog listener.
type SyslogConfig struct {
	// Listen is udp://host:port, tcp://host:port or unix:///path (a datagram
	// socket, as /dev/log is).
	Listen          string
	MaxMessageBytes int // default 64 KiB; longer messages are cut there (counted in Truncated)
	Logger          *slog.Logger
}

// Syslog is a syslog listener. TCP pushes back: while the outbox is full it
// stops reading from the connection, so the sender's kernel buffers fill and
// its writes block. UDP and datagram sockets cannot push back: what does not
// fit is counted in Dropped.
type Syslog struct {
	cfg     SyslogConfig
	network string
	address string
	app     Appender

	Received atomic.Int64 // records committed
	Bytes    atomic.Int64 // bytes of the committed records, as stored
	Dropped  atomic.Int64 // datagram records that could not be stored
	// Truncated counts messages longer than MaxMessageBytes: each was cut
	// there and kept, as rsyslog's maxMessageSize does.
	Truncated atomic.Int64

	mu sync.Mutex
	ln io.Closer
	pc net.PacketConn
}

// maxBatch is the most records one Append carries.
const maxBatch = 1000

// NewSyslog checks the listen address.
func NewSyslog(cfg SyslogConfig, app Appender) (*Syslog, error) {
	u, err := url.Parse(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("syslog listen %q: %w", cfg.Listen, err)
	}
	s := &Syslog{cfg: cfg, app: app}
	switch u.Scheme {
	case "udp", "tcp":
		s.network, s.address = u.Scheme, u.Host
	case "unix":
		s.network, s.address = "unixgram", u.Path
	default:
		return nil, fmt.Errorf("syslog listen %q: want udp://, tcp:// or unix://", cfg.Listen)
	}
	if s.cfg.MaxMessageBytes <= 0 {
		s.cfg.MaxMessageBytes = 64 << 10
	}
	if s.cfg.Logger == nil {
		s.cfg.Logger = slog.Default()
	}
	return s, nil
}

// Listen opens the socket and returns its address.
func (s *Syslog) Listen() (net.Addr, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.network == "tcp" {
		ln, err := net.Listen("tcp", s.address)
		if err != nil {
			return nil, fmt.Errorf("syslog: listen %s: %w", s.cfg.Listen, err)
		}
		s.ln = ln
		return ln.Addr(), nil
	}
	if s.network == "unixgram" {
		os.Remove(s.address) // a socket left by an earlier run
	}
	pc, err := net.ListenPacket(s.network, s.address)
	if err != nil {
		return nil, fmt.Errorf("syslog: listen %s: %w", s.cfg.Listen, err)
	}
	s.pc = pc
	return pc.LocalAddr(), nil
}

// Serve handles messages until ctx ends; then it closes the socket and
// returns once every connection's records are stored or given up.
func (s *Syslog) Serve(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, s.close)
	defer stop()
	if ln, ok := s.ln.(net.Listener); ok {
		for {
			conn, err := ln.Accept()
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("syslog: accept on %s: %w", s.cfg.Listen, err)
			}
			wg.Go(func() { s.serveStream(ctx, conn) })
		}
	}
	return s.serveDatagrams(ctx, &wg)
}

func (s *Syslog) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		s.ln.Close()
	}
	if s.pc != nil {
		s.pc.Close()
	}
}

// serveStream reads RFC 6587 frames (octet counting or newline-terminated)
// and stores them in batches. Reading and storing overlap: while one batch
// commits, the next one fills (up to maxBatch), so a fast stream commits in
// large transactions and a slow sender's message is stored at once. When
// the outbox is full the storer waits, the reader blocks on handing over
// its batch, and the connection is no longer read: back-pressure.
func (s *Syslog) serveStream(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	stopOnCancel := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Now()) })
	defer stopOnCancel()
	peer := hostOf(conn.RemoteAddr())
	br := bufio.NewReaderSize(conn, 64<<10)

	batches := make(chan [][]byte, 1)
	var failed atomic.Bool
	// Plain syslog has no acknowledgement; the close is the nearest thing.
	// The connection closes only after every record read from it is stored
	// (the deferred calls run from the bottom up: close(batches), the
	// storer's wait, then this), and with a reset instead of a FIN when
	// records were given up, so a sender that waits for the close after its
	// own can tell.
	defer func() {
		if tc, ok := conn.(*net.TCPConn); ok && failed.Load() {
			tc.SetLinger(0)
		}
	}()
	var storer sync.WaitGroup
	storer.Go(func() {
		for b := range batches {
			if !failed.Load() && !s.storeStream(ctx, b) {
				failed.Store(true)
			}
		}
	})
	defer storer.Wait()
	defer close(batches)

	var batch [][]byte
	for !failed.Load() {
		msg, cut, err := readFrame(br, s.cfg.MaxMessageBytes)
		if cut {
			s.Truncated.Add(1)
		}
		if len(msg) > 0 {
			batch = append(batch, s.envelope(msg, peer))
		}
		// Hand the batch over before the next read could block on an
		// empty socket; the handover itself waits while the storer is busy
		// with the previous one, and meanwhile the kernel buffers more.
		if len(batch) > 0 && (err != nil || len(batch) >= maxBatch || br.Buffered() == 0) {
			batches <- batch
			batch = nil
		}
		if err != nil {
			return
		}
	}
}

// storeStream stores a stream's batch, waiting (and so not reading) while
// the outbox is full. It gives up only when the listener stops.
func (s *Syslog) storeStream(ctx context.Context, batch [][]byte) bool {
	for {
		err := s.app.Append(ctx, "syslog", batch)
		switch {
		case err == nil:
			s.Received.Add(int64(len(batch)))
			s.Bytes.Add(totalBytes(batch))
			return true
		case ctx.Err() != nil:
			s.cfg.Logger.Warn("syslog: stopping with records unstored; the sender did not get them acknowledged", "count", len(batch))
			return false
		case errors.Is(err, outbox.ErrQueueFull) && len(batch) > 1:
			// A full outbox makes Append wait (on ctx), so a quick
			// ErrQueueFull means the batch is larger than the whole outbox:
			// store it in halves, in order.
			half := len(batch) / 2
			return s.storeStream(ctx, batch[:half]) && s.storeStream(ctx, batch[half:])
		case errors.Is(err, outbox.ErrQueueFull):
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
			}
		default:
			s.cfg.Logger.Error("syslog: store records; retrying", "count", len(batch), "err", err)
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
			}
		}
	}
}

// readFrame reads one message: "LEN SP MSG" when the frame starts with a
// digit (octet counting), else up to the next newline. A message longer than
// max is cut there and kept; cut says so.
func readFrame(br *bufio.Reader, max int) (msg []byte, cut bool, err error) {
	first, err := br.Peek(1)
	if err != nil {
		return nil, false, err
	}
	if first[0] >= '1' && first[0] <= '9' {
		lenStr, err := br.ReadString(' ')
		if err != nil {
			return nil, false, err
		}
		n, perr := strconv.Atoi(lenStr[:len(lenStr)-1])
		if perr != nil || n <= 0 {
			// Not a length after all: keep it as the start of a line.
			rest, cut, err := readLine(br, max-min(len(lenStr), max))
			return append([]byte(lenStr), rest...), cut || len(lenStr) > max, err
		}
		// The claim cannot make us allocate more than max.
		msg := make([]byte, min(n, max))
		if _, err := io.ReadFull(br, msg); err != nil {
			return msg, false, err
		}
		if n > max {
			if _, err := io.CopyN(io.Discard, br, int64(n-max)); err != nil {
				return msg, true, err
			}
		}
		return msg, n > max, nil
	}
	return readLine(br, max)
}

// readLine reads up to the next newline and keeps at most max bytes of the
// message (its newline not counted). A line that fits in br's buffer is
// returned in place, without a copy: it is valid until the next read from br.
func readLine(br *bufio.Reader, max int) (line []byte, cut bool, err error) {
	chunk, err := br.ReadSlice('\n')
	if err != bufio.ErrBufferFull {
		if withoutNewline(chunk) <= max {
			return chunk, false, err
		}
		return chunk[:max], true, err
	}
	// A longer line is gathered across reads, into a copy of its own.
	line = append(line, chunk[:min(len(chunk), max)]...)
	total := len(chunk)
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk[:min(len(chunk), max-len(line))]...)
		if err != bufio.ErrBufferFull {
			return line, total+withoutNewline(chunk) > max, err
		}
		total += len(chunk)
	}
}

// withoutNewline is the length of b without its newline, if it ends in one.
func withoutNewline(b []byte) int {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		return n - 1
	}
	return len(b)
}

// serveDatagrams reads datagrams; a batcher stores them. A datagram that
// cannot be stored within a second is dropped and counted.
func (s *Syslog) serveDatagrams(ctx context.Context, wg *sync.WaitGroup) error {
	queue := make(chan []byte, 16*maxBatch)
	wg.Go(func() { s.storeDatagrams(queue) })
	defer close(queue)
	// One byte over the limit tells a longer datagram (the kernel cuts it
	// to the buffer) from one of exactly the limit.
	buf := make([]byte, s.cfg.MaxMessageBytes+1)
	for {
		n, addr, err := s.pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("syslog: read on %s: %w", s.cfg.Listen, err)
		}
		if n > s.cfg.MaxMessageBytes {
			n = s.cfg.MaxMessageBytes
			s.Truncated.Add(1)
		}
		rec := s.envelope(buf[:n], hostOf(addr))
		select {
		case queue <- rec:
		default:
			s.Dropped.Add(1)
		}
	}
}

func (s *Syslog) storeDatagrams(queue <-chan []byte) {
	for first := range queue {
		batch := [][]byte{first}
	more:
		for len(batch) < maxBatch {
			select {
			case r, ok := <-queue:
				if !ok {
					break more
				}
				batch = append(batch, r)
			default:
				break more
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := s.app.Append(ctx, "syslog", batch)
		cancel()
		if err != nil {
			s.Dropped.Add(int64(len(batch)))
			s.cfg.Logger.Warn("syslog: datagrams dropped; UDP cannot push back", "count", len(batch), "err", err)
			continue
		}
		s.Received.Add(int64(len(batch)))
		s.Bytes.Add(totalBytes(batch))
	}
}

func (s *Syslog) envelope(msg []byte, peer string) []byte {
	now := time.Now().UTC()
	// The envelope borrows msg's bytes: Marshal copies them, and the
	// envelope is dropped here.
	rec, err := newSyslogEnvelope(ParseSyslog(msg, now), now, "syslog", peer, true).Marshal()
	if err != nil { // cannot happen: every field is a string, a time or a map of strings
		rec = []byte(`{"source":"syslog","parse_error":true}`)
	}
	return rec
}

func hostOf(a net.Addr) string {
	if a == nil {
		return ""
	}
	if h, _, err := net.SplitHostPort(a.String()); err == nil {
		return h
	}
	return a.String()
}
