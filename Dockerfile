# A conventional multi-stage build for machines that can pull base images from a registry.
# Without a registry, use `make image`, which builds the same image from a local static binary.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked --target x86_64-unknown-linux-gnu --bin taskrun \
 && cp target/x86_64-unknown-linux-gnu/release/taskrun /taskrun

FROM scratch
COPY --from=build /taskrun /taskrun
USER 65532:65532
ENTRYPOINT ["/taskrun"]
CMD ["controller"]
