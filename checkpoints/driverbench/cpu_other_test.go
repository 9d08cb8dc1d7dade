//go:build !unix

package driverbench

import "time"

func cpuTime() time.Duration { return 0 }
