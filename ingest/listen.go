package ingest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
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
	"syscall"
	"time"

	"github.com/outboxd/outboxd/ingest/tlsconf"
	"github.com/outboxd/outboxd/outbox"
)

// SyslogConfig configures one syslog listener.
type SyslogConfig struct {
	// Listen is udp://host:port, tcp://host:port, tls://host:port (RFC 5425:
	// TLS needs TLS) or unix:///path (a datagram socket, as /dev/log is).
	Listen string
	// TLS is a tls:// listener's server configuration (tlsconf.Server's).
	TLS *tls.Config
	// AddFields go on every record of the listener.
	AddFields       AddFields
	MaxMessageBytes int // default 64 KiB; longer messages are cut there (counted in Truncated)
	// MaxConnections is how many TCP connections are served at once; more
	// are closed at once and counted in RefusedConns. Default 64: each holds a
	// 64 KiB read buffer.
	MaxConnections int
	// IdleTimeout closes a TCP connection that sent nothing for this long.
	// Default 5 minutes.
	IdleTimeout time.Duration
	// SocketMode is the permission of a unix:// socket file. Default 0666,
	// as /dev/log: any local program may log (the unit's UMask=0077 would
	// otherwise leave it to outboxd's own user).
	SocketMode os.FileMode
	// Budget is the memory ingest may hold, shared by every input; nil
	// gives the listener one of DefaultBudgetBytes of its own.
	Budget *Budget
	Logger *slog.Logger
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
	Dropped  atomic.Int64 // datagram records that could not be stored (a full outbox or budget)
	// Truncated counts messages cut and kept: longer than MaxMessageBytes
	// (as rsyslog's maxMessageSize does), or whose record would have been
	// longer than the message limit plus room for the envelope.
	Truncated atomic.Int64
	// Unrouted counts records discarded because no route takes syslog.
	Unrouted atomic.Int64
	// FramingErrors counts TCP connections closed for an octet-counting
	// length over MaxMessageBytes (or a length field longer than any such).
	FramingErrors atomic.Int64
	// RefusedConns counts TCP connections closed at once: MaxConnections
	// were open.
	RefusedConns atomic.Int64
	// HandshakeErrors counts tls:// connections whose TLS handshake failed
	// or did not finish within tlsconf.HandshakeTimeout.
	HandshakeErrors atomic.Int64

	maxRecord int      // the longest record stored: MaxMessageBytes + envelopeRoom
	warned    sync.Map // which one-time warnings were logged

	mu        sync.Mutex
	ln        io.Closer
	pc        net.PacketConn
	acceptErr error // the last Accept failed with this; nil after a success
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
	case "tls":
		if cfg.TLS == nil {
			return nil, fmt.Errorf("syslog listen %q: tls:// needs a TLS configuration", cfg.Listen)
		}
		s.network, s.address = "tcp", u.Host
	case "unix":
		s.network, s.address = "unixgram", u.Path
	default:
		return nil, fmt.Errorf("syslog listen %q: want udp://, tcp://, tls:// or unix://", cfg.Listen)
	}
	if u.Scheme != "tls" {
		s.cfg.TLS = nil
	}
	if s.cfg.MaxMessageBytes <= 0 {
		s.cfg.MaxMessageBytes = 64 << 10
	}
	s.maxRecord = s.cfg.MaxMessageBytes + envelopeRoom
	if s.cfg.MaxConnections <= 0 {
		s.cfg.MaxConnections = 64
	}
	if s.cfg.IdleTimeout <= 0 {
		s.cfg.IdleTimeout = 5 * time.Minute
	}
	if s.cfg.SocketMode == 0 {
		s.cfg.SocketMode = 0o666
	}
	if s.cfg.Budget == nil {
		s.cfg.Budget = NewBudget(0)
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
	if s.network == "unixgram" {
		// The socket file is made under the process umask; the mode is
		// what lets other users' programs write to it.
		if err := os.Chmod(s.address, s.cfg.SocketMode); err != nil {
			pc.Close()
			return nil, fmt.Errorf("syslog: listen %s: socket mode %#o: %w", s.cfg.Listen, s.cfg.SocketMode, err)
		}
	}
	s.pc = pc
	return pc.LocalAddr(), nil
}

