package cli

import (
	"fmt"
	"io"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

var metricsFn = regexp.MustCompile(`\|\s*(rate|count_over_time|avg_over_time|max_over_time|min_over_time|sum_over_time|quantile_over_time|histogram_over_time)\s*\(`)

func queryCommand() *cobra.Command {
	var (
		c     client
		since string
		limit int
		spss  int
	)
	cmd := &cobra.Command{
		Use:   "query '<traceql>'",
		Short: "Search traces with TraceQL (metrics queries print series)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := parseSince(since)
			if err != nil {
				return err
			}
			end := time.Now()
			start := end.Add(-d)
			if metricsFn.MatchString(args[0]) {
				var res metricsResponse
				p := url.Values{"q": {args[0]}, "start": {strconv.FormatInt(start.Unix(), 10)}, "end": {strconv.FormatInt(end.Unix(), 10)}}
				if err := c.getJSON(cmd.Context(), "/api/metrics/query_range", p, &res); err != nil {
					return err
				}
				printSeries(cmd.OutOrStdout(), res)
				return nil
			}
			var res searchResponse
			p := url.Values{"q": {args[0]}, "limit": {strconv.Itoa(limit)}, "spss": {strconv.Itoa(spss)},
				"start": {strconv.FormatInt(start.Unix(), 10)}, "end": {strconv.FormatInt(end.Unix(), 10)}}
			if err := c.getJSON(cmd.Context(), "/api/search", p, &res); err != nil {
				return err
			}
			printSearch(cmd.OutOrStdout(), res)
			return nil
		},
	}
	c.flags(cmd)
	cmd.Flags().StringVar(&since, "since", "1h", "how far back to search")
	cmd.Flags().IntVar(&limit, "limit", 20, "traces to return")
	cmd.Flags().IntVar(&spss, "spss", 3, "matching spans shown per trace")
	return cmd
}

type kv struct {
	Key   string         `json:"key"`
	Value map[string]any `json:"value"`
}

func (k kv) text() string {
	for _, v := range k.Value {
		return fmt.Sprint(v)
	}
	return ""
}

type searchResponse struct {
	Traces []struct {
		TraceID           string `json:"traceID"`
		RootServiceName   string `json:"rootServiceName"`
		RootTraceName     string `json:"rootTraceName"`
		StartTimeUnixNano string `json:"startTimeUnixNano"`
		DurationMs        int64  `json:"durationMs"`
		SpanSets          []struct {
			Spans []struct {
				SpanID        string `json:"spanID"`
				Name          string `json:"name"`
				DurationNanos string `json:"durationNanos"`
				Attributes    []kv   `json:"attributes"`
			} `json:"spans"`
			Matched int `json:"matched"`
		} `json:"spanSets"`
	} `json:"traces"`
}

// traceDuration prints a search result's duration, which Tempo's API gives
// in whole milliseconds: a trace under one millisecond is 0 there, and
// shown as Grafana shows it, not as "0s".
func traceDuration(ms int64) string {
	if ms <= 0 {
		return "<1ms"
	}
	return (time.Duration(ms) * time.Millisecond).String()
}

func printSearch(w io.Writer, res searchResponse) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TRACE ID\tSTART\tDURATION\tROOT SERVICE\tROOT NAME\tMATCHED")
	for _, t := range res.Traces {
		ns, _ := strconv.ParseInt(t.StartTimeUnixNano, 10, 64)
		matched := 0
		for _, ss := range t.SpanSets {
			matched += ss.Matched
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", clean(t.TraceID), time.Unix(0, ns).Format("15:04:05.000"),
			traceDuration(t.DurationMs), clean(t.RootServiceName), clean(t.RootTraceName), matched)
		for _, ss := range t.SpanSets {
			for _, sp := range ss.Spans {
				d, _ := strconv.ParseInt(sp.DurationNanos, 10, 64)
				var attrs []string
				for _, a := range sp.Attributes {
					attrs = append(attrs, clean(a.Key)+"="+clean(a.text()))
				}
				fmt.Fprintf(tw, "  └ %s\t\t%s\t%s\t%s\t\n", clean(sp.SpanID), time.Duration(d).Round(time.Microsecond), clean(sp.Name), strings.Join(attrs, " "))
			}
		}
	}
	tw.Flush()
	if len(res.Traces) == 0 {
		fmt.Fprintln(w, "no traces matched")
	}
}

type metricsResponse struct {
	Series []struct {
		Labels  []kv `json:"labels"`
		Samples []struct {
			TimestampMs string  `json:"timestampMs"`
			Value       float64 `json:"value"`
		} `json:"samples"`
	} `json:"series"`
}

func printSeries(w io.Writer, res metricsResponse) {
	sort.SliceStable(res.Series, func(i, j int) bool { return len(res.Series[i].Samples) > len(res.Series[j].Samples) })
	for _, s := range res.Series {
		var ls []string
		for _, l := range s.Labels {
			ls = append(ls, clean(l.Key)+"="+strconv.Quote(l.text()))
		}
		fmt.Fprintf(w, "{%s}\n", strings.Join(ls, ", "))
		for _, p := range s.Samples {
			ms, _ := strconv.ParseInt(p.TimestampMs, 10, 64)
			fmt.Fprintf(w, "  %s  %g\n", time.UnixMilli(ms).Format("15:04:05"), p.Value)
		}
	}
	if len(res.Series) == 0 {
		fmt.Fprintln(w, "no series")
	}
}
