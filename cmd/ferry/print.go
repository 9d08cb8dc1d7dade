package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/migrate"
)

func ib(n int64) string {
	if n < 0 {
		n = 0
	}
	return humanize.IBytes(uint64(n))
}

func dry(b bool) string {
	if b {
		return " (dry run: nothing written)"
	}
	return ""
}

func printPlan(w io.Writer, r *migrate.PlanResult) {
	fmt.Fprintf(w, "plan of %s%s\n", r.Migration, dry(r.DryRun))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  site\tobjects\tbytes")
	for _, name := range sortedKeys(r.Sites) {
		s := r.Sites[name]
		fmt.Fprintf(tw, "  %s\t%d\t%s\n", name, s.Objects, ib(s.Bytes))
	}
	tw.Flush()
	printInventories(w, r.Inventories)
	for _, name := range sortedKeys(r.Missed) {
		mk := r.Missed[name]
		fmt.Fprintf(w, "  %s: %d keys the previous plan's inventory (%s of %s) missed, now planned%s\n",
			name, mk.Count, mk.Inventory.Format, mk.Inventory.Date.UTC().Format(time.RFC3339), examples(mk.Examples, mk.Count))
	}
	fmt.Fprintf(w, "records: %s; %s to migrate; %d new, %d changed, %d vanished since the last plan\n",
		joinCounts(r.Records), ib(r.Bytes), r.New, r.Changed, r.Vanished)
	for _, c := range r.Conflicts {
		fmt.Fprintf(w, "  conflict: %q: %s\n", c.Key, c.Reason)
	}
	printProblems(w, "failed", r.Failed)
	printProblems(w, "rejected (never copied nor deleted)", r.Rejected)
	if len(r.Stages) > 0 {
		fmt.Fprintln(w, "deletion stages (scope once every record verifies):")
		printScopes(w, r.Stages)
	}
	if r.Estimate != nil {
		printEstimate(w, r.Estimate)
	}
	fmt.Fprintf(w, "plan digest: %s\n", r.Digest)
}

// printEstimate prints the estimate's table, money and duration.
func printEstimate(w io.Writer, e *migrate.Estimate) {
	fmt.Fprintln(w, "estimate (this plan's listing and the work left: copy, verify, delete):")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  store\tlist\tget/head\tput\tdelete\tread\twritten\tegress\tcost\tlimit\ttime")
	row := func(name string, t migrate.Traffic, cost *migrate.Money, limit, at string) {
		c := "-"
		if cost != nil {
			c = money(cost.Currency, cost.Total)
		}
		fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", name, t.Requests.List, t.Requests.Get, t.Requests.Put, t.Requests.Delete,
			ib(t.BytesRead), ib(t.BytesWritten), ib(t.Egress), c, limit, at)
	}
	for _, s := range e.Stores {
		at := "-"
		if s.Seconds > 0 {
			at = migrate.FormatSeconds(s.Seconds)
		}
		row(s.Store, s.Traffic, s.Cost, s.Limit, at)
	}
	row("total", e.Total, e.Cost, "", e.Duration)
	tw.Flush()
	if c := e.Cost; c != nil {
		fmt.Fprintf(w, "money: %s once (requests %s, egress %s)", money(c.Currency, c.Total), money(c.Currency, c.Requests), money(c.Currency, c.Egress))
		for _, s := range e.Stores {
			if s.Stored > 0 && s.Cost != nil && s.Cost.StoragePerMonth > 0 {
				fmt.Fprintf(w, ", then %s a month to keep %s at the %s", money(c.Currency, s.Cost.StoragePerMonth), ib(s.Stored), s.Store)
			}
		}
		if len(e.Unpriced) > 0 {
			fmt.Fprintf(w, "; no prices for %s", strings.Join(e.Unpriced, ", "))
		}
		fmt.Fprintln(w)
	} else {
		fmt.Fprintln(w, "money: no prices in the spec (add prices: under a site or the target)")
	}
	var phases []string
	for _, ph := range []string{"plan", "copy", "verify", "delete"} {
		phases = append(phases, ph+" "+migrate.FormatSeconds(e.PhaseSeconds[ph]))
	}
	fmt.Fprintf(w, "duration at the limits: %s (%s)", e.Duration, strings.Join(phases, ", "))
	if e.FastestSeconds != nil && e.SlowestSeconds != nil {
		fmt.Fprintf(w, "; by the schedules, from %s (the fastest rates throughout) to %s (the slowest)",
			migrate.FormatSeconds(*e.FastestSeconds), migrate.FormatSeconds(*e.SlowestSeconds))
	}
	if len(e.Unlimited) > 0 {
		fmt.Fprintf(w, "; no limit on %s, so their time is not counted", strings.Join(e.Unlimited, ", "))
	}
	fmt.Fprintln(w)
}

