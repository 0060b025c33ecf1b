package tenancyprocessor

import (
	"context"
	"errors"
	"fmt"

	"github.com/prometheus/otlptranslator"
	"go.opentelemetry.io/collector/client"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrNoTenant is returned, as a permanent error, for a request that names
// no tenant (receivers answer gRPC UNAUTHENTICATED and HTTP 401).
var ErrNoTenant = errors.New("no tenant")

// ErrInvalidTenant is returned, as a permanent error, for a tenant ID
// CheckTenant refuses (INVALID_ARGUMENT, HTTP 400).
var ErrInvalidTenant = errors.New("invalid tenant")

// MaxTenantLength is the longest tenant ID accepted, as in Cortex, Mimir
// and Loki.
const MaxTenantLength = 150

// CheckTenant accepts the tenant IDs Cortex, Mimir, Loki and Tempo
// accept: up to 150 of the characters a-z, A-Z, 0-9 and !-_.*'(), and not
// "." or "..". Refusing the rest keeps a tenant ID safe in a label value,
// a path and a log line.
func CheckTenant(id string) error {
	switch {
	case id == "":
		return ErrNoTenant
	case len(id) > MaxTenantLength:
		return fmt.Errorf("%w: longer than %d characters", ErrInvalidTenant, MaxTenantLength)
	case id == "." || id == "..":
		return fmt.Errorf("%w: %q", ErrInvalidTenant, id)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '!', c == '-', c == '_', c == '.', c == '*', c == '\'', c == '(', c == ')':
		default:
			return fmt.Errorf("%w: %q has a character other than a-z, A-Z, 0-9 and !-_.*'()", ErrInvalidTenant, id)
		}
	}
	return nil
}

// refusal carries the gRPC status a receiver answers with: OTLP receivers
// map it to the HTTP status too (UNAUTHENTICATED is 401, INVALID_ARGUMENT
// 400), neither retryable.
type refusal struct {
	code codes.Code
	err  error
}

func (r *refusal) Error() string              { return r.err.Error() }
func (r *refusal) Unwrap() error              { return r.err }
func (r *refusal) GRPCStatus() *status.Status { return status.New(r.code, r.err.Error()) }

func refuse(code codes.Code, err error) error {
	return consumererror.NewPermanent(&refusal{code: code, err: err})
}

type tenancy struct {
	cfg *Config
	// label is the Prometheus label the exporter promotes the attribute
	// to; pointAttr finds data point attributes that would become it.
	label         string
	alnumAttr     string
	alnumLabel    string
	labelNamers   [2]otlptranslator.LabelNamer
	missingReason string
}

func newTenancy(cfg *Config) *tenancy {
	t := &tenancy{cfg: cfg, labelNamers: [2]otlptranslator.LabelNamer{{}, {PreserveMultipleUnderscores: true}}}
	t.label, _ = t.labelNamers[0].Build(cfg.ResourceAttribute)
	t.alnumAttr, t.alnumLabel = alnum(cfg.ResourceAttribute), alnum(t.label)
	if cfg.AuthAttribute != "" {
		t.missingReason = fmt.Sprintf("the authenticated identity has no %q attribute", cfg.AuthAttribute)
	} else {
		t.missingReason = fmt.Sprintf("the %s header is required (receivers need include_metadata: true)", cfg.Header)
	}
	return t
}

// tenant returns the request's tenant: the authenticator's attribute
// when auth_attribute is set, else the header. A header sent twice with
// different values is refused rather than guessed at.
func (t *tenancy) tenant(ctx context.Context) (string, error) {
	info := client.FromContext(ctx)
	var id string
	if t.cfg.AuthAttribute != "" {
		if info.Auth != nil {
			if s, ok := info.Auth.GetAttribute(t.cfg.AuthAttribute).(string); ok {
				id = s
			}
		}
	} else {
		vals := info.Metadata.Get(t.cfg.Header)
		for _, v := range vals {
			if id != "" && v != id {
				return "", refuse(codes.InvalidArgument, fmt.Errorf("%w: the %s header has more than one value", ErrInvalidTenant, t.cfg.Header))
			}
			id = v
		}
	}
	if id == "" {
		return "", refuse(codes.Unauthenticated, fmt.Errorf("%w: %s", ErrNoTenant, t.missingReason))
	}
	if err := CheckTenant(id); err != nil {
		return "", refuse(codes.InvalidArgument, err)
	}
	return id, nil
}

func (t *tenancy) traces(ctx context.Context, td ptrace.Traces) (ptrace.Traces, error) {
	id, err := t.tenant(ctx)
	if err != nil {
		return td, err
	}
	rs := td.ResourceSpans()
	for i := 0; i < rs.Len(); i++ {
		t.tag(rs.At(i).Resource().Attributes(), id)
	}
	return td, nil
}

