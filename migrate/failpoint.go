package migrate

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Failpoints let the crash tests kill ferry (SIGKILL, as kill -9 would) at exactly the
// moments where a crash is most dangerous. FERRY_FAILPOINT=name[@n][,name[@n]...]
// arms them: the process kills itself the nth time (default: the first) it reaches a
// named point. Unset, a failpoint costs one nil check.
//
// Named points:
//
//	copy-after-put         a target PUT succeeded, its state not yet written
//	verify-after-check     a target copy was checked, the verified state not yet durable
//	delete-after-intent    delete intents are durable, no delete call made yet
//	delete-after-call      a delete call returned, its outcome not yet recorded
//	report-mid             the report is half written (at a manifest line)
const failpointEnv = "FERRY_FAILPOINT"

// Failpoints lists the named points, for tests.
var Failpoints = []string{"copy-after-put", "verify-after-check", "delete-after-intent", "delete-after-call", "report-mid"}

var armed = parseFailpoints(os.Getenv(failpointEnv))

type failpointSet struct {
	mu   sync.Mutex
	at   map[string]int // name -> the hit that kills
	hits map[string]int
}

func parseFailpoints(v string) *failpointSet {
	if v == "" {
		return nil
	}
	s := &failpointSet{at: map[string]int{}, hits: map[string]int{}}
	for _, f := range strings.Split(v, ",") {
		name, nth, _ := strings.Cut(strings.TrimSpace(f), "@")
		n, err := strconv.Atoi(nth)
		if err != nil || n < 1 {
			n = 1
		}
		if name != "" {
			s.at[name] = n
		}
	}
	return s
}

// failpoint kills the process with SIGKILL if name is armed and reached for the nth time.
func failpoint(name string) {
	if armed != nil {
		armed.hit(name)
	}
}

func (s *failpointSet) hit(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.at[name]
	if !ok {
		return
	}
	s.hits[name]++
	if s.hits[name] == n {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // SIGKILL cannot be caught: never return to the caller
	}
}
