package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func skipUnderRace(t *testing.T) {
	t.Helper()
	if raceEnabled {
		t.Skip("builds and installs packages; runs in the plain pass")
	}
}

// hostTarget is the release architecture of this machine.
func hostTarget(t *testing.T) string {
	t.Helper()
	switch runtime.GOARCH {
	case "amd64", "arm64":
		return runtime.GOARCH
	}
	t.Skipf("no release target for %s", runtime.GOARCH)
	return ""
}

func buildRelease(t *testing.T, out string, args ...string) {
	t.Helper()
	if err := run(context.Background(), append([]string{"-out", out}, args...), io.Discard); err != nil {
		t.Fatal(err)
	}
}

func sum(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(data))
}

func TestReproducible(t *testing.T) {
	skipUnderRace(t)
	t.Run("two builds of one commit, the second with an empty build cache, give the same bytes", func(t *testing.T) {
		arch := hostTarget(t)
		a, b := t.TempDir(), t.TempDir()
		buildRelease(t, a, "-version", "9.9.9", "-arch", arch)
		t.Setenv("GOCACHE", t.TempDir()) // nothing reused: a real second build
		buildRelease(t, b, "-version", "9.9.9", "-arch", arch)
		names := []string{"outboxd_9.9.9_linux_" + arch, "outboxd_9.9.9-1_" + arch + ".deb", "SHA256SUMS"}
		for _, name := range names {
			if sa, sb := sum(t, filepath.Join(a, name)), sum(t, filepath.Join(b, name)); sa != sb {
				t.Errorf("%s differs between the builds: %s vs %s", name, sa, sb)
			}
		}
		out, err := exec.Command(filepath.Join(a, names[0]), "version").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "outboxd 9.9.9 commit ") || strings.Contains(string(out), "unknown") {
			t.Fatalf("version: %v %s", err, out)
		}
		info, _ := os.Stat(filepath.Join(a, names[0]))
		t.Logf("sha256 %s, %.1f MiB", sum(t, filepath.Join(a, names[0])), float64(info.Size())/(1<<20))
	})
	t.Run("the arm binaries are static ELF files for their machine", func(t *testing.T) {
		dir := t.TempDir()
		buildRelease(t, dir, "-version", "9.9.9", "-arch", "arm64,arm7", "-packages=false")
		for name, want := range map[string]string{"arm64": "ARM aarch64", "arm7": "ARM, EABI5"} {
			out, err := exec.Command("file", filepath.Join(dir, "outboxd_9.9.9_linux_"+name)).CombinedOutput()
			if err != nil {
				t.Skipf("file(1): %v", err)
			}
			if !strings.Contains(string(out), want) || !strings.Contains(string(out), "statically linked") {
				t.Errorf("%s: %s", name, out)
			}
		}
	})
}

func TestRPM(t *testing.T) {
	skipUnderRace(t)
	if _, err := exec.LookPath("rpm"); err != nil {
		t.Skip("rpm is not installed (.ci/run installs it)")
	}
	t.Run("the rpm holds the files, marks the config noreplace, and carries the scripts", func(t *testing.T) {
		dir := t.TempDir()
		buildRelease(t, dir, "-version", "1.0.0", "-arch", "amd64")
		rpmFile := filepath.Join(dir, "outboxd-1.0.0-1.x86_64.rpm")
		rpm := func(args ...string) string {
			out, err := exec.Command("rpm", append(args, rpmFile)...).CombinedOutput()
			if err != nil {
				t.Fatalf("rpm %v: %v\n%s", args, err, out)
			}
			return string(out)
		}
		list := rpm("-qlp")
		for _, f := range append([]string{"/usr/bin/outboxd", "/usr/lib/systemd/system/outboxd.service", "/usr/lib/sysusers.d/outboxd.conf",
			"/usr/lib/tmpfiles.d/outboxd.conf", "/etc/outboxd/config.yaml"}, monitoringPaths()...) {
			if !strings.Contains(list, f+"\n") {
				t.Errorf("rpm -qlp lacks %s:\n%s", f, list)
			}
		}
		if conf := rpm("-qcp"); strings.TrimSpace(conf) != "/etc/outboxd/config.yaml" {
			t.Errorf("config files: %q", conf)
		}
		if dump := rpm("-qp", "--dump"); !strings.Contains(dump, "/usr/bin/outboxd ") || !strings.Contains(dump, " 0100755 ") {
			t.Errorf("the binary is not 0755:\n%s", dump)
		}
		scripts := rpm("-qp", "--scripts")
		for _, want := range []string{"postinstall scriptlet", "preuninstall scriptlet", "postuninstall scriptlet", "systemd-sysusers", "systemctl enable"} {
			if !strings.Contains(scripts, want) {
				t.Errorf("scripts lack %q:\n%s", want, scripts)
			}
		}
	})
}

// monitoringPaths are where the packages put the monitoring files.
func monitoringPaths() []string {
	var p []string
	for _, m := range monitoring {
		p = append(p, m.dst)
	}
	return p
}

