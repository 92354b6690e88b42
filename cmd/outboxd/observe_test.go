package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/outboxd/outboxd/ingest/tlsconf/tlstest"
)

// The monitoring assets shipped with outboxd, relative to this package.
var (
	alertRules = filepath.Join("..", "..", "systemd", "prometheus", "outboxd-alerts.yml")
	alertTests = filepath.Join("..", "..", "systemd", "prometheus", "outboxd-alerts_test.yml")
)

// needTool returns the path of a program from Debian's prometheus package,
// or skips the test saying how to get it.
func needTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed (apt-get install prometheus; .ci/run installs it)", name)
	}
	return path
}

// promtool runs promtool with args and fails the test on a non-zero exit.
func promtool(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(needTool(t, "promtool"), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// alertNames lists the alerts a rules file defines, in order.
func alertNames(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range regexp.MustCompile(`(?m)^\s*- alert: (\w+)$`).FindAllStringSubmatch(string(b), -1) {
		names = append(names, m[1])
	}
	return names
}

func TestObserveRules(t *testing.T) {
	names := alertNames(t, alertRules)
	if len(names) == 0 {
		t.Fatalf("no alerts in %s", alertRules)
	}
	t.Run("promtool check rules passes", func(t *testing.T) {
		out := promtool(t, "check", "rules", alertRules)
		if want := "SUCCESS: " + strconv.Itoa(len(names)) + " rules found"; !strings.Contains(out, want) {
			t.Errorf("promtool check rules says %q, want %q", out, want)
		}
	})
	t.Run("promtool test rules passes, with a test for every alert", func(t *testing.T) {
		promtool(t, "test", "rules", alertTests)
		b, err := os.ReadFile(alertTests)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if !strings.Contains(string(b), "alertname: "+n+"\n") {
				t.Errorf("%s has no unit test in %s", n, alertTests)
			}
		}
	})
	t.Run("README gives a runbook line for every alert", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if !regexp.MustCompile("(?m)^\\| `" + n + "` \\|").Match(b) {
				t.Errorf("README's alerts table has no row for %s", n)
			}
		}
	})
}

// fullDaemon runs outboxd with every input and a sink that answers 503
// until coll.on is set, so that every metric family is on /metrics.
type fullDaemon struct {
	d                   *daemonProc
	coll                *switchable
	httpPort, adminPort int
}

func startFullDaemon(t *testing.T, extra string) *fullDaemon {
	t.Helper()
	f := &fullDaemon{coll: &switchable{}, httpPort: freePort(t), adminPort: freePort(t)}
	srv := newServer(f.coll)
	t.Cleanup(srv.Close)
	ca := tlstest.NewCA(t, "observe-ca")
	server := ca.Server(t, "outboxd-1", tlstest.Options{})
	logs := t.TempDir()
	if err := os.WriteFile(filepath.Join(logs, "app.log"), []byte("one\ntwo\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, filepath.Join(t.TempDir(), "config.yaml"), fmt.Sprintf(`data_dir: %s
max_records: 100000
ingest:
  http:
    listen: 127.0.0.1:%d
  syslog:
    - listen: udp://127.0.0.1:%d
    - listen: tls://127.0.0.1:%d
      tls: {cert_file: %s, key_file: %s}
  files:
    - paths: [%s/*.log]
      read_from: beginning
  journal:
    read_from: end
  otlp:
    http: {listen: 127.0.0.1:%d}
    grpc: {listen: 127.0.0.1:%d}
sinks:
  collector:
    type: http
    url: %s
    linger: 10ms
    retry: {initial: 50ms, max: 200ms}
%sadmin:
  listen: 127.0.0.1:%d
`, t.TempDir(), f.httpPort, freePort(t), freePort(t), server.CertFile, server.KeyFile, logs, freePort(t), freePort(t),
		srv.URL, extra, f.adminPort))
	f.d = startDaemon(t, cfg)
	return f
}

// scrape returns the text of /metrics.
func scrape(t *testing.T, adminPort int) string {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", adminPort))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/metrics: %v %s", err, resp.Status)
	}
	return string(b)
}

func TestObserveMetricNames(t *testing.T) {
	t.Run("promtool check metrics finds nothing on a daemon with every input, and every metric admin.go defines is in the scrape", func(t *testing.T) {
		pt := needTool(t, "promtool")
		f := startFullDaemon(t, "")
		postLines(t, f.httpPort, "observe-%d", 5)
		waitUntil(t, "the files input to commit its two lines", func() bool {
			return metric(t, f.adminPort, `outboxd_ingest_records_total{endpoint="files"}`) == 2
		})
		text := scrape(t, f.adminPort)
		cmd := exec.Command(pt, "check", "metrics")
		cmd.Stdin = strings.NewReader(text)
		if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
		src, err := os.ReadFile("admin.go")
		if err != nil {
			t.Fatal(err)
		}
		names := regexp.MustCompile(`"(outboxd_[a-z_]+)"`).FindAllStringSubmatch(string(src), -1)
		if len(names) < 30 {
			t.Fatalf("found only %d metric names in admin.go", len(names))
		}
		for _, m := range names {
			if !strings.Contains(text, "\n# TYPE "+m[1]+" ") {
				t.Errorf("%s (admin.go) is not in the scrape that was checked", m[1])
			}
		}
	})
}

var dashboardFile = filepath.Join("..", "..", "systemd", "grafana", "outboxd-dashboard.json")

// dashboard is the part of Grafana's dashboard JSON the tests read.
type dashboard struct {
	Title         string `json:"title"`
	UID           string `json:"uid"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
	Panels []dashPanel `json:"panels"`
}

type dashPanel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

func TestObserveDashboard(t *testing.T) {
	t.Run("the dashboard is Grafana JSON whose every query selects by host and reads metrics admin.go defines", func(t *testing.T) {
		d := readDashboard(t)
		if d.Title == "" || d.UID == "" || d.SchemaVersion < 30 {
			t.Errorf("title %q, uid %q, schemaVersion %d", d.Title, d.UID, d.SchemaVersion)
		}
		vars := map[string]string{}
		for _, v := range d.Templating.List {
			vars[v.Name] = v.Type
		}
		if vars["instance"] != "query" || vars["datasource"] != "datasource" {
			t.Errorf("templating: %v, want a datasource and an instance (host) query variable", vars)
		}
		src, err := os.ReadFile("admin.go")
		if err != nil {
			t.Fatal(err)
		}
		ids, rows, queries := map[int]bool{}, 0, 0
		for _, p := range d.Panels {
			if ids[p.ID] {
				t.Errorf("panel id %d twice", p.ID)
			}
			ids[p.ID] = true
			if p.GridPos.W == 0 || p.GridPos.H == 0 || p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("panel %q: gridPos %+v", p.Title, p.GridPos)
			}
			if p.Type == "row" {
				rows++
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, q := range p.Targets {
				queries++
				if !strings.Contains(q.Expr, `instance=~"$instance"`) {
					t.Errorf("panel %q %s does not select by host: %s", p.Title, q.RefID, q.Expr)
				}
				for _, m := range regexp.MustCompile(`outboxd_[a-z_]+`).FindAllString(q.Expr, -1) {
					base := regexp.MustCompile(`_(bucket|sum|count)$`).ReplaceAllString(m, "")
					if !strings.Contains(string(src), `"`+base+`"`) {
						t.Errorf("panel %q reads %s, which admin.go does not define", p.Title, m)
					}
				}
			}
		}
		t.Logf("%d rows, %d panels, %d queries", rows, len(d.Panels)-rows, queries)
	})
}
