# syntax=docker/dockerfile:1
# One Dockerfile, one target per service (BuildKit):
#
#   docker build --target command-service -t eventfold/command-service:0.1.0 .
#   docker build --target outbox-relay    -t eventfold/outbox-relay:0.1.0 .
#   docker build --target projector       -t eventfold/projector:0.1.0 .
#
# (`scripts/helm/images.sh` prints these with the registry and tag filled in.) The build stage compiles
# every binary of the workspace in release mode once; each runtime stage is distroless (glibc, libssl,
# CA certificates, no shell, no package manager) and runs as the unprivileged `nonroot` user (65532).

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
# rdkafka builds librdkafka from source: cmake/perl/make, plus the OpenSSL headers for its
# `ssl` feature (SASL_SSL with SCRAM needs it; the runtime image has libssl3).
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake perl make pkg-config libssl-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# zlib is linked statically (the runtime image has no libz); sqlx macros use the checked-in offline data.
ENV LIBZ_SYS_STATIC=1 \
    SQLX_OFFLINE=true \
    CARGO_TERM_COLOR=never
COPY . .
# The migration entrypoint of the Helm hook Job (eventfold-migrate) ships in the command-service image
# when the workspace builds it; the sqlx migrations always do, at /app/migrations. So do the admin
# command (/app/eventfold) and the Avro schemas (/app/schemas) of the schema registration hook Job.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --workspace --exclude eventfold-tests --bins \
 && mkdir -p /out/command-service/migrations /out/command-service/schemas /out/outbox-relay /out/projector \
 && cp target/release/command-service target/release/eventfold /out/command-service/ \
 && cp target/release/outbox-relay /out/outbox-relay/ \
 && cp target/release/projector /out/projector/ \
 && if [ -f target/release/eventfold-migrate ]; then cp target/release/eventfold-migrate /out/command-service/; \
    else echo "note: no eventfold-migrate binary in the workspace yet" >&2; fi \
 && cp -R migrations/. /out/command-service/migrations/ \
 && find schemas -name '*.avsc' -exec cp --parents {} /out/command-service/ \;

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
WORKDIR /app
USER 65532:65532
# Listen on all interfaces inside the pod (the admin listener, /readyz /metrics and the admin APIs,
# defaults to the HTTP port + 1000: 9080); structured logs for the cluster's log pipeline.
ENV HTTP_ADDR=0.0.0.0:8080 \
    LOG_FORMAT=json \
    RUST_LOG=info
EXPOSE 8080 9080
LABEL org.opencontainers.image.vendor="eventfold" \
      org.opencontainers.image.licenses="Apache-2.0"

FROM runtime AS command-service
COPY --from=build /out/command-service/ /app/
LABEL org.opencontainers.image.title="eventfold command-service"
ENTRYPOINT ["/app/command-service"]

FROM runtime AS outbox-relay
COPY --from=build /out/outbox-relay/ /app/
LABEL org.opencontainers.image.title="eventfold outbox-relay"
ENTRYPOINT ["/app/outbox-relay"]

FROM runtime AS projector
COPY --from=build /out/projector/ /app/
LABEL org.opencontainers.image.title="eventfold projector"
ENTRYPOINT ["/app/projector"]
