// Package forwarders drains outbox queues into sinks: Kafka, an HTTP
// collector, or the console.
//
// A Worker owns one sink and one queue. It claims a batch, hands it to the
// sink, and acknowledges it only when the sink says it was delivered, so a
// record leaves the outbox only after its destination has it (at least
// once). Transient failures (network, 5xx, 429, Kafka's retriable codes) are
// retried with exponential backoff and jitter, without limit; records the
// sink refuses for good go to the queue's dead-letter table with the sink's
// reason, and the worker moves on. A record is never dropped.
//
// Only what a record itself did wrong is a refusal. A destination that
// refuses the sink (credentials, URL, permissions) is retried like an
// outage and logged as an error (MisconfiguredError), and the dead-letter
// file has a limit at which refused records wait in the queue.
//
// Each sink has its own queue and its own worker, so a sink that is down for
// days never slows a healthy one, and order is kept per sink: a batch is
// retried whole, before anything after it is sent.
package forwarders
