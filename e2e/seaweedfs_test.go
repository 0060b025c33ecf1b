package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/sightlinehq/sightline/internal/objstore"
)

// seaweedS3 runs SeaweedFS (master, volume server, filer and S3 gateway in
// one `weed server` process, as its quick start runs it) on loopback ports
// in a temporary directory, creates bucket through its S3 API, and
// returns the bucket as Sightline's processes name it. SeaweedFS checks no
// signature until identities are configured; the AWS SDK still needs
// credentials to sign with, so static ones are set for the test and the
// processes it starts.
func seaweedS3(t *testing.T, bucket string) clusterBucket {
	t.Helper()
	bin := goTool(t, "weed", "scripts/test.sh builds it from e2e/seaweedfs")
	t.Setenv("AWS_ACCESS_KEY_ID", "sightline-test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "sightline-test")
	port := func() string { return strconv.Itoa(freePort(t)) }
	s3Port := port()
	cmd := exec.Command(bin, "server", "-dir="+t.TempDir(), "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
		"-master.port="+port(), "-master.port.grpc="+port(), "-master.volumeSizeLimitMB=64", "-master.telemetry=false",
		"-volume.port="+port(), "-volume.port.grpc="+port(), "-volume.max=0",
		"-filer", "-filer.port="+port(), "-filer.port.grpc="+port(),
		"-s3", "-s3.port="+s3Port, "-s3.port.grpc="+port(), "-s3.port.iceberg=0", "-s3.port.lance=0")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	var lastErr error
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("seaweedfs output (the last CreateBucket error: %v):\n%s", lastErr, out.String())
		}
	})

	ctx := context.Background()
	endpoint := "http://127.0.0.1:" + s3Port
	cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion("us-east-1"))
	if err != nil {
		t.Fatal(err)
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.UsePathStyle = true
		o.BaseEndpoint = aws.String(endpoint)
	})
	// The S3 gateway answers once the filer and a volume server have
	// registered with the master.
	waitFor(t, "seaweedfs to create the bucket", 60*time.Second, func() bool {
		select {
		case <-done:
			t.Fatalf("seaweedfs exited:\n%s", out.String())
		default:
		}
		_, lastErr = client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)})
		return lastErr == nil
	})
	b, err := objstore.OpenS3(ctx, objstore.S3Options{Bucket: bucket, Endpoint: endpoint, PathStyle: true, DisableHTTPS: true})
	if err != nil {
		t.Fatal(err)
	}
	st := objstore.NewStore(b, "s3")
	t.Cleanup(func() { st.Close() })
	// SeaweedFS allocates its first volumes on the first write, which
	// takes seconds; done here, so that the first writes the processes
	// make (a compactor's lease, renewed within a second in these tests)
	// are as quick as every later one.
	if err := st.PutBytes(ctx, "warm-up", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, "warm-up"); err != nil {
		t.Fatal(err)
	}
	return clusterBucket{
		url:   fmt.Sprintf("s3://%s?endpoint=%s&force_path_style=true&insecure=true", bucket, endpoint),
		store: st,
	}
}
