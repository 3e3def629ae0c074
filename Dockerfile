# Driftline: one image for the worker (`driftline worker`) and the replicas (`driftline serve`).
#   docker build -t driftline .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# torch's CPU wheels: the CUDA ones would add gigabytes a CPU container never uses
COPY pyproject.toml README.md ./
COPY stream ./stream
COPY learners ./learners
COPY connectors ./connectors
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu . \
    && useradd --create-home --uid 10001 driftline

USER driftline
EXPOSE 8000
# no default pipeline settings here: compose (or `docker run -e ...`) names them
ENTRYPOINT ["driftline"]
CMD ["worker", "--host", "0.0.0.0", "--port", "8000"]
