"""Saved pronunciation dictionaries: the operators' side (``admin.py pronunciations``).

A dictionary belongs to one user or one voice. The job path merges them into every job
of that user or with that voice, the job's own entries first, then the user's, then
the voice's (``schemas.merge_pronunciations``); it reads them with the reservation and
the voice cache (see migration 0007), never here.

Every write is one short transaction: a user's under the user's row lock (the lock a
job's reserve takes), so a job sees a dictionary before or after a change, never half
of it. A saved dictionary obeys the rules of a job's own (``schemas.pronunciation_problem``),
checked on the dictionary as it will be after the change.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from odeatts.accounts import find_user
from odeatts.catalogue import find_voice
from odeatts.db import Sessions, database_errors
from odeatts.errors import AdminError
from odeatts.models import Pronunciation, utcnow
from odeatts.schemas import pronunciation_problem

__all__ = ["Dictionary", "list_entries", "parse_entries", "remove_entries", "set_entries"]


@dataclass(frozen=True, slots=True)
class Dictionary:
    """A saved dictionary: whose it is (``user 3 ada@example.com``, ``voice nigerian-male``)
    and its entries, sorted by word."""

    owner: str
    entries: dict[str, str]

    def as_dict(self) -> dict[str, object]:
        return {"owner": self.owner, "pronunciations": self.entries}


@dataclass(frozen=True, slots=True)
class _Owner:
    label: str
    match: ColumnElement[bool]  # the WHERE clause naming the owner's rows
    column: str  # user_id or voice_id
    id: int


def parse_entries(pairs: list[str]) -> dict[str, str]:
    """``WORD=PRONUNCIATION`` arguments; the rules of the entries are checked on save."""
    entries: dict[str, str] = {}
    for pair in pairs:
        word, sep, said = pair.partition("=")
        if not sep or not word.strip() or not said.strip():
            raise AdminError(f"{pair!r} is not WORD=PRONUNCIATION, e.g. Adebayo=a-de-ba-yo")
        entries[word.strip()] = said.strip()
    return entries


async def _owner(session: AsyncSession, user: str | None, voice: str | None) -> _Owner:
    if (user is None) == (voice is None):
        raise AdminError("name one owner: --user or --voice")
    if user is not None:
        found = await find_user(session, user, lock=True)
        return _Owner(
            f"user {found.id} {found.email}", Pronunciation.user_id == found.id, "user_id", found.id
        )
    named = await find_voice(session, voice or "")
    return _Owner(f"voice {named.name}", Pronunciation.voice_id == named.id, "voice_id", named.id)


async def _entries(session: AsyncSession, owner: _Owner) -> dict[str, str]:
    rows = await session.execute(
        select(Pronunciation.word, Pronunciation.pronunciation)
        .where(owner.match)
        .order_by(Pronunciation.word)
    )
    return {word: said for word, said in rows}


async def list_entries(sessions: Sessions, *, user: str | None, voice: str | None) -> Dictionary:
    with database_errors():
        async with sessions() as session:
            owner = await _owner(session, user, voice)
            return Dictionary(owner.label, await _entries(session, owner))


async def set_entries(
    sessions: Sessions, *, user: str | None, voice: str | None, entries: dict[str, str]
) -> Dictionary:
    """Add or replace entries; the others stay. Returns the whole dictionary after."""
    with database_errors():
        async with sessions() as session, session.begin():
            owner = await _owner(session, user, voice)
            saved = await _entries(session, owner)
            problem = pronunciation_problem({**saved, **entries})
            if problem:
                raise AdminError(f"{owner.label}: {problem}")
            await session.execute(
                delete(Pronunciation).where(
                    owner.match,
                    Pronunciation.word.in_(list(entries)),
                )
            )
            now = utcnow()
            session.add_all(
                Pronunciation(**{owner.column: owner.id}, word=w, pronunciation=p, updated_at=now)
                for w, p in entries.items()
            )
            await session.flush()
            return Dictionary(owner.label, await _entries(session, owner))


async def remove_entries(
    sessions: Sessions, *, user: str | None, voice: str | None, words: list[str], every: bool
) -> tuple[Dictionary, list[str]]:
    """Remove the named words (or ``every`` one); a word not there is an error, so a typo
    does not pass for a removal. Returns the dictionary after and the words removed."""
    if not words and not every:
        raise AdminError("name the words to remove, or --all")
    with database_errors():
        async with sessions() as session, session.begin():
            owner = await _owner(session, user, voice)
            saved = await _entries(session, owner)
            missing = [w for w in words if w not in saved]
            if missing:
                raise AdminError(f"{owner.label} has no entry for {', '.join(map(repr, missing))}")
            gone = sorted(saved) if every else words
            await session.execute(
                delete(Pronunciation).where(
                    owner.match,
                    Pronunciation.word.in_(gone),
                )
            )
            return Dictionary(owner.label, await _entries(session, owner)), gone
