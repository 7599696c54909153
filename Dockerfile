# ganpaint: the painting studio and API. Two targets on one base:
#   docker build --target cpu -t ganpaint:cpu .      (CPU build of PyTorch from its CPU wheel index)
#   docker build --target gpu -t ganpaint:gpu .      (PyPI's CUDA build of PyTorch)
# Both install the PyTorch version pinned in constraints.txt, the one the tests run. The embedded zoo
# (models/zoo) ships in the image; nothing is downloaded at run time. Extra checkpoints mount
# read-only at /models; the dissection cache lives in the /cache volume; Hugging Face segmenters
# (GANPAINT_SEGMENTER=hf:<id>, fetched on the host with --cache-dir hf-cache) read-only at /hf.
# GANPAINT_EXTRAS=real (the default) installs transformers for them; --build-arg GANPAINT_EXTRAS=
# leaves it out.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS base
ARG GANPAINT_EXTRAS=real
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GANPAINT_HOST=0.0.0.0 GANPAINT_CACHE_DIR=/cache GANPAINT_MODELS_DIR=/models \
    HF_HUB_CACHE=/hf HF_HUB_OFFLINE=1 GANPAINT_EXTRAS=${GANPAINT_EXTRAS}
RUN useradd --create-home --uid 10001 app && mkdir -p /cache /models && chown app:app /cache
WORKDIR /app
COPY constraints.txt pyproject.toml README.md ./
COPY models ./models
COPY dissect_core ./dissect_core
COPY server ./server
COPY frontend ./frontend

FROM base AS cpu
# the CPU wheel index: on x86_64 PyPI's torch is the multi-GB CUDA build
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV OMP_NUM_THREADS=4
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --index-url "$TORCH_INDEX_URL" -c constraints.txt torch \
    && pip install --no-cache-dir -c constraints.txt ".[${GANPAINT_EXTRAS}]" \
    && python -c "import models.zoo as z, server.api.pages as p; assert z.list_zoo() and p.frontend_dir()"
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/livez', timeout=3)"]
CMD ["python", "-m", "server.cli", "serve"]

FROM base AS gpu
ENV GANPAINT_DEVICE=cuda
# hadolint ignore=DL3013
RUN pip install --no-cache-dir -c constraints.txt torch ".[${GANPAINT_EXTRAS}]" \
    && python -c "import models.zoo as z, server.api.pages as p; assert z.list_zoo() and p.frontend_dir()"
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/livez', timeout=3)"]
CMD ["python", "-m", "server.cli", "serve"]
