// Package journal reads the systemd journal without cgo: it runs the
// host's journalctl with -o export (complete and binary-safe; -o json
// turns long or binary fields into null or arrays of numbers) and parses
// its output. Each commit stores the entries read and the cursor of the
// last one in one transaction, so that kill -9 and power cuts neither lose
// nor repeat entries.
//
// The traps of reading the journal through journalctl, and what is done:
//   - --after-cursor drops the first entry of a new boot, and one more after
//     a vacuumed cursor: the inclusive --cursor is used, and the first entry
//     is dropped only when its __CURSOR is the stored one; otherwise the
//     cursor was vacuumed, which is logged and counted, and that entry is
//     kept.
//   - --follow implies the current boot (systemd >= 250): each run catches up
//     without --follow to the journal's end first, then follows from the last
//     cursor with --merge, which shows boots that begin while it follows.
//   - Units are not passed as journalctl matches: every entry is read and the
//     units are filtered here, so that the stored cursor advances over the
//     entries of other units (a filter that matches nothing would otherwise
//     pin it). A cursor moved only over filtered-out entries is committed at
//     most once a second.
//   - journalctl exiting, killed or missing: it is run again from the
//     committed cursor after a capped backoff; Healthy says why meanwhile.
//     It dies with outboxd (Pdeathsig); its stderr goes to the log.
//   - An entry read while its writer is still writing it can come out of
//     journalctl with a field missing (sd-journal skips a data object it
//     cannot read yet: systemd/systemd#40263). Each entry's fields are
//     checked against the XOR hash in its cursor; one that does not add up
//     ends the run (the entries before it committed) and is read again
//     shortly; after maxRereads reads it is stored as read, logged and
//     counted (a damaged journal file).
//   - A full outbox stops the commits, then the reading, then journalctl on
//     its full pipe: nothing is dropped.
package journal