func (t *tenancy) logs(ctx context.Context, ld plog.Logs) (plog.Logs, error) {
	id, err := t.tenant(ctx)
	if err != nil {
		return ld, err
	}
	rl := ld.ResourceLogs()
	for i := 0; i < rl.Len(); i++ {
		t.tag(rl.At(i).Resource().Attributes(), id)
		// LogQL shows a record's attributes beside its resource's as
		// labels; a record's tenant_id would hide the stream's.
		sls := rl.At(i).ScopeLogs()
		for j := 0; j < sls.Len(); j++ {
			recs := sls.At(j).LogRecords()
			for k := 0; k < recs.Len(); k++ {
				t.strip(recs.At(k).Attributes())
			}
		}
	}
	return ld, nil
}

// metrics tags every resource and also removes data point attributes that
// would translate to the tenant label: Prometheus's OTLP translation
// lets a data point's label win over a promoted resource attribute, so a
// point attribute tenant_id="b" would otherwise land in tenant b.
func (t *tenancy) metrics(ctx context.Context, md pmetric.Metrics) (pmetric.Metrics, error) {
	id, err := t.tenant(ctx)
	if err != nil {
		return md, err
	}
	rms := md.ResourceMetrics()
	for i := 0; i < rms.Len(); i++ {
		rm := rms.At(i)
		t.tag(rm.Resource().Attributes(), id)
		sms := rm.ScopeMetrics()
		for j := 0; j < sms.Len(); j++ {
			t.strip(sms.At(j).Scope().Attributes())
			ms := sms.At(j).Metrics()
			for k := 0; k < ms.Len(); k++ {
				t.stripMetric(ms.At(k))
			}
		}
	}
	return md, nil
}

// tag writes the tenant into a resource, and removes the resource's other
// attributes that name the same label (tenant_id beside tenant.id), which
// would show another tenant's ID as the stream or series label.
func (t *tenancy) tag(attrs pcommon.Map, id string) {
	t.strip(attrs)
	attrs.PutStr(t.cfg.ResourceAttribute, id)
}

func (t *tenancy) stripMetric(m pmetric.Metric) {
	switch m.Type() {
	case pmetric.MetricTypeGauge:
		dps := m.Gauge().DataPoints()
		for i := 0; i < dps.Len(); i++ {
			t.strip(dps.At(i).Attributes())
		}
	case pmetric.MetricTypeSum:
		dps := m.Sum().DataPoints()
		for i := 0; i < dps.Len(); i++ {
			t.strip(dps.At(i).Attributes())
		}
	case pmetric.MetricTypeHistogram:
		dps := m.Histogram().DataPoints()
		for i := 0; i < dps.Len(); i++ {
			t.strip(dps.At(i).Attributes())
		}
	case pmetric.MetricTypeExponentialHistogram:
		dps := m.ExponentialHistogram().DataPoints()
		for i := 0; i < dps.Len(); i++ {
			t.strip(dps.At(i).Attributes())
		}
	case pmetric.MetricTypeSummary:
		dps := m.Summary().DataPoints()
		for i := 0; i < dps.Len(); i++ {
			t.strip(dps.At(i).Attributes())
		}
	}
}

func (t *tenancy) strip(attrs pcommon.Map) {
	if attrs.Len() == 0 {
		return
	}
	attrs.RemoveIf(func(k string, _ pcommon.Value) bool { return t.isTenantKey(k) })
}

// isTenantKey reports whether an attribute named k becomes the tenant
// label under either underscore setting of the translation. The alnum
// comparison keeps LabelNamer off the path for all other keys.
func (t *tenancy) isTenantKey(k string) bool {
	if k == t.cfg.ResourceAttribute || k == t.label {
		return true
	}
	if !alnumEqual(k, t.alnumAttr) && !alnumEqual(k, t.alnumLabel) {
		return false
	}
	for i := range t.labelNamers {
		if l, err := t.labelNamers[i].Build(k); err == nil && l == t.label {
			return true
		}
	}
	return false
}

// alnum keeps the ASCII letters and digits of s; a key whose letters and
// digits differ from the label's cannot sanitize to it.
func alnum(s string) string {
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) {
			b := make([]byte, 0, len(s))
			for j := 0; j < len(s); j++ {
				if isAlnum(s[j]) {
					b = append(b, s[j])
				}
			}
			return string(b)
		}
	}
	return s
}

// alnumEqual reports whether alnum(s) == want, without allocating.
func alnumEqual(s, want string) bool {
	j := 0
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) {
			continue
		}
		if j == len(want) || s[i] != want[j] {
			return false
		}
		j++
	}
	return j == len(want)
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
