package cli

import (
	"fmt"
	"io"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func logsCommand() *cobra.Command {
	var (
		c       client
		since   string
		limit   int
		forward bool
	)
	cmd := &cobra.Command{
		Use:   "logs '<logql>'",
		Short: "Query logs with LogQL (metric queries print series)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := parseSince(since)
			if err != nil {
				return err
			}
			end := time.Now()
			dir := "backward"
			if forward {
				dir = "forward"
			}
			p := url.Values{"query": {args[0]}, "limit": {strconv.Itoa(limit)}, "direction": {dir},
				"start": {strconv.FormatInt(end.Add(-d).UnixNano(), 10)}, "end": {strconv.FormatInt(end.UnixNano(), 10)}}
			var res lokiResponse
			if err := c.getJSON(cmd.Context(), "/loki/api/v1/query_range", p, &res); err != nil {
				return err
			}
			printLoki(cmd.OutOrStdout(), res, forward)
			return nil
		},
	}
	c.flags(cmd)
	cmd.Flags().StringVar(&since, "since", "1h", "how far back to query")
	cmd.Flags().IntVar(&limit, "limit", 100, "lines to return")
	cmd.Flags().BoolVar(&forward, "forward", false, "oldest first")
	return cmd
}

type lokiResponse struct {
	Data struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Stream map[string]string `json:"stream"`
			Metric map[string]string `json:"metric"`
			Values [][]any           `json:"values"`
		} `json:"result"`
	} `json:"data"`
}

func labelText(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = clean(k) + "=" + strconv.Quote(m[k])
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func printLoki(w io.Writer, res lokiResponse, forward bool) {
	if res.Data.ResultType == "matrix" {
		for _, s := range res.Data.Result {
			fmt.Fprintln(w, labelText(s.Metric))
			for _, v := range s.Values {
				ts, _ := v[0].(float64)
				fmt.Fprintf(w, "  %s  %v\n", time.Unix(int64(ts), 0).Format("15:04:05"), v[1])
			}
		}
		return
	}
	type entry struct {
		ts     int64
		labels string
		line   string
	}
	var all []entry
	for _, s := range res.Data.Result {
		lt := labelText(s.Stream)
		for _, v := range s.Values {
			tss, _ := v[0].(string)
			line, _ := v[1].(string)
			ts, _ := strconv.ParseInt(tss, 10, 64)
			all = append(all, entry{ts, lt, line})
		}
	}
	sort.SliceStable(all, func(i, j int) bool {
		if forward {
			return all[i].ts < all[j].ts
		}
		return all[i].ts > all[j].ts
	})
	for _, e := range all {
		fmt.Fprintf(w, "%s %s %s\n", time.Unix(0, e.ts).Format(time.RFC3339Nano), e.labels, clean(e.line))
	}
	if len(all) == 0 {
		fmt.Fprintln(w, "no lines matched")
	}
}
