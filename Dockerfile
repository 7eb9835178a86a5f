# The proxylab binaries in one image. Used by docker-compose.yml; not needed to run the lab locally.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/proxylab /src/target/release/auth-proxy /src/target/release/forwarder /usr/local/bin/
ENTRYPOINT ["proxylab"]
