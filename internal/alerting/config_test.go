package alerting

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestValidateReportsEveryProblemWithItsPath(t *testing.T) {
	c := Config{
		Files:              []string{"testdata/bad.rules.yml", "testdata/missing-*.yml"},
		EvaluationInterval: time.Minute,
		Alertmanagers:      []string{"http://am:9093", "am:9093"},
		Webhooks:           []string{"ftp://hook"},
		ExternalLabels:     map[string]string{"ok": "x"},
	}
	err := errors.Join(c.Problems()...)
	require.Error(t, err)
	msg := err.Error()
	for _, want := range []string{
		`files[1]: "testdata/missing-*.yml" matches no file`,
		"files: testdata/bad.rules.yml:", // the parse error names the file
		"5:15: group \"broken\", rule 1", // and the rule, with line:col
		`alertmanagers[1]: "am:9093" is not an http(s) URL`,
		`webhooks[0]: "ftp://hook" is not an http(s) URL`,
	} {
		require.Contains(t, msg, want)
	}
	require.NotContains(t, msg, "alertmanagers[0]")
}

func TestValidateAcceptsShippedExample(t *testing.T) {
	c := Config{Files: []string{"../../examples/rules/*.yml"}, EvaluationInterval: time.Minute}
	require.Empty(t, c.Problems())
	require.NotEmpty(t, (&Config{Files: []string{"testdata/errors.rules.yml"}}).Problems(), "files need an evaluation interval")
}
