package config

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"time"

	"github.com/bmatcuk/doublestar/v4"
)

// FileInput is one ingest.files entry: log files tailed by glob.
type FileInput struct {
	Paths        []string          `koanf:"paths"`      // globs; ** is any depth
	AddFields    map[string]string `koanf:"add_fields"` // on every record of these files
	Exclude      []string          `koanf:"exclude"`    // globs on the path, or on the base name when without a /
	ReadFrom     string            `koanf:"read_from"`
	MaxLineBytes Size              `koanf:"max_line_bytes"`
	Multiline    *Multiline        `koanf:"multiline"`
	Format       string            `koanf:"format"` // text, json or cri
	// RotateWait is how long a file that left its glob (renamed away,
	// deleted) is still read after it last grew, before it is closed: a
	// writer may still be writing to its old handle.
	RotateWait time.Duration `koanf:"rotate_wait"`
	// Rescan is how often the globs are expanded again, besides inotify.
	Rescan time.Duration `koanf:"rescan"`
}

// Multiline joins lines into records: a line matching Start begins one; the
// record in progress is emitted when the next begins, or after Timeout
// without a new line.
type Multiline struct {
	Start   string        `koanf:"start"`
	Timeout time.Duration `koanf:"timeout"`
}

// Defaults of a files entry.
const (
	DefaultMaxLineBytes = 1 << 20
	DefaultRotateWait   = 5 * time.Second
	DefaultRescan       = time.Second
	DefaultMultilineTTL = time.Second
	maxLineBytesLimit   = 64 << 20
)

func (f *FileInput) applyDefaults() {
	if f.ReadFrom == "" {
		f.ReadFrom = "beginning"
	}
	if f.Format == "" {
		f.Format = "text"
	}
	if f.MaxLineBytes == 0 {
		f.MaxLineBytes = DefaultMaxLineBytes
	}
	if f.RotateWait == 0 {
		f.RotateWait = DefaultRotateWait
	}
	if f.Rescan == 0 {
		f.Rescan = DefaultRescan
	}
	if f.Multiline != nil && f.Multiline.Timeout == 0 {
		f.Multiline.Timeout = DefaultMultilineTTL
	}
}

func (f FileInput) validate(path string, add func(error)) {
	validateAddFields(path+".add_fields", f.AddFields, add)
	if len(f.Paths) == 0 {
		add(problem(path+".paths", "at least one glob is needed"))
	}
	for i, p := range f.Paths {
		key := fmt.Sprintf("%s.paths[%d]", path, i)
		switch {
		case !filepath.IsAbs(p):
			add(problem(key, "%q: a glob must be an absolute path (the daemon's working directory is /)", p))
		case !doublestar.ValidatePathPattern(p):
			add(problem(key, "%q is not a valid glob (see README: *, ?, [...], {a,b} and ** for any depth)", p))
		}
	}
	for i, p := range f.Exclude {
		if !doublestar.ValidatePathPattern(p) {
			add(problem(fmt.Sprintf("%s.exclude[%d]", path, i), "%q is not a valid glob", p))
		}
	}
	if !slices.Contains([]string{"beginning", "end"}, f.ReadFrom) {
		add(problem(path+".read_from", "%q: want beginning or end", f.ReadFrom))
	}
	if !slices.Contains([]string{"text", "json", "cri"}, f.Format) {
		add(problem(path+".format", "%q: want text, json or cri", f.Format))
	}
	if f.MaxLineBytes < 1 || f.MaxLineBytes > maxLineBytesLimit {
		add(problem(path+".max_line_bytes", "%d: want 1 to 64MiB", f.MaxLineBytes))
	}
	if f.RotateWait < 0 {
		add(problem(path+".rotate_wait", "%v is negative", f.RotateWait))
	}
	if f.Rescan < 10*time.Millisecond {
		add(problem(path+".rescan", "%v: at least 10ms", f.Rescan))
	}
	if m := f.Multiline; m != nil {
		if m.Start == "" {
			add(problem(path+".multiline.start", "a multiline block needs a start regular expression"))
		} else if _, err := regexp.Compile(m.Start); err != nil {
			add(problem(path+".multiline.start", "%q: %v", m.Start, err))
		}
		if m.Timeout < 0 {
			add(problem(path+".multiline.timeout", "%v is negative", m.Timeout))
		}
	}
}
