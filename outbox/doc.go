// Package outbox is a durable FIFO queue whose every record lives in an SQLite
// table. It is the disk queue at the heart of outboxd, and a library of its
// own: a Go counterpart of the Rust crate disk_backed_queue.
//
// A Queue has a channel-like API (Send, Recv) plus an at-least-once path
// (Claim, then Ack or Release) for consumers that must not lose a record when
// they crash between reading it and handing it on.
//
// # Durability
//
// Send and SendBatch return only after the transaction that holds their
// records has been committed at the queue's Durability level. At
// DurabilityFull (the zero value) that commit is fsynced, so an acknowledged
// record survives kill -9 and power loss. Many goroutines sending at once share
// transactions and fsyncs (group commit): one goroutine per database file owns
// the write connection, takes every request that is waiting, writes them in one
// transaction, commits once and then answers each caller. An idle queue answers
// a single Send at once; a busy one amortises the fsync over the whole batch.
//
// # Files and tables
//
// Several queues (tables) may share one database file; they then share its
// committer, so a transaction may carry records for several tables under one
// fsync. Records that cannot be decoded are moved to the dead-letter table
// "<table>_dlq" in the separate file "<path without .db>.dlq.db".
//
// One process owns a database file at a time: the queue keeps its record count
// and its leases in memory. Other processes may read the file (the sqlite3
// shell, for example) but must not write to it while a Queue has it open.
//
// # Inspection
//
// Inspect opens a queue file and its dead-letter file read-only, for tools
// that run beside the owning process: it lists the tables, counts records
// and dead letters, reads the oldest record's time and the dead letters
// themselves. PurgeDeadLetters deletes dead letters by age and count; it
// writes only the dead-letter file, which SQLite lets two processes share.
package outbox
