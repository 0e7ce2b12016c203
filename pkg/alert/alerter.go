package alert

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/telemetry"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// Config configures an Alerter. Zero values mean the defaults.
type Config struct {
	// Channels are where every alert goes (the alerter's flags), besides
	// the channels the settings in the catalog name.
	Channels []Channel
	// SMTP is the mail server of the settings' mail channels; nil leaves
	// them unsent (and logged).
	SMTP *SMTP
	// HTTPClient posts to the settings' webhooks. Default: a 30s timeout.
	HTTPClient *http.Client
	// MaxEventAge: an alert opened by an event older than this (a new
	// alerter reading a week of stream) is recorded but not sent, and
	// neither is its resolution. Default 1h.
	MaxEventAge time.Duration
	// Patience is how long one notification is retried on a channel,
	// backing off from InitialInterval, before it is left for a later
	// sweep. Default 10m.
	Patience time.Duration
	// InitialInterval is the first wait between two tries. Default 1s.
	InitialInterval time.Duration
	// Concurrency is how many notifications are sent at once. Default 16.
	Concurrency int
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives the records. Default: discard.
	Logger *slog.Logger
}

// WithDefaults is c with the defaults in place of its zero values.
func (c Config) WithDefaults() Config {
	c.setDefaults()
	return c
}

