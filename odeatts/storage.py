"""Object storage for audio too large to return inline (or asked for as a URL).

boto3 against any S3-compatible endpoint, one client per worker, every call through
``asyncio.to_thread`` (boto3 blocks); boto3 is imported only when a bucket is
configured (about 0.1 s of a cold start otherwise spent for nothing). Unlike RunPod's
rp_upload helper there is no silent local fallback: a deployment without storage says
so, clearly, on the job. botocore's errors are translated here and nowhere else.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from odeatts.config import Settings
from odeatts.errors import ServiceUnavailable

__all__ = ["CONTENT_TYPES", "Storage", "build_storage", "s3_client"]

log = logging.getLogger(__name__)

CONTENT_TYPES = {
    "mp3": "audio/mpeg",
    "wav": "audio/wav",
    "flac": "audio/flac",
    "pcm": "application/octet-stream",
}


class Storage:
    def __init__(
        self, client: Any, *, bucket: str, expiry_seconds: int, prefix: str = "audio"
    ) -> None:
        self._client = client
        self._bucket = bucket
        self._expiry = expiry_seconds
        self._prefix = prefix

    @property
    def expiry_seconds(self) -> int:
        return self._expiry

    async def put_audio(self, audio: bytes, *, job_id: str, fmt: str) -> str:
        """Upload and return a presigned GET URL valid for ``expiry_seconds``."""
        from botocore.exceptions import BotoCoreError, ClientError

        # The random part keeps a URL unguessable from the (caller-visible) job id.
        key = f"{self._prefix}/{job_id}/{uuid.uuid4().hex}.{fmt}"
        try:
            await asyncio.to_thread(
                self._client.put_object,
                Bucket=self._bucket,
                Key=key,
                Body=audio,
                ContentType=CONTENT_TYPES.get(fmt, "application/octet-stream"),
            )
            return str(
                await asyncio.to_thread(
                    self._client.generate_presigned_url,
                    "get_object",
                    Params={"Bucket": self._bucket, "Key": key},
                    ExpiresIn=self._expiry,
                )
            )
        except (BotoCoreError, ClientError) as exc:
            log.error("object storage failed for job %s: %s", job_id, type(exc).__name__)
            raise ServiceUnavailable("Could not store the audio; try again later.") from exc


def build_storage(settings: Settings) -> Storage | None:
    """The configured bucket, or None when this deployment has no object storage."""
    if not settings.bucket_name:
        return None
    client = s3_client(settings, attempts=2, connect_timeout=3, read_timeout=10)
    return Storage(client, bucket=settings.bucket_name, expiry_seconds=settings.url_expiry_seconds)


def s3_client(
    settings: Settings, *, attempts: int, connect_timeout: float, read_timeout: float
) -> Any:
    """A boto3 S3 client of the configured bucket's endpoint and credentials."""
    import boto3
    from botocore.config import Config

    secret = settings.bucket_secret_access_key
    return boto3.client(
        "s3",
        endpoint_url=settings.bucket_endpoint_url,
        aws_access_key_id=settings.bucket_access_key_id,
        aws_secret_access_key=secret.get_secret_value() if secret else None,
        region_name=settings.bucket_region,
        config=Config(
            signature_version="s3v4",
            retries={"max_attempts": attempts, "mode": "standard"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        ),
    )
