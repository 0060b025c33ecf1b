// Package objstore is Sightline's one object-storage interface: a
// gocloud.dev/blob Bucket. S3 and S3-compatible stores are opened with
// OpenS3; the store adds the filesystem (its default), GCS and Azure here.
//
// gocloud.dev was chosen over thanos-io/objstore because it ships an
// in-memory and a filesystem driver with atomic writes (temp file plus
// rename), exposes the native clients through As() where a feature is
// missing, and covers S3, GCS and Azure behind the same type.
package objstore

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"gocloud.dev/blob"
	"gocloud.dev/blob/s3blob"
)

// Bucket is the object-storage interface every Sightline component uses.
type Bucket = blob.Bucket

// S3Options selects an S3 or S3-compatible bucket. Credentials come from the
// standard AWS chain (environment, shared files, instance or task role).
type S3Options struct {
	Bucket       string
	Region       string
	Endpoint     string // empty for AWS itself
	PathStyle    bool   // endpoint/bucket/key instead of bucket.endpoint/key
	DisableHTTPS bool   // only meaningful with Endpoint
}

// OpenS3 opens an S3 bucket. It makes no request; the first read or write
// reports bad credentials or a missing bucket.
func OpenS3(ctx context.Context, o S3Options) (*Bucket, error) {
	opts := []func(*awsconfig.LoadOptions) error{}
	region := o.Region
	if region == "" {
		// S3-compatible stores ignore the region, but the SDK's signer needs one.
		region = "us-east-1"
	}
	opts = append(opts, awsconfig.WithRegion(region))
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("load aws config: %w", err)
	}
	client := s3.NewFromConfig(cfg, func(so *s3.Options) {
		so.UsePathStyle = o.PathStyle
		if o.Endpoint != "" {
			so.BaseEndpoint = aws.String(o.Endpoint)
		}
		so.EndpointOptions.DisableHTTPS = o.DisableHTTPS
	})
	b, err := s3blob.OpenBucket(ctx, client, o.Bucket, nil)
	if err != nil {
		return nil, fmt.Errorf("open s3 bucket %q: %w", o.Bucket, err)
	}
	return b, nil
}
