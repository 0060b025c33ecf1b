# Sightline's container image: one static binary on an empty base, with no
# shell, running as an unprivileged user, its data on a volume.
#
#   docker build -t sightline .
#   docker run -p 4317:4317 -p 4318:4318 -p 3200:3200 -v sightline-data:/data sightline
#
# docs/deploy.md has the rest (a config of your own, Kubernetes, ECS).
# e2e/image_test.go builds the final stage below from the binary the tests
# build, and checks and runs the image.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# CGO off: the binary needs no libc, so the base can be empty.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/sightline ./cmd/sightline \
 && deploy/docker/rootfs.sh /out/sightline /image

FROM scratch
ARG VERSION=dev
ARG REVISION=unknown
COPY --from=build /image/root/ /
COPY --from=build --chown=10001:10001 /image/data /data
USER 10001:10001
WORKDIR /data
# In a container, listen on every interface: the container's network is
# the boundary (on a bare machine the all-in-one listens on localhost).
ENV SIGHTLINE_DATA=/data \
    SIGHTLINE_LISTEN_HOST=0.0.0.0
VOLUME ["/data"]
# OTLP/gRPC, OTLP/HTTP, Loki push, query APIs and UI, health, self-metrics.
EXPOSE 4317 4318 3100 3200 13133 8888
# No shell in the image: the binary asks its own health_check extension.
# The start period covers the replay of a large WAL.
HEALTHCHECK --interval=30s --timeout=5s --start-period=2m --retries=3 \
    CMD ["/sightline", "healthcheck"]
LABEL org.opencontainers.image.title="Sightline" \
      org.opencontainers.image.description="OpenTelemetry-native traces, metrics and logs in one binary" \
      org.opencontainers.image.source="https://github.com/sightlinehq/sightline" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
ENTRYPOINT ["/sightline"]
