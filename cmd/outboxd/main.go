// Command outboxd is the store-and-forward log shipper: it takes records on
// local HTTP and syslog endpoints, commits each to its SQLite outbox before
// saying "accepted", and forwards them to Kafka or HTTP sinks.
//
//	outboxd run [-config FILE]   run the daemon
//	outboxd check -config FILE   validate a configuration
//	outboxd stats [-config FILE] queue depths, ages, dead letters, file sizes
//	outboxd dlq list|replay|purge -sink NAME   dead letters
//	outboxd version              print the version
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(Main(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// Main runs one subcommand and returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	switch args[0] {
	case "run":
		return runCommand(ctx, args[1:], stderr)
	case "check":
		return checkCommand(args[1:], stdout, stderr)
	case "stats":
		return statsCommand(args[1:], stdout, stderr)
	case "dlq":
		return dlqCommand(args[1:], stdout, stderr)
	case "version":
		fs := newFlags("version", "version", "Prints the version, the commit and the build date.", stderr)
		if code, done := parseFlags(fs, args[1:]); done {
			return code
		}
		fmt.Fprintln(stdout, versionString())
		return 0
	}
	fmt.Fprintf(stderr, "outboxd: unknown command %q\n\n%s", args[0], usage)
	return 2
}

const usage = `usage: outboxd <command> [flags]

commands:
  run [-config FILE]   run the daemon (default config: /etc/outboxd/config.yaml, else the embedded default)
  check -config FILE   validate a configuration: exit 0, or print every problem and exit 1
  stats [-config FILE] per sink: queued records, the oldest one's age, dead letters; file sizes
  dlq list|replay|purge -sink NAME [-config FILE] [-limit N] [-before DURATION]
                       print a sink's dead letters, put them back on its queue
                       (with the daemon stopped), or delete them
  version              print the version

"outboxd <command> -h" prints the command's flags.
`
