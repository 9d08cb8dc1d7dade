// Package driverbench compares SQLite drivers and state layouts for ferry's
// checkpoint hot path (issue 15 item 5): see BenchmarkHotPath and
// docs/benchmarks.md. It is a separate module so that the drivers it measures never
// become dependencies of ferry itself; all of its code is in the _test.go files.
package driverbench
