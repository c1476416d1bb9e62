# Switchyard gateway image: a static binary on a distroless base, run as
# a non-root user.
#
#   docker build -t switchyard .
#   docker run -p 8080:8080 -p 9901:9901 -v $PWD/deploy/local:/etc/switchyard/config switchyard
#
# Ports: 8080 traffic, 9901 admin API + /metrics + /healthz + /readyz (set
# listen/admin.listen to 0.0.0.0:PORT in the config to reach them from
# outside the container). Config: /etc/switchyard/config/switchyard.yaml,
# mounted as a directory so that ConfigMap updates reach the file watch.
# State (the last admin switch): /var/lib/switchyard, set state_dir to it.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/switchyard ./cmd/switchyard

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/switchyard /usr/local/bin/switchyard
USER 65532:65532
EXPOSE 8080 9901
VOLUME ["/var/lib/switchyard"]
ENTRYPOINT ["/usr/local/bin/switchyard"]
CMD ["serve", "--config", "/etc/switchyard/config/switchyard.yaml"]
