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

func (s Sink) validate(path string, add func(error)) {
	if s.WhenFull != "" && !slices.Contains([]string{"block", "drop_newest", "drop_oldest"}, s.WhenFull) {
		add(problem(path+".when_full", "%q: want block, drop_newest or drop_oldest", s.WhenFull))
	}
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
