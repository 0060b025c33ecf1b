// Package dashboard keeps dashboards, Grafana dashboard JSON models, and
// saved queries (queries.go), per tenant in the store's bucket beside its
// blocks.
//
// The model is Grafana's own (panels with gridPos and targets, rows,
// templating variables, time), stored as the client sent it. Keeping
// Grafana's format rather than a Sightline one means a dashboard exported
// from Grafana imports unchanged, and one saved here opens in Grafana.
// Only the fields this package needs are read; everything else is kept
// byte for byte.
//
// Objects live under dashboards/global/<uid>.json without tenancy and
// dashboards/tenants/<tenant>/<uid>.json with it, each a JSON object
// {"meta": Meta, "dashboard": model}. Put is atomic and durable (the
// objstore contract), so a dashboard is either the old one or the new
// one after a crash. Dashboards built into the binary (builtin/*.json)
// are listed for every tenant and cannot be overwritten or deleted.
package dashboard

import (
	"bytes"
	"context"
	"crypto/rand"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sightlinehq/sightline/internal/objstore"
)

// Sentinels. The HTTP layer maps them to statuses; nothing else does.
var (
	// ErrNotFound: no dashboard with that UID for the tenant.
	ErrNotFound = errors.New("dashboard not found")
	// ErrInvalid: the model is not a dashboard this package can keep.
	ErrInvalid = errors.New("invalid dashboard")
	// ErrVersionMismatch: the model's version is not the stored one;
	// someone else saved it first. Saving with overwrite replaces it.
	ErrVersionMismatch = errors.New("the dashboard has been changed by someone else")
	// ErrProvisioned: built-in dashboards are read-only; save a copy
	// under another UID.
	ErrProvisioned = errors.New("cannot change a built-in dashboard")
	// ErrTooMany: the tenant already has MaxDashboards.
	ErrTooMany = errors.New("too many dashboards")
)

// Limits. A dashboard is configuration a person writes, so these are far
// above real ones (the OpenTelemetry demo's collector dashboard is 213 KB
// with 56 panels) and exist so that one request cannot fill the bucket or
// the memory of every UI that opens it.
const (
	MaxBytes      = 4 << 20
	MaxPanels     = 1000
	MaxVariables  = 200
	MaxDashboards = 2000
	maxTitle      = 512
	maxUID        = 40
)

// Meta describes a stored dashboard.
type Meta struct {
	UID         string    `json:"uid"`
	Title       string    `json:"title"`
	Tags        []string  `json:"tags"`
	Version     int       `json:"version"`
	Panels      int       `json:"panels"`
	Updated     time.Time `json:"updated"`
	Provisioned bool      `json:"provisioned"`
}

// Dashboard is a stored dashboard: its Meta and its Grafana model.
type Dashboard struct {
	Meta  Meta
	Model json.RawMessage
}

// model is the part of Grafana's dashboard model that is checked.
type model struct {
	UID        *string  `json:"uid"`
	Title      *string  `json:"title"`
	Tags       []string `json:"tags"`
	Version    *int     `json:"version"`
	Panels     []panel  `json:"panels"`
	Rows       []row    `json:"rows"` // schemaVersion < 16
	Templating *struct {
		List []json.RawMessage `json:"list"`
	} `json:"templating"`
}

type panel struct {
	Type   string  `json:"type"`
	Panels []panel `json:"panels"` // a collapsed row holds its panels
}

type row struct {
	Panels []panel `json:"panels"`
}

