package sightlinestorage

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

// The ingesters a DNS name resolves to follow its answers: new addresses
// are added, gone ones dropped, a failed lookup keeps the last answer, and
// a name that no longer exists (every ingester gone) empties the list.
func TestDNSIngestersFollowTheAnswers(t *testing.T) {
	answers := []struct {
		addrs []string
		err   error
	}{
		{addrs: []string{"10.0.0.2", "10.0.0.1", "10.0.0.1"}},
		{addrs: []string{"10.0.0.2", "fd00::3"}},
		{err: errors.New("connection refused")},
		{err: &net.DNSError{Err: "no such host", Name: "ingester", IsNotFound: true}},
	}
	i := 0
	d := newDNSIngesters(DNSConfig{Hostname: "ingester.observability.svc", Port: 3201, Scheme: "http"}, http.DefaultClient, zap.NewNop())
	d.lookup = func(_ context.Context, host string) ([]string, error) {
		require.Equal(t, "ingester.observability.svc", host)
		a := answers[i]
		i++
		return a.addrs, a.err
	}
	urls := func() []string {
		var out []string
		for _, c := range d.list() {
			out = append(out, c.String())
		}
		return out
	}
	ctx := context.Background()

	require.NoError(t, d.refresh(ctx))
	require.Equal(t, []string{"http://10.0.0.1:3201", "http://10.0.0.2:3201"}, urls())
	kept := d.list()[1]

	require.NoError(t, d.refresh(ctx))
	require.Equal(t, []string{"http://10.0.0.2:3201", "http://[fd00::3]:3201"}, urls())
	require.Same(t, kept, d.list()[0], "a client is kept while its address is")

	require.Error(t, d.refresh(ctx))
	require.Equal(t, []string{"http://10.0.0.2:3201", "http://[fd00::3]:3201"}, urls(), "a failed lookup keeps the last answer")

	require.NoError(t, d.refresh(ctx))
	require.Empty(t, urls(), "a name that is gone has no ingesters")
}
