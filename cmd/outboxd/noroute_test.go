package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestUnroutedSyslog(t *testing.T) {
	t.Run("syslog records no route takes are discarded at once and counted; the connection is read on", func(t *testing.T) {
		dir := t.TempDir()
		tcpPort, adminPort := freePort(t), freePort(t)
		cfgPath := filepath.Join(dir, "config.yaml")
		cfg := fmt.Sprintf("data_dir: %s\ningest:\n  syslog:\n    - listen: tcp://127.0.0.1:%d\nsinks:\n  c:\n    type: console\n"+
			"routes:\n  - sources: [http]\n    sinks: [c]\nadmin:\n  listen: 127.0.0.1:%d\n", filepath.Join(dir, "data"), tcpPort, adminPort)
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		d := startDaemon(t, cfgPath)
		unrouted := func() int {
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", adminPort))
			if err != nil {
				return -1
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			m := regexp.MustCompile(`outboxd_ingest_unrouted_records_total\{[^}]*\} (\d+)`).FindSubmatch(b)
			if m == nil {
				return -1
			}
			n, _ := strconv.Atoi(string(m[1]))
			return n
		}
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", tcpPort))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		for i := 1; i <= 2; i++ {
			fmt.Fprintf(conn, "<14>1 - h app - - - n=%d\n", i)
			waitUntil(t, fmt.Sprintf("%d unrouted records", i), func() bool { return unrouted() == i })
		}
		if _, err := exec.LookPath("logger"); err == nil {
			out, err := exec.Command("logger", "--tcp", "--server", "127.0.0.1", "--port", strconv.Itoa(tcpPort), "from logger").CombinedOutput()
			if err != nil {
				t.Fatalf("logger: %v: %s", err, out)
			}
			waitUntil(t, "logger's record to be discarded", func() bool { return unrouted() == 3 })
		}
		if err := d.stop(t); err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, lastLines(d.log(), 10))
		}
		if n := strings.Count(d.log(), "no route takes source syslog"); n != 1 {
			t.Fatalf("logged %d times, want once:\n%s", n, d.log())
		}
		if strings.Contains(d.log(), "retrying") {
			t.Fatalf("unrouted records were retried:\n%s", d.log())
		}
	})
}
