package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/outboxd/outboxd/config"
	"github.com/outboxd/outboxd/forwarders"
	"github.com/outboxd/outboxd/ingest"
	"github.com/outboxd/outboxd/ingest/files"
	"github.com/outboxd/outboxd/ingest/journal"
	"github.com/outboxd/outboxd/ingest/otlp"
	"github.com/outboxd/outboxd/ingest/route"
	"github.com/outboxd/outboxd/ingest/tlsconf"
	"github.com/outboxd/outboxd/outbox"
	"google.golang.org/grpc"
)

const systemConfig = "/etc/outboxd/config.yaml"

// defaultMemoryLimit is the Go runtime's soft memory limit unless
// GOMEMLIMIT says otherwise. SQLite's page cache and the binary's pages
// come on top.
const defaultMemoryLimit = 32 << 20

func runCommand(ctx context.Context, args []string, stderr io.Writer) int {
	fs := newFlags("run", "run [-config FILE]",
		"Runs the daemon until SIGTERM or SIGINT; SIGHUP reloads the sinks and routes.", stderr)
	path := fs.String("config", "", configFlagHelp)
	profile := fs.String("cpuprofile", "", "write a CPU profile (go tool pprof) to this file until the daemon stops")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		// A soft limit on the Go heap: under a burst the collector runs
		// sooner instead of letting RSS grow (the budget is 64 MiB at 150k
		// records/s). GOMEMLIMIT in the environment overrides it.
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	if *profile != "" {
		stop, err := startCPUProfile(*profile)
		if err != nil {
			fmt.Fprintln(stderr, "outboxd:", err)
			return 1
		}
		defer stop()
	}
	cfg, origin, err := loadConfig(*path)
	if err != nil {
		fmt.Fprintln(stderr, "outboxd:", err)
		return 1
	}
	log := newLogger(cfg.Log, stderr)
	log.Info("outboxd starting", "version", versionString(), "config", origin, "data_dir", cfg.DataDir)
	for _, w := range cfg.Warnings() {
		log.Warn("config: "+w.Error(), "config", origin)
	}
	d := &daemon{cfg: cfg, log: log, configFlag: *path}
	if err := d.run(ctx); err != nil {
		log.Error("outboxd stopped", "err", err)
		return 1
	}
	log.Info("outboxd stopped")
	return 0
}

