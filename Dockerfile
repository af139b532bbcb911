# syntax=docker/dockerfile:1
#
# kafka-sidecar: one per pod, next to the application container.
#
#   docker build -t kafka-sidecar:dev --build-arg GIT_COMMIT="$(git rev-parse HEAD)" .
#
# Two stages: a Rust builder, then a distroless runtime that holds nothing but the binary, glibc
# and libgcc (what `ldd kafka-sidecar` lists: libgcc_s, libm, libc). librdkafka, zlib, zstd and
# OpenSSL (rdkafka's ssl-vendored: TLS, SASL SCRAM and OAUTHBEARER to Kafka) are compiled into the
# binary, so no libssl or libsasl2 is needed at run time. With kafka.security.tls.ca_file unset,
# librdkafka probes the usual CA bundle paths (distroless/cc ships /etc/ssl/certs).
#
# The builder and runtime images must share a Debian release (the binary links the builder's
# glibc): bookworm with distroless/cc-debian12, or trixie with distroless/cc-debian13.
# deploy/README.md explains the listeners, the probes and the Kubernetes example.

# The same toolchain as rust-toolchain.toml (tests/deploy_artefacts.rs checks they agree).
ARG RUST_VERSION=1.95.0
ARG DEBIAN_RELEASE=bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
# The full (non-slim) image brings what rdkafka-sys needs to build librdkafka: bash, make, gcc
# and g++, and what openssl-src needs to build OpenSSL: perl and make. protoc is not needed (the
# proto crate compiles with protox).
WORKDIR /src
# Only what the workspace build reads. rust-toolchain.toml stays out: the image's toolchain is
# the pinned one, and the file would make rustup fetch clippy and rustfmt, which a build never uses.
COPY Cargo.toml Cargo.lock ./
COPY proto ./proto
COPY crates ./crates
# The build script records the commit for GET /admin/info; the context has no .git, so pass it.
ARG GIT_COMMIT=unknown
# Set it (e.g. to the commit time) for a reproducible build time.
ARG SOURCE_DATE_EPOCH
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p kafka-sidecar --bin kafka-sidecar \
 && install -D -m 0755 target/release/kafka-sidecar /out/kafka-sidecar

FROM ${RUNTIME_IMAGE}
COPY --from=builder /out/kafka-sidecar /usr/local/bin/kafka-sidecar
# The pod's configuration; a Kubernetes ConfigMap mounted on /etc/kafka-sidecar replaces it.
COPY deploy/docker/kafka-sidecar.yaml /etc/kafka-sidecar/kafka-sidecar.yaml
ENV KAFKA_SIDECAR_CONFIG=/etc/kafka-sidecar/kafka-sidecar.yaml
# gRPC and HTTP listen on the pod's loopback (the app shares the pod's network namespace);
# admin (/metrics, /healthz, /readyz) on every interface, so the kubelet's probes and
# Prometheus, which come from outside the pod, can reach it.
EXPOSE 50051 8080 9644
# distroless's nonroot user, by number so that Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/kafka-sidecar"]
