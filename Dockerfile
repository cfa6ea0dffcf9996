# syntax=docker/dockerfile:1

# Build a static binary: the server build, without demo and bench (and so
# without the fakes and the contract validator they link).
# go.mod needs 1.26.8, and the official images build with GOTOOLCHAIN=local.
FROM golang:1.26.8 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=""
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -tags ssobot_server -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/ssobot ./cmd/ssobot \
 && mkdir -p /out/data

# Run it as a non-root user on a minimal image with CA certificates.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ssobot /ssobot
# The database directory must be writable by the nonroot user (65532).
COPY --from=build --chown=65532:65532 /out/data /data
ENV SSOBOT_DB=/data/ssobot.db \
    SSOBOT_LISTEN=:8080
VOLUME ["/data"]
# 8080: Slack endpoints (HTTP mode). The admin API listens on
# SSOBOT_ADMIN_LISTEN (127.0.0.1:9090 by default, i.e. inside the container
# only); set it to :9090 and publish the port to scrape /metrics.
EXPOSE 8080
USER nonroot:nonroot
# Ready: the database open, the engine running and, in Socket Mode,
# connected to Slack (GET /readyz on the admin API; the image has no curl).
# The start period covers the start-up credential checks (up to 30 s).
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s CMD ["/ssobot", "health"]
ENTRYPOINT ["/ssobot"]
CMD ["serve"]
