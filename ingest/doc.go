// Package ingest turns what local programs send (syslog messages, HTTP
// bodies) into outboxd's record envelope: one JSON object per record, built
// once, stored as is, and sent as is by every sink.
//
// The endpoints: HTTP (NDJSON, JSON, text; 202 only after the commit) and
// syslog (RFC 5424 and 3164 over UDP, TCP and a Unix datagram socket). They
// know the outbox only through Appender.
package ingest
