// Command outboxd-release builds the release into dist/: static binaries for
// the edge architectures, .deb and .rpm packages, the Prometheus rules and
// Grafana dashboard, and SHA256SUMS.
//
//	go run ./cmd/outboxd-release [-out dist] [-version 1.2.3] [-arch amd64,arm64,arm7]
//
// Binaries are built with CGO_ENABLED=0 and -trimpath, and stamped with the
// version, the commit and the commit's date (not the build's: building the
// same commit twice gives the same bytes). Packages are made with nfpm, used
// as a library, from the files in systemd/ and package/.
package main

import (
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

func main() {
	ctx := context.Background()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "outboxd-release:", err)
		os.Exit(1)
	}
}

// target is one architecture the release is built for.
type target struct {
	name   string // as in file names and nfpm: amd64, arm64, arm7
	goarch string
	goarm  string
}

var targets = []target{{"amd64", "amd64", ""}, {"arm64", "arm64", ""}, {"arm7", "arm", "7"}}

// release is what one run builds.
type release struct {
	root    string // the repository
	out     string
	version string
	commit  string
	date    time.Time
	targets []target
	pkgs    bool
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("outboxd-release", flag.ContinueOnError)
	out := fs.String("out", "dist", "output directory")
	version := fs.String("version", "", "version to stamp (default 0.1.N, N = commits on HEAD)")
	archs := fs.String("arch", "amd64,arm64,arm7", "architectures, comma separated: amd64, arm64, arm7")
	pkgs := fs.Bool("packages", true, "also build .deb and .rpm packages")
	if err := fs.Parse(args); err != nil {
		return err
	}
	r, err := newRelease(ctx, *out, *version, *archs, *pkgs)
	if err != nil {
		return err
	}
	return r.build(ctx, stdout)
}

func newRelease(ctx context.Context, out, version, archs string, pkgs bool) (*release, error) {
	root, err := git(ctx, "", "rev-parse", "--show-toplevel")
	if err != nil {
		return nil, err
	}
	r := &release{root: root, out: out, version: version, pkgs: pkgs}
	if r.commit, err = git(ctx, root, "rev-parse", "HEAD"); err != nil {
		return nil, err
	}
	when, err := git(ctx, root, "log", "-1", "--format=%ct")
	if err != nil {
		return nil, err
	}
	var sec int64
	fmt.Sscan(when, &sec)
	r.date = time.Unix(sec, 0).UTC()
	if r.version == "" {
		n, err := git(ctx, root, "rev-list", "--count", "HEAD")
		if err != nil {
			return nil, err
		}
		r.version = "0.1." + n
	}
	for _, a := range strings.Split(archs, ",") {
		i := slices.IndexFunc(targets, func(t target) bool { return t.name == strings.TrimSpace(a) })
		if i < 0 {
			return nil, fmt.Errorf("unknown architecture %q (want amd64, arm64 or arm7)", a)
		}
		r.targets = append(r.targets, targets[i])
	}
	return r, nil
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

// build makes every binary and package, then SHA256SUMS.
func (r *release) build(ctx context.Context, stdout io.Writer) error {
	if err := os.MkdirAll(r.out, 0o755); err != nil {
		return err
	}
	var made []string
	for _, t := range r.targets {
		bin, err := r.binary(ctx, t)
		if err != nil {
			return err
		}
		made = append(made, bin)
		if !r.pkgs {
			continue
		}
		for _, format := range []string{"deb", "rpm"} {
			p, err := r.pack(t, bin, format)
			if err != nil {
				return err
			}
			made = append(made, p)
		}
	}
	for _, m := range monitoring {
		path := filepath.Join(r.out, filepath.Base(m.src))
		if err := copyFile(filepath.Join(r.root, m.src), path); err != nil {
			return err
		}
		made = append(made, path)
	}
	return writeSums(filepath.Join(r.out, "SHA256SUMS"), made, stdout)
}

// copyFile copies a monitoring file into the release as it is in the
// repository.
func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return fmt.Errorf("release: %w", err)
	}
	if err := os.WriteFile(to, data, 0o644); err != nil {
		return fmt.Errorf("release: %w", err)
	}
	return nil
}

// binary builds outboxd for t and returns its path.
func (r *release) binary(ctx context.Context, t target) (string, error) {
	path, err := filepath.Abs(filepath.Join(r.out, fmt.Sprintf("outboxd_%s_linux_%s", r.version, t.name)))
	if err != nil {
		return "", err
	}
	ldflags := fmt.Sprintf("-s -w -X main.version=%s -X main.commit=%s -X main.date=%s",
		r.version, r.commit, r.date.Format(time.RFC3339))
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", ldflags, "-o", path, "./cmd/outboxd")
	cmd.Dir = r.root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+t.goarch, "GOARM="+t.goarm)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build for %s: %w\n%s", t.name, err, out)
	}
	return path, nil
}

func writeSums(path string, files []string, stdout io.Writer) error {
	var b strings.Builder
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		line := fmt.Sprintf("%x  %s\n", sha256.Sum256(data), filepath.Base(f))
		b.WriteString(line)
		fmt.Fprintf(stdout, "%s  (%.1f MiB)\n", strings.TrimSpace(line), float64(len(data))/(1<<20))
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
