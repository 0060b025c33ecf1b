package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sightlinehq/sightline/internal/objstore"
)

// Saved queries: the query library behind the UI's "Saved" lists, shared
// by everyone who uses the tenant, as Grafana's query library is. A
// tenant's queries are one object (queries/global.json or
// queries/tenants/<tenant>.json), rewritten whole on each change: it is
// small (MaxQueries of at most MaxQueryBytes), and changed by hand.

// Query kinds, by query language.
const (
	KindPromQL  = "promql"
	KindLogQL   = "logql"
	KindTraceQL = "traceql"
)

// Limits of the query library.
const (
	MaxQueries     = 1000
	MaxQueryBytes  = 16 << 10
	maxQueryName   = 200
	queriesVersion = 1
)

// ErrQueryNotFound: no saved query with that ID.
var ErrQueryNotFound = errors.New("saved query not found")

// Query is a saved query.
type Query struct {
	ID      string    `json:"id"`
	Kind    string    `json:"kind"`
	Name    string    `json:"name"`
	Query   string    `json:"query"`
	Updated time.Time `json:"updated"`
}

type queryFile struct {
	Version int     `json:"version"`
	Queries []Query `json:"queries"`
}

func queriesKey(tenant string) string {
	if tenant == "" {
		return "queries/global.json"
	}
	return "queries/tenants/" + tenant + ".json"
}

func (s *Store) loadQueries(ctx context.Context, tenant string) (queryFile, error) {
	b, err := s.bucket.Get(ctx, queriesKey(tenant))
	if errors.Is(err, objstore.ErrNotExist) {
		return queryFile{Version: queriesVersion}, nil
	}
	if err != nil {
		return queryFile{}, fmt.Errorf("read saved queries: %w", err)
	}
	var f queryFile
	if err := json.Unmarshal(b, &f); err != nil {
		return queryFile{}, fmt.Errorf("read saved queries: %w", err)
	}
	return f, nil
}

// Queries lists the tenant's saved queries of a kind ("" for all), by name.
func (s *Store) Queries(ctx context.Context, tenant, kind string) ([]Query, error) {
	f, err := s.loadQueries(ctx, tenant)
	if err != nil {
		return nil, err
	}
	out := make([]Query, 0, len(f.Queries))
	for _, q := range f.Queries {
		if kind == "" || q.Kind == kind {
			out = append(out, q)
		}
	}
	slices.SortFunc(out, func(a, b Query) int { return strings.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)) })
	return out, nil
}

// SaveQuery keeps q for the tenant. A query of the same kind and name is
// replaced; otherwise it gets a new ID. Problems are ErrInvalid or
// ErrTooMany.
func (s *Store) SaveQuery(ctx context.Context, tenant string, q Query) (Query, error) {
	var errs []error
	switch q.Kind {
	case KindPromQL, KindLogQL, KindTraceQL:
	default:
		errs = append(errs, fmt.Errorf("kind: %q is not one of %s, %s, %s", q.Kind, KindPromQL, KindLogQL, KindTraceQL))
	}
	q.Name = strings.TrimSpace(q.Name)
	if q.Name == "" || len(q.Name) > maxQueryName {
		errs = append(errs, fmt.Errorf("name: 1 to %d bytes", maxQueryName))
	}
	if strings.TrimSpace(q.Query) == "" || len(q.Query) > MaxQueryBytes {
		errs = append(errs, fmt.Errorf("query: 1 to %d bytes", MaxQueryBytes))
	}
	if len(errs) > 0 {
		return Query{}, fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := s.loadQueries(ctx, tenant)
	if err != nil {
		return Query{}, err
	}
	q.Updated = s.now().UTC()
	i := slices.IndexFunc(f.Queries, func(o Query) bool { return o.Kind == q.Kind && o.Name == q.Name })
	if i >= 0 {
		q.ID = f.Queries[i].ID
		f.Queries[i] = q
	} else {
		if len(f.Queries) >= MaxQueries {
			return Query{}, fmt.Errorf("%w: the limit is %d saved queries", ErrTooMany, MaxQueries)
		}
		q.ID = newUID()
		f.Queries = append(f.Queries, q)
	}
	return q, s.storeQueries(ctx, tenant, f)
}

// DeleteQuery removes a saved query.
func (s *Store) DeleteQuery(ctx context.Context, tenant, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := s.loadQueries(ctx, tenant)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(f.Queries, func(o Query) bool { return o.ID == id })
	if i < 0 {
		return fmt.Errorf("%w: %s", ErrQueryNotFound, id)
	}
	f.Queries = slices.Delete(f.Queries, i, i+1)
	return s.storeQueries(ctx, tenant, f)
}

func (s *Store) storeQueries(ctx context.Context, tenant string, f queryFile) error {
	f.Version = queriesVersion
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	if err := s.bucket.PutBytes(ctx, queriesKey(tenant), b); err != nil {
		return fmt.Errorf("save queries: %w", err)
	}
	return nil
}
