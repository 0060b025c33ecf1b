package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// A trace under a millisecond has durationMs 0 in Tempo's search answer;
// the table says "<1ms", not "0s", and spans keep their microseconds.
func TestSearchTableSubMillisecond(t *testing.T) {
	var res searchResponse
	body := `{"traces":[
		{"traceID":"a1","rootServiceName":"cache","rootTraceName":"GET","startTimeUnixNano":"0","durationMs":0,
		 "spanSets":[{"matched":1,"spans":[{"spanID":"s1","name":"GET","durationNanos":"412345"}]}]},
		{"traceID":"b2","rootServiceName":"api","rootTraceName":"POST","startTimeUnixNano":"0","durationMs":9}]}`
	if err := json.Unmarshal([]byte(body), &res); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	printSearch(&out, res)
	lines := strings.Split(out.String(), "\n")
	if !strings.Contains(lines[1], "a1") || !strings.Contains(lines[1], "<1ms") || strings.Contains(lines[1], "0s") {
		t.Errorf("sub-millisecond trace: %q", lines[1])
	}
	if !strings.Contains(lines[2], "412µs") {
		t.Errorf("its span: %q", lines[2])
	}
	if !strings.Contains(lines[3], "b2") || !strings.Contains(lines[3], "9ms") {
		t.Errorf("9 ms trace: %q", lines[3])
	}
}
