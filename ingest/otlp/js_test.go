package otlp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outboxd/outboxd/ingest"
)

// TestJSExport: the OpenTelemetry JS SDK (sdk-logs with the http/json and
// the http/protobuf exporters, testdata/otlp-js) exports thousands of
// records, plain and gzipped; every one is in the outbox with the mapping.
func TestJSExport(t *testing.T) {
	dir := jsPackage(t)
	const n = 5000
	for _, exp := range []string{"json", "proto"} {
		for _, comp := range []string{"none", "gzip"} {
			t.Run(fmt.Sprintf("exporter-logs-otlp-%s, compression %s: %d records, each stored with resource, typed attributes, trace context and body", exp, comp, n), func(t *testing.T) {
				q := openQueue(t, 0)
				h := NewHTTP(Config{Host: "edge-1"}, ingest.QueueAppender{Queue: q})
				// Each request's content type and encoding, to show that the
				// exporter sent what it was asked to.
				var mu sync.Mutex
				sent := map[string]int{}
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					mu.Lock()
					sent[r.Header.Get("Content-Type")+", encoding "+r.Header.Get("Content-Encoding")]++
					mu.Unlock()
					h.ServeHTTP(w, r)
				}))
				defer srv.Close()
				url := srv.URL + "/v1/logs"
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
				defer cancel()
				cmd := exec.CommandContext(ctx, "node", "export.mjs", exp, url, strconv.Itoa(n), comp)
				cmd.Dir = dir
				var stdout, stderr bytes.Buffer
				cmd.Stdout, cmd.Stderr = &stdout, &stderr
				if err := cmd.Run(); err != nil {
					t.Fatalf("node export.mjs: %v\nstdout: %s\nstderr: %s", err, stdout.Bytes(), stderr.Bytes())
				}
				if want := fmt.Sprintf(`{"exported":%d,"failed":0,"errors":[]}`, n); strings.TrimSpace(stdout.String()) != want {
					t.Fatalf("export.mjs printed %q, want %q", stdout.Bytes(), want)
				}
				ct := map[string]string{"json": ctJSON, "proto": ctProto}[exp]
				enc := map[string]string{"none": "", "gzip": "gzip"}[comp]
				mu.Lock()
				if len(sent) != 1 || sent[ct+", encoding "+enc] < n/512 {
					t.Fatalf("requests by content type and encoding: %v; want only %s, encoding %q", sent, ct, enc)
				}
				mu.Unlock()
				items, err := q.RecvBatch(context.Background(), 2*n)
				if err != nil {
					t.Fatal(err)
				}
				if len(items) != n || h.Accepted.Load() != n {
					t.Fatalf("stored %d, accepted %d, want %d", len(items), h.Accepted.Load(), n)
				}
				seen := make([]bool, n)
				for _, it := range items {
					i := checkJSRecord(t, it)
					if seen[i] {
						t.Fatalf("record %d stored twice", i)
					}
					seen[i] = true
				}
			})
		}
	}
}

// jsRecord is a stored record, decoded with the types the mapping promises.
type jsRecord struct {
	Source         string `json:"source"`
	Host           string `json:"host"`
	TS             string `json:"ts"`
	Message        string `json:"message"`
	SeverityNumber int    `json:"severity_number"`
	SeverityText   string `json:"severity_text"`
	Otel           struct {
		Attributes json.RawMessage   `json:"attributes"`
		Resource   map[string]string `json:"resource"`
		Scope      map[string]string `json:"scope"`
		TraceID    *string           `json:"trace_id"`
		SpanID     *string           `json:"span_id"`
		Flags      *int              `json:"flags"`
		EventName  string            `json:"event_name"`
	} `json:"otel"`
}

// jsResource is the resource export.mjs gives its LoggerProvider (the SDK
// adds nothing to a resource it is given).
var jsResource = map[string]string{"host.name": "app-js", "service.name": "checkout-js"}

