package objstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"gocloud.dev/blob/memblob"

	"github.com/sightlinehq/sightline/internal/objstore"
	"github.com/sightlinehq/sightline/internal/objstore/objstoretest"
)

// TestCreateIsExclusive races writers to create one key, each through its
// own Store as separate processes would open the bucket: exactly one may
// win, the others get ErrExists, and the object holds the winner's bytes.
func TestCreateIsExclusive(t *testing.T) {
	ctx := context.Background()
	backends := map[string]func(t *testing.T) func() *objstore.Store{
		"filesystem": func(t *testing.T) func() *objstore.Store {
			dir := t.TempDir()
			return func() *objstore.Store {
				st, err := objstore.OpenFilesystem(dir)
				if err != nil {
					t.Fatal(err)
				}
				return st
			}
		},
		"memory": func(t *testing.T) func() *objstore.Store {
			st := objstore.NewStore(memblob.OpenBucket(nil), "memory")
			return func() *objstore.Store { return st }
		},
		"s3": func(t *testing.T) func() *objstore.Store {
			endpoint := objstoretest.FakeS3(t, "lease")
			return func() *objstore.Store {
				b, err := objstore.OpenS3(ctx, objstore.S3Options{Bucket: "lease", Endpoint: endpoint, PathStyle: true, DisableHTTPS: true})
				if err != nil {
					t.Fatal(err)
				}
				return objstore.NewStore(b, "s3")
			}
		},
	}
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			stores := open(t)
			const writers = 8
			var (
				wg     sync.WaitGroup
				mu     sync.Mutex
				won    []int
				others []error
			)
			for i := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					err := stores().Create(ctx, "compactor/lease-1", []byte(fmt.Sprint(i)))
					mu.Lock()
					defer mu.Unlock()
					if err == nil {
						won = append(won, i)
					} else {
						others = append(others, err)
					}
				}()
			}
			wg.Wait()
			if len(won) != 1 {
				t.Fatalf("%d writers created the key (%v), want exactly 1; errors: %v", len(won), won, others)
			}
			for _, err := range others {
				if !errors.Is(err, objstore.ErrExists) {
					t.Errorf("a losing writer got %v, want ErrExists", err)
				}
			}
			got, err := stores().Get(ctx, "compactor/lease-1")
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != fmt.Sprint(won[0]) {
				t.Errorf("object holds %q, want the winner's %q", got, fmt.Sprint(won[0]))
			}
			keys, err := stores().List(ctx, "compactor/", "")
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) != 1 {
				t.Errorf("keys under compactor/: %v, want only the lease (no temporary files left)", keys)
			}
		})
	}
}
