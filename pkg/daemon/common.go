package daemon

import (
	"errors"
	"fmt"

	"github.com/cofferhq/coffer/pkg/metrics"
	"github.com/cofferhq/coffer/pkg/topology"
)

// Common are the settings of a process rather than of one of its
// services: where NATS is, how the streams are replicated, the master
// key and the vault.
type Common struct {
	// NATSURL is the NATS server or cluster; "" means
	// nats://127.0.0.1:4222 for a standalone binary and the embedded
	// server for `coffer up`.
	NATSURL string
	// Replicas of each stream and bucket (topology.Config).
	Replicas int
	// MasterKeyFile holds the master key when COFFER_MASTER_KEY does not.
	MasterKeyFile string
	// MasterKeyCommand, run by the shell, prints the master key: a key
	// held by a key service or a secrets manager rather than in a file.
	MasterKeyCommand string
	// Store is where the vault is, when a service of the process uses it.
	Store VaultStore
	// MetricsAddr is where a standalone service serves its Prometheus
	// metrics on /metrics: "" means metrics.DefaultAddr, "off" none.
	// `coffer up` serves them on the API's address, and here too when set.
	MetricsAddr string

	// masterKey is COFFER_MASTER_KEY: read from the environment only, as a
	// key on a command line shows in every process listing.
	masterKey string
}

// Register registers the settings on f; with vault, the vault's location
// too.
func (c *Common) Register(f *Flags, vault bool) {
	f.String(&c.NATSURL, "nats", "COFFER_NATS_URL", "",
		"URL of the NATS server or cluster (default nats://127.0.0.1:4222; coffer up: its embedded server)")
	f.Int(&c.Replicas, "replicas", "COFFER_NATS_REPLICAS", 1,
		"copies a NATS cluster keeps of each stream and bucket: 1 on a single server, 3 on a cluster; streams and buckets are changed to it at start")
	f.String(&c.MasterKeyFile, "master-key-file", "COFFER_MASTER_KEY_FILE", "",
		"file holding the master key, unless COFFER_MASTER_KEY holds the key itself (coffer up: default DATA/master.key, created on first start)")
	f.String(&c.MasterKeyCommand, "master-key-command", "COFFER_MASTER_KEY_COMMAND", "",
		"command, run by /bin/sh, that prints the master key on its standard output (a key service's client, a secrets manager); instead of COFFER_MASTER_KEY or a key file")
	f.String(&c.MetricsAddr, "metrics-addr", "COFFER_METRICS_ADDR", "",
		"address to serve Prometheus metrics on, at /metrics, and the health check /healthz (default "+metrics.DefaultAddr+" for a standalone service; coffer up serves them on the API's address, and here too when set); off serves none")
	c.masterKey = f.Getenv("COFFER_MASTER_KEY")
	if vault {
		c.Store.Register(f)
	}
}

// Topology is how the process sets up the streams and buckets.
func (c Common) Topology() topology.Config { return topology.Config{Replicas: c.Replicas} }

// Validate reports every problem with c at once.
func (c Common) Validate() error {
	var errs []error
	if c.Replicas < 1 || c.Replicas > topology.MaxReplicas {
		errs = append(errs, fmt.Errorf("--replicas %d: want 1 to %d (1 on a single server, 3 on a cluster)", c.Replicas, topology.MaxReplicas))
	}
	if c.Store.Dir != "" && c.Store.S3Endpoint != "" {
		errs = append(errs, errors.New("--vault-dir and --s3-endpoint: give one place for the vault, not both"))
	}
	if c.Store.S3Endpoint != "" && c.Store.S3Bucket == "" {
		errs = append(errs, errors.New("--s3-endpoint needs --s3-bucket"))
	}
	if err := c.masterKeySource().Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// masterKeySource is where the master key comes from.
func (c Common) masterKeySource() KeySource {
	return KeySource{Name: "master key", Env: "COFFER_MASTER_KEY", Flag: "master-key",
		Key: c.masterKey, File: c.MasterKeyFile, Command: c.MasterKeyCommand}
}

// HasMasterKey reports whether the key is given (COFFER_MASTER_KEY, the
// key file or the key command).
func (c Common) HasMasterKey() bool { return c.masterKeySource().Given() }

// MasterKey reads the master key, hex or base64, from COFFER_MASTER_KEY,
// the key file or what the key command prints.
func (c Common) MasterKey() ([]byte, error) { return c.masterKeySource().Read() }
