package awss3exporter

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"
)

func loadConfig(t *testing.T, id string) *Config {
	t.Helper()
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	sub, err := cm.Sub(id)
	if err != nil {
		t.Fatal(err)
	}
	cfg := NewFactory().CreateDefaultConfig()
	if err := sub.Unmarshal(&cfg); err != nil {
		t.Fatal(err)
	}
	return cfg.(*Config)
}

func TestLoadSeedConfig(t *testing.T) {
	cfg := loadConfig(t, "awss3")
	if err := confmap.Validate(cfg); err != nil {
		t.Fatal(err)
	}
	u := cfg.S3Uploader
	if u.Region != "eu-west-1" || u.S3Bucket != "acme-logs" || u.S3Prefix != "otel-logs/production" {
		t.Errorf("s3uploader = %+v", u)
	}
	if u.S3PartitionFormat != "year=%Y/month=%m/day=%d/hour=%H/minute=%M" {
		t.Errorf("default partition format = %q, want upstream's", u.S3PartitionFormat)
	}
	if cfg.MarshalerName != MarshalerOTLPJSON {
		t.Errorf("marshaler = %q", cfg.MarshalerName)
	}
}

func TestLoadFullConfig(t *testing.T) {
	cfg := loadConfig(t, "awss3/full")
	if err := confmap.Validate(cfg); err != nil {
		t.Fatal(err)
	}
	want := S3UploaderConfig{
		Region: "us-east-1", S3Bucket: "archive", S3Prefix: "raw", S3PartitionFormat: "%Y/%m/%d",
		FilePrefix: "node-a-", Endpoint: "http://127.0.0.1:9000", S3ForcePathStyle: true, DisableSSL: true,
		Compression: "gzip",
	}
	if cfg.S3Uploader != want {
		t.Errorf("s3uploader = %+v, want %+v", cfg.S3Uploader, want)
	}
	if cfg.MarshalerName != MarshalerOTLPProto || cfg.Timeout.Timeout != 10*time.Second || cfg.RetryConfig.Enabled {
		t.Errorf("config = %+v", cfg)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	err := confmap.Validate(loadConfig(t, "awss3/bad"))
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"s3_bucket is required", "region is required", `"zip"`, "s3_partition_format", `"avro"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestPartition(t *testing.T) {
	ts := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	if got := partition("year=%Y/month=%m/day=%d/hour=%H/minute=%M/%S", ts); got != "year=2026/month=03/day=04/hour=05/minute=06/07" {
		t.Errorf("partition = %q", got)
	}
}

func TestFactoryType(t *testing.T) {
	if NewFactory().Type() != component.MustNewType("awss3") {
		t.Fatal("type must stay awss3, the name seed configs use")
	}
}
