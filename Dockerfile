# pix2chat: `docker build -t pix2chat .` then
#   GPU:  docker run --gpus all --env-file .env -v pix2chat-data:/data -v pix2chat-models:/models pix2chat
#   CPU:  docker run --env-file .env -v pix2chat-data:/data -v pix2chat-models:/models pix2chat
# PyPI's Linux torch wheels bundle the CUDA runtime, so one image serves both; the host only
# needs the NVIDIA driver and container toolkit. For a smaller CPU-only image, build with
#   --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
FROM python:3.11-slim

ARG TORCH_INDEX_URL=""
# PIX2CHAT_COMPILE needs a C compiler at run time (Triton builds its kernel launchers with gcc):
# build with --build-arg WITH_COMPILER=1 to use it.
ARG WITH_COMPILER=0
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIX2CHAT_DATA_DIR=/data \
    HF_HOME=/models

RUN useradd --create-home --uid 1000 pix2chat \
    && mkdir -p /data /models /app \
    && chown pix2chat:pix2chat /data /models

RUN if [ "$WITH_COMPILER" = 1 ]; then \
        apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
        && rm -rf /var/lib/apt/lists/*; \
    fi

WORKDIR /app
# torchvision (spandrel's, for /upscale) only works beside the torch build it was made for, so
# both come from the same index.
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
        pip install torch torchvision --index-url "$TORCH_INDEX_URL"; \
    fi
COPY pyproject.toml setup.py README.md ./
COPY bot ./bot
COPY editor ./editor
COPY storage ./storage
RUN pip install ".[postgres,finishing]"
# The invisible watermark (provenance, issue 18): invisible-watermark declares opencv-python,
# whose cv2 would clash with opencv-python-headless (already installed, same cv2 module), so it
# is installed without its declared dependencies; its real ones (numpy, Pillow, PyWavelets,
# opencv) are all there.
RUN pip install --no-deps "invisible-watermark==0.2.0"

USER pix2chat
VOLUME ["/data", "/models"]
CMD ["pix2chat", "run"]
