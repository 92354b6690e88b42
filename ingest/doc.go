// Package ingest turns what local programs send (syslog messages, HTTP
// bodies) into outboxd's record envelope: one JSON object per record, built
// once, stored as is, and sent as is by every sink.
//
// This package so far holds the syslog parser; the HTTP and syslog
// endpoints build on it.
package ingest
