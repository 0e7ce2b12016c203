package tds

import (
	"fmt"
	"log/slog"
	"net"
	"sync"
)

// firstSPID is the session id of the first connection, as on SQL Server
// where lower ids belong to system sessions.
const firstSPID = 51

// Server answers TDS clients with a Handler.
type Server struct {
	cfg Config
	h   Handler
	log *slog.Logger

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	nextSPID  uint16
	wg        sync.WaitGroup
}

// NewServer returns a server that answers TDS clients with h. A nil logger
// discards log records. A PacketSize outside 512..32767 is replaced by 4096.
func NewServer(cfg Config, h Handler, logger *slog.Logger) *Server {
	if cfg.PacketSize < minPacketSize || cfg.PacketSize > maxPacketSize {
		cfg.PacketSize = defaultPktSize
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Server{
		cfg:       cfg,
		h:         h,
		log:       logger,
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*conn]struct{}),
		nextSPID:  firstSPID,
	}
}

// Serve accepts connections on l until Close, serving each in its own
// goroutine. It returns nil after Close (also when Close came first), or
// the error that stopped Accept. l is closed when Serve returns.
func (s *Server) Serve(l net.Listener) error {
	defer func() { _ = l.Close() }()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	for {
		nc, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			return fmt.Errorf("accept tds connection: %w", err)
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = nc.Close()
			return nil
		}
		c := newConn(s, nc, s.nextSPID)
		s.nextSPID++
		if s.nextSPID == 0 {
			s.nextSPID = firstSPID
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			c.serve()
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// Close stops accepting, closes every connection and waits until their
// goroutines have returned.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for l := range s.listeners {
		_ = l.Close()
	}
	for c := range s.conns {
		c.close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}
