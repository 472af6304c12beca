# syntax=docker/dockerfile:1
# xquant-server image. GPU (default): built on NVIDIA's CUDA 13 devel image for sm_90a, run on the
# matching CUDA runtime image. CPU only: --build-arg VARIANT=cpu (Debian bookworm, no CUDA).
#   docker build -t xquant-server .
#   docker build -t xquant-server:cpu --build-arg VARIANT=cpu .
# The build steps are the scripts CI runs (bootstrap.sh, build.sh, install.sh), so they cannot
# drift. Configure the container with flags after the image name or XQ_* environment variables.
ARG VARIANT=cuda
ARG CUDA_VERSION=13.0.0

FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu24.04 AS build-cuda
FROM debian:bookworm AS build-cpu

# build-cuda or build-cpu, a stage of this file (tagged above), which hadolint cannot resolve.
# hadolint ignore=DL3006
FROM build-${VARIANT} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
# The packages first, in their own layer: source edits do not reinstall them.
COPY scripts/bootstrap.sh scripts/
RUN ./scripts/bootstrap.sh --build-only && rm -rf /var/lib/apt/lists/*
COPY . .
RUN ./scripts/build.sh -DXQ_BUILD_TESTS=OFF && ./scripts/install.sh /opt/xquant build/release

FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu24.04 AS runtime-cuda
FROM debian:bookworm-slim AS runtime-cpu

# runtime-cuda or runtime-cpu, tagged above.
# hadolint ignore=DL3006
FROM runtime-${VARIANT}
# curl for the HEALTHCHECK. Versions are not pinned: the base image's release pins them, and
# pinned Debian/Ubuntu versions disappear from the archive with each point release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --create-home --home-dir /home/xquant xquant
COPY --from=build /opt/xquant /opt/xquant
# The bundled shared libraries (install.sh copies what the binaries link, except glibc and the
# CUDA libraries the runtime image has) go on the loader's path.
RUN echo /opt/xquant/lib > /etc/ld.so.conf.d/xquant.conf && ldconfig \
 && /opt/xquant/bin/xquant-server --help > /dev/null
ENV PATH=/opt/xquant/bin:$PATH \
    XQ_HOST=0.0.0.0 \
    XQ_PORT=8000
USER 10001
WORKDIR /home/xquant
EXPOSE 8000
# /health answers only once the model is loaded (the port opens after loading): a large model
# may take minutes, hence the long start period.
HEALTHCHECK --interval=15s --timeout=5s --start-period=600s --retries=3 \
  CMD ["/bin/sh", "-c", "curl -fsS \"http://127.0.0.1:${XQ_PORT}/health\" || exit 1"]
ENTRYPOINT ["xquant-server"]
