package scheduler

// LookedAt is how many databases the ticks of s have looked at so far.
func (s *Service) LookedAt() int64 { return s.lookedAt.Load() }
