package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
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