func TestMonitoringFiles(t *testing.T) {
	skipUnderRace(t)
	t.Run("the release carries the rules and the dashboard as in the repository, in SHA256SUMS and in the .deb under /usr/share/outboxd", func(t *testing.T) {
		arch := hostTarget(t)
		dir := t.TempDir()
		buildRelease(t, dir, "-version", "1.0.0", "-arch", arch)
		sums, err := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range monitoring {
			name := filepath.Base(m.src)
			want := sum(t, filepath.Join("..", "..", m.src))
			if got := sum(t, filepath.Join(dir, name)); got != want {
				t.Errorf("%s in the release: sha256 %s, the repository's %s", name, got, want)
			}
			if !strings.Contains(string(sums), want+"  "+name+"\n") {
				t.Errorf("SHA256SUMS lacks %s:\n%s", name, sums)
			}
		}
		if _, err := exec.LookPath("dpkg-deb"); err != nil {
			t.Skip("dpkg-deb is not installed")
		}
		out, err := exec.Command("dpkg-deb", "-c", filepath.Join(dir, "outboxd_1.0.0-1_"+arch+".deb")).CombinedOutput()
		if err != nil {
			t.Fatalf("dpkg-deb -c: %v\n%s", err, out)
		}
		for _, p := range monitoringPaths() {
			if !regexp.MustCompile(`(?m)^-rw-r--r-- root/root .* \.` + regexp.QuoteMeta(p) + `$`).Match(out) {
				t.Errorf("the .deb lacks %s as a 0644 root file:\n%s", p, out)
			}
		}
	})
}

// switchable answers 503 until on, then counts the NDJSON lines it gets.
type switchable struct {
	on    atomic.Bool
	mu    sync.Mutex
	lines map[string]int
}

func (s *switchable) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.on.Load() {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	b, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		for i := range 100 {
			if strings.Contains(l, fmt.Sprintf(`"queued-%03d"`, i)) {
				s.lines[fmt.Sprint(i)]++
			}
		}
	}
	s.mu.Unlock()
}

func (s *switchable) received() (distinct, total int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.lines {
		distinct++
		total += n
	}
	return
}

