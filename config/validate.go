package config

import (
	"fmt"
	"maps"
	"math"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/outboxd/outboxd/ingest/tlsconf"
)

// Sources are the names routes give inputs (a record's "source").
var Sources = []string{"http", "syslog", "file", "journal", "otlp"}

var sinkNameRE = regexp.MustCompile(`^[A-Za-z0-9_]{1,58}$`)

// maxInt is the largest int of the platform. The record, message and batch
// limits become ints, and 2 GiB wraps to a negative int on 32-bit ARM. A
// variable, so that a test on a 64-bit machine can stand in for 32 bits.
var maxInt int64 = math.MaxInt

// checkSize refuses a negative size, and one that must become an int
// (toInt) but is larger than the platform's int.
func checkSize(path string, s Size, toInt bool, add func(error)) {
	switch {
	case s < 0:
		add(problem(path, "%d is negative", s))
	case toInt && int64(s) > maxInt:
		add(problem(path, "%d bytes is more than this platform can hold (at most %d)", s, maxInt))
	}
}

// problem is one validation error, with its key path.
func problem(path, format string, args ...any) error {
	return fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...))
}

// Validate returns every problem in the configuration, each naming its key.
func (c *Config) Validate() []error {
	var errs []error
	add := func(e error) { errs = append(errs, e) }
	if !slices.Contains([]string{"full", "normal", "off", "extra"}, c.Durability) {
		add(problem("durability", "%q: want full, normal, off or extra", c.Durability))
	}
	if c.MaxRecords < 0 {
		add(problem("max_records", "%d is negative", c.MaxRecords))
	}
	checkSize("max_disk_bytes", c.MaxDiskBytes, false, add)
	if h := c.Ingest.HTTP; h != nil {
		validateAddFields("ingest.http.add_fields", h.AddFields, add)
		if h.TLS != nil {
			validateServerTLS("ingest.http.tls", *h.TLS, add)
		}
		checkSize("ingest.http.max_body_bytes", h.MaxBodyBytes, false, add)
		checkSize("ingest.http.max_record_bytes", h.MaxRecordBytes, true, add)
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		add(problem("log.level", "%q: want debug, info, warn or error", c.Log.Level))
	}
	if !slices.Contains([]string{"text", "json"}, c.Log.Format) {
		add(problem("log.format", "%q: want text or json", c.Log.Format))
	}
	c.validateListeners(add)
	c.Ingest.validate(add)
	names := make([]string, 0, len(c.Sinks))
	for name := range c.Sinks {
		names = append(names, name)
	}
	sort.Strings(names)
	if len(names) == 0 {
		add(problem("sinks", "at least one sink is needed"))
	}
	for _, name := range names {
		if !sinkNameRE.MatchString(name) {
			add(problem("sinks."+name, "a sink name is 1-58 characters of letters, digits and _ (it names the sink's queue table)"))
		}
		c.Sinks[name].validate("sinks."+name, add)
	}
	for i, r := range c.Routes {
		path := fmt.Sprintf("routes[%d]", i)
		if len(r.Sinks) == 0 {
			add(problem(path+".sinks", "a route needs at least one sink"))
		}
		seen := map[string]bool{}
		for _, s := range r.Sinks {
			if seen[s] {
				add(problem(path+".sinks", "%q is listed twice: every record would be stored and delivered twice", s))
				continue
			}
			seen[s] = true
			if _, ok := c.Sinks[s]; !ok {
				add(problem(path+".sinks", "no sink named %q", s))
			}
		}
		for _, src := range r.Sources {
			if !slices.Contains(Sources, src) {
				add(problem(path+".sources", "%q: want one of %s", src, strings.Join(Sources, ", ")))
			}
		}
	}
	return errs
}

// Warnings returns what is valid but probably not meant, each naming its
// key: check prints them, and the configuration still loads.
func (c *Config) Warnings() []error {
	var warns []error
	var inputs []string
	if c.Ingest.HTTP != nil {
		inputs = append(inputs, "http")
	}
	if len(c.Ingest.Syslog) > 0 {
		inputs = append(inputs, "syslog")
	}
	if c.Ingest.OTLP != nil {
		inputs = append(inputs, "otlp")
	}
	for _, in := range inputs {
		if !c.routed(in) {
			warns = append(warns, problem("ingest."+in, "no route takes records from %s: they would be refused", in))
		}
	}
	if len(c.Ingest.Files) > 0 && !c.routed("file") {
		warns = append(warns, problem("ingest.files", "no route takes records from file: the files are not read until one does"))
	}
	if c.Ingest.Journal != nil && !c.routed("journal") {
		warns = append(warns, problem("ingest.journal", "no route takes records from journal: the journal is not read until one does"))
	}
	// Files in data_dir are 0600; their names, and a file an operator
	// copies there, are not.
	if info, err := os.Stat(c.DataDir); err == nil && info.IsDir() && info.Mode().Perm()&0o044 != 0 {
		warns = append(warns, problem("data_dir", "%s is readable by others (mode %04o): chmod 700 it", c.DataDir, info.Mode().Perm()))
	}
	return warns
}

