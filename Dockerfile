# The uip-cache server: `docker build -t uip-cache .`
# Build stage: the release binary, from the workspace's locked dependencies.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p uip-cache-server \
 && cp target/release/uip-cache /uip-cache

# Run stage: the binary and a default config, as an unprivileged user.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home uip-cache
COPY --from=build /uip-cache /usr/local/bin/uip-cache
COPY config/docker.yaml /etc/uip-cache/cache.yaml
USER uip-cache
# 8080: the proxy; 9092: the admin API (health, metrics, invalidation, warming).
EXPOSE 8080 9092
ENTRYPOINT ["uip-cache"]
CMD ["serve", "--config", "/etc/uip-cache/cache.yaml", "--listen", "0.0.0.0:8080", "--admin", "0.0.0.0:9092"]
