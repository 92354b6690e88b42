package main

import (
	"context"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"
)

// sdNotify sends a state to systemd's notify socket (Type=notify). Without
// NOTIFY_SOCKET, as outside systemd, it does nothing. The protocol is one
// datagram of "KEY=value" lines; small enough to speak without a library.
func sdNotify(state string) error {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	if addr[0] == '@' { // an abstract socket
		addr = "\x00" + addr[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.Write([]byte(state))
	return err
}

// watchdog pings systemd at half the interval WATCHDOG_USEC asks for, until
// ctx ends, but only while alive says the daemon makes progress: a ping
// means "working", not "the process exists". alive gets a quarter of the
// interval to answer. status adds a STATUS= line to each ping.
func watchdog(ctx context.Context, alive func(context.Context) error, status func() string, log *slog.Logger) {
	usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 {
		return
	}
	interval := time.Duration(usec) * time.Microsecond
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	var stuck string // the last reason logged; "" while alive
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			actx, cancel := context.WithTimeout(ctx, interval/4)
			err := alive(actx)
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				if err.Error() != stuck {
					log.Error("watchdog: not pinging systemd, the daemon makes no progress", "err", err)
					stuck = err.Error()
				}
				continue
			}
			if stuck != "" {
				log.Info("watchdog: progress again, pinging systemd")
				stuck = ""
			}
			sdNotify("WATCHDOG=1\nSTATUS=" + status())
		}
	}
}
