# ganpaint: the painting studio and API. Two targets:
#   docker build --target cpu -t ganpaint:cpu .      (slim Python + CPU PyTorch)
#   docker build --target gpu -t ganpaint:gpu .      (CUDA PyTorch base)
# The embedded zoo (models/zoo) ships in the image; nothing is downloaded at run time. Extra
# checkpoints mount read-only at /models; the dissection cache lives in the /cache volume.
# For the CPU image on x86_64 pass the CPU wheel index of PyTorch as TORCH_INDEX_URL, otherwise pip
# installs the (much larger) CUDA build of torch.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
ARG CUDA_IMAGE=pytorch/pytorch:2.8.0-cuda12.8-cudnn9-runtime

FROM ${PYTHON_IMAGE} AS cpu
ARG TORCH_INDEX_URL=""
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    GANPAINT_HOST=0.0.0.0 GANPAINT_CACHE_DIR=/cache GANPAINT_MODELS_DIR=/models OMP_NUM_THREADS=4
RUN useradd --create-home --uid 10001 app && mkdir -p /cache /models && chown app:app /cache
WORKDIR /app
COPY pyproject.toml README.md ./
COPY models ./models
COPY dissect_core ./dissect_core
COPY server ./server
COPY frontend ./frontend
RUN if [ -n "$TORCH_INDEX_URL" ]; then pip install --no-cache-dir --index-url "$TORCH_INDEX_URL" "torch==2.8.0"; fi \
    && pip install --no-cache-dir "torch==2.8.0" . \
    && python -c "import models.zoo as z; assert 'world64' in z.list_zoo(), 'zoo missing'"
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/livez', timeout=3)"]
CMD ["python", "-m", "server.cli", "serve"]

FROM ${CUDA_IMAGE} AS gpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    GANPAINT_HOST=0.0.0.0 GANPAINT_CACHE_DIR=/cache GANPAINT_MODELS_DIR=/models GANPAINT_DEVICE=cuda
RUN useradd --create-home --uid 10001 app && mkdir -p /cache /models && chown app:app /cache
WORKDIR /app
COPY pyproject.toml README.md ./
COPY models ./models
COPY dissect_core ./dissect_core
COPY server ./server
COPY frontend ./frontend
RUN pip install --no-cache-dir "torch==2.8.0" . \
    && python -c "import models.zoo as z; assert 'world64' in z.list_zoo(), 'zoo missing'"
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/livez', timeout=3)"]
CMD ["python", "-m", "server.cli", "serve"]
