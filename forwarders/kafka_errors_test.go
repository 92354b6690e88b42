package forwarders

import "github.com/segmentio/kafka-go"

var (
	errTooLarge  = kafka.MessageSizeTooLarge
	errLeader    = kafka.NotLeaderForPartition
	errTopicAuth = kafka.TopicAuthorizationFailed
)

func errorsOf(errs ...error) kafka.WriteErrors { return kafka.WriteErrors(errs) }