// money is "USD 12.34", with four decimals below one unit.
func money(currency string, v float64) string {
	if v > 0 && v < 0.0001 {
		return currency + " <0.0001"
	}
	if v != 0 && v < 1 {
		return fmt.Sprintf("%s %.4f", currency, v)
	}
	return fmt.Sprintf("%s %.2f", currency, v)
}

// printInventories says which sites were planned from an inventory, and from which.
func printInventories(w io.Writer, invs map[string]migrate.InventoryInfo) {
	for _, name := range sortedKeys(invs) {
		in := invs[name]
		fmt.Fprintf(w, "  %s: planned from the %s inventory %s of %s: %d keys, %d planned, %d gone since%s",
			name, in.Format, in.Manifest, in.Date.UTC().Format(time.RFC3339), in.Keys, in.Planned, in.Gone, examples(in.GoneExamples, in.Gone))
		if in.Skipped > 0 {
			fmt.Fprintf(w, ", %d rows not the site's (other prefix, delete markers, old versions)", in.Skipped)
		}
		fmt.Fprintln(w)
	}
}

// examples is ` (e.g. "a", "b", ...)` for a few of n keys.
func examples(keys []string, n int64) string {
	if len(keys) == 0 {
		return ""
	}
	var q []string
	for _, k := range keys {
		q = append(q, fmt.Sprintf("%q", k))
	}
	more := ""
	if n > int64(len(keys)) {
		more = ", ..."
	}
	return " (e.g. " + strings.Join(q, ", ") + more + ")"
}

func printScopes(w io.Writer, scopes []migrate.StageScope) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  stage\tsites\tsample\tmode\treplicas\tbytes\tretained\tscope digest")
	for _, s := range scopes {
		sample := s.Sample
		if sample == "" {
			sample = "100%"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d\t%s\t%d\t%s\n", s.Name, strings.Join(s.Sites, ","), sample, s.Mode, s.Replicas, ib(s.Bytes), s.Retained, s.Digest)
	}
	tw.Flush()
}

func joinCounts(m map[string]int64) string {
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%d %s", m[k], k))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func printProblems(w io.Writer, label string, ps []migrate.ConflictInfo) {
	for _, p := range ps {
		fmt.Fprintf(w, "  %s: %q: %s\n", label, p.Key, p.Reason)
	}
}

func printCopy(w io.Writer, r *migrate.CopyResult) {
	if r.DryRun {
		fmt.Fprintf(w, "copy would copy %d records (%s)%s\n", r.Records, ib(r.Bytes), dry(true))
		return
	}
	fmt.Fprintf(w, "copy: %d copied (%s), %d already at the target, %d failed, %d retries\n", r.Copied, ib(r.Bytes), r.Skipped, r.Failed, r.Retries)
	printProblems(w, "failed", r.Failures)
}

func printVerify(w io.Writer, r *migrate.VerifyResult) {
	if r.DryRun {
		fmt.Fprintf(w, "verify would check %d records, reading %s%s\n", r.Records, ib(r.BytesRead), dry(true))
		return
	}
	fmt.Fprintf(w, "verify: %d of %d records verified, %d target copies missing or different; replicas: %d proven identical, %d divergent, %d missing; %s read\n",
		r.Verified, r.Records, r.Mismatched, r.ReplicasProven, r.Divergent, r.ReplicasMissing, ib(r.BytesRead))
	printProblems(w, "problem", r.Problems)
}

func printDelete(w io.Writer, r *migrate.DeleteResult) {
	s := r.Scope
	fmt.Fprintf(w, "stage %s (%s, sites %s): scope %d replicas, %s; %d retained (not verified or divergent); max_delete %d%s\n",
		r.Stage, r.Mode, strings.Join(s.Sites, ","), s.Replicas, ib(s.Bytes), s.Retained, r.Limit, dry(r.DryRun))
	if s.Digest == "" {
		return
	}
	fmt.Fprintf(w, "scope digest: %s\n", s.Digest)
	if r.DryRun {
		fmt.Fprintf(w, "to delete: ferry delete --stage %s --confirm %s\n", r.Stage, s.Digest[:12])
		return
	}
	if r.State != "" {
		fmt.Fprintf(w, "deleted %d, already deleted %d, not deleted: %d (target re-check failed), %d (changed since verify); errors %d; stage %s\n",
			r.Deleted, r.Already, r.Skipped, r.Changed, r.Errors, r.State)
		if r.Undeletable > 0 {
			fmt.Fprintf(w, "undeletable %d (the site holds them: retention policy or hold); tried again on the next run\n", r.Undeletable)
		}
	}
	printProblems(w, "problem", r.Problems)
}

func printStageOp(w io.Writer, r *migrate.StageOpResult) {
	fmt.Fprintf(w, "%s of stage %s: %d of %d replicas done; stage %s%s\n", r.Op, r.Stage, r.Done, r.Replicas, r.State, dry(r.DryRun))
	printProblems(w, "problem", r.Problems)
	if r.Next != "" {
		fmt.Fprintf(w, "next: %s\n", r.Next)
	}
}

