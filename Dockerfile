# One image per function, built from the repository root (the shared library is installed
# from shared/). FUNCTION names the folder under functions/ and the functions-framework target:
#
#   docker build --build-arg FUNCTION=ingest_event -t audit-ingest/ingest-event .
#   docker build --build-arg FUNCTION=ingest_batch -t audit-ingest/ingest-batch .
#   docker build --build-arg FUNCTION=authorize    -t audit-ingest/authorize .
#
# The builder installs only the locked runtime dependencies (`uv sync --frozen --no-dev`) and
# the library itself (not editable) into /app/.venv; the runtime stage copies that venv and the
# one function's main.py, and runs as an unprivileged user on PORT 8080.
#
# native/ (the pipeline's compiled accept path) is built from source by the last `uv sync`,
# through maturin, with the Rust toolchain taken from the official rust image (Debian's own
# cargo is too old to read Cargo.lock) and the C linker from Debian. Only the built module
# reaches the runtime stage, inside the venv.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG RUST_IMAGE=rust:1.91-slim-bookworm

FROM ${RUST_IMAGE} AS rust

FROM ${PYTHON_IMAGE} AS builder
ARG UV_VERSION=0.9.5
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
COPY --from=rust /usr/local/rustup/toolchains /opt/rust
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/* \
 && ln -s /opt/rust/*/bin/cargo /opt/rust/*/bin/rustc /usr/local/bin/
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# Dependencies first: this layer is rebuilt only when the lock file changes.
COPY pyproject.toml uv.lock README.md ./
COPY sdk/python/pyproject.toml sdk/python/pyproject.toml
COPY native/pyproject.toml native/pyproject.toml
RUN uv sync --frozen --no-dev --no-install-project --no-install-workspace --package audit-ingest
COPY native/Cargo.toml native/Cargo.lock native/
COPY native/src/ native/src/
COPY native/python/ native/python/
COPY shared/ shared/
RUN uv sync --frozen --no-dev --no-editable --package audit-ingest

FROM ${PYTHON_IMAGE} AS runtime
ARG FUNCTION=ingest_event
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --no-create-home --shell /usr/sbin/nologin app
COPY --from=builder /app/.venv /app/.venv
COPY functions/${FUNCTION}/main.py /app/functions/${FUNCTION}/main.py
# audit-ingest-serve is functions-framework's CLI and server with one more option, an HTTP
# keep-alive longer than the queue-proxy's and the gateway's pools (HTTP_KEEPALIVE_SECONDS,
# shared/audit_ingest/serve.py). It reads its target from FUNCTION_TARGET/FUNCTION_SOURCE and
# the port from PORT (Knative sets PORT too). WORKERS=1: one gunicorn worker running one uvicorn event loop;
# Knative's containerConcurrency is sized for that (knative/README.md).
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PORT=8080 \
    WORKERS=1 \
    FUNCTION_TARGET=${FUNCTION} \
    FUNCTION_SOURCE=/app/functions/${FUNCTION}/main.py \
    FUNCTION_SIGNATURE_TYPE=http
WORKDIR /app
USER 10001:10001
EXPOSE 8080
CMD ["audit-ingest-serve", "--asgi"]
