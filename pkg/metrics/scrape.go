package metrics

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cofferhq/coffer/pkg/bus"
)

// BacklogSource reports the backlog of the consumers a process consumes;
// *bus.Bus is one.
type BacklogSource interface {
	Backlog(ctx context.Context) ([]bus.Backlog, error)
}

var _ BacklogSource = (*bus.Bus)(nil)

// RPOLag is how far behind one protected database's recovery point
// objective is: the time since the end of its last committed backup.
type RPOLag struct {
	Instance, Database string
	Lag                time.Duration
}

// RPOSource reports the RPO lag of every protected database; the
// scheduler is one.
type RPOSource interface {
	RPOLag(ctx context.Context) ([]RPOLag, error)
}

// scrapeTimeout bounds the reads one scrape makes.
const scrapeTimeout = 5 * time.Second

// WatchConsumers reports the backlog of src's consumers at every scrape
// (one consumer info request per consumer).
func (m *Metrics) WatchConsumers(src BacklogSource) {
	if m == nil || src == nil {
		return
	}
	m.scrape.mu.Lock()
	defer m.scrape.mu.Unlock()
	m.scrape.backlogs = append(m.scrape.backlogs, src)
}

// WatchRPO reports src's RPO lags at every scrape.
func (m *Metrics) WatchRPO(src RPOSource) {
	if m == nil || src == nil {
		return
	}
	m.scrape.mu.Lock()
	defer m.scrape.mu.Unlock()
	m.scrape.rpos = append(m.scrape.rpos, src)
}

// scrapeCollector reads the states it reports when Prometheus scrapes.
type scrapeCollector struct {
	pending, ackPending, rpo *prometheus.Desc
	errors                   *prometheus.CounterVec

	mu       sync.Mutex
	backlogs []BacklogSource
	rpos     []RPOSource
}

var _ prometheus.Collector = (*scrapeCollector)(nil)

func newScrapeCollector() *scrapeCollector {
	consumer := []string{"stream", "consumer"}
	return &scrapeCollector{
		pending: prometheus.NewDesc(ConsumerPending,
			"Messages waiting on a JetStream consumer, not yet delivered (num_pending).", consumer, nil),
		ackPending: prometheus.NewDesc(ConsumerAckPending,
			"Messages delivered by a JetStream consumer and not yet settled (num_ack_pending).", consumer, nil),
		rpo: prometheus.NewDesc(RPOLagSeconds,
			"Seconds since the end of a protected database's last committed backup (since its protection before the first).",
			[]string{"instance", "database"}, nil),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: ScrapeErrorsTotal,
			Help: "Reads made at scrape time that failed (source: consumers, rpo)."}, []string{"source"}),
	}
}

func (c *scrapeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.ackPending
	ch <- c.rpo
	c.errors.Describe(ch)
}

func (c *scrapeCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	backlogs, rpos := c.backlogs, c.rpos
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()

	seen := map[[2]string]bool{} // coffer up: one consumer per service, several buses
	for _, src := range backlogs {
		bl, err := src.Backlog(ctx)
		if err != nil {
			c.errors.WithLabelValues("consumers").Inc()
		}
		for _, b := range bl {
			k := [2]string{b.Stream, b.Consumer}
			if seen[k] {
				continue
			}
			seen[k] = true
			ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(b.Pending), b.Stream, b.Consumer)
			ch <- prometheus.MustNewConstMetric(c.ackPending, prometheus.GaugeValue, float64(b.AckPending), b.Stream, b.Consumer)
		}
	}
	for _, src := range rpos {
		lags, err := src.RPOLag(ctx)
		if err != nil {
			c.errors.WithLabelValues("rpo").Inc()
			continue
		}
		for _, l := range lags {
			ch <- prometheus.MustNewConstMetric(c.rpo, prometheus.GaugeValue, l.Lag.Seconds(), l.Instance, l.Database)
		}
	}
	c.errors.Collect(ch)
}
