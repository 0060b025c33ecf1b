package objstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"gocloud.dev/blob"
	"gocloud.dev/blob/fileblob"
	"gocloud.dev/gcerrors"

	// URL openers for gs:// and azblob://, used by OpenGCS and OpenAzure.
	_ "gocloud.dev/blob/azureblob"
	_ "gocloud.dev/blob/gcsblob"
)

// ErrNotExist is returned (wrapped) when an object is missing.
var ErrNotExist = errors.New("object does not exist")

// ErrExists is returned (wrapped) by Create when the object is already
// there: another writer created it first.
var ErrExists = errors.New("object already exists")

// Store is a bucket plus what the block store needs on top of gocloud's
// API: durable writes on the local filesystem, where fileblob's rename is
// atomic but not synced, and direct file access for reads.
type Store struct {
	bucket *blob.Bucket
	dir    string // set for the filesystem backend
	name   string
}

// OpenFilesystem stores objects as files under dir.
func OpenFilesystem(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	b, err := fileblob.OpenBucket(abs, &fileblob.Options{NoTempDir: true})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dir, err)
	}
	return &Store{bucket: b, dir: abs, name: "filesystem " + abs}, nil
}

// NewStore wraps a bucket opened elsewhere (OpenS3, OpenURL, memblob).
func NewStore(b *blob.Bucket, name string) *Store { return &Store{bucket: b, name: name} }

// OpenGCS opens a Google Cloud Storage bucket with Application Default
// Credentials.
func OpenGCS(ctx context.Context, bucket string) (*Store, error) {
	b, err := blob.OpenBucket(ctx, "gs://"+bucket)
	if err != nil {
		return nil, fmt.Errorf("open gcs bucket %q: %w", bucket, err)
	}
	return NewStore(b, "gcs "+bucket), nil
}

// OpenAzure opens an Azure Blob Storage container. Credentials come from
// the environment as in the Azure SDK (AZURE_STORAGE_KEY,
// AZURE_STORAGE_SAS_TOKEN, or a default Azure identity).
func OpenAzure(ctx context.Context, account, container string) (*Store, error) {
	b, err := blob.OpenBucket(ctx, "azblob://"+container+"?storage_account="+account)
	if err != nil {
		return nil, fmt.Errorf("open azure container %q: %w", container, err)
	}
	return NewStore(b, "azure "+account+"/"+container), nil
}

// String names the backend for logs and errors.
func (s *Store) String() string { return s.name }

// Bucket exposes the underlying bucket.
func (s *Store) Bucket() *blob.Bucket { return s.bucket }

// Close releases the bucket.
func (s *Store) Close() error { return s.bucket.Close() }

// Put writes an object atomically: readers see the old object or the whole
// new one. On the filesystem the data and the directory entry are fsynced
// before Put returns, so a Put that returned survives a crash.
func (s *Store) Put(ctx context.Context, key string, r io.Reader) error {
	if s.dir == "" {
		w, err := s.bucket.NewWriter(ctx, key, nil)
		if err != nil {
			return fmt.Errorf("put %s: %w", key, err)
		}
		if _, err := io.Copy(w, r); err != nil {
			w.Close()
			return fmt.Errorf("put %s: %w", key, err)
		}
		if err := w.Close(); err != nil {
			return fmt.Errorf("put %s: %w", key, err)
		}
		return nil
	}
	path := s.path(key)
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	_, err = io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("put %s: %w", key, err)
	}
	return syncDirs(s.dir, dir)
}

// PutBytes is Put for a byte slice.
func (s *Store) PutBytes(ctx context.Context, key string, b []byte) error {
	return s.Put(ctx, key, bytes.NewReader(b))
}

// Create writes an object only if none exists under key, atomically
// across processes sharing the bucket: of writers racing to create one
// key, exactly one succeeds and the others get ErrExists. It is what a
// lease over a shared bucket is built on (store.Lease). On the filesystem
// the object is linked into place (link(2) fails if the name exists) after
// its data is fsynced; elsewhere it is the backend's conditional write
// (S3's If-None-Match, GCS's and Azure's generation preconditions).
func (s *Store) Create(ctx context.Context, key string, b []byte) error {
	if s.dir == "" {
		w, err := s.bucket.NewWriter(ctx, key, &blob.WriterOptions{IfNotExist: true})
		if err != nil {
			return fmt.Errorf("create %s: %w", key, err)
		}
		if _, err := w.Write(b); err != nil {
			w.Close()
			return fmt.Errorf("create %s: %w", key, err)
		}
		if err := w.Close(); err != nil {
			if gcerrors.Code(err) == gcerrors.FailedPrecondition {
				return fmt.Errorf("create %s: %w", key, ErrExists)
			}
			return fmt.Errorf("create %s: %w", key, err)
		}
		return nil
	}
	path := s.path(key)
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", key, err)
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("create %s: %w", key, err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Link(f.Name(), path)
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("create %s: %w", key, ErrExists)
		}
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", key, err)
	}
	return syncDirs(s.dir, dir)
}

