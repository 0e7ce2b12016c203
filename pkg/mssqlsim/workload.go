package mssqlsim

import (
	"time"
)

// WorkloadOptions shape a running workload.
type WorkloadOptions struct {
	// TPS is the rate of transactions a second; 0 stops the workload.
	TPS float64
	// PagesPerTx is how many pages each transaction rewrites (default 4).
	PagesPerTx int
	// MarkEvery makes every Nth transaction a marked one named
	// "mark-<lsn>"; 0 never.
	MarkEvery int
	// BulkEvery makes every Nth transaction a bulk operation of 64 pages;
	// 0 never.
	BulkEvery int
}

type workload struct {
	done chan struct{}
	quit chan struct{}
}

func (w *workload) stop() {
	close(w.quit)
	<-w.done
}

// StartWorkload starts, changes or (with TPS 0) stops a database's
// workload. Transactions are stamped with the instance's clock.
func (i *Instance) StartWorkload(name string, opt WorkloadOptions) error {
	db, e := i.lookup(name)
	if e != nil {
		return e
	}
	i.mu.Lock()
	if old := i.workloads[db.dbData]; old != nil {
		delete(i.workloads, db.dbData)
		i.mu.Unlock()
		old.stop()
		i.mu.Lock()
	}
	defer i.mu.Unlock()
	if opt.TPS <= 0 {
		return nil
	}
	if opt.PagesPerTx <= 0 {
		opt.PagesPerTx = 4
	}
	w := &workload{done: make(chan struct{}), quit: make(chan struct{})}
	i.workloads[db.dbData] = w
	go i.runWorkload(db.Name, opt, w)
	return nil
}

func (i *Instance) runWorkload(name string, opt WorkloadOptions, w *workload) {
	defer close(w.done)
	t := time.NewTicker(time.Duration(float64(time.Second) / opt.TPS))
	defer t.Stop()
	n := 0
	for {
		select {
		case <-w.quit:
			return
		case <-t.C:
		}
		n++
		var err error
		switch {
		case opt.BulkEvery > 0 && n%opt.BulkEvery == 0:
			_, err = i.BulkLoad(name, 64)
		case opt.MarkEvery > 0 && n%opt.MarkEvery == 0:
			_, err = i.Mark(name, "mark-"+time.Now().UTC().Format("150405.000"))
		default:
			_, err = i.Commit(name, opt.PagesPerTx)
		}
		if err != nil {
			// offline, restoring or read-only: skip the tick
			continue
		}
	}
}

// stopWorkloads stops every workload; used by Close.
func (i *Instance) stopWorkloads() {
	i.mu.Lock()
	ws := i.workloads
	i.workloads = map[*dbData]*workload{}
	i.mu.Unlock()
	for _, w := range ws {
		w.stop()
	}
}
