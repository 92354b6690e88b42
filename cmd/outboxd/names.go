package main

import "path/filepath"

// The daemon's one naming of its files and tables: every sink's queue is the
// table "sink_<name>" of the file "outbox.db" in the data directory (and its
// dead letters are where the outbox package puts a table's).

// outboxPath is the outbox file in dataDir.
func outboxPath(dataDir string) string { return filepath.Join(dataDir, "outbox.db") }

// sinkTable is the table of the sink named name.
func sinkTable(name string) string { return "sink_" + name }