// Healthy is nil while the listener takes messages; while accepting TCP
// connections fails (too many open files, say) it is that error, and after
// Serve stopped on an error it is that one.
func (s *Syslog) Healthy() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acceptErr
}

func (s *Syslog) setHealth(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.acceptErr = err
}

// warnOnce logs a warning the first time a kind of trouble happens: a
// hostile or misconfigured sender must not flood the log.
func (s *Syslog) warnOnce(kind, msg string, args ...any) {
	if _, seen := s.warned.LoadOrStore(kind, true); !seen {
		s.cfg.Logger.Warn(msg+" (logged once; see the metrics for counts)", append([]any{"listen", s.cfg.Listen}, args...)...)
	}
}

// Serve handles messages until ctx ends; then it closes the socket and
// returns once every connection's records are stored or given up.
func (s *Syslog) Serve(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, s.close)
	defer stop()
	if ln, ok := s.ln.(net.Listener); ok {
		return s.acceptLoop(ctx, ln, &wg)
	}
	return s.serveDatagrams(ctx, &wg)
}

// acceptLoop serves connections, at most MaxConnections at once. A
// temporary Accept error (out of file descriptors, say) is retried with a
// capped backoff, and Healthy reports it meanwhile: one EMFILE must not end
// TCP ingest for good.
func (s *Syslog) acceptLoop(ctx context.Context, ln net.Listener, wg *sync.WaitGroup) error {
	open := make(chan struct{}, s.cfg.MaxConnections) // one token per served connection
	var delay time.Duration
	// After a failure, an Accept that has not failed for acceptRecoveredAfter
	// means the listener works again, even if no client connects: Linux
	// fails accept with EMFILE before it looks for a waiting connection,
	// so an idle listener fails too while descriptors are short.
	var recovered *time.Timer
	defer func() {
		if recovered != nil {
			recovered.Stop()
		}
	}()
	for {
		conn, err := ln.Accept()
		if recovered != nil {
			recovered.Stop()
			recovered = nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			err = fmt.Errorf("syslog: accept on %s: %w", s.cfg.Listen, err)
			if !temporaryAcceptError(err) {
				s.setHealth(err)
				return err
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			if s.Healthy() == nil {
				s.cfg.Logger.Error("syslog: accept failing; retrying", "listen", s.cfg.Listen, "err", err)
			}
			s.setHealth(err)
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return nil
			}
			recovered = time.AfterFunc(acceptRecoveredAfter, s.acceptRecovered)
			continue
		}
		if delay > 0 {
			delay = 0
			s.acceptRecovered()
		}
		select {
		case open <- struct{}{}:
			wg.Go(func() {
				defer func() { <-open }()
				s.serveStream(ctx, conn)
			})
		default:
			s.RefusedConns.Add(1)
			s.warnOnce("conns", "syslog: connection refused: too many open", "max_connections", s.cfg.MaxConnections)
			conn.Close()
		}
	}
}

// acceptRecoveredAfter is how long an Accept must go without failing before a
// listener that failed counts as healthy again.
const acceptRecoveredAfter = 2 * time.Second

// acceptRecovered clears the accept failure, once.
func (s *Syslog) acceptRecovered() {
	if s.Healthy() != nil {
		s.cfg.Logger.Info("syslog: accepting again", "listen", s.cfg.Listen)
		s.setHealth(nil)
	}
}

// temporaryAcceptError tells errors that pass (resources short for a while,
// a peer that gave up before the accept) from a broken listener.
func temporaryAcceptError(err error) bool {
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
		syscall.ECONNABORTED, syscall.EINTR, syscall.EAGAIN, syscall.EPROTO, syscall.EPERM} {
		if errors.Is(err, e) {
			return true
		}
	}
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
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

