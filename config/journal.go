package config

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
)

// JournalInput is ingest.journal: the systemd journal, read through
// journalctl.
type JournalInput struct {
	// Directory reads that directory's journal files (journalctl
	// --directory); empty: the system journal.
	Directory string   `koanf:"directory"`
	Units     []string `koanf:"units"` // only these units' entries (_SYSTEMD_UNIT); empty: all
	// ReadFrom is where the very first start begins (beginning or end);
	// later starts go on from the stored cursor.
	ReadFrom string `koanf:"read_from"`
	// AddFields go on every record of the journal.
	AddFields map[string]string `koanf:"add_fields"`
}

func (j *JournalInput) applyDefaults() {
	if j.ReadFrom == "" {
		j.ReadFrom = "end"
	}
}

func (j JournalInput) validate(path string, add func(error)) {
	validateAddFields(path+".add_fields", j.AddFields, add)
	if j.Directory != "" && !filepath.IsAbs(j.Directory) {
		add(problem(path+".directory", "%q: must be an absolute path (the daemon's working directory is /)", j.Directory))
	}
	for i, u := range j.Units {
		if u == "" || strings.ContainsAny(u, "/ \t\n=") {
			add(problem(fmt.Sprintf("%s.units[%d]", path, i), "%q is not a unit name", u))
		}
	}
	if !slices.Contains([]string{"beginning", "end"}, j.ReadFrom) {
		add(problem(path+".read_from", "%q: want beginning or end", j.ReadFrom))
	}
}
