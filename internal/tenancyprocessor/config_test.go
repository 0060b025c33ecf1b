package tenancyprocessor

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"
)

func TestLoadConfig(t *testing.T) {
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)
	load := func(name string) *Config {
		sub, err := cm.Sub(name)
		require.NoError(t, err)
		cfg := createDefaultConfig().(*Config)
		require.NoError(t, sub.Unmarshal(cfg))
		return cfg
	}
	def := load("tenancy")
	require.NoError(t, confmap.Validate(def))
	require.Equal(t, &Config{Header: "X-Scope-OrgID", ResourceAttribute: "tenant.id"}, def)

	auth := load("tenancy/auth")
	require.NoError(t, confmap.Validate(auth))
	require.Equal(t, "subject", auth.AuthAttribute)
	require.Equal(t, "org.id", auth.ResourceAttribute)

	err = confmap.Validate(load("tenancy/bad"))
	require.ErrorContains(t, err, `header: "X Scope" is not a valid header name`)
	require.ErrorContains(t, err, "resource_attribute: must be set")

	require.ErrorContains(t, (&Config{ResourceAttribute: "t"}).Validate(), "header: must be set, or auth_attribute")
}

func TestCheckTenant(t *testing.T) {
	for _, ok := range []string{"a", "team-1", "Org_2.prod", "x!*'()", string(make150('a'))} {
		require.NoError(t, CheckTenant(ok), ok)
	}
	require.ErrorIs(t, CheckTenant(""), ErrNoTenant)
	for _, bad := range []string{".", "..", "a/b", "a b", "a|b", "ü", string(make150('a')) + "a", "a\x00"} {
		require.ErrorIs(t, CheckTenant(bad), ErrInvalidTenant, bad)
	}
}

func make150(c byte) []byte {
	b := make([]byte, MaxTenantLength)
	for i := range b {
		b[i] = c
	}
	return b
}
