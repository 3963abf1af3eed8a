"""The audio cache's store reads, counted: a miss must read nothing (the marker said so)."""

from __future__ import annotations

import pytest

from odeatts.audio_cache import AudioCache


def count_reads(cache: AudioCache | None, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths the store is asked for from now on, in order."""
    assert cache is not None, "the audio cache is off"
    store, reads = cache.store, []
    get = store.get

    async def counted(path: str) -> bytes | None:
        reads.append(path)
        return await get(path)

    monkeypatch.setattr(store, "get", counted)
    return reads
