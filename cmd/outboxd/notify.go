package main

import (
	"context"
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
// ctx ends; status adds a STATUS= line to each ping.
func watchdog(ctx context.Context, status func() string) {
	usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 {
		return
	}
	t := time.NewTicker(time.Duration(usec) * time.Microsecond / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			sdNotify("WATCHDOG=1\nSTATUS=" + status())
		}
	}
}
