package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestReadyzAcceptFailing(t *testing.T) {
	t.Run("out of file descriptors: syslog TCP keeps accepting once it can, and /readyz says 503 meanwhile", func(t *testing.T) {
		if _, err := exec.LookPath("prlimit"); err != nil {
			t.Skip("util-linux prlimit is not installed")
		}
		dir := t.TempDir()
		tcpPort, adminPort := freePort(t), freePort(t)
		cfgPath := filepath.Join(dir, "config.yaml")
		cfg := fmt.Sprintf("data_dir: %s\ningest:\n  syslog:\n    - listen: tcp://127.0.0.1:%d\nsinks:\n  c:\n    type: console\n"+
			"admin:\n  listen: 127.0.0.1:%d\n", filepath.Join(dir, "data"), tcpPort, adminPort)
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		d := startDaemon(t, cfgPath)
		pid := d.cmd.Process.Pid
		// One kept-alive admin connection: /readyz must answer while the
		// daemon cannot open a descriptor.
		admin := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
		readyz := func() (int, string) {
			resp, err := admin.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", adminPort))
			if err != nil {
				return 0, err.Error()
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		if code, body := readyz(); code != 200 {
			t.Fatalf("readyz before: %d %s", code, body)
		}
		fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if err != nil {
			t.Fatal(err)
		}
		limit := func(n string) {
			t.Helper()
			if out, err := exec.Command("prlimit", "--pid", strconv.Itoa(pid), "--nofile="+n+":").CombinedOutput(); err != nil {
				t.Fatalf("prlimit: %v: %s", err, out)
			}
		}
		limit(strconv.Itoa(len(fds) + 2)) // two more connections, then EMFILE
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for range 4 {
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", tcpPort))
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		waitUntil(t, "readyz to say accept fails", func() bool {
			code, body := readyz()
			return code == 503 && strings.Contains(body, "ingest_errors") && strings.Contains(body, "too many open files")
		})
		limit("4096")
		var last string
		waitUntilOr(t, "readyz to be 200 again", func() bool { code, body := readyz(); last = body; return code == 200 },
			func() string {
				fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
				limits, _ := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
				ss, _ := exec.Command("ss", "-tanp", fmt.Sprintf("( sport = :%d or dport = :%d )", tcpPort, tcpPort)).CombinedOutput()
				return fmt.Sprintf("%s\n%d fds open; limits:\n%s\n%s\n%s", last, len(fds), limits, ss, lastLines(d.log(), 10))
			})
		fmt.Fprintf(conns[3], "<14>1 - h app - - - accepted late\n")
		want := fmt.Sprintf(`outboxd_ingest_records_total{endpoint="tcp://127.0.0.1:%d"} 1`, tcpPort)
		waitUntil(t, "the record of a connection accepted after EMFILE", func() bool { return strings.Contains(ingestMetrics(t, adminPort), want) })
		if err := d.stop(t); err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, lastLines(d.log(), 10))
		}
		for _, want := range []string{"syslog: accept failing; retrying", "syslog: accepting again"} {
			if !strings.Contains(d.log(), want) {
				t.Errorf("log lacks %q:\n%s", want, lastLines(d.log(), 10))
			}
		}
	})
}