// routed tells whether a route takes the records of input, as the daemon's
// router picks: no routes send everything everywhere, a route without
// sources takes every input.
func (c *Config) routed(input string) bool {
	if len(c.Routes) == 0 {
		return true
	}
	for _, r := range c.Routes {
		if len(r.Sources) == 0 || slices.Contains(r.Sources, input) {
			return true
		}
	}
	return false
}

// validateListeners checks every listen address and that none is used twice.
func (c *Config) validateListeners(add func(error)) {
	seen := map[string]string{}
	claim := func(path, key string) {
		if other, ok := seen[key]; ok {
			add(problem(path, "%s is already used by %s", key, other))
			return
		}
		seen[key] = path
	}
	if h := c.Ingest.HTTP; h != nil {
		if _, _, err := net.SplitHostPort(h.Listen); err != nil {
			add(problem("ingest.http.listen", "%q: want host:port", h.Listen))
		} else {
			claim("ingest.http.listen", "tcp://"+h.Listen)
		}
	}
	for i, s := range c.Ingest.Syslog {
		s.validate(fmt.Sprintf("ingest.syslog[%d]", i), add)
		path := fmt.Sprintf("ingest.syslog[%d].listen", i)
		u, err := url.Parse(s.Listen)
		switch {
		case err != nil || (u.Scheme != "udp" && u.Scheme != "tcp" && u.Scheme != "tls" && u.Scheme != "unix"):
			add(problem(path, "%q: want udp://host:port, tcp://host:port, tls://host:port or unix:///path", s.Listen))
		case u.Scheme == "unix" && u.Path == "":
			add(problem(path, "%q: a unix socket needs a path", s.Listen))
		case u.Scheme != "unix" && u.Port() == "":
			add(problem(path, "%q: want a port", s.Listen))
		case u.Scheme == "tls":
			claim(path, "tcp://"+u.Host) // one TCP port
		default:
			claim(path, s.Listen)
		}
	}
	if o := c.Ingest.OTLP; o != nil {
		for _, l := range []struct {
			path string
			ln   *OTLPListener
		}{{"ingest.otlp.http.listen", o.HTTP}, {"ingest.otlp.grpc.listen", o.GRPC}} {
			if l.ln == nil {
				continue
			}
			if _, _, err := net.SplitHostPort(l.ln.Listen); err != nil {
				add(problem(l.path, "%q: want host:port", l.ln.Listen))
			} else {
				claim(l.path, "tcp://"+l.ln.Listen)
			}
		}
	}
	if c.Admin.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Admin.Listen); err != nil {
			add(problem("admin.listen", "%q: want host:port", c.Admin.Listen))
		} else {
			claim("admin.listen", "tcp://"+c.Admin.Listen)
		}
	}
}

// validateServerTLS loads the certificate, key and client CA as a listener
// would: unreadable, not matching, expired or not yet valid is a problem
// naming the key and the file.
func validateServerTLS(path string, t ServerTLS, add func(error)) {
	if err := tlsconf.Load(path, tlsconf.Files{CertFile: t.CertFile, KeyFile: t.KeyFile, ClientCAFile: t.ClientCAFile}, time.Now()); err != nil {
		add(err)
	}
}

// minMemoryBudget: a budget must hold the largest syslog record (64 KiB
// and its envelope) and an HTTP request's first buffer, with room to spare.
const minMemoryBudget = 1 << 20

func (in Ingest) validate(add func(error)) {
	if in.MemoryBudget != 0 && in.MemoryBudget < minMemoryBudget {
		add(problem("ingest.memory_budget", "%d bytes: at least 1MiB", in.MemoryBudget))
	}
	for i, f := range in.Files {
		f.validate(fmt.Sprintf("ingest.files[%d]", i), add)
	}
	if in.Journal != nil {
		in.Journal.validate("ingest.journal", add)
	}
	if in.OTLP != nil {
		in.OTLP.validate("ingest.otlp", add)
	}
}