func loadConfig(path string) (*config.Config, string, error) {
	if path == "" {
		if _, err := os.Stat(systemConfig); err == nil {
			path = systemConfig
		}
	}
	if path == "" {
		c, err := config.Default()
		return c, "embedded default (no -config and no " + systemConfig + ")", err
	}
	c, err := config.ParseFile(path)
	return c, path, err
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// daemon is one run of outboxd.
type daemon struct {
	cfg        *config.Config
	configFlag string // the -config flag: where a reload reads from
	log        *slog.Logger
	sinks      sinkSet
	router     *route.Router
	http       *ingest.HTTP
	otlpHTTP   *otlp.HTTP
	otlpGRPC   *otlp.GRPC
	syslogs    []*ingest.Syslog
	certs      []inputCert // the TLS inputs' certificates, re-read on SIGHUP
	tailer     *files.Tailer
	journal    *journal.Reader
	ready      atomic.Bool

	probe         chan chan struct{} // the watchdog asks the signal loop whether it still answers
	reloadStarted atomic.Int64       // UnixNano of the running reload's start; 0 when none runs
}

// run starts the outbox and the forwarders, then ingest, and stops them in
// the reverse order when ctx ends. Shutdown order: stop ingest (no new
// records); give in-flight batches the grace period; close the outbox.
// A second signal exits at once: what was acknowledged is on disk already.
func (d *daemon) run(ctx context.Context) error {
	if err := os.MkdirAll(d.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	unlock, err := lockDataDir(d.cfg.DataDir)
	if err != nil {
		return err
	}
	defer unlock()
	if err := d.startSinks(ctx); err != nil {
		d.stopSinks()
		return err
	}
	defer d.stopSinks()
	d.router = route.New(d.log)
	d.router.Install(d.cfg.Routes, d.sinks.routed())
	d.probe = make(chan chan struct{})

	ingestCtx, stopIngest := context.WithCancel(context.Background())
	var ingesting sync.WaitGroup
	ingestSrvs, err := d.startIngest(ingestCtx, &ingesting)
	var adminSrv *http.Server
	if err == nil {
		adminSrv, err = d.startAdmin(&ingesting)
	}
	if err != nil { // a listener failed: stop the ones that started
		stopIngest()
		for _, srv := range ingestSrvs {
			srv.Close()
		}
		if g := d.otlpGRPC; g != nil {
			stopNow, cancel := context.WithCancel(context.Background())
			cancel()
			g.Stop(stopNow)
		}
		ingesting.Wait()
		return err
	}
	d.ready.Store(true)
	d.log.Info("outboxd ready")
	sdNotify("READY=1\nSTATUS=" + d.status(ctx))
	wdCtx, stopWatchdog := context.WithCancel(ctx)
	var pinging, reloads sync.WaitGroup
	pinging.Go(func() { watchdog(wdCtx, d.alive, func() string { return d.status(wdCtx) }, d.log) })

	d.serveSignals(ctx, &reloads)
	go exitOnSecondSignal(d.log)
	stopWatchdog()
	pinging.Wait()
	sdNotify("STOPPING=1\nSTATUS=stopping")
	d.log.Info("stopping: ingest first, then forwarders (grace period " + d.cfg.GracePeriod.String() + ")")
	d.ready.Store(false)
	stopIngest()
	reloads.Wait() // a reload still running ends now that ingest stopped: it waits on nothing else for long
	shutCtx, cancel := context.WithTimeout(context.Background(), d.cfg.GracePeriod)
	// The HTTP, OTLP/HTTP and OTLP/gRPC servers stop taking requests and
	// wait for the ones in flight (answered once committed), then the admin
	// server.
	for _, srv := range ingestSrvs {
		srv.Shutdown(shutCtx)
	}
	if g := d.otlpGRPC; g != nil {
		g.Stop(shutCtx)
	}
	if adminSrv != nil {
		adminSrv.Shutdown(shutCtx)
	}
	cancel()
	ingesting.Wait()
	return nil // the deferred stopSinks stops the forwarders, then closes the outbox
}

// serveSignals reloads the configuration on SIGHUP until ctx ends (SIGTERM
// or SIGINT). A reload runs in its own goroutine, owned by reloads, so that
// the loop keeps answering signals and the watchdog's probe while it runs;
// SIGHUPs that arrive meanwhile make one more reload after it.
func (d *daemon) serveSignals(ctx context.Context, reloads *sync.WaitGroup) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var reloading chan struct{} // closed when the running reload ends; nil when none runs
	pending := false
	start := func() chan struct{} {
		done := make(chan struct{})
		reloads.Go(func() {
			defer close(done)
			d.reloadFromFile(ctx)
		})
		return done
	}
	for {
		select {
		case <-ctx.Done():
			return
		case reply := <-d.probe:
			close(reply)
		case <-hup:
			if reloading != nil {
				pending = true
				continue
			}
			reloading = start()
		case <-reloading:
			reloading = nil
			if pending {
				pending, reloading = false, start()
			}
		}
	}
}

// reloadFromFile reads the configuration again and applies it.
func (d *daemon) reloadFromFile(ctx context.Context) {
	d.reloadStarted.Store(time.Now().UnixNano())
	defer d.reloadStarted.Store(0)
	sdNotify("RELOADING=1")
	// Certificates first, whatever becomes of the configuration: a renewed
	// certificate must not wait for a valid configuration file.
	d.reloadCerts()
	next, origin, err := loadConfig(d.configFlag)
	if err == nil {
		err = d.reload(ctx, next)
	}
	if err != nil {
		d.log.Error("reload refused; the running configuration stays", "config", origin, "err", err)
	}
	sdNotify("READY=1\nSTATUS=" + d.status(ctx))
}

// inputCert is a TLS input's certificate, by its configuration path.
type inputCert struct {
	path string
	*tlsconf.Server
}

// inputCert loads a TLS input's certificate and keeps it for reloads.
func (d *daemon) inputCert(path string, t *config.ServerTLS) (*tlsconf.Server, error) {
	c, err := tlsconf.New(path, tlsconf.Files{CertFile: t.CertFile, KeyFile: t.KeyFile, ClientCAFile: t.ClientCAFile})
	if err != nil {
		return nil, err
	}
	d.certs = append(d.certs, inputCert{path, c})
	return c, nil
}

// reloadCerts re-reads every TLS input's certificate, key and client CA:
// new connections get them, open ones keep theirs. One that cannot be used
// keeps the one loaded before, and the log says why.
func (d *daemon) reloadCerts() {
	for _, c := range d.certs {
		if err := c.Reload(); err != nil {
			d.log.Error("tls: certificate not reloaded", "input", c.path, "err", err)
			continue
		}
		d.log.Info("tls: certificate reloaded", "input", c.path, "not_after", c.NotAfter())
	}
}

// alive returns nil while the daemon makes progress: the signal loop
// answers, the outbox's committer answers (a commit stuck on a hung disk
// does not), and no reload has run for much longer than a grace period
// (stopping a sink's worker is the longest a reload waits). The watchdog
// pings systemd only then, so that systemd restarts a hung outboxd.
func (d *daemon) alive(ctx context.Context) error {
	reply := make(chan struct{})
	select {
	case d.probe <- reply:
		<-reply
	case <-ctx.Done():
		return errors.New("the signal loop does not answer")
	}
	if at := d.reloadStarted.Load(); at != 0 {
		if took := time.Since(time.Unix(0, at)); took > 2*d.cfg.GracePeriod+30*time.Second {
			return fmt.Errorf("a reload has been running for %s", took.Round(time.Second))
		}
	}
	var q *outbox.Queue[[]byte]
	d.sinks.each(func(s *sinkRun) {
		if q == nil {
			q = s.queue
		}
	})
	if q != nil {
		if err := q.Ping(ctx); err != nil {
			return fmt.Errorf("the outbox committer does not answer: %w", err)
		}
	}
	return nil
}

// status is the one-line STATUS= for systemd: queued records per sink.
func (d *daemon) status(ctx context.Context) string {
	var b strings.Builder
	b.WriteString("queued:")
	d.sinks.each(func(s *sinkRun) {
		n, _ := s.queue.Len(ctx)
		fmt.Fprintf(&b, " %s=%d", s.name, n)
	})
	return b.String()
}

func exitOnSecondSignal(log *slog.Logger) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	<-ch
	log.Warn("second signal: exiting now; acknowledged records are on disk and will be forwarded after restart")
	os.Exit(130)
}