func printRun(w io.Writer, r *migrate.RunResult) {
	if r.Plan != nil {
		printPlan(w, r.Plan)
	}
	if r.Copy != nil {
		printCopy(w, r.Copy)
	}
	if r.Verify != nil {
		printVerify(w, r.Verify)
	}
	for _, d := range r.Deletes {
		if d != nil {
			printDelete(w, d)
		}
	}
}

func printStatus(w io.Writer, r *migrate.StatusResult) {
	fmt.Fprintf(w, "migration %s", r.Migration)
	if r.PlanDigest != "" {
		fmt.Fprintf(w, ", plan %.16s (%s)", r.PlanDigest, r.PlannedAt)
	}
	fmt.Fprintln(w)
	if r.Lock != nil {
		fmt.Fprintf(w, "running: %s\n", r.Lock)
	}
	if len(r.Workers) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  worker\thost\tpid\tphase\tclaims\tranges\trecords\trate/s\tlast heartbeat\t")
		for _, x := range r.Workers {
			state := "alive"
			if x.Left {
				state = "left"
			} else if !x.Alive {
				state = "gone"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\t%d\t%d\t%d\t%.1f\t%s (%s)\t\n", x.ID, x.Host, x.PID, x.Phase, x.Claims, x.Ranges,
				x.Records, x.Rate, x.Heartbeat.UTC().Format(time.RFC3339), state)
		}
		tw.Flush()
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  records\tcount\tbytes")
	for _, s := range checkpoints.RecordStates {
		if c, ok := r.Records[s]; ok {
			fmt.Fprintf(tw, "  %s\t%d\t%s\n", s, c.N, ib(c.Bytes))
		}
	}
	tw.Flush()
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  site\treplicas by state")
	for _, site := range sortedKeys(r.Sites) {
		fmt.Fprintf(tw, "  %s\t%s\n", site, replicaCounts(r.Sites[site]))
	}
	tw.Flush()
	printInventories(w, r.Inventories)
	if len(r.Stages) > 0 {
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  stage\tmode\tstate\treplicas by state\twhen")
		for _, s := range r.Stages {
			when := ""
			if s.FinishedAt != nil {
				when = "finished " + s.FinishedAt.Format(time.RFC3339)
			} else if s.StartedAt != nil {
				when = "started " + s.StartedAt.Format(time.RFC3339)
			}
			if s.PurgeAfter != nil {
				when += ", purge after " + s.PurgeAfter.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", s.Name, s.Mode, s.State, replicaCounts(s.Replicas), when)
		}
		tw.Flush()
	}
	printProblems(w, "failed", r.Failed)
	printProblems(w, "rejected (never copied nor deleted)", r.Rejected)
	for _, d := range r.PlanDrift {
		fmt.Fprintf(w, "  changed since the plan (delete, purge, restore and report refuse until ferry plan runs again): %s\n", d)
	}
	fmt.Fprintf(w, "last minute: %d copied, %d verified, %d deleted\n", r.PerMinute["copied"], r.PerMinute["verified"], r.PerMinute["deleted"])
	if len(r.Retries) > 0 {
		var parts []string
		for _, k := range sortedKeys(r.Retries) {
			parts = append(parts, fmt.Sprintf("%s %d", k, r.Retries[k]))
		}
		fmt.Fprintf(w, "requests retried (throttling, 5xx, dropped connections): %s\n", strings.Join(parts, ", "))
	}
	if len(r.Limits) > 0 {
		printLimits(w, r.Limits)
	}
	if r.User != "" {
		fmt.Fprintf(w, "user %s: %d records\n", r.User, len(r.Users))
		for _, u := range r.Users {
			fmt.Fprintf(w, "  %q %s %s", u.Key, u.State, ib(u.Size))
			if u.Target != "" {
				fmt.Fprintf(w, " -> %s", u.Target)
			}
			if u.Error != "" {
				fmt.Fprintf(w, " (%s)", u.Error)
			}
			fmt.Fprintln(w)
			for _, p := range u.Replicas {
				fmt.Fprintf(w, "      %s: %s %s", p.Site, p.State, p.URI)
				if p.Stage != "" {
					fmt.Fprintf(w, " [stage %s]", p.Stage)
				}
				fmt.Fprintln(w)
			}
		}
	}
}

func replicaCounts(m map[checkpoints.ReplicaState]checkpoints.Count) string {
	var parts []string
	for _, s := range checkpoints.ReplicaStates {
		if c, ok := m[s]; ok && c.N > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", c.N, s))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func tick(seconds int) <-chan time.Time {
	if seconds < 1 {
		seconds = 1
	}
	return time.After(time.Duration(seconds) * time.Second)
}
