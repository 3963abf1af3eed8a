# OdeaTTS RunPod worker: CPU only (speech is made by MiniMax; we meter and relay it).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ODEATTS_ENV=production \
    RUNPOD_LOG_LEVEL=INFO

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY handler.py test_input.json ./
COPY odeatts ./odeatts
# The admin CLI ships in the image so operators can run it against production, e.g.
#   docker run --env-file prod.env IMAGE python scripts/admin.py db upgrade
COPY scripts/__init__.py scripts/admin.py scripts/reset_quotas.py ./scripts/

RUN useradd --create-home --uid 10001 odea
USER odea

CMD ["python", "-u", "/app/handler.py"]