// streamBatch is what a connection's reader hands its storer: records, and
// the budget bytes they hold until they are committed or given up.
type streamBatch struct {
	records [][]byte
	bytes   int64
}

// serveStream reads RFC 6587 frames (octet counting or newline-terminated)
// and stores them in batches. Reading and storing overlap: while one batch
// commits, the next one fills (up to maxBatch), so a fast stream commits in
// large transactions and a slow sender's message is stored at once. When
// the outbox is full the storer waits, the reader blocks on handing over
// its batch, and the connection is no longer read: back-pressure. The same
// happens while the ingest budget is taken.
func (s *Syslog) serveStream(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	raw := conn // under TLS, conn becomes the TLS connection on top of it
	stopOnCancel := context.AfterFunc(ctx, func() { raw.SetReadDeadline(time.Now()) })
	defer stopOnCancel()
	from := sender{host: hostOf(conn.RemoteAddr())}
	peer := from.host
	if s.cfg.TLS != nil {
		tc, ok := s.handshake(ctx, conn)
		if !ok {
			return
		}
		conn = tc
		// Runs after the records are stored: close_notify, so the client
		// reads a clean end (and a reset when records were given up).
		defer tc.Close()
		st := tc.ConnectionState()
		from.client = tlsconf.ClientOf(&st).JSON()
	}
	// The first bytes are waited for in a small buffer: a connection that
	// sends nothing holds neither the 64 KiB read buffer nor a storer.
	conn.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
	if ctx.Err() != nil {
		return
	}
	first := make([]byte, 512)
	n, _ := conn.Read(first)
	if n == 0 {
		return // closed, idle for IdleTimeout, or stopping
	}
	br := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(first[:n]), conn), 64<<10)

	batches := make(chan streamBatch, 1)
	var failed atomic.Bool
	// Plain syslog has no acknowledgement; the close is the nearest thing.
	// The connection closes only after every record read from it is stored
	// (the deferred calls run from the bottom up: close(batches), the
	// storer's wait, then this), and with a reset instead of a FIN when
	// records were given up, so a sender that waits for the close after its
	// own can tell.
	defer func() {
		if tc, ok := raw.(*net.TCPConn); ok && failed.Load() {
			tc.SetLinger(0)
		}
	}()
	var storer sync.WaitGroup
	storer.Go(func() {
		for b := range batches {
			if !failed.Load() && !s.storeStream(ctx, b.records) {
				failed.Store(true)
			}
			s.cfg.Budget.Release(b.bytes)
		}
	})
	defer storer.Wait()
	defer close(batches)

	var batch streamBatch
	var reserve int64 // budget acquired ahead, not yet used by a record
	defer func() { s.cfg.Budget.Release(reserve) }()
	// waited: the reader stood still (the storer busy, the outbox full, the
	// budget taken); the sender was not idle, so its clock starts again.
	waited := false
	flush := func() {
		if len(batch.records) == 0 {
			return
		}
		select {
		case batches <- batch:
		default:
			batches <- batch
			waited = true
		}
		batch = streamBatch{}
	}
	for !failed.Load() {
		idle := br.Buffered() == 0
		if idle {
			// The next read waits on the socket: an idle connection keeps
			// no budget, and is closed after IdleTimeout.
			s.cfg.Budget.Release(reserve)
			reserve = 0
		}
		if idle || waited {
			// The deadline is set before ctx is checked, so a cancel's
			// deadline wins.
			conn.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
			waited = false
			if ctx.Err() != nil {
				flush()
				return
			}
		}
		msg, cut, err := readFrame(br, s.cfg.MaxMessageBytes)
		if errors.Is(err, errFrameTooLong) {
			s.FramingErrors.Add(1)
			s.warnOnce("framing", "syslog: connection closed: octet-counting frame over max_message_bytes",
				"peer", peer, "err", err, "max_message_bytes", s.cfg.MaxMessageBytes)
		}
		if len(msg) > 0 {
			rec, truncated := s.envelope(msg, from, cut)
			if truncated {
				s.Truncated.Add(1)
			}
			n := int64(cap(rec)) // what the record holds of memory
			if n > reserve {
				want := max(n, budgetChunk)
				if !s.cfg.Budget.TryAcquire(want) {
					// Hand over what this connection holds before waiting:
					// its commit frees budget, and connections that each
					// waited holding a batch could wait on each other.
					flush()
					if err := s.cfg.Budget.Acquire(ctx, n); err != nil {
						if ctx.Err() == nil {
							s.cfg.Logger.Error("syslog: record dropped", "listen", s.cfg.Listen, "err", err)
						}
						return
					}
					want, waited = n, true
				}
				reserve += want
			}
			reserve -= n
			batch.records = append(batch.records, rec)
			batch.bytes += n
		}
		// Hand the batch over before the next read could block on an
		// empty socket; the handover itself waits while the storer is busy
		// with the previous one, and meanwhile the kernel buffers more.
		if err != nil || len(batch.records) >= maxBatch || br.Buffered() == 0 {
			flush()
		}
		if err != nil {
			return
		}
	}
}

