"""odeatts-client: call an OdeaTTS endpoint (RunPod serverless) from Python.

    from odeatts_client import Client
    with Client("https://api.runpod.ai/v2/<endpoint id>", RUNPOD_API_KEY, ODEATTS_KEY) as tts:
        speech = tts.speech("Good morning, Lagos.", "nigerian-female")
        open("out.mp3", "wb").write(speech.audio)

Failures raise ``OdeaTTSError`` subclasses carrying ``code``, ``status``, ``retry_after``
and ``details`` (see ``_errors``); the official ``runpod.Endpoint.run_sync`` returns
None for every failed job instead.
"""

from odeatts_client._async import AsyncAudioStream, AsyncClient
from odeatts_client._errors import (
    ConcurrencyLimited,
    ContentRejected,
    DuplicateJob,
    EndpointError,
    InternalError,
    InvalidRequest,
    JobFailed,
    OdeaTTSError,
    QuotaExceeded,
    RateLimited,
    ServiceUnavailable,
    Throttled,
    TransportError,
    Unauthorized,
    UpstreamBusy,
    UpstreamRejected,
    UpstreamUnavailable,
    VoiceNotFound,
    from_wire,
)
from odeatts_client._protocol import Speech, Voice
from odeatts_client._sync import AudioStream, Client

__all__ = [
    "AsyncAudioStream",
    "AsyncClient",
    "AudioStream",
    "Client",
    "ConcurrencyLimited",
    "ContentRejected",
    "DuplicateJob",
    "EndpointError",
    "InternalError",
    "InvalidRequest",
    "JobFailed",
    "OdeaTTSError",
    "QuotaExceeded",
    "RateLimited",
    "ServiceUnavailable",
    "Speech",
    "Throttled",
    "TransportError",
    "Unauthorized",
    "UpstreamBusy",
    "UpstreamRejected",
    "UpstreamUnavailable",
    "Voice",
    "VoiceNotFound",
    "from_wire",
]
