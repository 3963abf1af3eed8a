"""The worker's voice cache: friendly names (``nigerian-male``) and their aliases
(``alloy``, issue 12) -> active voices.

A worker keeps the active voices in memory and reloads it every ``ttl`` seconds,
so a speech job pays no database round trip for its voice. An unknown name forces
one early reload (at most once a second) so a voice an operator just added works
at once; a deactivated voice disappears within ``ttl``. Operators change the
catalogue itself with catalogue.py.

The voices' saved pronunciation dictionaries come with them, in the same reload:
an operator's change to a voice's dictionary applies within ``ttl``, like any other
change to the voice.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import select

from odeatts.db import Sessions, database_errors, reading
from odeatts.models import Pronunciation, Voice, VoiceAlias

__all__ = ["VoiceCache", "voice_dict"]


def voice_dict(voice: Voice) -> dict[str, object]:
    """What callers see of a voice (never MiniMax's internal id)."""
    return {
        "name": voice.name,
        "language": voice.language,
        "gender": voice.gender,
        "kind": voice.kind,
        "description": voice.description,
    }


class VoiceCache:
    def __init__(
        self, sessions: Sessions, *, ttl: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._sessions = sessions
        self._ttl = ttl
        self._clock = clock
        self._voices: dict[str, Voice] = {}
        self._aliases: dict[str, Voice] = {}
        self._words: dict[int | None, dict[str, str]] = {}
        self._loaded_at = float("-inf")

    def cached(self, name: str) -> Voice | None:
        """The voice if the cache is fresh and holds it (no I/O, no task), else None:
        then ``get`` decides, reloading as its rules say."""
        if self._clock() - self._loaded_at > self._ttl:
            return None
        return self._named(name)

    def _named(self, name: str) -> Voice | None:
        return self._voices.get(name) or self._aliases.get(name)

    async def get(self, name: str) -> Voice | None:
        now = self._clock()
        if now - self._loaded_at > self._ttl or (
            self._named(name) is None and now - self._loaded_at > 1.0
        ):
            await self.reload()
        return self._named(name)

    def pronunciations(self, voice: Voice) -> dict[str, str]:
        """The voice's saved dictionary as last loaded (no I/O)."""
        return self._words.get(voice.id, {})

    async def active(self) -> list[Voice]:
        if self._clock() - self._loaded_at > self._ttl:
            await self.reload()
        return sorted(self._voices.values(), key=lambda v: v.name)

    async def reload(self) -> None:
        with database_errors():
            async with reading(self._sessions) as session:
                rows = await session.execute(select(Voice).where(Voice.active.is_(True)))
                voices = {v.id: v for v in rows.scalars()}
                links = (await session.execute(select(VoiceAlias.name, VoiceAlias.voice_id))).all()
                entries = await session.execute(
                    select(
                        Pronunciation.voice_id, Pronunciation.word, Pronunciation.pronunciation
                    ).where(Pronunciation.voice_id.is_not(None))
                )
                words: dict[int | None, dict[str, str]] = {}
                for voice_id, word, said in entries:
                    words.setdefault(voice_id, {})[word] = said
        self._voices = {v.name: v for v in voices.values()}
        self._aliases = {name: voices[i] for name, i in links if i in voices}
        self._words = words
        self._loaded_at = self._clock()
