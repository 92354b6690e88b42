package outbox

import "encoding/json"

// Codec turns items into the bytes stored in the data column and back.
type Codec[T any] interface {
	Marshal(T) ([]byte, error)
	Unmarshal([]byte) (T, error)
}

// JSONCodec stores items as JSON. It is the default for every T but []byte.
type JSONCodec[T any] struct{}

// Marshal encodes v as JSON.
func (JSONCodec[T]) Marshal(v T) ([]byte, error) { return json.Marshal(v) }

// Unmarshal decodes JSON into a new T.
func (JSONCodec[T]) Unmarshal(b []byte) (T, error) {
	var v T
	err := json.Unmarshal(b, &v)
	return v, err
}

// BytesCodec stores []byte items unchanged. It is the default when T is []byte,
// which is how outboxd stores its already-encoded JSON envelopes.
type BytesCodec struct{}

// Marshal returns b itself: the queue does not keep it past the write.
func (BytesCodec) Marshal(b []byte) ([]byte, error) { return b, nil }

// Unmarshal returns b itself: the driver hands each row a fresh slice.
func (BytesCodec) Unmarshal(b []byte) ([]byte, error) { return b, nil }

// defaultCodec picks BytesCodec for []byte and JSONCodec for everything else.
func defaultCodec[T any]() Codec[T] {
	var zero T
	if _, ok := any(zero).([]byte); ok {
		return any(BytesCodec{}).(Codec[T])
	}
	return JSONCodec[T]{}
}