func (c *Config) setDefaults() {
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if c.MaxEventAge == 0 {
		c.MaxEventAge = time.Hour
	}
	if c.Patience == 0 {
		c.Patience = 10 * time.Minute
	}
	if c.InitialInterval == 0 {
		c.InitialInterval = time.Second
	}
	if c.Concurrency == 0 {
		c.Concurrency = 16
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.MaxEventAge < 0 {
		errs = append(errs, fmt.Errorf("negative max event age %v", c.MaxEventAge))
	}
	if c.Patience < 0 {
		errs = append(errs, fmt.Errorf("negative patience %v", c.Patience))
	}
	if c.InitialInterval < 0 {
		errs = append(errs, fmt.Errorf("negative initial interval %v", c.InitialInterval))
	}
	if c.Concurrency < 0 {
		errs = append(errs, fmt.Errorf("negative concurrency %d", c.Concurrency))
	}
	if c.SMTP != nil {
		errs = append(errs, c.SMTP.Validate())
	}
	names := map[string]bool{}
	for _, ch := range c.Channels {
		if names[ch.Name()] {
			errs = append(errs, fmt.Errorf("two channels named %q", ch.Name()))
		}
		names[ch.Name()] = true
	}
	return errors.Join(errs...)
}

// Alerter applies changes to the alerts and sends their notifications in
// the background: Apply returns once the alerts are recorded, whatever
// the channels do.
type Alerter struct {
	store *Store
	cfg   Config
	log   *slog.Logger
	sem   chan struct{}
	// ctx ends the deliveries when Close is called.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// last is, per alert, the end of the latest sending started: the next
	// waits for it, so an alert goes out before its resolution.
	mu   sync.Mutex
	last map[string]chan struct{}
}

// New returns an alerter keeping its alerts in cat (its `alerts`,
// `alert_settings` and `alert_rules` buckets).
func New(cat *catalog.Catalog, cfg Config) (*Alerter, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("alert config: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Alerter{store: NewStore(cat), cfg: cfg, log: cfg.Logger, sem: make(chan struct{}, cfg.Concurrency),
		ctx: ctx, cancel: cancel, last: map[string]chan struct{}{}}, nil
}

// Store is the alerter's store.
func (a *Alerter) Store() *Store { return a.store }

// Apply records each change, in order, under the settings' rules, and
// starts sending the notification of each alert it opens or resolves.
func (a *Alerter) Apply(ctx context.Context, changes []Change) error {
	if len(changes) == 0 {
		return nil
	}
	settings, err := a.store.Settings(ctx)
	if err != nil {
		return err
	}
	now := a.cfg.Now()
	for _, c := range changes {
		notify := c.At.IsZero() || now.Sub(c.At) <= a.cfg.MaxEventAge
		st, err := a.store.Apply(ctx, c, enabled(settings, c.Rule), notify, now)
		if err != nil {
			return err
		}
		if st == nil {
			continue
		}
		log := a.log.With(slog.String("alert", c.Key()), slog.String("rule", string(c.Rule)),
			slog.String(telemetry.InstanceKey, c.Instance), slog.String(telemetry.DatabaseKey, c.Database))
		switch {
		case c.Open:
			log.WarnContext(ctx, "alert opened", slog.String("summary", st.GetSummary()), slog.Bool("notify", notify))
		default:
			log.InfoContext(ctx, "alert resolved", slog.String("summary", st.GetSummary()))
		}
		if st.GetPending() != "" {
			a.deliver(c.Key(), st)
		}
	}
	return nil
}

// Sweep sends the notifications whose sending stopped (a process that
// stopped, or a channel that was down longer than Config.Patience).
func (a *Alerter) Sweep(ctx context.Context) error {
	now := a.cfg.Now()
	claimed, err := a.store.Claim(ctx, now.Add(-a.cfg.Patience-time.Minute), now)
	for key, st := range claimed {
		a.log.InfoContext(ctx, "alert notification sent again", slog.String("alert", key),
			slog.String("state", st.GetPending()))
		a.deliver(key, st)
	}
	return err
}

// Close stops the sending (what is left is sent by a later sweep, of this
// alerter or another) and waits for it to end, at most until ctx ends.
func (a *Alerter) Close(ctx context.Context) error {
	a.cancel()
	done := make(chan struct{})
	go func() { a.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("alert deliveries still running: %w", ctx.Err())
	}
}

// Wait waits for the notifications being sent (tests).
func (a *Alerter) Wait() { a.wg.Wait() }

// channels are the flags' channels and the settings'.
func (a *Alerter) channels(s *cofferv1.AlertSettings) []Channel {
	out := slices.Clone(a.cfg.Channels)
	for _, c := range s.GetChannels() {
		switch c.GetFormat() {
		case FormatEmail:
			if a.cfg.SMTP == nil {
				a.log.Error("alert channel needs an SMTP server; none is set", slog.String("channel", c.GetName()))
				continue
			}
			out = append(out, &Mail{ChannelName: c.GetName(), Server: *a.cfg.SMTP, To: c.GetTo()})
		default:
			out = append(out, &Webhook{ChannelName: c.GetName(), URL: c.GetUrl(), Format: c.GetFormat(), Client: a.cfg.HTTPClient})
		}
	}
	return out
}

// deliver sends st's pending notification to every channel that does not
// have it yet, each retried with backoff for Config.Patience, in the
// background.
func (a *Alerter) deliver(key string, held *cofferv1.AlertState) {
	a.mu.Lock()
	prev, done := a.last[key], make(chan struct{})
	a.last[key] = done
	a.mu.Unlock()
	a.wg.Go(func() {
		defer func() {
			close(done)
			a.mu.Lock()
			if a.last[key] == done {
				delete(a.last, key)
			}
			a.mu.Unlock()
		}()
		if prev != nil {
			select {
			case <-prev:
			case <-a.ctx.Done():
				return
			}
		}
		select {
		case a.sem <- struct{}{}:
			defer func() { <-a.sem }()
		case <-a.ctx.Done():
			return
		}
		ctx := a.ctx
		// waiting for its turn, the notification may have been claimed by a
		// sweep (here or in another replica): whoever claimed it last sends it
		st, err := a.store.Renew(ctx, key, held, a.cfg.Now())
		if err != nil || st == nil {
			if err != nil {
				a.log.ErrorContext(ctx, "alert not sent; left for the next sweep", slog.String("alert", key), slog.Any("error", err))
			}
			return
		}
		n := NotificationOf(key, st)
		settings, err := a.store.Settings(ctx)
		if err != nil {
			a.log.ErrorContext(ctx, "alert not sent; left for the next sweep", slog.String("alert", key), slog.Any("error", err))
			return
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		all := true
		for _, ch := range a.channels(settings) {
			if slices.Contains(st.GetDelivered(), ch.Name()) {
				continue
			}
			wg.Go(func() {
				if !a.send(ctx, key, n, ch) {
					mu.Lock()
					all = false
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if !all {
			return // left pending: a later sweep sends it
		}
		if err := a.store.Done(ctx, key, n.ID); err != nil {
			a.log.ErrorContext(ctx, "alert sent, not recorded", slog.String("alert", key), slog.Any("error", err))
		}
	})
}

// send sends n to ch, retrying, and records it; it reports whether ch is
// done with n (sent, or refused for good).
func (a *Alerter) send(ctx context.Context, key string, n Notification, ch Channel) bool {
	log := a.log.With(slog.String("alert", key), slog.String("channel", ch.Name()), slog.String("state", n.State))
	bo := backoff.NewExponentialBackOff(backoff.WithInitialInterval(a.cfg.InitialInterval),
		backoff.WithMaxInterval(max(a.cfg.InitialInterval, time.Minute)), backoff.WithMaxElapsedTime(a.cfg.Patience))
	refused := false
	err := backoff.RetryNotify(func() error {
		err := ch.Send(ctx, n)
		var perm *backoff.PermanentError
		refused = errors.As(err, &perm)
		return err
	}, backoff.WithContext(bo, ctx), func(err error, wait time.Duration) {
		log.WarnContext(ctx, "alert not sent; trying again", slog.Any("error", err), slog.Duration("backoff", wait))
	})
	switch {
	case err == nil:
		log.InfoContext(ctx, "alert sent")
	case refused:
		log.ErrorContext(ctx, "alert refused by its channel; not sent", slog.Any("error", err))
	default:
		log.ErrorContext(ctx, "alert not sent; left for the next sweep", slog.Any("error", err))
		return false
	}
	if err := a.store.Delivered(ctx, key, n.ID, ch.Name()); err != nil {
		log.ErrorContext(ctx, "alert sent, not recorded", slog.Any("error", err))
		return false
	}
	return true
}
