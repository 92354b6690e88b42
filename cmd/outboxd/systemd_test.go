package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const unitFile = "../../systemd/outboxd.service"

func TestSystemdUnit(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze is not installed")
	}
	t.Run("systemd-analyze verify accepts the unit", func(t *testing.T) {
		unit, _ := os.ReadFile(unitFile)
		// verify checks that ExecStart's binary exists: point it at ours.
		local := strings.ReplaceAll(string(unit), "/usr/bin/outboxd", outboxdBinary(t))
		path := filepath.Join(t.TempDir(), "outboxd.service")
		os.WriteFile(path, []byte(local), 0o644)
		if out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Fatalf("verify: %v\n%s", err, out)
		}
	})
	t.Run("systemd-analyze security rates the unit's exposure at most 2.0", func(t *testing.T) {
		out, err := exec.Command("systemd-analyze", "security", "--offline=true", unitFile).CombinedOutput()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		m := regexp.MustCompile(`Overall exposure level for outboxd.service: ([0-9.]+)`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("no exposure level in:\n%s", out)
		}
		score, _ := strconv.ParseFloat(string(m[1]), 64)
		t.Logf("exposure %.1f", score)
		if score > 2.0 {
			t.Fatalf("exposure %.1f, want at most 2.0", score)
		}
	})
}

func TestNotify(t *testing.T) {
	t.Run("the daemon says READY=1, pings the watchdog with its queue depths, and says STOPPING=1", func(t *testing.T) {
		bin := outboxdBinary(t)
		sock := filepath.Join(t.TempDir(), "notify.sock")
		conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		port := freePort(t)
		cfgPath := filepath.Join(t.TempDir(), "config.yaml")
		os.WriteFile(cfgPath, []byte("data_dir: "+t.TempDir()+"\ningest:\n  http:\n    listen: 127.0.0.1:"+strconv.Itoa(port)+
			"\nsinks:\n  console:\n    type: console\n"), 0o600)
		cmd := exec.Command(bin, "run", "-config", cfgPath)
		cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=100000")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Process.Kill()
		seen := map[string]bool{}
		buf := make([]byte, 4096)
		read := func(until string) {
			conn.SetReadDeadline(time.Now().Add(15 * time.Second))
			for !seen[until] {
				n, err := conn.Read(buf)
				if err != nil {
					t.Fatalf("waiting for %s: %v (seen %v)", until, err, seen)
				}
				for _, line := range strings.Split(string(buf[:n]), "\n") {
					seen[line] = true
					if strings.HasPrefix(line, "STATUS=queued:") {
						seen["STATUS"] = true
					}
				}
			}
		}
		read("READY=1")
		read("WATCHDOG=1")
		if !seen["STATUS"] {
			t.Fatalf("no queue status in %v", seen)
		}
		cmd.Process.Signal(syscall.SIGTERM)
		read("STOPPING=1")
		if err := cmd.Wait(); err != nil {
			t.Fatalf("exit: %v", err)
		}
	})
}

func TestSysusersTmpfiles(t *testing.T) {
	if _, err := exec.LookPath("systemd-sysusers"); err != nil {
		t.Skip("systemd-sysusers is not installed")
	}
	t.Run("the sysusers and tmpfiles snippets make the user and a 0700 state directory", func(t *testing.T) {
		root := t.TempDir()
		for _, d := range []string{"etc", "var/lib", "run"} {
			os.MkdirAll(filepath.Join(root, d), 0o755)
		}
		apply := func(tool, snippet string, args ...string) {
			f, err := os.Open("../../systemd/" + snippet)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			cmd := exec.Command(tool, append([]string{"--root=" + root}, append(args, "-")...)...)
			cmd.Stdin = f
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", tool, err, out)
			}
		}
		apply("systemd-sysusers", "outboxd.sysusers")
		apply("systemd-tmpfiles", "outboxd.tmpfiles", "--create")
		passwd, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
		m := regexp.MustCompile(`(?m)^outboxd:x:(\d+):(\d+):[^:]*:/var/lib/outboxd:/usr/sbin/nologin$`).FindSubmatch(passwd)
		if m == nil {
			t.Fatalf("no outboxd user in:\n%s", passwd)
		}
		info, err := os.Stat(filepath.Join(root, "var/lib/outboxd"))
		if err != nil {
			t.Fatal(err)
		}
		st := info.Sys().(*syscall.Stat_t)
		if info.Mode().Perm() != 0o700 || strconv.Itoa(int(st.Uid)) != string(m[1]) {
			t.Fatalf("/var/lib/outboxd: mode %v uid %d, want 0700 and uid %s", info.Mode().Perm(), st.Uid, m[1])
		}
	})
}
