package cli

import (
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

func traceCommand() *cobra.Command {
	var (
		c     client
		width int
	)
	cmd := &cobra.Command{
		Use:   "trace <trace-id>",
		Short: "Print a trace as a waterfall",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := c.get(cmd.Context(), "/api/traces/"+url.PathEscape(args[0]), nil, "application/protobuf")
			if err != nil {
				return err
			}
			td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(b)
			if err != nil {
				return fmt.Errorf("decode trace: %w", err)
			}
			Waterfall(cmd.OutOrStdout(), storage.AppendTraces(nil, td), width)
			return nil
		},
	}
	c.flags(cmd)
	cmd.Flags().IntVar(&width, "width", 40, "width of the timing bars")
	return cmd
}

// Waterfall prints spans as an indented tree in start order, each with a
// bar placed on the trace's time axis, its duration, and ERROR when its
// status is an error. Orphans (parent not in the trace) start new trees.
func Waterfall(w io.Writer, spans []storage.Span, width int) {
	if len(spans) == 0 {
		fmt.Fprintln(w, "empty trace")
		return
	}
	if width < 10 {
		width = 10
	}
	byID := map[storage.SpanID]int{}
	start, end := spans[0].StartUnixNano, spans[0].EndUnixNano
	for i, s := range spans {
		byID[s.SpanID] = i
		start = min(start, s.StartUnixNano)
		end = max(end, s.EndUnixNano)
	}
	kids := map[int][]int{}
	var roots []int
	for i, s := range spans {
		if p, ok := byID[s.ParentSpanID]; ok && !s.ParentSpanID.IsEmpty() && p != i {
			kids[p] = append(kids[p], i)
		} else {
			roots = append(roots, i)
		}
	}
	byStart := func(ix []int) {
		sort.SliceStable(ix, func(a, b int) bool { return spans[ix[a]].StartUnixNano < spans[ix[b]].StartUnixNano })
	}
	byStart(roots)
	total := max(end-start, 1)
	errs := 0
	for _, s := range spans {
		if s.StatusCode == storage.StatusError {
			errs++
		}
	}
	fmt.Fprintf(w, "Trace %s  %d spans  %s  %d errors\n", spans[0].TraceID, len(spans), time.Duration(total).Round(time.Microsecond), errs)

	type line struct{ label, bar, dur, mark string }
	var lines []line
	labelW := 0
	seen := map[int]bool{}
	var walk func(i int, prefix string, last, top bool)
	walk = func(i int, prefix string, last, top bool) {
		if seen[i] { // parent cycles in bad data
			return
		}
		seen[i] = true
		s := spans[i]
		branch, next := "", prefix
		if !top {
			if last {
				branch, next = prefix+"└─ ", prefix+"   "
			} else {
				branch, next = prefix+"├─ ", prefix+"│  "
			}
		}
		label := branch + clean(s.Resource.ServiceName()) + ": " + clean(s.Name)
		from := int((s.StartUnixNano - start) * int64(width) / total)
		to := int((s.EndUnixNano - start) * int64(width) / total)
		to = max(to, from+1)
		to = min(to, width)
		from = min(from, width-1)
		bar := strings.Repeat(" ", from) + strings.Repeat("█", to-from) + strings.Repeat(" ", width-to)
		mark := ""
		if s.StatusCode == storage.StatusError {
			mark = "ERROR"
			if s.StatusMessage != "" {
				mark += " " + clean(s.StatusMessage)
			}
		}
		lines = append(lines, line{label, bar, time.Duration(s.Duration()).Round(time.Microsecond).String(), mark})
		labelW = max(labelW, len([]rune(label)))
		ks := kids[i]
		byStart(ks)
		for k, c := range ks {
			walk(c, next, k == len(ks)-1, false)
		}
	}
	for _, r := range roots {
		walk(r, "", true, true)
	}
	for _, l := range lines {
		pad := labelW - len([]rune(l.label))
		out := fmt.Sprintf("%s%s │%s│ %9s %s", l.label, strings.Repeat(" ", pad), l.bar, l.dur, l.mark)
		fmt.Fprintln(w, strings.TrimRight(out, " "))
	}
}