// checkJSRecord checks one stored record against what export.mjs emitted
// as record i, and returns i.
func checkJSRecord(t *testing.T, item []byte) int {
	t.Helper()
	var r jsRecord
	if err := json.Unmarshal(item, &r); err != nil {
		t.Fatalf("stored record %s: %v", item, err)
	}
	var idx struct{ I int }
	if err := json.Unmarshal(r.Otel.Attributes, &idx); err != nil {
		t.Fatalf("stored record %s: attributes: %v", item, err)
	}
	i := idx.I
	fail := func(what string, got, want any) {
		t.Helper()
		t.Fatalf("record %d: %s %v, want %v\n%s", i, what, got, want, item)
	}
	var msg string
	switch i % 5 {
	case 0:
		msg = fmt.Sprintf("order %d", i)
	case 1:
		msg = fmt.Sprintf(`{"order":%d,"state":"paid","tags":["a","b"]}`, i)
	case 2:
		msg = fmt.Sprintf(`[%d,"x",true]`, i)
	case 3:
		msg = strconv.Itoa(i)
	case 4:
		msg = base64.StdEncoding.EncodeToString([]byte{0, 1, byte(i % 256)})
	}
	// Ints stay ints, doubles doubles, and the order is the SDK's.
	attrs := fmt.Sprintf(`{"i":%d,"ratio":%d.5,"even":%t,"user":"u-%d","tags":["t","%d"],"ctx":{"shard":%d,"region":"eu"}}`,
		i, i, i%2 == 0, i, i, i%7)
	ts := time.Date(2026, 12, 2, 10, 0, 0, i*1000+7, time.UTC).Format(time.RFC3339Nano)
	levels := []string{"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"}
	switch {
	case r.Source != "otlp":
		fail("source", r.Source, "otlp")
	case r.Message != msg:
		fail("message", r.Message, msg)
	case r.Host != "app-js":
		fail("host", r.Host, "app-js")
	case r.TS != ts:
		fail("ts", r.TS, ts)
	case r.SeverityNumber != 1+4*(i%6) || r.SeverityText != levels[i%6]:
		fail("severity", fmt.Sprint(r.SeverityNumber, " ", r.SeverityText), fmt.Sprint(1+4*(i%6), " ", levels[i%6]))
	case string(r.Otel.Attributes) != attrs:
		fail("attributes", string(r.Otel.Attributes), attrs)
	case fmt.Sprint(r.Otel.Resource) != fmt.Sprint(jsResource):
		fail("resource", r.Otel.Resource, jsResource)
	case len(r.Otel.Scope) != 2 || r.Otel.Scope["name"] != "shop-js" || r.Otel.Scope["version"] != "1.4.2":
		fail("scope", r.Otel.Scope, "name shop-js, version 1.4.2")
	case r.Otel.EventName != "order.event":
		fail("event_name", r.Otel.EventName, "order.event")
	case r.Otel.Flags == nil:
		fail("flags", "none", "a number")
	}
	if i%10 == 9 { // no trace context
		if r.Otel.TraceID != nil || r.Otel.SpanID != nil || *r.Otel.Flags != 0 {
			fail("trace context", string(item), "none")
		}
		return i
	}
	tid := fmt.Sprintf("4bf92f3577b34da6a3ce929d%08x", i)
	sid := fmt.Sprintf("00f067aa%08x", i)
	flags := 0
	if i%2 == 0 {
		flags = 1
	}
	if r.Otel.TraceID == nil || *r.Otel.TraceID != tid || r.Otel.SpanID == nil || *r.Otel.SpanID != sid || *r.Otel.Flags != flags {
		fail("trace context", string(item), fmt.Sprintf("trace_id %s, span_id %s, flags %d", tid, sid, flags))
	}
	return i
}

// jsPackage returns a folder with testdata/otlp-js's script and its
// packages installed by `npm ci` from package-lock.json. The install is
// kept in the user's cache, named by the package files' hash, so that it
// is made once and never goes stale; the repository gets no node_modules.
// The test skips only where node or npm is missing or node is older than
// 20.6.
func jsPackage(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (Debian: apt-get install nodejs npm; .ci/run installs them): the JS SDK test needs it", tool)
		}
	}
	out, err := exec.Command("node", "--version").Output()
	if err != nil {
		t.Fatalf("node --version: %v", err)
	}
	v := strings.TrimSpace(string(out))
	var major, minor int
	if _, err := fmt.Sscanf(v, "v%d.%d", &major, &minor); err != nil {
		t.Fatalf("node --version printed %q", v)
	}
	// The 0.223.x SDK line declares ^18.19.0 || >=20.6.0; it is tested here
	// on Node 20 only (Debian bookworm's nodejs is 18: the test skips).
	if major < 20 || major == 20 && minor < 6 {
		t.Skipf("node %s is older than 20.6, the oldest Node this test runs the OpenTelemetry JS SDK 0.223.x on", v)
	}
	src := filepath.Join("testdata", "otlp-js")
	sum := sha256.New()
	files := map[string][]byte{}
	for _, name := range []string{"package.json", "package-lock.json", "export.mjs"} {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		files[name] = b
		if name != "export.mjs" { // the script is copied anew each run
			sum.Write(b)
		}
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = t.TempDir()
	}
	dir := filepath.Join(cache, "outboxd", "otlp-js-"+hex.EncodeToString(sum.Sum(nil))[:16])
	if _, err := os.Stat(filepath.Join(dir, "node_modules")); err != nil {
		// Install into a fresh folder and move it in place whole: an
		// interrupted install leaves no half folder for the next run.
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			t.Fatal(err)
		}
		tmp, err := os.MkdirTemp(filepath.Dir(dir), "install-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(tmp)
		for name, b := range files {
			if err := os.WriteFile(filepath.Join(tmp, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
		cmd.Dir = tmp
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm ci in a copy of %s: %v\n%s", src, err, out)
		}
		if err := os.Rename(tmp, dir); err != nil {
			if _, statErr := os.Stat(filepath.Join(dir, "node_modules")); statErr != nil { // not another run's install
				t.Fatal(err)
			}
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "export.mjs"), files["export.mjs"], 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}
