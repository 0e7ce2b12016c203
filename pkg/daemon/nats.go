package daemon

import (
	"fmt"

	"github.com/nats-io/nats.go"
)

// ConnectNATS connects to the NATS server or cluster at url as name
// ("coffer-" and the service, or "coffer-up"), reconnecting for as long
// as the process lives. Extra options are applied after coffer's own.
// Every coffer process connects to an external NATS through here.
func ConnectNATS(url, name string, opts ...nats.Option) (*nats.Conn, error) {
	all := append([]nats.Option{nats.Name(name), nats.MaxReconnects(-1)}, opts...)
	nc, err := nats.Connect(url, all...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	return nc, nil
}