// handshake runs the TLS handshake of a tls:// connection within
// tlsconf.HandshakeTimeout (or the idle timeout when shorter): a client
// that never completes one holds its connection no longer.
func (s *Syslog) handshake(ctx context.Context, conn net.Conn) (*tls.Conn, bool) {
	tc := tls.Server(conn, s.cfg.TLS)
	hctx, cancel := context.WithTimeout(ctx, min(tlsconf.HandshakeTimeout, s.cfg.IdleTimeout))
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		if ctx.Err() == nil {
			s.HandshakeErrors.Add(1)
			s.warnOnce("handshake", "syslog: TLS handshake failed; connection closed", "peer", hostOf(conn.RemoteAddr()), "err", err)
		}
		return nil, false
	}
	return tc, true
}

// storeStream stores a stream's batch, waiting (and so not reading) while
// the outbox is full. It gives up only when the listener stops. Records no
// route takes are discarded at once: waiting would not help.
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
		case errors.Is(err, ErrNoRoute):
			s.discardUnrouted(len(batch), err)
			return true
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

func (s *Syslog) discardUnrouted(n int, err error) {
	s.Unrouted.Add(int64(n))
	s.warnOnce("noroute", "syslog: records discarded: no route takes source syslog", "err", err)
}

// errFrameTooLong: an octet-counting length over the message limit. The
// frame cannot be skipped safely (a length that big is more likely garbage
// than a message), so the connection is closed.
var errFrameTooLong = errors.New("octet-counting frame longer than the message limit")

// readFrame reads one message: "LEN SP MSG" when the frame starts with a
// digit (octet counting), else up to the next newline. A line longer than
// max is cut there and kept; cut says so. A length over max is
// errFrameTooLong: the length is read digit by digit, never more digits than
// max has, so a flood of digits is not buffered.
func readFrame(br *bufio.Reader, max int) (msg []byte, cut bool, err error) {
	first, err := br.Peek(1)
	if err != nil {
		return nil, false, err
	}
	if first[0] < '1' || first[0] > '9' {
		return readLine(br, max)
	}
	digits := len(strconv.Itoa(max))
	for i := 1; ; i++ {
		b, err := br.Peek(i + 1)
		if err != nil {
			return readLine(br, max) // what there is, and the error
		}
		switch c := b[i]; {
		case c >= '0' && c <= '9':
			if i >= digits {
				return nil, false, fmt.Errorf("%w: a length of more than %d digits", errFrameTooLong, digits)
			}
		case c == ' ':
			n, _ := strconv.Atoi(string(b[:i]))
			if n > max {
				return nil, false, fmt.Errorf("%w: %d bytes, the limit is %d", errFrameTooLong, n, max)
			}
			br.Discard(i + 1)
			msg := make([]byte, n)
			_, err := io.ReadFull(br, msg)
			return msg, false, err
		default:
			return readLine(br, max) // not a length after all: the start of a line
		}
	}
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
// cannot be stored within a second, or finds the ingest budget taken, is
// dropped and counted.
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
			err = fmt.Errorf("syslog: read on %s: %w", s.cfg.Listen, err)
			s.setHealth(err)
			return err
		}
		cut := n > s.cfg.MaxMessageBytes
		if cut {
			n = s.cfg.MaxMessageBytes
		}
		rec, truncated := s.envelope(buf[:n], sender{host: hostOf(addr)}, cut)
		if truncated {
			s.Truncated.Add(1)
		}
		if !s.cfg.Budget.TryAcquire(int64(cap(rec))) {
			s.Dropped.Add(1)
			s.warnOnce("budget", "syslog: datagrams dropped: the ingest memory budget is taken")
			continue
		}
		select {
		case queue <- rec:
		default:
			s.cfg.Budget.Release(int64(cap(rec)))
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
		s.storeDatagramBatch(batch)
		s.cfg.Budget.Release(totalCap(batch))
	}
}