// Parse checks that b is a dashboard model and returns its Meta (UID,
// Title, Tags, Version, Panels). Every problem is reported, each with the
// path of the field, as `sightline validate` reports config errors.
func Parse(b []byte) (Meta, error) {
	if len(b) > MaxBytes {
		return Meta{}, fmt.Errorf("%w: %d bytes, over the limit of %d", ErrInvalid, len(b), MaxBytes)
	}
	var m model
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&m); err != nil {
		return Meta{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	// Only JSON's whitespace may follow the object. Decoder.More is no
	// test of that: it reports false before a stray '}' or ']'.
	if rest := bytes.TrimLeft(b[dec.InputOffset():], " \t\r\n"); len(rest) > 0 {
		return Meta{}, fmt.Errorf("%w: data after the dashboard object at byte %d", ErrInvalid, len(b)-len(rest))
	}
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	meta := Meta{Tags: m.Tags}
	switch {
	case m.Title == nil || strings.TrimSpace(*m.Title) == "":
		bad("title", "required")
	case len(*m.Title) > maxTitle:
		bad("title", "longer than %d bytes", maxTitle)
	default:
		meta.Title = *m.Title
	}
	if m.UID != nil && *m.UID != "" {
		if err := CheckUID(*m.UID); err != nil {
			bad("uid", "%v", err)
		}
		meta.UID = *m.UID
	}
	if m.Version != nil {
		meta.Version = *m.Version
	}
	n := 0
	var count func(field string, ps []panel)
	count = func(field string, ps []panel) {
		for i, p := range ps {
			n++
			if p.Type == "" {
				bad(fmt.Sprintf("%s[%d].type", field, i), "required")
			}
			count(fmt.Sprintf("%s[%d].panels", field, i), p.Panels)
		}
	}
	count("panels", m.Panels)
	for i, r := range m.Rows {
		count(fmt.Sprintf("rows[%d].panels", i), r.Panels)
	}
	if n > MaxPanels {
		bad("panels", "%d panels, over the limit of %d", n, MaxPanels)
	}
	meta.Panels = n
	if m.Templating != nil && len(m.Templating.List) > MaxVariables {
		bad("templating.list", "%d variables, over the limit of %d", len(m.Templating.List), MaxVariables)
	}
	if len(errs) > 0 {
		return Meta{}, fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	return meta, nil
}

// CheckUID refuses UIDs that Grafana would refuse, which also keeps them
// safe as object names.
func CheckUID(uid string) error {
	if uid == "" || len(uid) > maxUID {
		return fmt.Errorf("a UID has 1 to %d characters", maxUID)
	}
	for i := 0; i < len(uid); i++ {
		c := uid[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("%q has a character other than a-z, A-Z, 0-9, - and _", uid)
		}
	}
	return nil
}

//go:embed builtin/*.json
var builtinFS embed.FS

// Builtin returns the dashboards built into the binary: RED metrics per
// service and Sightline's own health. They are Grafana models too, so
// they can be exported to Grafana.
func Builtin() ([]Dashboard, error) {
	names, err := fs.Glob(builtinFS, "builtin/*.json")
	if err != nil {
		return nil, err
	}
	var out []Dashboard
	for _, name := range names {
		b, err := builtinFS.ReadFile(name)
		if err != nil {
			return nil, err
		}
		meta, err := Parse(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if meta.UID == "" {
			return nil, fmt.Errorf("%s: built-in dashboards need a uid", name)
		}
		meta.Provisioned = true
		out = append(out, Dashboard{Meta: meta, Model: b})
	}
	return out, nil
}

// Store keeps dashboards in a bucket.
type Store struct {
	bucket  *objstore.Store
	builtin []Dashboard
	now     func() time.Time
	// mu serialises saves and deletes, so that a version check and the
	// write after it are one step. Dashboards are saved by people, a few
	// times a minute at most; one lock is plenty.
	mu sync.Mutex
}

// New returns a Store over bucket with the given built-in dashboards.
func New(bucket *objstore.Store, builtin []Dashboard) *Store {
	return &Store{bucket: bucket, builtin: builtin, now: time.Now}
}

func prefix(tenant string) string {
	if tenant == "" {
		return "dashboards/global/"
	}
	return "dashboards/tenants/" + tenant + "/"
}

// stored is the object format.
type stored struct {
	Meta      Meta            `json:"meta"`
	Dashboard json.RawMessage `json:"dashboard"`
}

func (s *Store) builtinByUID(uid string) (Dashboard, bool) {
	for _, d := range s.builtin {
		if d.Meta.UID == uid {
			return d, true
		}
	}
	return Dashboard{}, false
}

// List returns the tenant's dashboards and the built-in ones, by title.
func (s *Store) List(ctx context.Context, tenant string) ([]Meta, error) {
	keys, err := s.bucket.List(ctx, prefix(tenant), ".json")
	if err != nil {
		return nil, fmt.Errorf("list dashboards: %w", err)
	}
	out := make([]Meta, 0, len(keys)+len(s.builtin))
	for _, d := range s.builtin {
		out = append(out, d.Meta)
	}
	for _, k := range keys {
		uid := strings.TrimSuffix(path.Base(k), ".json")
		if CheckUID(uid) != nil || path.Dir(k)+"/" != prefix(tenant) {
			continue // a temporary file or another tenant's prefix
		}
		d, err := s.get(ctx, tenant, uid)
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				continue // deleted since the listing
			}
			return nil, err
		}
		out = append(out, d.Meta)
	}
	slices.SortFunc(out, func(a, b Meta) int {
		return strings.Compare(strings.ToLower(a.Title), strings.ToLower(b.Title))
	})
	return out, nil
}

// Get returns one dashboard.
func (s *Store) Get(ctx context.Context, tenant, uid string) (Dashboard, error) {
	if d, ok := s.builtinByUID(uid); ok {
		return d, nil
	}
	if CheckUID(uid) != nil {
		return Dashboard{}, ErrNotFound
	}
	return s.get(ctx, tenant, uid)
}

func (s *Store) get(ctx context.Context, tenant, uid string) (Dashboard, error) {
	b, err := s.bucket.Get(ctx, prefix(tenant)+uid+".json")
	if err != nil {
		if errors.Is(err, objstore.ErrNotExist) {
			return Dashboard{}, fmt.Errorf("%w: %s", ErrNotFound, uid)
		}
		return Dashboard{}, fmt.Errorf("read dashboard %s: %w", uid, err)
	}
	var st stored
	if err := json.Unmarshal(b, &st); err != nil {
		return Dashboard{}, fmt.Errorf("read dashboard %s: %w", uid, err)
	}
	return Dashboard{Meta: st.Meta, Model: st.Dashboard}, nil
}

// Save stores model for the tenant and returns its Meta. A model without
// a UID gets a new one. A model whose version is not the stored one is
// refused with ErrVersionMismatch unless overwrite is set, as Grafana's
// POST /api/dashboards/db does. The stored model carries its UID and its
// new version.
func (s *Store) Save(ctx context.Context, tenant string, b []byte, overwrite bool) (Meta, error) {
	meta, err := Parse(b)
	if err != nil {
		return Meta{}, err
	}
	if meta.UID == "" {
		meta.UID = newUID()
	}
	if _, ok := s.builtinByUID(meta.UID); ok {
		return Meta{}, fmt.Errorf("%w: %s; save a copy under another uid", ErrProvisioned, meta.UID)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, err := s.get(ctx, tenant, meta.UID)
	switch {
	case err == nil:
		if !overwrite && meta.Version != old.Meta.Version {
			return Meta{}, fmt.Errorf("%w: saving version %d, stored version is %d", ErrVersionMismatch, meta.Version, old.Meta.Version)
		}
		meta.Version = old.Meta.Version + 1
	case errors.Is(err, ErrNotFound):
		keys, lerr := s.bucket.List(ctx, prefix(tenant), ".json")
		if lerr != nil {
			return Meta{}, fmt.Errorf("list dashboards: %w", lerr)
		}
		if len(keys) >= MaxDashboards {
			return Meta{}, fmt.Errorf("%w: the limit is %d", ErrTooMany, MaxDashboards)
		}
		meta.Version = 1
	default:
		return Meta{}, err
	}
	model, err := setFields(b, meta.UID, meta.Version)
	if err != nil {
		return Meta{}, err
	}
	meta.Updated = s.now().UTC()
	out, err := json.Marshal(stored{Meta: meta, Dashboard: model})
	if err != nil {
		return Meta{}, err
	}
	if err := s.bucket.PutBytes(ctx, prefix(tenant)+meta.UID+".json", out); err != nil {
		return Meta{}, fmt.Errorf("save dashboard %s: %w", meta.UID, err)
	}
	return meta, nil
}

// Delete removes a dashboard.
func (s *Store) Delete(ctx context.Context, tenant, uid string) (Meta, error) {
	if _, ok := s.builtinByUID(uid); ok {
		return Meta{}, fmt.Errorf("%w: %s", ErrProvisioned, uid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.Get(ctx, tenant, uid)
	if err != nil {
		return Meta{}, err
	}
	if err := s.bucket.Delete(ctx, prefix(tenant)+uid+".json"); err != nil {
		return Meta{}, fmt.Errorf("delete dashboard %s: %w", uid, err)
	}
	return d.Meta, nil
}

// setFields sets "uid" and "version" in the model, keeping every other
// field as it was.
func setFields(b []byte, uid string, version int) (json.RawMessage, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	fields["uid"], _ = json.Marshal(uid)
	fields["version"], _ = json.Marshal(version)
	delete(fields, "id") // Grafana's database ID means nothing here
	return json.Marshal(fields)
}

// newUID returns a random 14-character UID, in Grafana's alphabet.
func newUID() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	var b [14]byte
	_, _ = rand.Read(b[:])
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b[:])
}
