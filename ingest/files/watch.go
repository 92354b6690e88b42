package files

import (
	"log/slog"
	"sync"

	"github.com/fsnotify/fsnotify"
)

// watcher wakes the tailer early through inotify: a write to a file in a
// watched directory makes that file read now, and a file created, renamed
// or removed makes a rescan now. Nothing depends on it: inotify misses
// events under load (its queue overflows) and on network file systems, and
// the rescan finds everything anyway.
type watcher struct {
	w    *fsnotify.Watcher // nil: no inotify here
	out  chan event
	dirs map[string]bool
	wg   sync.WaitGroup
	stop chan struct{}
}

type event struct {
	path   string
	layout bool // created, renamed or removed, rather than written
}

func newWatcher(log *slog.Logger) *watcher {
	wt := &watcher{out: make(chan event, 256), dirs: map[string]bool{}, stop: make(chan struct{})}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		log.Warn("files: no inotify; new and written files are found by the rescan only", "err", err)
		return wt
	}
	wt.w = w
	wt.wg.Go(wt.forward)
	return wt
}

// forward turns fsnotify's events into the tailer's, dropping what does
// not fit: the next rescan covers it.
func (wt *watcher) forward() {
	for {
		select {
		case <-wt.stop:
			return
		case ev, ok := <-wt.w.Events:
			if !ok {
				return
			}
			e := event{path: ev.Name, layout: !ev.Has(fsnotify.Write)}
			select {
			case wt.out <- e:
			default:
			}
		case _, ok := <-wt.w.Errors:
			if !ok {
				return
			}
		}
	}
}

func (wt *watcher) events() <-chan event { return wt.out }

// add watches dir, once; a directory that cannot be watched is left to the
// rescan.
func (wt *watcher) add(dir string) {
	if wt.w == nil || wt.dirs[dir] {
		return
	}
	wt.dirs[dir] = true
	wt.w.Add(dir)
}

func (wt *watcher) close() {
	if wt.w == nil {
		return
	}
	close(wt.stop)
	wt.w.Close()
	wt.wg.Wait()
}
