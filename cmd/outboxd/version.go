package main

import (
	"fmt"
	"runtime/debug"
)

// version, commit and date are set with -ldflags "-X main.version=..." by
// release builds; otherwise the module's build information fills them in.
var version, commit, date string

func versionString() string {
	v, c, d := version, commit, date
	if info, ok := debug.ReadBuildInfo(); ok {
		if v == "" {
			v = info.Main.Version
		}
		for _, s := range info.Settings {
			switch {
			case s.Key == "vcs.revision" && c == "":
				c = s.Value
			case s.Key == "vcs.time" && d == "":
				d = s.Value
			}
		}
	}
	if v == "" {
		v = "(devel)"
	}
	return fmt.Sprintf("outboxd %s commit %s built %s", v, orUnknown(c), orUnknown(d))
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
