package awss3exporter

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/config/configretry"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
)

// Marshaler names accepted by the marshaler key, as in upstream's awss3 exporter.
const (
	MarshalerOTLPJSON  = "otlp_json"
	MarshalerOTLPProto = "otlp_proto"
	MarshalerBody      = "body"
)

// S3UploaderConfig says where objects go. Key names follow upstream's
// awss3 exporter so that existing configs load unchanged.
type S3UploaderConfig struct {
	// Region is the AWS region of the bucket. Required unless Endpoint is set.
	Region string `mapstructure:"region"`
	// S3Bucket is the bucket name. Required.
	S3Bucket string `mapstructure:"s3_bucket"`
	// S3Prefix is prepended to every object key.
	S3Prefix string `mapstructure:"s3_prefix"`
	// S3PartitionFormat is a strftime layout (%Y %m %d %H %M %S) for the
	// time partition between the prefix and the file name.
	S3PartitionFormat string `mapstructure:"s3_partition_format"`
	// FilePrefix is prepended to the file name.
	FilePrefix string `mapstructure:"file_prefix"`
	// Endpoint overrides the S3 endpoint, for S3-compatible stores.
	Endpoint string `mapstructure:"endpoint"`
	// S3ForcePathStyle addresses the bucket as endpoint/bucket instead of bucket.endpoint.
	S3ForcePathStyle bool `mapstructure:"s3_force_path_style"`
	// DisableSSL talks plain HTTP to Endpoint.
	DisableSSL bool `mapstructure:"disable_ssl"`
	// Compression is "gzip" or empty (none).
	Compression string `mapstructure:"compression"`
}

// Config is the awss3 exporter's configuration.
type Config struct {
	S3Uploader    S3UploaderConfig                                         `mapstructure:"s3uploader"`
	MarshalerName string                                                   `mapstructure:"marshaler"`
	Timeout       exporterhelper.TimeoutConfig                             `mapstructure:",squash"`
	QueueConfig   configoptional.Optional[exporterhelper.QueueBatchConfig] `mapstructure:"sending_queue"`
	RetryConfig   configretry.BackOffConfig                                `mapstructure:"retry_on_failure"`
}

var (
	errNoBucket         = errors.New("s3_bucket is required")
	errNoRegion         = errors.New("region is required (set s3uploader.region, or s3uploader.endpoint for an S3-compatible store)")
	errBadCompression   = errors.New(`compression must be "gzip" or "none"`)
	errBadPartitionTime = errors.New("s3_partition_format may only use %Y, %m, %d, %H, %M and %S")
)

// Validate checks the config. It reports every problem, not just the first.
func (c *Config) Validate() error {
	var errs []error
	if c.S3Uploader.S3Bucket == "" {
		errs = append(errs, fmt.Errorf("s3uploader: %w", errNoBucket))
	}
	if c.S3Uploader.Region == "" && c.S3Uploader.Endpoint == "" {
		errs = append(errs, fmt.Errorf("s3uploader: %w", errNoRegion))
	}
	switch c.S3Uploader.Compression {
	case "", "none", "gzip":
	default:
		errs = append(errs, fmt.Errorf("s3uploader::compression: %w, got %q", errBadCompression, c.S3Uploader.Compression))
	}
	if err := checkPartitionFormat(c.S3Uploader.S3PartitionFormat); err != nil {
		errs = append(errs, fmt.Errorf("s3uploader::s3_partition_format: %w", err))
	}
	switch c.MarshalerName {
	case MarshalerOTLPJSON, MarshalerOTLPProto, MarshalerBody:
	default:
		errs = append(errs, fmt.Errorf("marshaler: unknown marshaler %q (use %s, %s or %s)", c.MarshalerName, MarshalerOTLPJSON, MarshalerOTLPProto, MarshalerBody))
	}
	return errors.Join(errs...)
}

func checkPartitionFormat(f string) error {
	for i := 0; i < len(f); i++ {
		if f[i] != '%' {
			continue
		}
		if i+1 >= len(f) || !strings.ContainsRune("YmdHMS", rune(f[i+1])) {
			return errBadPartitionTime
		}
		i++
	}
	return nil
}

// partition renders the strftime-style layout for t (in UTC).
func partition(layout string, t time.Time) string {
	t = t.UTC()
	var b strings.Builder
	for i := 0; i < len(layout); i++ {
		if layout[i] != '%' || i+1 >= len(layout) {
			b.WriteByte(layout[i])
			continue
		}
		i++
		switch layout[i] {
		case 'Y':
			fmt.Fprintf(&b, "%04d", t.Year())
		case 'm':
			fmt.Fprintf(&b, "%02d", int(t.Month()))
		case 'd':
			fmt.Fprintf(&b, "%02d", t.Day())
		case 'H':
			fmt.Fprintf(&b, "%02d", t.Hour())
		case 'M':
			fmt.Fprintf(&b, "%02d", t.Minute())
		case 'S':
			fmt.Fprintf(&b, "%02d", t.Second())
		}
	}
	return b.String()
}
