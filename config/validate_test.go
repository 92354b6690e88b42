package config

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestRouteSinksTwice(t *testing.T) {
	t.Run("a route that lists a sink twice is refused", func(t *testing.T) {
		_, err := Parse([]byte("sinks:\n  a:\n    type: console\nroutes:\n  - sinks: [a, a]\n"))
		if err == nil || !strings.Contains(err.Error(), `routes[0].sinks: "a" is listed twice`) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestSizesFitInt(t *testing.T) {
	// 3 GiB is more than a 32-bit int holds: int(Size) wrapped it to a
	// negative limit on 32-bit ARM.
	yaml := func(key string) []byte {
		return fmt.Appendf(nil, "ingest:\n  http:\n    listen: 127.0.0.1:8080\n%s", map[string]string{
			"ingest.http.max_record_bytes": "    max_record_bytes: 3GiB\nsinks:\n  c:\n    type: console\n",
			"sinks.c.max_message_bytes":    "sinks:\n  c:\n    type: kafka\n    brokers: [k:9092]\n    topic: t\n    max_message_bytes: 3GiB\n",
			"sinks.c.batch_bytes":          "sinks:\n  c:\n    type: console\n    batch_bytes: 3GiB\n",
		}[key])
	}
	keys := []string{"ingest.http.max_record_bytes", "sinks.c.max_message_bytes", "sinks.c.batch_bytes"}
	t.Run("a size that becomes an int is refused above a 32-bit platform's int", func(t *testing.T) {
		maxInt = math.MaxInt32
		t.Cleanup(func() { maxInt = math.MaxInt })
		for _, key := range keys {
			_, err := Parse(yaml(key))
			if err == nil || !strings.Contains(err.Error(), key+": 3221225472 bytes is more than this platform can hold") {
				t.Errorf("%s = 3GiB with a 32-bit int: err = %v", key, err)
			}
		}
	})
	t.Run("the same sizes are taken where an int holds them", func(t *testing.T) {
		if strconv.IntSize < 64 {
			t.Skip("a 32-bit platform")
		}
		for _, key := range keys {
			if _, err := Parse(yaml(key)); err != nil {
				t.Errorf("%s = 3GiB with a 64-bit int: %v", key, err)
			}
		}
	})
	t.Run("a negative size is refused", func(t *testing.T) {
		_, err := Parse([]byte("max_disk_bytes: -1\nsinks:\n  c:\n    type: console\n    batch_bytes: -5\n"))
		if err == nil || !strings.Contains(err.Error(), "max_disk_bytes: -1 is negative") || !strings.Contains(err.Error(), "sinks.c.batch_bytes: -5 is negative") {
			t.Fatalf("err = %v", err)
		}
	})
}

func warnings(t *testing.T, yaml string) string {
	t.Helper()
	c, err := Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, w := range c.Warnings() {
		lines = append(lines, w.Error())
	}
	return strings.Join(lines, "\n")
}

// privateDir is a temporary directory for the owner alone (t.TempDir's is
// 0755).
func privateDir(t *testing.T) string {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestWarnings(t *testing.T) {
	const inputs = "data_dir: %s\ningest:\n  http:\n    listen: 127.0.0.1:8080\n  syslog:\n    - listen: udp://127.0.0.1:5514\nsinks:\n  c:\n    type: console\n"
	t.Run("an input that no route takes is warned about", func(t *testing.T) {
		w := warnings(t, fmt.Sprintf(inputs, privateDir(t))+"routes:\n  - sources: [http]\n    sinks: [c]\n")
		if !strings.Contains(w, "ingest.syslog: no route takes records from syslog") || strings.Contains(w, "ingest.http") {
			t.Fatalf("warnings:\n%s", w)
		}
	})
	t.Run("inputs that routes take, or no routes at all, are not warned about", func(t *testing.T) {
		for _, routes := range []string{"", "routes:\n  - sinks: [c]\n", "routes:\n  - sources: [syslog]\n    sinks: [c]\n  - sources: [http]\n    sinks: [c]\n"} {
			if w := warnings(t, fmt.Sprintf(inputs, privateDir(t))+routes); w != "" {
				t.Errorf("routes %q: warnings:\n%s", routes, w)
			}
		}
	})
	t.Run("a data_dir readable by others is warned about", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if w := warnings(t, fmt.Sprintf(inputs, dir)); !strings.Contains(w, "data_dir: "+dir+" is readable by others (mode 0755)") {
			t.Fatalf("warnings:\n%s", w)
		}
		if err := os.Chmod(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if w := warnings(t, fmt.Sprintf(inputs, dir)); w != "" {
			t.Fatalf("data_dir 0700: warnings:\n%s", w)
		}
	})
}

func TestParseSizeOverflow(t *testing.T) {
	t.Run("a size past int64 is refused, not wrapped", func(t *testing.T) {
		for _, in := range []string{"9000000TiB", "9223372036854775807KiB"} {
			if got, err := ParseSize(in); err == nil {
				t.Errorf("ParseSize(%q) = %d, accepted", in, got)
			}
		}
		if got, err := ParseSize("8388607TiB"); err != nil || got != 8388607<<40 {
			t.Errorf("ParseSize(8388607TiB) = %d, %v", got, err)
		}
	})
}
