# defender's four services as small static images, one target each:
#   docker build --target gate -t defender-gate .
#   docker build --target recorder -t defender-recorder .
#   docker build --target admin -t defender-admin .
#   docker build --target notifier -t defender-notifier .
# deploy/compose.yml builds all four and runs them with Redis, NATS and
# ClickHouse. Each image holds its binary as /service and /probe, a tiny
# HTTP health check for the compose file (the images have no shell).

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-trimpath
COPY go.mod go.sum ./
# Plain RUN, no cache mounts: the legacy builder (docker-compose 1.29
# without BuildKit) builds this file too. The module download is its own
# layer, kept while go.mod and go.sum do not change.
RUN go mod download
COPY . .
RUN go build -ldflags="-s -w" -o /out/ ./cmd/gate ./cmd/recorder ./cmd/admin ./cmd/notifier ./deploy/probe

# distroless/static: CA certificates, tzdata, /etc/passwd with nonroot, no shell.
FROM gcr.io/distroless/static-debian12:nonroot AS base
COPY --from=build /out/probe /probe
USER nonroot:nonroot
ENTRYPOINT ["/service"]

FROM base AS recorder
COPY --from=build /out/recorder /service
EXPOSE 9102

FROM base AS admin
COPY --from=build /out/admin /service
CMD ["serve"]
EXPOSE 8081

FROM base AS notifier
COPY --from=build /out/notifier /service
EXPOSE 9103 8082

# Last, so that a plain "docker build ." gives the gate.
FROM base AS gate
COPY --from=build /out/gate /service
EXPOSE 8080 4222
