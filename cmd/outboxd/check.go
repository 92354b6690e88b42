package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/outboxd/outboxd/config"
)

func checkCommand(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("check", "check -config FILE",
		"Validates a configuration: exit 0 (printing any warnings), or print every problem with its key path and exit 1.", stderr)
	path := fs.String("config", "", "the configuration file to validate")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if *path == "" {
		fmt.Fprintln(stderr, "outboxd check: -config FILE is required")
		return 2
	}
	cfg, err := config.ParseFile(*path)
	if err != nil {
		fmt.Fprintf(stderr, "%s is not valid:\n", *path)
		for _, e := range flatten(err) {
			fmt.Fprintf(stderr, "  %v\n", e)
		}
		return 1
	}
	warns := cfg.Warnings()
	if len(warns) == 0 {
		fmt.Fprintf(stdout, "%s is valid\n", *path)
		return 0
	}
	fmt.Fprintf(stdout, "%s is valid, with warnings:\n", *path)
	for _, w := range warns {
		fmt.Fprintf(stdout, "  warning: %v\n", w)
	}
	return 0
}

// flatten lists the errors joined in err, one problem per line.
func flatten(err error) []error {
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		return joined.Unwrap()
	}
	return []error{err}
}
