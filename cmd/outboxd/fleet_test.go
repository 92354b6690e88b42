package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAddFieldsEveryInput: add_fields (with ${VAR} from the environment) go
// on the records of each input that names them, and only on those.
func TestAddFieldsEveryInput(t *testing.T) {
	t.Setenv("OUTBOXD_TEST_SITE", "berlin-7")
	c := &collector{}
	srv := newServer(c)
	defer srv.Close()
	logDir := t.TempDir()
	httpPort, syslogPort, otlpPort := freePort(t), freePort(t), freePort(t)
	cfg := writeConfig(t, filepath.Join(t.TempDir(), "config.yaml"), fmt.Sprintf(`data_dir: %s
ingest:
  http:
    listen: 127.0.0.1:%d
    add_fields: {site: "${OUTBOXD_TEST_SITE}", input: http}
  syslog:
    - listen: tcp://127.0.0.1:%d
      add_fields: {site: "${OUTBOXD_TEST_SITE}", input: syslog}
  files:
    - paths: [%s/*.log]
      rescan: 100ms
      add_fields: {site: "${OUTBOXD_TEST_SITE}", input: files}
  otlp:
    http: {listen: 127.0.0.1:%d, add_fields: {site: "${OUTBOXD_TEST_SITE}", input: otlp}}
sinks:
  collector: {type: http, url: %s, linger: 10ms}
routes:
  - sinks: [collector]
`, t.TempDir(), httpPort, syslogPort, logDir, otlpPort, srv.URL))
	d := startDaemon(t, cfg)
	postLines(t, httpPort, "via-http-%d", 1)
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/v1/logs", httpPort), "application/x-ndjson", strings.NewReader(`{"message":"own-site","site":"mine"}`+"\n"))
	if err != nil || resp.StatusCode != 202 {
		t.Fatalf("post: %v %v", resp, err)
	}
	resp.Body.Close()
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", syslogPort))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "<13>1 2026-12-02T12:00:00Z h app - - - via-syslog\n")
	conn.Close()
	os.WriteFile(filepath.Join(logDir, "a.log"), []byte("via-files\n"), 0o644)
	resp, err = http.Post(fmt.Sprintf("http://127.0.0.1:%d/v1/logs", otlpPort), "application/json",
		strings.NewReader(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"via-otlp"}}]}]}]}`))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("otlp post: %v %v", resp, err)
	}
	resp.Body.Close()
	for _, in := range []string{"http", "syslog", "files", "otlp"} {
		want := "via-" + in
		r := c.record(t, want)
		if r["site"] != "berlin-7" || r["input"] != in {
			t.Errorf("%s: site %v, input %v", want, r["site"], r["input"])
		}
	}
	if r := c.record(t, "own-site"); r["site"] != "mine" || r["input"] != "http" {
		t.Errorf("a record's own site did not win: %v", r)
	}
	if err := d.stop(t); err != nil {
		t.Fatalf("stop: %v\n%s", err, d.log())
	}
}