// syncDirs fsyncs dir and its parents up to root, so that a new block
// directory is itself durable.
func syncDirs(root, dir string) error {
	for {
		d, err := os.Open(dir)
		if err != nil {
			return fmt.Errorf("sync %s: %w", dir, err)
		}
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("sync %s: %w", dir, err)
		}
		if dir == root || len(dir) <= len(root) {
			return nil
		}
		dir = filepath.Dir(dir)
	}
}

// Get reads a whole object.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	b, err := s.bucket.ReadAll(ctx, key)
	if err != nil {
		return nil, s.wrap(key, err)
	}
	return b, nil
}

func (s *Store) wrap(key string, err error) error {
	if gcerrors.Code(err) == gcerrors.NotFound || errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s: %w", key, ErrNotExist)
	}
	return fmt.Errorf("%s: %w", key, err)
}

// ReaderAt is a random-access reader of one object.
type ReaderAt interface {
	io.ReaderAt
	io.Closer
	Size() int64
}

// OpenReaderAt opens an object for random access. On the filesystem that is
// the file itself; elsewhere every ReadAt is a ranged GET, so callers should
// read in large pieces.
func (s *Store) OpenReaderAt(ctx context.Context, key string) (ReaderAt, error) {
	if s.dir != "" {
		f, err := os.Open(s.path(key))
		if err != nil {
			return nil, s.wrap(key, err)
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, s.wrap(key, err)
		}
		return &fileReaderAt{f, st.Size()}, nil
	}
	attrs, err := s.bucket.Attributes(ctx, key)
	if err != nil {
		return nil, s.wrap(key, err)
	}
	return &rangeReaderAt{ctx: ctx, b: s.bucket, key: key, size: attrs.Size}, nil
}

// IsLocal reports whether ra reads a local file, where small reads cost
// a system call and not a request.
func IsLocal(ra ReaderAt) bool {
	_, ok := ra.(*fileReaderAt)
	return ok
}

type fileReaderAt struct {
	*os.File
	size int64
}

func (f *fileReaderAt) Size() int64 { return f.size }

type rangeReaderAt struct {
	ctx  context.Context
	b    *blob.Bucket
	key  string
	size int64
}

func (r *rangeReaderAt) Size() int64  { return r.size }
func (r *rangeReaderAt) Close() error { return nil }

func (r *rangeReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= r.size {
		return 0, io.EOF
	}
	n := int64(len(p))
	if off+n > r.size {
		n = r.size - off
	}
	rr, err := r.b.NewRangeReader(r.ctx, r.key, off, n, nil)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", r.key, err)
	}
	defer rr.Close()
	m, err := io.ReadFull(rr, p[:n])
	if err == nil && n < int64(len(p)) {
		err = io.EOF
	}
	return m, err
}

// List returns the keys under prefix that end in suffix.
func (s *Store) List(ctx context.Context, prefix, suffix string) ([]string, error) {
	if s.dir != "" {
		return s.listFiles(prefix, suffix)
	}
	var keys []string
	it := s.bucket.List(&blob.ListOptions{Prefix: prefix})
	for {
		obj, err := it.Next(ctx)
		if err == io.EOF {
			return keys, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", prefix, err)
		}
		if strings.HasSuffix(obj.Key, suffix) && !strings.Contains(obj.Key, "/.tmp-") {
			keys = append(keys, obj.Key)
		}
	}
}

// listFiles lists the filesystem backend by walking its directories. Other
// processes sharing the bucket create, rename and delete files while it
// walks (a block written, a merge's inputs deleted): an entry that is gone
// by the time it is looked at is skipped, where fileblob's listing fails
// the whole call.
func (s *Store) listFiles(prefix, suffix string) ([]string, error) {
	start := s.dir
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		start = s.path(prefix[:i])
	}
	var keys []string
	err := filepath.WalkDir(start, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				if p == start {
					return filepath.SkipAll
				}
				return nil
			}
			return err
		}
		if d.IsDir() || strings.HasPrefix(d.Name(), ".tmp-") || strings.HasSuffix(d.Name(), ".attrs") {
			return nil
		}
		rel, err := filepath.Rel(s.dir, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if strings.HasPrefix(key, prefix) && strings.HasSuffix(key, suffix) {
			keys = append(keys, key)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	return keys, nil
}

// Delete removes an object; a missing object is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	err := s.bucket.Delete(ctx, key)
	if err != nil && gcerrors.Code(err) != gcerrors.NotFound {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	if s.dir != "" {
		// Drop the block directory once it is empty; errors mean it is not.
		os.Remove(filepath.Dir(s.path(key)))
	}
	return nil
}

func (s *Store) path(key string) string { return filepath.Join(s.dir, filepath.FromSlash(key)) }