func TestDebPackage(t *testing.T) {
	skipUnderRace(t)
	if os.Geteuid() != 0 {
		t.Skip("installs a package: needs root")
	}
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("dpkg is not installed")
	}
	if exec.Command("dpkg", "-s", "outboxd").Run() == nil {
		t.Skip("an outboxd package is installed on this machine; not touching it")
	}
	t.Run("install, queue records, change the config, upgrade, deliver, remove, purge", func(t *testing.T) {
		arch := hostTarget(t)
		dir := t.TempDir()
		buildRelease(t, dir, "-version", "1.0.0", "-arch", arch)
		buildRelease(t, dir, "-version", "1.0.1", "-arch", arch)
		t.Cleanup(func() { exec.Command("dpkg", "-P", "outboxd").Run() })
		dpkg := func(args ...string) {
			t.Helper()
			if out, err := exec.Command("dpkg", args...).CombinedOutput(); err != nil {
				t.Fatalf("dpkg %v: %v\n%s", args, err, out)
			}
		}
		dpkg("-i", filepath.Join(dir, "outboxd_1.0.0-1_"+arch+".deb"))

		u, err := user.Lookup("outboxd")
		if err != nil {
			t.Fatalf("no outboxd user after install: %v", err)
		}
		for path, want := range map[string]string{
			"/usr/bin/outboxd": "0755 root", "/usr/lib/systemd/system/outboxd.service": "0644 root",
			"/usr/lib/sysusers.d/outboxd.conf": "0644 root", "/usr/lib/tmpfiles.d/outboxd.conf": "0644 root",
			"/etc/outboxd/config.yaml": "0640 root:outboxd", "/var/lib/outboxd": "0700 outboxd:outboxd",
			monitoring[0].dst: "0644 root", monitoring[1].dst: "0644 root", monitoring[2].dst: "0644 root",
		} {
			if got := modeOwner(t, path, u); got != want {
				t.Errorf("%s: %s, want %s", path, got, want)
			}
		}
		if out, err := exec.Command("/usr/bin/outboxd", "check", "-config", "/etc/outboxd/config.yaml").CombinedOutput(); err != nil {
			t.Errorf("check of the installed config: %v\n%s", err, out)
		}
		if _, err := exec.LookPath("promtool"); err == nil {
			// The installed rules pass their installed unit tests in place.
			if out, err := exec.Command("promtool", "test", "rules", monitoring[1].dst).CombinedOutput(); err != nil {
				t.Errorf("promtool test rules on the installed files: %v\n%s", err, out)
			}
		}
		if _, err := exec.LookPath("systemd-analyze"); err == nil {
			if out, err := exec.Command("systemd-analyze", "verify", "/usr/lib/systemd/system/outboxd.service").CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
				t.Errorf("verify of the installed unit: %v\n%s", err, out)
			}
			if _, err := os.Lstat("/etc/systemd/system/multi-user.target.wants/outboxd.service"); err != nil {
				t.Errorf("the service is not enabled: %v", err)
			}
		}

		// The operator edits the config: a collector that is down for now.
		coll := &switchable{lines: map[string]int{}}
		srv := httptest.NewServer(coll)
		defer srv.Close()
		port := freePort(t)
		edited := fmt.Sprintf("# edited by the operator\ndata_dir: /var/lib/outboxd\ningest:\n  http:\n    listen: 127.0.0.1:%d\nsinks:\n  collector:\n    type: http\n    url: %s\n    linger: 10ms\n    retry: {initial: 50ms, max: 200ms}\nadmin:\n  listen: 127.0.0.1:%d\n",
			port, srv.URL, freePort(t))
		if err := os.WriteFile("/etc/outboxd/config.yaml", []byte(edited), 0o640); err != nil {
			t.Fatal(err)
		}
		stop := startAsOutboxd(t)
		var body strings.Builder
		for i := range 100 {
			fmt.Fprintf(&body, "{\"message\":\"queued-%03d\"}\n", i)
		}
		resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/v1/logs", port), "application/x-ndjson", strings.NewReader(body.String()))
		if err != nil || resp.StatusCode != 202 {
			t.Fatalf("post: %v %v", err, resp)
		}
		resp.Body.Close()
		stop()

		// Upgrade with 100 records queued.
		dpkg("-i", filepath.Join(dir, "outboxd_1.0.1-1_"+arch+".deb"))
		if got, _ := os.ReadFile("/etc/outboxd/config.yaml"); string(got) != edited {
			t.Fatalf("the upgrade replaced the edited config:\n%s", got)
		}
		if out, _ := exec.Command("/usr/bin/outboxd", "version").CombinedOutput(); !strings.HasPrefix(string(out), "outboxd 1.0.1 ") {
			t.Fatalf("version after upgrade: %s", out)
		}
		coll.on.Store(true)
		stop = startAsOutboxd(t)
		deadline := time.Now().Add(20 * time.Second)
		for d, _ := coll.received(); d < 100 && time.Now().Before(deadline); d, _ = coll.received() {
			time.Sleep(50 * time.Millisecond)
		}
		stop()
		if d, total := coll.received(); d != 100 {
			t.Fatalf("after the upgrade the collector got %d of the 100 queued records (%d with duplicates)", d, total)
		}

		dpkg("-r", "outboxd")
		for _, gone := range append([]string{"/usr/bin/outboxd", "/usr/lib/systemd/system/outboxd.service", "/usr/lib/sysusers.d/outboxd.conf",
			"/usr/lib/tmpfiles.d/outboxd.conf", "/etc/systemd/system/multi-user.target.wants/outboxd.service", "/usr/share/outboxd"}, monitoringPaths()...) {
			if _, err := os.Lstat(gone); err == nil {
				t.Errorf("%s is left after dpkg -r", gone)
			}
		}
		for _, kept := range []string{"/etc/outboxd/config.yaml", "/var/lib/outboxd/outbox.db"} {
			if _, err := os.Stat(kept); err != nil {
				t.Errorf("dpkg -r removed %s, which only a purge may: %v", kept, err)
			}
		}
		dpkg("-P", "outboxd")
		for _, gone := range []string{"/etc/outboxd", "/var/lib/outboxd", "/run/outboxd"} {
			if _, err := os.Lstat(gone); err == nil {
				t.Errorf("%s is left after dpkg -P", gone)
			}
		}
		if _, err := user.Lookup("outboxd"); err != nil {
			t.Errorf("the purge removed the system user, which policy keeps: %v", err)
		}
	})
}

// modeOwner describes path as "0755 root" (owner and group root) or
// "0640 root:outboxd".
func modeOwner(t *testing.T, path string, u *user.User) string {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		return "missing"
	}
	st := info.Sys().(*syscall.Stat_t)
	name := func(id uint32) string {
		if fmt.Sprint(id) == u.Uid || fmt.Sprint(id) == u.Gid {
			return "outboxd"
		}
		if id == 0 {
			return "root"
		}
		return fmt.Sprint(id)
	}
	owner, group := name(st.Uid), name(st.Gid)
	if owner == group && owner == "root" {
		return fmt.Sprintf("%04o root", info.Mode().Perm())
	}
	return fmt.Sprintf("%04o %s:%s", info.Mode().Perm(), owner, group)
}

// startAsOutboxd runs the installed daemon as the outboxd user on the
// installed config, as the unit would, and returns what stops it (SIGTERM,
// then it must exit 0).
func startAsOutboxd(t *testing.T) (stop func()) {
	t.Helper()
	u, err := user.Lookup("outboxd")
	if err != nil {
		t.Fatal(err)
	}
	var uid, gid uint32
	fmt.Sscan(u.Uid, &uid)
	fmt.Sscan(u.Gid, &gid)
	cmd := exec.Command("/usr/bin/outboxd", "run", "-config", "/etc/outboxd/config.yaml")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	var mu sync.Mutex
	var log strings.Builder
	cmd.Stderr = writerFunc(func(b []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return log.Write(b) })
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		ready := strings.Contains(log.String(), "outboxd ready")
		mu.Unlock()
		if ready {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the installed daemon is not ready:\n%s", log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return func() {
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("the daemon's exit: %v\n%s", err, log.String())
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
