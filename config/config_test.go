package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestExamples(t *testing.T) {
	files, _ := filepath.Glob("../testdata/config/*.yaml")
	if len(files) < 4 {
		t.Fatalf("found %d example configs", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f)+" is valid", func(t *testing.T) {
			if _, err := ParseFile(f); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestDefault(t *testing.T) {
	t.Run("the embedded default listens on loopback and prints to the console", func(t *testing.T) {
		c, err := Default()
		if err != nil {
			t.Fatal(err)
		}
		if c.Ingest.HTTP.Listen != "127.0.0.1:8080" || len(c.Ingest.Syslog) != 2 || c.Sinks["console"].Type != "console" ||
			c.DataDir != "./outboxd-data" || c.Durability != "full" {
			t.Fatalf("default = %+v", c)
		}
	})
}

func TestIssueExample(t *testing.T) {
	t.Run("the pinned example is read as written, with ${VAR} expanded", func(t *testing.T) {
		t.Setenv("OUTBOXD_INGEST_TOKEN", "t0k3n")
		c, err := ParseFile("../testdata/config/issue-example.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if c.Ingest.HTTP.Token != "t0k3n" || c.MaxRecords != 5_000_000 || c.Sinks["main"].Compression != "zstd" ||
			len(c.Routes) != 2 || c.Routes[0].Sources[0] != "syslog" || c.Ingest.Syslog[2].Listen != "unix:///run/outboxd/syslog.sock" {
			t.Fatalf("config = %+v", c)
		}
	})
}

func TestEnvironmentOverrides(t *testing.T) {
	t.Run("OUTBOXD_ variables override the file, lists split on commas", func(t *testing.T) {
		t.Setenv("OUTBOXD_SINKS__MAIN__BROKERS", "a:9092,b:9092")
		t.Setenv("OUTBOXD_SINKS__MAIN__SASL__PASSWORD", "from-env")
		t.Setenv("OUTBOXD_DURABILITY", "normal")
		c, err := ParseFile("../testdata/config/issue-example.yaml")
		if err != nil {
			t.Fatal(err)
		}
		m := c.Sinks["main"]
		if strings.Join(m.Brokers, ",") != "a:9092,b:9092" || m.SASL.Password != "from-env" || c.Durability != "normal" {
			t.Fatalf("main = %+v, durability %s", m, c.Durability)
		}
	})
}

// TestInvalid parses every config in testdata/config/invalid; each NAME.yaml
// has a NAME.want whose lines must all appear in the error.
func TestInvalid(t *testing.T) {
	files, _ := filepath.Glob("../testdata/config/invalid/*.yaml")
	if len(files) < 3 {
		t.Fatalf("found %d invalid configs", len(files))
	}
	for _, file := range files {
		t.Run(filepath.Base(file)+" is refused, naming each problem's key", func(t *testing.T) {
			want, err := os.ReadFile(strings.TrimSuffix(file, ".yaml") + ".want")
			if err != nil {
				t.Fatal(err)
			}
			_, err = ParseFile(file)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range strings.Split(strings.TrimSpace(string(want)), "\n") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]Size{"64MiB": 64 << 20, "10MB": 10_000_000, "512": 512, "1 GiB": 1 << 30, "2KiB": 2048} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "MiB", "-1", "1.5GiB", "10 mb"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
}

func TestDurations(t *testing.T) {
	c, err := Parse([]byte("sinks:\n  c:\n    type: console\n    linger: 250ms\n    retry:\n      max: 1m\nroutes:\n  - sinks: [c]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Sinks["c"].Linger != 250*time.Millisecond || c.Sinks["c"].Retry.Max != time.Minute {
		t.Fatalf("sink = %+v", c.Sinks["c"])
	}
}

// FuzzParse: any bytes are either a valid configuration or an error; never a
// panic.
func FuzzParse(f *testing.F) {
	for _, p := range []string{"../testdata/config/default.yaml", "../testdata/config/http-fanout.yaml", "../testdata/config/invalid/many-problems.yaml"} {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b)
		if err == nil && len(c.Validate()) != 0 {
			t.Fatal("Parse accepted an invalid configuration")
		}
	})
}

func TestHTTPSinkCredentials(t *testing.T) {
	const base = "sinks:\n  h:\n    type: http\n    url: %s\n%sroutes:\n  - sinks: [h]\n"
	t.Run("basic_auth takes its password from the environment", func(t *testing.T) {
		t.Setenv("COLLECTOR_PASSWORD", "s3cret")
		c, err := Parse(fmt.Appendf(nil, base, "https://collector.example.com/v1",
			"    basic_auth:\n      username: shipper\n      password: ${COLLECTOR_PASSWORD}\n"))
		if err != nil {
			t.Fatal(err)
		}
		if b := c.Sinks["h"].BasicAuth; b == nil || b.Username != "shipper" || b.Password != "s3cret" {
			t.Fatalf("basic_auth = %+v", b)
		}
	})
	t.Run("basic_auth without a username, or beside a bearer token, is refused", func(t *testing.T) {
		_, err := Parse(fmt.Appendf(nil, base, "https://collector.example.com/v1",
			"    bearer_token: t\n    basic_auth:\n      password: p\n"))
		if err == nil || !strings.Contains(err.Error(), "sinks.h.basic_auth.username") || !strings.Contains(err.Error(), "bearer_token is set too") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("an invalid URL's secrets are not quoted", func(t *testing.T) {
		_, err := Parse(fmt.Appendf(nil, base, "ftp://user:pa55word@host/x?token=t0ken", ""))
		if err == nil || !strings.Contains(err.Error(), "sinks.h.url") || strings.Contains(err.Error(), "pa55word") || strings.Contains(err.Error(), "t0ken") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("max_dlq_bytes has a default and can be set", func(t *testing.T) {
		c, err := Parse(fmt.Appendf(nil, base, "https://c/v1", ""))
		if err != nil || c.MaxDLQBytes != DefaultMaxDLQBytes {
			t.Fatalf("max_dlq_bytes = %d, %v", c.MaxDLQBytes, err)
		}
		c, err = Parse(append([]byte("max_dlq_bytes: 64MiB\n"), fmt.Appendf(nil, base, "https://c/v1", "")...))
		if err != nil || c.MaxDLQBytes != 64<<20 {
			t.Fatalf("max_dlq_bytes = %d, %v", c.MaxDLQBytes, err)
		}
	})
}

func TestIngestLimits(t *testing.T) {
	const base = "sinks:\n  c:\n    type: console\ningest:\n"
	t.Run("memory_budget, max_connections, idle_timeout and an octal socket_mode are read", func(t *testing.T) {
		t.Setenv("OUTBOXD_INGEST__MEMORY_BUDGET", "24MiB")
		c, err := Parse([]byte(base + "  syslog:\n    - listen: tcp://127.0.0.1:5514\n      max_connections: 16\n      idle_timeout: 30s\n" +
			"    - listen: unix:///run/outboxd/log.sock\n      socket_mode: 0660\n    - listen: unix:///run/outboxd/b.sock\n      socket_mode: \"0620\"\n"))
		if err != nil {
			t.Fatal(err)
		}
		s := c.Ingest.Syslog
		if c.Ingest.MemoryBudget != 24<<20 || s[0].MaxConnections != 16 || s[0].IdleTimeout != 30*time.Second ||
			s[1].SocketMode != 0o660 || s[2].SocketMode != 0o620 {
			t.Fatalf("ingest = %+v", c.Ingest)
		}
	})
	t.Run("bad values are refused, naming their keys", func(t *testing.T) {
		_, err := Parse([]byte(base + "  memory_budget: 64KiB\n  syslog:\n    - listen: udp://127.0.0.1:5514\n      max_connections: 3\n" +
			"    - listen: unix:///run/log.sock\n      socket_mode: 666\n    - listen: tcp://127.0.0.1:5515\n      socket_mode: 0600\n"))
		for _, want := range []string{"ingest.memory_budget: 65536 bytes", "ingest.syslog[0]: max_connections and idle_timeout apply to tcp:// and tls:// only",
			"ingest.syslog[1].socket_mode: 666: want permission bits in octal", "ingest.syslog[2].socket_mode: applies to unix:// only"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("error lacks %q: %v", want, err)
			}
		}
	})
}