func (s *Syslog) storeDatagramBatch(batch [][]byte) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := s.app.Append(ctx, "syslog", batch)
	switch {
	case err == nil:
		s.Received.Add(int64(len(batch)))
		s.Bytes.Add(totalBytes(batch))
	case errors.Is(err, ErrNoRoute):
		s.discardUnrouted(len(batch), err)
	default:
		s.Dropped.Add(int64(len(batch)))
		s.cfg.Logger.Warn("syslog: datagrams dropped; UDP cannot push back", "count", len(batch), "err", err)
	}
}

// envelope builds the record of msg; cut says msg was already cut at the
// message limit, truncated that the record says so. The record is kept
// within maxRecord: its message is cut further when escaping made it longer.
func (s *Syslog) envelope(msg []byte, from sender, cut bool) (rec []byte, truncated bool) {
	now := time.Now().UTC()
	m := ParseSyslog(msg, now)
	var precutDone bool
	if s.maxRecord > 0 {
		m.Message, precutDone = precut(m.Message, s.maxRecord-envelopeRoom)
	}
	// The envelope borrows msg's bytes: Marshal copies them, and the
	// envelope is dropped here.
	e := newSyslogEnvelope(m, now, "syslog", from.host, true)
	e.TLSClient = from.client
	e.Fields = s.cfg.AddFields
	e.Truncated = cut || precutDone
	if precutDone {
		// Escapes make the record up to six times its message: one
		// allocation of the limit, not a series of doublings past it.
		return e.appendTo(make([]byte, 0, s.maxRecord)), true
	}
	rec, _ = e.Marshal() // cannot fail: every field is a string, a time or a map of strings
	if s.maxRecord <= 0 || len(rec) <= s.maxRecord {
		return rec, cut
	}
	return s.fitEnvelope(msg, m, now, from), true
}

// sender is who a message came from: the peer's address (the record's host
// when the message names none) and, over TLS with a verified client
// certificate, the client's tls_client JSON.
type sender struct {
	host   string
	client []byte
}

// fitEnvelope cuts the message until the record fits maxRecord. When the
// header alone is too long (structured data of control bytes, say), the
// message is kept unparsed instead, cut to fit.
func (s *Syslog) fitEnvelope(raw []byte, m SyslogMessage, now time.Time, from sender) []byte {
	build := func(message []byte, _ bool) []byte {
		m.Message = message
		e := newSyslogEnvelope(m, now, "syslog", from.host, true)
		e.TLSClient = from.client
		e.Fields = s.cfg.AddFields
		e.Truncated = true
		rec, _ := e.Marshal()
		return rec
	}
	rec, _, fits := fitRecord(m.Message, s.maxRecord, build)
	if !fits {
		m = SyslogMessage{Format: FormatUnparsed, Facility: -1, Severity: -1}
		rec, _, _ = fitRecord(raw, s.maxRecord, build)
	}
	return rec
}

// totalCap is the memory records hold: what the budget was charged.
func totalCap(records [][]byte) int64 {
	var n int64
	for _, r := range records {
		n += int64(cap(r))
	}
	return n
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
