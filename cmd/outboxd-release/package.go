package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"
	_ "github.com/goreleaser/nfpm/v2/rpm" // registers the rpm packager
)

// pack builds the format ("deb" or "rpm") package of bin for t.
func (r *release) pack(t target, bin, format string) (string, error) {
	info := nfpm.WithDefaults(r.packageInfo(t, bin))
	if err := nfpm.PrepareForPackager(info, format); err != nil {
		return "", fmt.Errorf("%s package for %s: %w", format, t.name, err)
	}
	packager, err := nfpm.Get(format)
	if err != nil {
		return "", err
	}
	path := filepath.Join(r.out, packager.ConventionalFileName(info))
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	info.Target = path
	if err := packager.Package(info, f); err != nil {
		os.Remove(path)
		return "", fmt.Errorf("%s package for %s: %w", format, t.name, err)
	}
	return path, f.Close()
}

// packageInfo lists what the packages hold. The config is a config file
// that upgrades never overwrite once changed (a dpkg conffile; %config
// (noreplace) in rpm); the state directory is made by the scripts, so that
// removing the package never deletes queued records (only a purge does).
func (r *release) packageInfo(t target, bin string) *nfpm.Info {
	src := func(rel string) string { return filepath.Join(r.root, rel) }
	file := func(from, to string, mode os.FileMode, typ string) *files.Content {
		return &files.Content{Source: from, Destination: to, Type: typ,
			FileInfo: &files.ContentFileInfo{Mode: mode, MTime: r.date}}
	}
	pkgDir := "cmd/outboxd-release/package/"
	contents := files.Contents{
		file(bin, "/usr/bin/outboxd", 0o755, ""),
		file(src("systemd/outboxd.service"), "/usr/lib/systemd/system/outboxd.service", 0o644, ""),
		file(src("systemd/outboxd.sysusers"), "/usr/lib/sysusers.d/outboxd.conf", 0o644, ""),
		file(src("systemd/outboxd.tmpfiles"), "/usr/lib/tmpfiles.d/outboxd.conf", 0o644, ""),
		file(src(pkgDir+"config.yaml"), "/etc/outboxd/config.yaml", 0o644, files.TypeConfigNoReplace),
	}
	for _, m := range monitoring {
		contents = append(contents, file(src(m.src), m.dst, 0o644, ""))
	}
	return &nfpm.Info{
		Name:        "outboxd",
		Arch:        t.name,
		Platform:    "linux",
		Version:     r.version,
		Release:     "1",
		Section:     "admin",
		Priority:    "optional",
		Maintainer:  "outboxd maintainers <outboxd@example.com>",
		Description: "store-and-forward log shipper for edge hosts: syslog and HTTP in, an SQLite outbox, Kafka and HTTP out",
		Homepage:    "https://github.com/outboxd/outboxd",
		License:     "Apache-2.0",
		MTime:       r.date,
		Overridables: nfpm.Overridables{
			Contents: contents,
			Scripts: nfpm.Scripts{
				PostInstall: src(pkgDir + "postinstall.sh"),
				PreRemove:   src(pkgDir + "preremove.sh"),
				PostRemove:  src(pkgDir + "postremove.sh"),
			},
			RPM: nfpm.RPM{Group: "System Environment/Daemons", Summary: "store-and-forward log shipper for edge hosts", BuildHost: "outboxd-release"},
		},
	}
}

// monitoring lists the Prometheus rules (with their unit tests, so that an
// operator who changes a threshold can run promtool test rules in place) and
// the Grafana dashboard: source in the repository, destination in the
// packages; the release also carries each file beside the binaries.
var monitoring = []struct{ src, dst string }{
	{"systemd/prometheus/outboxd-alerts.yml", "/usr/share/outboxd/prometheus/outboxd-alerts.yml"},
	{"systemd/prometheus/outboxd-alerts_test.yml", "/usr/share/outboxd/prometheus/outboxd-alerts_test.yml"},
	{"systemd/grafana/outboxd-dashboard.json", "/usr/share/outboxd/grafana/outboxd-dashboard.json"},
}