func buildSink(name string, sc config.Sink, log *slog.Logger) (forwarders.Sink, error) {
	var tls *forwarders.TLS
	if sc.TLS != nil {
		tls = &forwarders.TLS{CAFile: sc.TLS.CAFile, CertFile: sc.TLS.CertFile, KeyFile: sc.TLS.KeyFile,
			ServerName: sc.TLS.ServerName, InsecureSkipVerify: sc.TLS.InsecureSkipVerify}
	}
	var sink forwarders.Sink
	var err error
	switch sc.Type {
	case "console":
		sink = forwarders.NewConsole(os.Stdout)
	case "http":
		hc := forwarders.HTTPConfig{URL: sc.URL, Format: sc.Format, Gzip: sc.Gzip, Headers: sc.Headers,
			BearerToken: sc.BearerToken, Timeout: sc.Timeout}
		if b := sc.BasicAuth; b != nil {
			hc.BasicUser, hc.BasicPassword = b.Username, b.Password
		}
		if tls != nil {
			hc.TLS = *tls
		}
		sink, err = forwarders.NewHTTP(hc)
	case "kafka":
		sink, err = forwarders.NewKafka(forwarders.KafkaConfig{Brokers: sc.Brokers, Topic: sc.Topic, KeyField: sc.KeyField,
			RequiredAcks: sc.RequiredAcks, Compression: sc.Compression, TLS: tls,
			SASL:         forwarders.SASL{Mechanism: sc.SASL.Mechanism, Username: sc.SASL.Username, Password: sc.SASL.Password},
			WriteTimeout: sc.WriteTimeout, MaxMessageBytes: int(sc.MaxMessageBytes), Logger: log})
	default:
		err = fmt.Errorf("unknown type %q", sc.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("sinks.%s: %w", name, err)
	}
	return sink, nil
}

// startIngest starts every input. The HTTP servers it returns (HTTP
// ingest, OTLP/HTTP) and d.otlpGRPC are the caller's to shut down, even
// with an error.
func (d *daemon) startIngest(ctx context.Context, wg *sync.WaitGroup) ([]*http.Server, error) {
	r := d.router
	// One budget for every endpoint: the memory held by records read but
	// not yet stored is bounded whoever sends them.
	budget := ingest.NewBudget(int64(d.cfg.Ingest.MemoryBudget))
	var srvs []*http.Server
	if h := d.cfg.Ingest.HTTP; h != nil {
		endpoint := ingest.NewHTTP(ingest.HTTPConfig{Path: h.Path, Token: h.Token, MaxBodyBytes: int64(h.MaxBodyBytes), AddFields: ingest.NewAddFields(h.AddFields),
			MaxRecordBytes: int(h.MaxRecordBytes), MaxConcurrent: h.MaxConcurrent, Budget: budget, Logger: d.log}, r)
		d.http = endpoint
		ln, err := net.Listen("tcp", h.Listen)
		if err != nil {
			return nil, fmt.Errorf("ingest.http.listen: %w", err)
		}
		srv := ingest.NewHTTPServer(h.Listen, endpoint)
		serve := srv.Serve
		if h.TLS != nil {
			c, err := d.inputCert("ingest.http.tls", h.TLS)
			if err != nil {
				ln.Close()
				return srvs, err
			}
			// The server's timeouts bound the handshake (ReadHeaderTimeout).
			srv.TLSConfig = c.Config("http/1.1")
			serve = func(ln net.Listener) error { return srv.ServeTLS(ln, "", "") }
		}
		srvs = append(srvs, srv)
		wg.Go(func() {
			if err := serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				d.log.Error("http ingest", "err", err)
			}
		})
		d.log.Info("http ingest listening", "addr", ln.Addr().String(), "tls", h.TLS != nil)
	}
	if o := d.cfg.Ingest.OTLP; o != nil && o.HTTP != nil {
		rcv := otlp.NewHTTP(otlpConfig(o.HTTP, budget, d.log), r)
		d.otlpHTTP = rcv
		ln, err := net.Listen("tcp", o.HTTP.Listen)
		if err != nil {
			return srvs, fmt.Errorf("ingest.otlp.http.listen: %w", err)
		}
		srv := otlp.NewHTTPServer(o.HTTP.Listen, rcv)
		serve := srv.Serve
		if o.HTTP.TLS != nil {
			c, err := d.inputCert("ingest.otlp.http.tls", o.HTTP.TLS)
			if err != nil {
				ln.Close()
				return srvs, err
			}
			srv.TLSConfig = c.Config("http/1.1")
			serve = func(ln net.Listener) error { return srv.ServeTLS(ln, "", "") }
		}
		srvs = append(srvs, srv)
		wg.Go(func() {
			if err := serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				d.log.Error("otlp http ingest", "err", err)
			}
		})
		d.log.Info("otlp http ingest listening", "addr", ln.Addr().String(), "tls", o.HTTP.TLS != nil)
	}
	if o := d.cfg.Ingest.OTLP; o != nil && o.GRPC != nil {
		ln, err := net.Listen("tcp", o.GRPC.Listen)
		if err != nil {
			return srvs, fmt.Errorf("ingest.otlp.grpc.listen: %w", err)
		}
		var opts []grpc.ServerOption
		if o.GRPC.TLS != nil {
			c, err := d.inputCert("ingest.otlp.grpc.tls", o.GRPC.TLS)
			if err != nil {
				ln.Close()
				return srvs, err
			}
			opts = otlp.TLS(c.Config("h2"))
		}
		rcv := otlp.NewGRPC(otlpConfig(o.GRPC, budget, d.log), r, opts...)
		d.otlpGRPC = rcv
		wg.Go(func() {
			if err := rcv.Serve(ln); err != nil {
				d.log.Error("otlp grpc ingest", "err", err)
			}
		})
		d.log.Info("otlp grpc ingest listening", "addr", ln.Addr().String(), "tls", o.GRPC.TLS != nil)
	}
	for i, sl := range d.cfg.Ingest.Syslog {
		sc := ingest.SyslogConfig{Listen: sl.Listen, MaxConnections: sl.MaxConnections,
			IdleTimeout: sl.IdleTimeout, SocketMode: os.FileMode(sl.SocketMode), Budget: budget, Logger: d.log,
			AddFields: ingest.NewAddFields(sl.AddFields)}
		if sl.TLS != nil {
			c, err := d.inputCert(fmt.Sprintf("ingest.syslog[%d].tls", i), sl.TLS)
			if err != nil {
				return srvs, err
			}
			sc.TLS = c.Config()
		}
		s, err := ingest.NewSyslog(sc, r)
		if err != nil {
			return srvs, fmt.Errorf("ingest.syslog[%d]: %w", i, err)
		}
		addr, err := s.Listen()
		if err != nil {
			return srvs, fmt.Errorf("ingest.syslog[%d]: %w", i, err)
		}
		d.syslogs = append(d.syslogs, s)
		wg.Go(func() {
			if err := s.Serve(ctx); err != nil {
				d.log.Error("syslog ingest", "listen", sl.Listen, "err", err)
			}
		})
		d.log.Info("syslog ingest listening", "listen", sl.Listen, "addr", addr.String())
	}
	if len(d.cfg.Ingest.Files) > 0 {
		// Files need no budget: a worker holds one chunk at a time, and a
		// full outbox stops the reading (the files are the buffer).
		t, err := files.New(files.Config{Inputs: d.cfg.Ingest.Files, Logger: d.log}, r)
		if err != nil {
			return srvs, err
		}
		d.tailer = t
		wg.Go(func() {
			if err := t.Run(ctx); err != nil {
				d.log.Error("files ingest stopped", "err", err)
			}
		})
		d.log.Info("files ingest started", "entries", len(d.cfg.Ingest.Files))
	}
	if j := d.cfg.Ingest.Journal; j != nil {
		// Like files: no budget (a full outbox stops reading the pipe), and
		// a missing journalctl is an error in the log and /readyz, retried;
		// the other inputs run on.
		jr := journal.New(journal.Config{Input: *j, Logger: d.log}, r)
		d.journal = jr
		wg.Go(func() { jr.Run(ctx) })
		d.log.Info("journal ingest started", "directory", j.Directory, "units", j.Units, "read_from", j.ReadFrom)
	}
	return srvs, nil
}

// otlpConfig is an OTLP receiver's configuration: its listener's limits
// (zero: ingest.http's defaults) and the shared budget.
func otlpConfig(l *config.OTLPListener, budget *ingest.Budget, log *slog.Logger) otlp.Config {
	return otlp.Config{Token: l.Token, MaxBodyBytes: int64(l.MaxBodyBytes), MaxRecordBytes: int(l.MaxRecordBytes),
		MaxConcurrent: l.MaxConcurrent, Budget: budget, Logger: log, AddFields: ingest.NewAddFields(l.AddFields)}
}

func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpuprofile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
