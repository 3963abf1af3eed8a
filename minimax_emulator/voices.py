"""Voice catalogue and in-memory clone/upload store.

Why: MiniMax rejects unknown voice ids (2042), lists system and cloned voices
through get_voice, and only lists a clone after its first real synthesis.
The emulator keeps the same rules so the production code's voice handling
is exercised for real. Every voice maps to an espeak-ng voice+variant, so
different voices really do sound different (male/female, US/UK/other).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass

__all__ = [
    "CLONE_VOICES",
    "SYSTEM_VOICES",
    "ClonedVoice",
    "SystemVoice",
    "UploadedFile",
    "VoiceStore",
]


@dataclass(frozen=True)
class SystemVoice:
    """A built-in MiniMax voice and the espeak voice that stands in for it."""

    voice_id: str
    voice_name: str
    espeak: str


SYSTEM_VOICES: tuple[SystemVoice, ...] = (
    SystemVoice("English_expressive_narrator", "Expressive Narrator", "en-gb-x-rp+m3"),
    SystemVoice("English_radiant_girl", "Radiant Girl", "en-us+f4"),
    SystemVoice("English_magnetic_voiced_man", "Magnetic-voiced Male", "en-us+m3"),
    SystemVoice("English_compelling_lady1", "Compelling Lady", "en+f2"),
    SystemVoice("English_Aussie_Bloke", "Aussie Bloke", "en-029+m1"),
    SystemVoice("English_captivating_female1", "Captivating Female", "en-us+f1"),
    SystemVoice("English_Upbeat_Woman", "Upbeat Woman", "en-us+f3"),
    SystemVoice("English_Trustworth_Man", "Trustworthy Man", "en-us+m1"),
    SystemVoice("English_Trustworthy_Man", "Trustworthy Man", "en-us+m1"),
    SystemVoice("English_CalmWoman", "Calm Woman", "en+f5"),
    SystemVoice("English_Graceful_Lady", "Graceful Lady", "en-gb-x-rp+f2"),
    SystemVoice("English_Insightful_Speaker", "Insightful Speaker", "en+m2"),
    SystemVoice("English_Persuasive_Man", "Persuasive Man", "en-us+m4"),
    SystemVoice("Chinese (Mandarin)_Reliable_Executive", "Reliable Executive", "cmn+m3"),
    SystemVoice("Chinese (Mandarin)_News_Anchor", "News Anchor", "cmn+f2"),
    SystemVoice("Japanese_IntellectualSenior", "Intellectual Senior", "ja+m2"),
    SystemVoice("male-qn-qingse", "Qingse Youth", "cmn+m1"),
    SystemVoice("female-shaonv", "Young Girl", "cmn+f3"),
)

# What a clone can sound like: picked by a hash of the uploaded audio.
CLONE_VOICES = tuple(
    f"{lang}+{variant}"
    for lang in ("en-us", "en", "en-029")
    for variant in ("m1", "m2", "m3", "m4", "f1", "f2", "f3", "f4")
)


@dataclass(frozen=True)
class UploadedFile:
    """A file sent to /v1/files/upload."""

    file_id: int
    data: bytes
    filename: str
    purpose: str
    duration_s: float
    created_at: int


@dataclass
class ClonedVoice:
    """A voice made by /v1/voice_clone; listed only once `used` is True."""

    voice_id: str
    espeak: str
    file_id: int
    created_time: str  # yyyy-mm-dd, as get_voice lists it
    created_at: int  # Unix seconds, as delete_voice's reply gives it (a string there)
    used: bool = False


class VoiceStore:
    """System voices plus thread-safe in-memory clones and uploads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._system = {v.voice_id: v for v in SYSTEM_VOICES}
        self._files: dict[int, UploadedFile] = {}
        self._clones: dict[str, ClonedVoice] = {}
        self._taken: set[str] = set()

    def reset(self) -> None:
        """Forget every upload and clone (and every clone id ever used)."""
        with self._lock:
            self._files.clear()
            self._clones.clear()
            self._taken.clear()

    def add_file(self, data: bytes, filename: str, purpose: str, duration_s: float) -> UploadedFile:
        """Store an upload under a fresh int64 file id."""
        file_id = 10**17 + secrets.randbelow(9 * 10**17)
        upload = UploadedFile(file_id, data, filename, purpose, duration_s, int(time.time()))
        with self._lock:
            self._files[file_id] = upload
        return upload

    def file(self, file_id: int) -> UploadedFile | None:
        """The upload with this id, if any."""
        with self._lock:
            return self._files.get(file_id)

    def is_taken(self, voice_id: str) -> bool:
        """True if voice_id is a system voice or was ever cloned (even if deleted)."""
        with self._lock:
            return voice_id in self._system or voice_id in self._taken

    def add_clone(self, voice_id: str, upload: UploadedFile) -> ClonedVoice:
        """Create a clone whose espeak voice is derived from the uploaded bytes."""
        digest = hashlib.sha256(upload.data).digest()
        espeak = CLONE_VOICES[int.from_bytes(digest[:4], "big") % len(CLONE_VOICES)]
        now = time.time()
        clone = ClonedVoice(
            voice_id, espeak, upload.file_id, time.strftime("%Y-%m-%d", time.gmtime(now)), int(now)
        )
        with self._lock:
            self._clones[voice_id] = clone
            self._taken.add(voice_id)
        return clone

    def espeak_voice(self, voice_id: str) -> str | None:
        """espeak voice for a system voice or live clone; None if no such voice."""
        with self._lock:
            if voice_id in self._system:
                return self._system[voice_id].espeak
            clone = self._clones.get(voice_id)
            return clone.espeak if clone else None

    def mark_used(self, voice_id: str) -> None:
        """Record that a clone was used in a real synthesis (makes it listable)."""
        with self._lock:
            if voice_id in self._clones:
                self._clones[voice_id].used = True

    def delete_clone(self, voice_id: str) -> ClonedVoice | None:
        """Remove a clone (its id stays taken); None if there was none."""
        with self._lock:
            return self._clones.pop(voice_id, None)

    def system_voices(self) -> list[SystemVoice]:
        """The system voice catalogue."""
        return list(SYSTEM_VOICES)

    def listed_clones(self) -> list[ClonedVoice]:
        """Clones that get_voice shows: those already used in a synthesis."""
        with self._lock:
            return [c for c in self._clones.values() if c.used]
