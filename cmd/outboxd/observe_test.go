package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

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
max_disk_bytes: 256MiB
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
	ID      int                      `json:"id"`
	Type    string                   `json:"type"`
	Title   string                   `json:"title"`
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

// promServer is a real Prometheus (Debian's package) scraping one outboxd
// every second and evaluating rules every second.
type promServer struct {
	url  string
	proc *daemonProc // the process and its stderr, kept as the daemon's are
}

// startPrometheus runs prometheus on a temporary config that scrapes target
// and loads rules.
func startPrometheus(t *testing.T, target, rules string) *promServer {
	t.Helper()
	bin := needTool(t, "prometheus")
	dir := t.TempDir()
	port := freePort(t)
	cfg := writeConfig(t, filepath.Join(dir, "prometheus.yml"), fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: outboxd
    static_configs:
      - targets: [%q]
`, rules, target))
	p := &promServer{url: fmt.Sprintf("http://127.0.0.1:%d", port), proc: &daemonProc{done: make(chan error, 1)}}
	p.proc.cmd = exec.Command(bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port))
	p.proc.cmd.Stderr = p.proc
	if err := p.proc.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.proc.done <- p.proc.cmd.Wait() }()
	t.Cleanup(func() { p.proc.cmd.Process.Kill(); <-p.proc.done })
	waitUntilOr(t, "prometheus to be ready", func() bool {
		resp, err := http.Get(p.url + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, func() string { return lastLines(p.proc.log(), 5) })
	return p
}

// get decodes the data of a Prometheus HTTP API answer into v.
func (p *promServer) get(t *testing.T, path string, query url.Values, v any) {
	t.Helper()
	resp, err := http.Get(p.url + path + "?" + query.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Status != "success" {
		t.Fatalf("%s %v: %v %s %s", path, query, err, body.Status, body.Error)
	}
	if err := json.Unmarshal(body.Data, v); err != nil {
		t.Fatal(err)
	}
}

// series is how many series an instant query returns.
func (p *promServer) series(t *testing.T, expr string) int {
	t.Helper()
	var data struct {
		Result []json.RawMessage `json:"result"`
	}
	p.get(t, "/api/v1/query", url.Values{"query": {expr}}, &data)
	return len(data.Result)
}

type promAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"`
}

// alert returns the active alert of that name for sink, if there is one.
func (p *promServer) alert(t *testing.T, name, sink string) (promAlert, bool) {
	t.Helper()
	var data struct {
		Alerts []promAlert `json:"alerts"`
	}
	p.get(t, "/api/v1/alerts", nil, &data)
	for _, a := range data.Alerts {
		if a.Labels["alertname"] == name && a.Labels["sink"] == sink {
			return a, true
		}
	}
	return promAlert{}, false
}

func TestObservePrometheus(t *testing.T) {
	t.Run("a real Prometheus scraping a real daemon: every dashboard query has data, the sink-failing alert fires in an outage and resolves after", func(t *testing.T) {
		needTool(t, "prometheus")
		// The shipped rules wait minutes (for: 5m); this copy waits 2s, so
		// that the test takes seconds. The expressions are the shipped ones.
		b, err := os.ReadFile(alertRules)
		if err != nil {
			t.Fatal(err)
		}
		short := regexp.MustCompile(`(?m)^(\s+for: )\d+m$`).ReplaceAll(b, []byte("${1}2s"))
		if bytes.Equal(short, b) {
			t.Fatal("no for: durations to shorten in the rules")
		}
		rules := writeConfig(t, filepath.Join(t.TempDir(), "outboxd-alerts.yml"), string(short))

		f := startFullDaemon(t, "")
		f.coll.on.Store(true)
		instance := fmt.Sprintf("127.0.0.1:%d", f.adminPort)
		prom := startPrometheus(t, instance, rules)

		// Load: a batch of records every 100 ms until the test ends.
		stop, wg := make(chan struct{}), sync.WaitGroup{}
		defer func() { close(stop); wg.Wait() }()
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				body := strings.NewReader(fmt.Sprintf("{\"message\":\"load-%d\"}\n{\"message\":\"load-%d-b\"}\n", i, i))
				if resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/v1/logs", f.httpPort), "application/x-ndjson", body); err == nil {
					resp.Body.Close()
				}
			}
		})
		waitUntilOr(t, "Prometheus to scrape the daemon and see records delivered", func() bool {
			return prom.series(t, fmt.Sprintf(`increase(outboxd_forwarded_records_total{instance=%q}[10s]) > 0`, instance)) == 1
		}, func() string { return lastLines(prom.proc.log(), 5) })

		start := time.Now()
		f.coll.on.Store(false) // the collector answers 503
		var firing promAlert
		waitUntil(t, "OutboxdSinkFailing to fire during the outage", func() bool {
			a, ok := prom.alert(t, "OutboxdSinkFailing", "collector")
			firing = a
			return ok && a.State == "firing"
		})
		fired := time.Since(start)
		if want := "outboxd on " + instance + ": sink collector has been failing for "; !strings.HasPrefix(firing.Annotations["summary"], want) {
			t.Errorf("summary %q, want it to start %q", firing.Annotations["summary"], want)
		}
		f.coll.on.Store(true)
		start = time.Now()
		waitUntil(t, "OutboxdSinkFailing to resolve after the outage", func() bool {
			_, ok := prom.alert(t, "OutboxdSinkFailing", "collector")
			return !ok
		})
		t.Logf("fired %s after the outage began (for: 2s), resolved %s after it ended", fired.Round(100*time.Millisecond), time.Since(start).Round(100*time.Millisecond))

		var hosts []string
		prom.get(t, "/api/v1/label/instance/values", url.Values{"match[]": {"outboxd_data_dir_avail_bytes"}}, &hosts)
		if !slices.Contains(hosts, instance) {
			t.Errorf("the host selector's query gives %v, not %s", hosts, instance)
		}
		d := readDashboard(t)
		n := 0
		for _, p := range d.Panels {
			for _, q := range p.Targets {
				expr := strings.NewReplacer("$instance", instance, "$__rate_interval", "10s").Replace(q.Expr)
				if prom.series(t, expr) == 0 {
					t.Errorf("panel %q query %s has no data: %s", p.Title, q.RefID, expr)
				}
				n++
			}
		}
		t.Logf("%d dashboard queries, each with data", n)
	})
}

func TestObserveDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounts a tmpfs: needs root")
	}
	t.Run("outboxd_outbox_disk_full is 1 while the disk is full and 0 once records are taken again; the space gauges see the tmpfs", func(t *testing.T) {
		dir := t.TempDir()
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", dir).CombinedOutput(); err != nil {
			t.Skipf("cannot mount a tmpfs: %v %s", err, out)
		}
		t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
		coll := &switchable{}
		srv := newServer(coll)
		defer srv.Close()
		httpPort, adminPort := freePort(t), freePort(t)
		cfg := writeConfig(t, filepath.Join(t.TempDir(), "config.yaml"), fmt.Sprintf(`data_dir: %s
ingest:
  http:
    listen: 127.0.0.1:%d
sinks:
  collector: {type: http, url: %s, linger: 10ms, retry: {initial: 50ms, max: 200ms}}
admin:
  listen: 127.0.0.1:%d
`, filepath.Join(dir, "data"), httpPort, srv.URL, adminPort))
		startDaemon(t, cfg)
		// 48 MiB: the outbox keeps an 8 MiB reserve file and takes records
		// again only once twice that is free.
		if size := metric(t, adminPort, "outboxd_data_dir_size_bytes"); size != 48<<20 {
			t.Errorf("outboxd_data_dir_size_bytes = %v, want the tmpfs's 48 MiB", size)
		}
		availBefore := metric(t, adminPort, "outboxd_data_dir_avail_bytes")
		if got := metric(t, adminPort, "outboxd_outbox_disk_full"); got != 0 {
			t.Fatalf("outboxd_outbox_disk_full = %v before any record", got)
		}
		var body strings.Builder
		for i := range 100 {
			fmt.Fprintf(&body, "{\"message\":\"%d %s\"}\n", i, strings.Repeat("x", 8000))
		}
		status := 0
		for i := 0; i < 100 && status != http.StatusInsufficientStorage; i++ {
			resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/v1/logs", httpPort), "application/x-ndjson", strings.NewReader(body.String()))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			status = resp.StatusCode
		}
		if status != http.StatusInsufficientStorage {
			t.Fatalf("100 posts of 800 KB into a 48 MiB tmpfs, and no 507")
		}
		if got := metric(t, adminPort, "outboxd_outbox_disk_full"); got != 1 {
			t.Errorf("outboxd_outbox_disk_full = %v after a 507, want 1", got)
		}
		if avail := metric(t, adminPort, "outboxd_data_dir_avail_bytes"); !(avail >= 0 && avail < availBefore/2) {
			t.Errorf("outboxd_data_dir_avail_bytes = %v on a full disk, %v before", avail, availBefore)
		}
		coll.on.Store(true)
		waitUntil(t, "the backlog to drain", func() bool { return metric(t, adminPort, `outboxd_queue_records{sink="collector"}`) == 0 })
		// The outbox rebuilds its reserve (and takes records again) after a
		// commit that deleted records, at most once a second, or when a write
		// comes: a drain that ends within that second leaves it refusing until
		// the next write. So write until one is taken.
		waitUntil(t, "a write to be taken after the drain", func() bool {
			resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/v1/logs", httpPort), "application/x-ndjson", strings.NewReader("{\"message\":\"after\"}\n"))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			time.Sleep(100 * time.Millisecond)
			return resp.StatusCode == http.StatusAccepted
		})
		if got := metric(t, adminPort, "outboxd_outbox_disk_full"); got != 0 {
			t.Errorf("outboxd_outbox_disk_full = %v once records are taken again, want 0", got)
		}
	})
}
