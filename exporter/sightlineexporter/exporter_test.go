package sightlineexporter

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sightlinehq/sightline/extension/sightlinestorage"
	"github.com/sightlinehq/sightline/internal/otlpguard"
	"github.com/sightlinehq/sightline/internal/store"
)

// The store's refusals for its budget and its compaction backlog are
// backpressure: gRPC Unavailable with RetryInfo, which the OTLP receiver
// turns into HTTP 503 + Retry-After. A failed disk write is retryable
// as it is; anything else is permanent, so the receiver answers 400 and
// the client does not send it again.
func TestConsumeErrorsAreOTLPCodes(t *testing.T) {
	for _, sentinel := range []error{store.ErrOverBudget, store.ErrBacklog} {
		err := consumeErr(errors.Join(errors.New("x"), sentinel))
		st, ok := status.FromError(err)
		require.True(t, ok, "%v", sentinel)
		require.Equal(t, codes.Unavailable, st.Code(), "%v", sentinel)
		require.Equal(t, sightlinestorage.Backoff, otlpguard.RetryDelay(err), "%v", sentinel)
	}
	write := errors.Join(errors.New("disk full"), store.ErrWrite)
	require.Same(t, write, consumeErr(write))
	require.False(t, consumererror.IsPermanent(consumeErr(write)))
	require.True(t, consumererror.IsPermanent(consumeErr(errors.New("bad span"))))
	require.NoError(t, consumeErr(nil))
}
