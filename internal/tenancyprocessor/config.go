package tenancyprocessor

import (
	"errors"
	"fmt"
)

// Config selects where the tenant of a request comes from and where it is
// written.
type Config struct {
	// Header is the request header (gRPC metadata key) that names the
	// tenant; Grafana Agent, Alloy and Promtail send X-Scope-OrgID. The
	// receivers in front must set include_metadata: true, or every request
	// is refused for want of a tenant.
	Header string `mapstructure:"header"`
	// AuthAttribute, when set, takes the tenant from the authenticated
	// identity instead of the header: the attribute of that name of the
	// receiver's authenticator (for example "subject" of oidc, "username"
	// of basicauth). The header is then ignored, so a client cannot choose
	// its tenant.
	AuthAttribute string `mapstructure:"auth_attribute"`
	// ResourceAttribute is the resource attribute the tenant is written
	// to, on every resource of the request, replacing whatever the
	// payload put there. It must match the sightline_query extension's
	// tenancy::resource_attribute.
	ResourceAttribute string `mapstructure:"resource_attribute"`
}

// Validate reports every problem with its field path.
func (c *Config) Validate() error {
	var errs []error
	if c.Header == "" && c.AuthAttribute == "" {
		errs = append(errs, errors.New("header: must be set, or auth_attribute; the tenant must come from the request"))
	}
	if c.ResourceAttribute == "" {
		errs = append(errs, errors.New("resource_attribute: must be set"))
	}
	if c.Header != "" {
		if err := checkHeaderName(c.Header); err != nil {
			errs = append(errs, fmt.Errorf("header: %w", err))
		}
	}
	return errors.Join(errs...)
}

func checkHeaderName(h string) error {
	for i := 0; i < len(h); i++ {
		c := h[i]
		if c <= ' ' || c >= 0x7f || c == ':' {
			return fmt.Errorf("%q is not a valid header name", h)
		}
	}
	return nil
}
