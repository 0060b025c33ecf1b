package sightlinestorage

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// A bucket URL names where blocks live in one setting, the form Thanos,
// Loki and the Go CDK use, so that every process sharing a bucket can be
// pointed at it by one environment variable (SIGHTLINE_BUCKET_URL in the
// builtin configs):
//
//	file:///var/lib/sightline/blocks
//	s3://bucket/prefix?region=eu-west-1&endpoint=minio:9000&force_path_style=true&insecure=true
//	gs://bucket/prefix
//	azblob://container/prefix?storage_account=name
//
// The path after the bucket is a prefix inside it. Credentials are never
// in the URL: they come from each cloud's usual environment (AWS_*,
// GOOGLE_APPLICATION_CREDENTIALS, AZURE_*), as with the backend sections.

// errBucketURLAndBackend is returned when both forms are set.
var errBucketURLAndBackend = errors.New("set either bucket_url or backend and its section, not both")

// resolved returns the storage settings in effect: the bucket URL's, when
// one is set, else the backend and its section as written.
func (s StorageConfig) resolved() (StorageConfig, error) {
	if s.BucketURL == "" {
		return s, nil
	}
	rest := s
	rest.BucketURL = ""
	if rest.Backend == "filesystem" || rest.Backend == "" {
		rest.Backend = ""
	}
	if rest != (StorageConfig{}) {
		return s, errBucketURLAndBackend
	}
	return parseBucketURL(s.BucketURL)
}

func parseBucketURL(raw string) (StorageConfig, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return StorageConfig{}, fmt.Errorf("%q is not a URL: %w", raw, errors.Unwrap(err))
	}
	q := u.Query()
	// take removes a query parameter and returns it; what is left at the
	// end was not understood.
	take := func(k string) string {
		v := q.Get(k)
		q.Del(k)
		return v
	}
	flag := func(k string) (bool, error) {
		v := take(k)
		if v == "" {
			return false, nil
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			return false, fmt.Errorf("%s=%q is not true or false", k, v)
		}
		return b, nil
	}
	prefix := strings.Trim(u.Path, "/")
	var sc StorageConfig
	switch u.Scheme {
	case "file":
		if u.Host != "" {
			return sc, fmt.Errorf("%q names a host; write file:///absolute/path", raw)
		}
		path := u.Path
		if u.Opaque != "" {
			path = u.Opaque // file:relative/path
		}
		if path == "" {
			return sc, fmt.Errorf("%q has no path", raw)
		}
		sc = StorageConfig{Backend: "filesystem", Filesystem: FilesystemConfig{Path: path}}
	case "s3":
		sc = StorageConfig{Backend: "s3", S3: S3Config{Bucket: u.Host, Prefix: prefix, Region: take("region"), Endpoint: take("endpoint")}}
		if sc.S3.ForcePathStyle, err = flag("force_path_style"); err != nil {
			return sc, err
		}
		if sc.S3.Insecure, err = flag("insecure"); err != nil {
			return sc, err
		}
	case "gs":
		sc = StorageConfig{Backend: "gcs", GCS: GCSConfig{Bucket: u.Host, Prefix: prefix}}
	case "azblob":
		sc = StorageConfig{Backend: "azure", Azure: AzureConfig{Container: u.Host, Prefix: prefix, StorageAccount: take("storage_account")}}
	default:
		return sc, fmt.Errorf("%q: the scheme must be file, s3, gs or azblob", raw)
	}
	if u.User != nil {
		return sc, fmt.Errorf("%q carries credentials; give them through the environment instead", redact(u))
	}
	if u.Scheme != "file" && u.Host == "" {
		return sc, fmt.Errorf("%q names no bucket: write %s://bucket", raw, u.Scheme)
	}
	if len(q) > 0 {
		keys := make([]string, 0, len(q))
		for k := range q {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		return sc, fmt.Errorf("%q: unknown parameter %s", raw, strings.Join(keys, ", "))
	}
	return sc, nil
}

// redact hides a URL's password in an error message.
func redact(u *url.URL) string {
	c := *u
	if c.User != nil {
		c.User = url.User(c.User.Username())
	}
	return c.String()
}
