package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
)

var sinkNameRE = regexp.MustCompile(`^[A-Za-z0-9_]{1,58}$`)

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
		for _, s := range r.Sinks {
			if _, ok := c.Sinks[s]; !ok {
				add(problem(path+".sinks", "no sink named %q", s))
			}
		}
		for _, src := range r.Sources {
			if src != "http" && src != "syslog" {
				add(problem(path+".sources", "%q: want http or syslog", src))
			}
		}
	}
	return errs
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
		case err != nil || (u.Scheme != "udp" && u.Scheme != "tcp" && u.Scheme != "unix"):
			add(problem(path, "%q: want udp://host:port, tcp://host:port or unix:///path", s.Listen))
		case u.Scheme == "unix" && u.Path == "":
			add(problem(path, "%q: a unix socket needs a path", s.Listen))
		case u.Scheme != "unix" && u.Port() == "":
			add(problem(path, "%q: want a port", s.Listen))
		default:
			claim(path, s.Listen)
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

// minMemoryBudget: a budget must hold the largest syslog record (64 KiB
// and its envelope) and an HTTP request's first buffer, with room to spare.
const minMemoryBudget = 1 << 20

func (in Ingest) validate(add func(error)) {
	if in.MemoryBudget != 0 && in.MemoryBudget < minMemoryBudget {
		add(problem("ingest.memory_budget", "%d bytes: at least 1MiB", in.MemoryBudget))
	}
}

func (s SyslogIngest) validate(path string, add func(error)) {
	tcp, unix := strings.HasPrefix(s.Listen, "tcp://"), strings.HasPrefix(s.Listen, "unix://")
	if s.MaxConnections < 0 {
		add(problem(path+".max_connections", "%d is negative", s.MaxConnections))
	}
	if s.IdleTimeout < 0 {
		add(problem(path+".idle_timeout", "%v is negative", s.IdleTimeout))
	}
	if (s.MaxConnections != 0 || s.IdleTimeout != 0) && !tcp {
		add(problem(path, "max_connections and idle_timeout apply to tcp:// only"))
	}
	if s.SocketMode > 0o777 {
		add(problem(path+".socket_mode", "%d: want permission bits in octal, such as 0666 (YAML reads 666 as decimal)", s.SocketMode))
	}
	if s.SocketMode != 0 && !unix {
		add(problem(path+".socket_mode", "applies to unix:// only"))
	}
}

func (s Sink) validate(path string, add func(error)) {
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
			add(problem(path+".url", "%q: want http(s)://host/path", s.URL))
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