func (s SyslogIngest) validate(path string, add func(error)) {
	validateAddFields(path+".add_fields", s.AddFields, add)
	tls := strings.HasPrefix(s.Listen, "tls://")
	tcp, unix := tls || strings.HasPrefix(s.Listen, "tcp://"), strings.HasPrefix(s.Listen, "unix://")
	switch {
	case tls && s.TLS == nil:
		add(problem(path+".tls", "tls:// needs a tls block: {cert_file: ..., key_file: ...}"))
	case tls:
		validateServerTLS(path+".tls", *s.TLS, add)
	case s.TLS != nil:
		add(problem(path+".tls", "applies to tls:// only (syslog over TLS, RFC 5425: listen: tls://0.0.0.0:6514)"))
	}
	if s.MaxConnections < 0 {
		add(problem(path+".max_connections", "%d is negative", s.MaxConnections))
	}
	if s.IdleTimeout < 0 {
		add(problem(path+".idle_timeout", "%v is negative", s.IdleTimeout))
	}
	if (s.MaxConnections != 0 || s.IdleTimeout != 0) && !tcp {
		add(problem(path, "max_connections and idle_timeout apply to tcp:// and tls:// only"))
	}
	if s.SocketMode > 0o777 {
		add(problem(path+".socket_mode", "%d: want permission bits in octal, such as 0666 (YAML reads 666 as decimal)", s.SocketMode))
	}
	if s.SocketMode != 0 && !unix {
		add(problem(path+".socket_mode", "applies to unix:// only"))
	}
}

func (s Sink) validate(path string, add func(error)) {
	if s.WhenFull != "" && !slices.Contains([]string{"block", "drop_newest", "drop_oldest"}, s.WhenFull) {
		add(problem(path+".when_full", "%q: want block, drop_newest or drop_oldest", s.WhenFull))
	}
	checkSize(path+".max_message_bytes", s.MaxMessageBytes, true, add)
	checkSize(path+".batch_bytes", s.BatchBytes, true, add)
	switch s.Type {
	case "kafka":
		if len(s.Brokers) == 0 {
			add(problem(path+".brokers", "a kafka sink needs brokers"))
		}
		if s.Topic == "" {
			add(problem(path+".topic", "a kafka sink needs a topic"))
		}
		if s.Compression != "" && !slices.Contains([]string{"none", "gzip", "snappy", "lz4", "zstd"}, s.Compression) {
			add(problem(path+".compression", "%q: want none, gzip, snappy, lz4 or zstd", s.Compression))
		}
		if s.RequiredAcks != "" && !slices.Contains([]string{"all", "one", "none"}, s.RequiredAcks) {
			add(problem(path+".required_acks", "%q: want all, one or none", s.RequiredAcks))
		}
		if m := strings.ToUpper(s.SASL.Mechanism); m != "" && !slices.Contains([]string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}, m) {
			add(problem(path+".sasl.mechanism", "%q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", s.SASL.Mechanism))
		}
	case "http":
		if u, err := url.Parse(s.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add(problem(path+".url", "%s: want http(s)://host/path", quoteURL(s.URL)))
		}
		if b := s.BasicAuth; b != nil {
			if b.Username == "" {
				add(problem(path+".basic_auth.username", "basic auth needs a username"))
			}
			if s.BearerToken != "" {
				add(problem(path+".basic_auth", "bearer_token is set too; keep one"))
			}
		}
		if s.Format != "" && s.Format != "ndjson" && s.Format != "json_array" {
			add(problem(path+".format", "%q: want ndjson or json_array", s.Format))
		}
	case "console":
	case "":
		add(problem(path+".type", "missing: want kafka, http or console"))
	default:
		add(problem(path+".type", "%q: want kafka, http or console", s.Type))
	}
}

// quoteURL quotes a URL for an error message, unless it may hold a secret:
// user info, a query, or anything that does not parse.
func quoteURL(raw string) string {
	if u, err := url.Parse(raw); err != nil || u.User != nil || u.RawQuery != "" {
		return "(redacted: it may hold a secret)"
	}
	return fmt.Sprintf("%q", raw)
}

// envelopeFields are the names outboxd's records give meaning to: an
// add_fields key may not take one (it would be silently shadowed, or shadow).
var envelopeFields = map[string]bool{
	"ts": true, "received_at": true, "host": true, "source": true, "record_id": true, "tls_client": true,
	"message": true, "message_base64": true, "truncated": true, "parse_error": true,
	"syslog_format": true, "facility": true, "severity": true, "app": true, "procid": true, "msgid": true,
	"structured_data": true, "path": true, "offset": true, "stream": true,
	"journal": true, "journal_base64": true, "otel": true, "severity_number": true, "severity_text": true,
}

var fieldNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$`)

// validateAddFields checks an input's add_fields keys.
func validateAddFields(path string, f map[string]string, add func(error)) {
	for _, k := range slices.Sorted(maps.Keys(f)) {
		switch {
		case envelopeFields[k]:
			add(problem(path+"."+k, "is an envelope field outboxd sets; choose another name (site, env, ...)"))
		case !fieldNameRE.MatchString(k):
			add(problem(path+"."+k, "want a name of letters, digits, _ . - (at most 64, not starting with a digit)"))
		}
	}
}
