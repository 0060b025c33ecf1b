package sightlinestorage

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseBucketURL(t *testing.T) {
	for _, c := range []struct {
		url  string
		want StorageConfig
	}{
		{"file:///var/lib/sightline/blocks", StorageConfig{Backend: "filesystem", Filesystem: FilesystemConfig{Path: "/var/lib/sightline/blocks"}}},
		{"file:data/blocks", StorageConfig{Backend: "filesystem", Filesystem: FilesystemConfig{Path: "data/blocks"}}},
		{"s3://telemetry", StorageConfig{Backend: "s3", S3: S3Config{Bucket: "telemetry"}}},
		{"s3://telemetry/eu/prod/?region=eu-west-1&endpoint=minio:9000&force_path_style=true&insecure=1",
			StorageConfig{Backend: "s3", S3: S3Config{Bucket: "telemetry", Prefix: "eu/prod", Region: "eu-west-1", Endpoint: "minio:9000", ForcePathStyle: true, Insecure: true}}},
		{"gs://telemetry/sightline", StorageConfig{Backend: "gcs", GCS: GCSConfig{Bucket: "telemetry", Prefix: "sightline"}}},
		{"azblob://blocks/a?storage_account=acme", StorageConfig{Backend: "azure", Azure: AzureConfig{Container: "blocks", Prefix: "a", StorageAccount: "acme"}}},
	} {
		got, err := StorageConfig{Backend: "filesystem", BucketURL: c.url}.resolved()
		require.NoError(t, err, c.url)
		require.Equal(t, c.want, got, c.url)
	}
}

// TestBucketURLErrors checks that a bad URL is refused by Validate with
// its field path and a message that says what to write instead.
func TestBucketURLErrors(t *testing.T) {
	for _, c := range []struct {
		url  string
		want string
	}{
		{"minio:9000/bucket", "the scheme must be file, s3, gs or azblob"},
		{"s3://", "names no bucket: write s3://bucket"},
		{"s3://b?regoin=eu", "unknown parameter regoin"},
		{"s3://b?force_path_style=yes please", "force_path_style=\"yes please\" is not true or false"},
		{"s3://key:secret@bucket", "carries credentials"},
		{"file://host/path", "names a host"},
		{"azblob://blocks", "a storage account is required"},
		{"http://[::1", "is not a URL"},
	} {
		cfg := createDefaultConfig()
		cfg.Storage.BucketURL = c.url
		err := cfg.Validate()
		require.Error(t, err, c.url)
		require.ErrorContains(t, err, "storage::bucket_url: ", c.url)
		require.ErrorContains(t, err, c.want, c.url)
		require.NotContains(t, err.Error(), "secret", "a password is never echoed")
	}

	cfg := createDefaultConfig()
	cfg.Storage.BucketURL = "s3://b"
	cfg.Storage.S3.Bucket = "other"
	require.ErrorContains(t, cfg.Validate(), "storage::bucket_url: set either bucket_url or backend and its section, not both")
}

// TestBucketURLOpensTheBucket writes through a store opened from a file://
// URL and finds the object where the URL says.
func TestBucketURLOpensTheBucket(t *testing.T) {
	dir := t.TempDir()
	cfg := createDefaultConfig()
	cfg.Path = filepath.Join(dir, "data")
	cfg.Storage.BucketURL = "file://" + filepath.Join(dir, "shared")
	require.NoError(t, cfg.Validate())
	st, err := openBucket(context.Background(), cfg)
	require.NoError(t, err)
	require.NoError(t, st.Bucket().WriteAll(context.Background(), "probe", []byte("x"), nil))
	require.FileExists(t, filepath.Join(dir, "shared", "probe"))
}

// FuzzBucketURL feeds arbitrary text to the bucket URL parser: it must not
// panic, and what it accepts must validate or be refused with the field.
func FuzzBucketURL(f *testing.F) {
	for _, s := range []string{"file:///x", "s3://b/p?region=r&endpoint=e&force_path_style=true", "gs://b", "azblob://c?storage_account=a", "s3://u:p@b", "%zz", "file:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		cfg := createDefaultConfig()
		cfg.Storage.BucketURL = raw
		sc, err := cfg.Storage.resolved()
		if err != nil || raw == "" {
			return
		}
		if sc.Backend == "" {
			t.Fatalf("%q resolved to no backend", raw)
		}
		_ = cfg.Validate()
	})
}
