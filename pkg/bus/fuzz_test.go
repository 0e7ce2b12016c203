package bus_test

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/cofferhq/coffer/pkg/bus"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// eventTypes returns the type of every message of the event contracts,
// in their order in events.proto.
func eventTypes(f *testing.F) []protoreflect.MessageType {
	f.Helper()
	descs := cofferv1.File_coffer_v1_events_proto.Messages()
	types := make([]protoreflect.MessageType, 0, descs.Len())
	for i := range descs.Len() {
		mt, err := protoregistry.GlobalTypes.FindMessageByName(descs.Get(i).FullName())
		if err != nil {
			f.Fatal(err)
		}
		types = append(types, mt)
	}
	return types
}

// fill sets every field of m, and of the messages it holds down to depth,
// to a value that is not the zero value: a seed that exercises every
// field's decoding.
func fill(m protoreflect.Message, depth int) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.IsMap() {
			continue
		}
		var v protoreflect.Value
		switch fd.Kind() {
		case protoreflect.MessageKind, protoreflect.GroupKind:
			if depth == 0 || fd.IsList() {
				continue
			}
			sub := m.NewField(fd).Message()
			fill(sub, depth-1)
			v = protoreflect.ValueOfMessage(sub)
		case protoreflect.StringKind:
			v = protoreflect.ValueOfString("sql01 ·" + string(fd.Name()))
		case protoreflect.BytesKind:
			v = protoreflect.ValueOfBytes([]byte{0, 1, 0xff})
		case protoreflect.BoolKind:
			v = protoreflect.ValueOfBool(true)
		case protoreflect.EnumKind:
			v = protoreflect.ValueOfEnum(1)
		case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
			v = protoreflect.ValueOfInt32(-7)
		case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
			v = protoreflect.ValueOfInt64(1 << 40)
		case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
			v = protoreflect.ValueOfUint32(7)
		case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
			v = protoreflect.ValueOfUint64(1 << 50)
		case protoreflect.FloatKind:
			v = protoreflect.ValueOfFloat32(0.5)
		case protoreflect.DoubleKind:
			v = protoreflect.ValueOfFloat64(0.25)
		default:
			continue
		}
		if fd.IsList() {
			l := m.Mutable(fd).List()
			l.Append(v)
			l.Append(v)
			continue
		}
		m.Set(fd, v)
	}
}

// FuzzDecode feeds arbitrary payloads and Content-Type headers to
// Message.Decode, as a consumer's handler receives them, for every event
// type: it either fails with an error matching ErrMalformed, which gets
// the message terminated, or decodes a message that marshals and decodes
// again to the same message. A message whose header names another type
// is always refused.
func FuzzDecode(f *testing.F) {
	types := eventTypes(f)
	for i, mt := range types {
		m := mt.New()
		fill(m, 2)
		data, err := proto.Marshal(m.Interface())
		if err != nil {
			f.Fatal(err)
		}
		ct := "application/protobuf; proto=" + string(mt.Descriptor().FullName())
		f.Add(uint16(i), data, ct)
		f.Add(uint16(i+1), data, ct)
		f.Add(uint16(i), data[:len(data)/2], "")
	}
	f.Add(uint16(0), []byte{0xff, 0xff, 0xff, 0xff, 0x0f}, "application/protobuf")
	f.Add(uint16(3), []byte{0x0a, 0x80, 0x80, 0x80, 0x80, 0x08}, "application/protobuf; proto=")
	f.Add(uint16(5), []byte(nil), `application/protobuf; proto="coffer.v1.JobFailed`)
	f.Fuzz(func(t *testing.T, which uint16, data []byte, ct string) {
		mt := types[int(which)%len(types)]
		want := string(mt.Descriptor().FullName())
		m := &bus.Message{Subject: "coffer.fuzz", Data: data, Headers: nats.Header{"Content-Type": []string{ct}}}
		pm := mt.New().Interface()
		err := m.Decode(pm)
		if err != nil {
			if !errors.Is(err, bus.ErrMalformed) {
				t.Fatalf("Decode: %v; want an error matching ErrMalformed", err)
			}
			return
		}
		if got := m.Type(); got != "" && got != want {
			t.Fatalf("decoded a message declared %s as %s", got, want)
		}
		again, err := proto.Marshal(pm)
		if err != nil {
			t.Fatalf("a decoded %s does not marshal: %v", want, err)
		}
		pm2 := mt.New().Interface()
		if err := (&bus.Message{Data: again, Headers: nats.Header{}}).Decode(pm2); err != nil {
			t.Fatalf("a decoded %s, marshalled again, does not decode: %v", want, err)
		}
		if !proto.Equal(pm, pm2) {
			t.Fatalf("a decoded %s decodes again to\n%v\nwant\n%v", want, pm2, pm)
		}
	})
}
