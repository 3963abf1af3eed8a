"""The voice catalogue as operators manage it: checked against MiniMax, cloned through it.

Every MiniMax voice id we store is one that MiniMax lists (``get_voice``), so a typo
cannot reach callers as a voice that fails every job. Clones need more care: MiniMax
lists a clone only after its first real synthesis and deletes one that is not used
within 7 days (the preview does not count), so ``voice_statuses`` derives from our own
usage rows whether each clone was ever used and, if not, when MiniMax deletes it.

Each function opens its own short transaction, so all of them are safe while traffic
flows and safe to run twice. ``AdminError`` is an operator's mistake (exit 2); an
unavailable MiniMax surfaces as a retryable ``OdeaError`` (exit 3).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from odeatts.db import Sessions
from odeatts.errors import (
    AdminError,
    OdeaError,
    ServiceUnavailable,
    UpstreamUnavailable,
)
from odeatts.minimax import CloneReply, CloneUnconfirmed, MiniMaxClient
from odeatts.models import SUCCEEDED, Usage, Voice, VoiceAlias, utcnow
from odeatts.schemas import MODELS, language_boost_problem

__all__ = [
    "CLONE_LIFETIME",
    "EXPIRY_WARNING",
    "MAX_SAMPLE_BYTES",
    "MiniMaxVoices",
    "NewClone",
    "SyncReport",
    "VoiceImport",
    "VoiceStatus",
    "add_voice",
    "aliases",
    "clone_voice",
    "derive_voice_id",
    "fetch_minimax_voices",
    "find_voice",
    "parse_import",
    "read_sample",
    "remove_alias",
    "set_active",
    "set_alias",
    "sync_system_voices",
    "update_voice",
    "voice_details",
    "voice_statuses",
]


NAME = re.compile(r"[a-z0-9][a-z0-9-]{1,62}[a-z0-9]")
# MiniMax's rule for a clone's voice_id; ids are unique forever, even after deletion.
VOICE_ID = re.compile(r"[A-Za-z][A-Za-z0-9_-]{6,254}[A-Za-z0-9]")
LANGUAGE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,3}")
GENDERS = ("male", "female", "neutral")
KINDS = ("system", "cloned")
SAMPLE_EXTENSIONS = (".mp3", ".m4a", ".wav")
MAX_SAMPLE_BYTES = 20 * 1024 * 1024
MAX_PREVIEW_CHARS = 1000
CLONE_LIFETIME = dt.timedelta(days=7)  # MiniMax deletes a clone unused for this long
EXPIRY_WARNING = dt.timedelta(days=2)  # `list --expiring` warns this long before

# MiniMax's clone errors, in words an operator can act on.
_CLONE_ERRORS = {
    2037: "the sample must be 10 seconds to 5 minutes of audio (MiniMax 2037)",
    2038: "the MiniMax account must be verified before it can clone voices (MiniMax 2038)",
    2039: "that voice id was already used at MiniMax; ids are unique forever, even after "
    "deletion: pick another --voice-id or leave it out (MiniMax 2039)",
    1043: "MiniMax's clone validation failed: use a clean recording of one speaker (MiniMax 1043)",
    1044: "MiniMax's clone validation failed: use a clean recording of one speaker (MiniMax 1044)",
    2048: "the prompt audio must be shorter than 8 seconds (MiniMax 2048)",
    20132: "MiniMax found the audio file (or voice id) invalid: use a clear mp3, m4a or "
    "wav recording (MiniMax 20132)",
}


@dataclass(frozen=True)
class MiniMaxVoices:
    """What MiniMax's ``get_voice`` lists for our account: system ids -> names, clones."""

    system: dict[str, str]
    cloned: frozenset[str]

    def kind_of(self, voice_id: str) -> str | None:
        if voice_id in self.system:
            return "system"
        return "cloned" if voice_id in self.cloned else None


@dataclass(frozen=True)
class VoiceStatus:
    """A catalogue voice and, for a clone, whether MiniMax will keep it."""

    voice: Voice
    used: bool | None  # None for system voices: they never expire
    expires_at: dt.datetime | None  # when MiniMax deletes an unused clone
    now: dt.datetime

    @property
    def days_left(self) -> int | None:
        return None if self.expires_at is None else (self.expires_at - self.now).days

    @property
    def expiring(self) -> bool:
        return self.expires_at is not None and self.expires_at - self.now <= EXPIRY_WARNING

    def to_dict(self) -> dict[str, Any]:
        return {
            **voice_details(self.voice),
            "used": self.used,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "days_left": self.days_left,
            "expiring": self.expiring,
        }


@dataclass(frozen=True)
class VoiceImport:
    """One ``--import ID=NAME:LANGUAGE:GENDER`` of ``voices sync``."""

    voice_id: str
    name: str
    language: str
    gender: str


@dataclass
class SyncReport:
    new: list[tuple[str, str]] = field(default_factory=list)  # (MiniMax id, MiniMax name)
    imported: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    missing: list[Voice] = field(default_factory=list)
    deactivated: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "new": [{"minimax_voice_id": i, "minimax_name": n} for i, n in self.new],
            "imported": self.imported,
            "unchanged": self.unchanged,
            "missing": [
                {"name": v.name, "minimax_voice_id": v.minimax_voice_id} for v in self.missing
            ],
            "deactivated": self.deactivated,
        }


@dataclass(frozen=True)
class NewClone:
    voice: Voice
    demo_audio: str | None  # MiniMax's preview URL when a preview text was given
    # Set when MiniMax's reply was lost (or said 2039) but MiniMax lists the clone: how it
    # was registered anyway.
    note: str | None = None


def voice_details(voice: Voice) -> dict[str, Any]:
    """What an operator sees of a voice (callers never see the MiniMax id)."""
    return {
        "name": voice.name,
        "minimax_voice_id": voice.minimax_voice_id,
        "language": voice.language,
        "gender": voice.gender,
        "kind": voice.kind,
        "language_boost": voice.language_boost,
        "description": voice.description,
        "active": voice.active,
        "minimax_file_id": voice.minimax_file_id,
        "created_at": voice.created_at.isoformat(),
    }


# --- checks that need no I/O ---------------------------------------------------------------


def _check_name(name: str) -> None:
    if not NAME.fullmatch(name):
        raise AdminError(
            f"voice name {name!r} must be 3-64 lowercase letters, digits and "
            "dashes, starting and ending with a letter or digit"
        )


def _check_fields(
    *, language: str | None, gender: str | None, language_boost: str | None = None
) -> None:
    if language is not None and (len(language) > 16 or not LANGUAGE.fullmatch(language)):
        raise AdminError(f"language {language!r} must be a BCP-47 tag such as en-NG")
    if gender is not None and gender not in GENDERS:
        raise AdminError(f"gender {gender!r} must be one of {', '.join(GENDERS)}")
    problem = language_boost_problem(language_boost or None)  # "" clears it
    if problem:
        raise AdminError(f"language boost {language_boost!r}: {problem}")


def _check_voice_id(voice_id: str) -> None:
    if not VOICE_ID.fullmatch(voice_id):
        raise AdminError(
            f"voice id {voice_id!r} must be 8-256 letters, digits, - and _, "
            "start with a letter and not end with - or _"
        )


def _check_preview(preview_text: str | None, model: str | None) -> None:
    if preview_text is None:
        if model is not None:
            raise AdminError("--model only applies with --preview-text")
        return
    if not preview_text.strip() or len(preview_text) > MAX_PREVIEW_CHARS:
        raise AdminError(f"preview text must be 1-{MAX_PREVIEW_CHARS} characters")
    if model not in MODELS:
        raise AdminError(f"model {model!r} must be one of {', '.join(MODELS)}")


def derive_voice_id(name: str) -> str:
    """A MiniMax voice id for a clone named ``name``; random, because ids are never reusable."""
    return f"odea-{name}-{secrets.token_hex(3)}"


def read_sample(path: Path) -> bytes:
    """The clone sample's bytes, refused here when MiniMax would refuse it for its type or size."""
    if not path.is_file():
        raise AdminError(f"no such file: {path}")
    if path.suffix.lower() not in SAMPLE_EXTENSIONS:
        raise AdminError(f"{path.name}: the sample must be an .mp3, .m4a or .wav file")
    try:
        size = path.stat().st_size
        if size == 0 or size > MAX_SAMPLE_BYTES:
            raise AdminError(
                f"{path.name} is {size / 1e6:.1f} MB; MiniMax takes 20 MB at most"
                if size
                else f"{path.name} is empty"
            )
        return path.read_bytes()
    except OSError as exc:  # not the database: the CLI would report it as one
        raise AdminError(f"cannot read {path}: {exc.strerror or exc}") from exc


def parse_import(spec: str) -> VoiceImport:
    """``English_CalmWoman=calm-woman:en-US:female`` -> a checked VoiceImport."""
    voice_id, _, rest = spec.partition("=")
    parts = rest.split(":")
    if not voice_id or len(parts) != 3:
        raise AdminError(f"--import {spec!r} must look like ID=NAME:LANGUAGE:GENDER")
    name, language, gender = parts
    _check_name(name)
    _check_fields(language=language, gender=gender)
    return VoiceImport(voice_id=voice_id, name=name, language=language, gender=gender)


# --- MiniMax -------------------------------------------------------------------------------


def _operator_error(exc: OdeaError, step: str) -> Exception:
    if isinstance(exc, ServiceUnavailable):
        return ServiceUnavailable(
            f"MiniMax refused our account during the {step} (key, "
            "region host, balance, quota or plan; the log has "
            "MiniMax's code): check MINIMAX_API_KEY, MINIMAX_BASE_URL "
            "and the account"
        )
    if exc.retryable:
        return UpstreamUnavailable(f"MiniMax is unavailable or busy ({step}); try again later")
    code = exc.details.get("upstream_code")
    if code in _CLONE_ERRORS:
        return AdminError(f"{step} failed: {_CLONE_ERRORS[code]}")
    detail = f" (MiniMax {code})" if code else ""
    return AdminError(f"MiniMax refused the {step}: {exc.message}{detail}")


@contextmanager
def _asking_minimax(step: str) -> Iterator[None]:
    try:
        yield
    except OdeaError as exc:
        raise _operator_error(exc, step) from exc


def _ids(entries: Any) -> list[dict[str, Any]]:
    return [e for e in entries or [] if isinstance(e, dict) and isinstance(e.get("voice_id"), str)]


async def fetch_minimax_voices(minimax: MiniMaxClient) -> MiniMaxVoices:
    """System and cloned voices MiniMax lists for our account (clones only once used)."""
    with _asking_minimax("voice list request"):
        body = await minimax.list_voices("all")
    if not isinstance(body.get("system_voice"), list) or not body["system_voice"]:
        # An empty list would make every voice look unknown (and `sync` deactivate them all).
        raise UpstreamUnavailable(
            "MiniMax's voice list came back without system voices; try again later"
        )
    system = {e["voice_id"]: str(e.get("voice_name") or "") for e in _ids(body["system_voice"])}
    cloned = frozenset(e["voice_id"] for e in _ids(body.get("voice_cloning")))
    return MiniMaxVoices(system=system, cloned=cloned)


async def _verified_kind(sessions: Sessions, minimax: MiniMaxClient, voice_id: str) -> str:
    kind = (await fetch_minimax_voices(minimax)).kind_of(voice_id)
    if kind is not None:
        return kind
    async with sessions() as session:
        ours = (
            (
                await session.execute(
                    select(Voice.name).where(
                        Voice.minimax_voice_id == voice_id, Voice.kind == "cloned"
                    )
                )
            )
            .scalars()
            .first()
        )
    hint = (
        (
            f"; it is our unused clone {ours!r}: MiniMax lists a clone only after its first "
            f"real synthesis, so run one speech job with voice {ours!r} first"
        )
        if ours
        else ""
    )
    raise AdminError(f"MiniMax does not know voice id {voice_id!r}{hint}")


# --- the catalogue -------------------------------------------------------------------------


async def _ensure_free(sessions: Sessions, name: str, voice_id: str | None = None) -> None:
    async with sessions() as session:
        if await _alias_named(session, name) is not None:
            raise AdminError(f"{name!r} is an alias (see `voices alias --list`)")
        clash = (
            or_(Voice.name == name, Voice.minimax_voice_id == voice_id)
            if voice_id
            else Voice.name == name
        )
        row = (
            await session.execute(select(Voice.name, Voice.minimax_voice_id).where(clash))
        ).first()
    if row is not None and row.name == name:
        raise AdminError(f"a voice named {name!r} already exists")
    if row is not None:
        raise AdminError(f"voice id {voice_id!r} is already voice {row.name!r}")


async def _insert(sessions: Sessions, voice: Voice) -> Voice:
    try:
        async with sessions() as session, session.begin():
            session.add(voice)
    except IntegrityError as exc:
        raise AdminError(f"a voice named {voice.name!r} already exists") from exc
    return voice


async def _file_id_of(session: AsyncSession, voice_id: str) -> int | None:
    """The sample a clone was made from, as recorded by ``voices clone``."""
    return (
        await session.execute(
            select(Voice.minimax_file_id).where(
                Voice.minimax_voice_id == voice_id, Voice.minimax_file_id.is_not(None)
            )
        )
    ).scalar()


async def find_voice(session: AsyncSession, name: str) -> Voice:
    """``--voice``: a voice by its friendly name, active or not."""
    voice = (await session.execute(select(Voice).where(Voice.name == name))).scalar()
    if voice is None:
        raise AdminError(f"no voice named {name!r} (see `voices list --all`)")
    return voice


async def add_voice(
    sessions: Sessions,
    minimax: MiniMaxClient,
    *,
    name: str,
    minimax_voice_id: str,
    language: str,
    gender: str,
    description: str | None = None,
    language_boost: str | None = None,
) -> Voice:
    """Register a voice MiniMax lists under a friendly name; its kind is MiniMax's."""
    _check_name(name)
    _check_fields(language=language, gender=gender, language_boost=language_boost)
    await _ensure_free(sessions, name)
    kind = await _verified_kind(sessions, minimax, minimax_voice_id)
    async with sessions() as session:
        file_id = await _file_id_of(session, minimax_voice_id) if kind == "cloned" else None
    return await _insert(
        sessions,
        Voice(
            name=name,
            minimax_voice_id=minimax_voice_id,
            language=language,
            gender=gender,
            kind=kind,
            description=description or None,
            language_boost=language_boost or None,
            active=True,
            minimax_file_id=file_id,
            created_at=utcnow(),
        ),
    )


async def update_voice(
    sessions: Sessions,
    minimax: MiniMaxClient,
    *,
    name: str,
    minimax_voice_id: str | None = None,
    description: str | None = None,
    language: str | None = None,
    gender: str | None = None,
    language_boost: str | None = None,
) -> Voice:
    """Change a voice in place (callers keep its name); an empty description or boost clears it."""
    _check_fields(language=language, gender=gender, language_boost=language_boost)
    changes: dict[str, Any] = {
        k: v for k, v in (("language", language), ("gender", gender)) if v is not None
    }
    changes.update(
        {
            k: v or None
            for k, v in (("description", description), ("language_boost", language_boost))
            if v is not None
        }
    )
    if not changes and minimax_voice_id is None:
        raise AdminError(
            "nothing to update: give --minimax-id, --description, --language, "
            "--gender or --language-boost"
        )
    async with sessions() as session:
        await find_voice(session, name)  # an unknown name fails before MiniMax is asked
    if minimax_voice_id is not None:
        changes["kind"] = await _verified_kind(sessions, minimax, minimax_voice_id)
        changes["minimax_voice_id"] = minimax_voice_id
    async with sessions() as session, session.begin():
        voice = await find_voice(session, name)
        if minimax_voice_id is not None and minimax_voice_id != voice.minimax_voice_id:
            changes["minimax_file_id"] = await _file_id_of(session, minimax_voice_id)
        for attribute, value in changes.items():
            setattr(voice, attribute, value)
    return voice


# --- aliases: other names for a voice (OpenAI's "alloy", say) ------------------------------


async def _alias_named(session: AsyncSession, name: str) -> VoiceAlias | None:
    return (await session.execute(select(VoiceAlias).where(VoiceAlias.name == name))).scalar()


async def set_alias(sessions: Sessions, *, alias: str, voice: str) -> dict[str, Any]:
    """Let callers say ``alias`` for the voice named ``voice`` (again: re-point it)."""
    _check_name(alias)
    try:
        async with sessions() as session, session.begin():
            target = await find_voice(session, voice)
            if (await session.execute(select(Voice.id).where(Voice.name == alias))).first():
                raise AdminError(f"{alias!r} is a voice's own name; an alias must be another")
            row = await _alias_named(session, alias)
            if row is None:
                session.add(VoiceAlias(name=alias, voice_id=target.id, created_at=utcnow()))
            changed = row is None or row.voice_id != target.id
            if row is not None:
                row.voice_id = target.id
    except IntegrityError as exc:  # another operator added it at the same moment
        raise AdminError(f"alias {alias!r} was just added; run the command again") from exc
    return {"alias": alias, "voice": target.name, "changed": changed}


async def remove_alias(sessions: Sessions, *, alias: str) -> bool:
    """Forget an alias; False if there was none."""
    async with sessions() as session, session.begin():
        row = await _alias_named(session, alias)
        if row is not None:
            await session.delete(row)
    return row is not None


async def aliases(sessions: Sessions) -> list[dict[str, Any]]:
    """Every alias and the voice it names, by alias."""
    async with sessions() as session:
        rows = await session.execute(
            select(VoiceAlias.name, Voice.name, Voice.active)
            .join(Voice, Voice.id == VoiceAlias.voice_id)
            .order_by(VoiceAlias.name)
        )
        return [{"alias": a, "voice": v, "active": active} for a, v, active in rows]


async def set_active(sessions: Sessions, *, name: str, active: bool) -> tuple[Voice, bool]:
    """Activate or deactivate a voice; returns it and whether anything changed."""
    async with sessions() as session, session.begin():
        voice = await find_voice(session, name)
        changed = voice.active != active
        voice.active = active
    return voice, changed


async def _used_clone_ids(session: AsyncSession, clone_ids: set[str]) -> set[str]:
    """Clone ids that some name mapped to them has a succeeded synthesis with."""
    if not clone_ids:
        return set()
    rows = await session.execute(
        select(Voice.minimax_voice_id)
        .join(Usage, Usage.voice == Voice.name)
        .where(Voice.minimax_voice_id.in_(clone_ids), Usage.status == SUCCEEDED)
        .distinct()
    )
    return set(rows.scalars())


def _statuses(voices: Sequence[Voice], used: set[str], now: dt.datetime) -> list[VoiceStatus]:
    made: dict[str, dt.datetime] = {}  # a clone id's first row is when it was cloned
    for voice in voices:
        if voice.kind == "cloned":
            made[voice.minimax_voice_id] = min(
                voice.created_at, made.get(voice.minimax_voice_id, voice.created_at)
            )
    statuses = []
    for voice in voices:
        if voice.kind != "cloned":
            statuses.append(VoiceStatus(voice, None, None, now))
            continue
        fresh = voice.minimax_voice_id not in used
        expires = made[voice.minimax_voice_id] + CLONE_LIFETIME if fresh else None
        statuses.append(VoiceStatus(voice, not fresh, expires, now))
    return statuses


async def voice_statuses(
    sessions: Sessions,
    *,
    language: str | None = None,
    gender: str | None = None,
    kind: str | None = None,
    include_inactive: bool = False,
    expiring: bool = False,
    now: dt.datetime | None = None,
) -> list[VoiceStatus]:
    """Our catalogue by name, each clone with whether MiniMax keeps it or when it deletes
    it; ``expiring``: only unused clones MiniMax deletes within 2 days."""
    if kind is not None and kind not in KINDS:
        raise AdminError(f"kind {kind!r} must be one of {', '.join(KINDS)}")
    async with sessions() as session:
        voices = (await session.execute(select(Voice).order_by(Voice.name))).scalars().all()
        used = await _used_clone_ids(
            session, {v.minimax_voice_id for v in voices if v.kind == "cloned"}
        )
    return [
        s
        for s in _statuses(voices, used, now or utcnow())
        if (include_inactive or s.voice.active)
        and (not expiring or s.expiring)
        and (language is None or s.voice.language.lower() == language.lower())
        and gender in (None, s.voice.gender)
        and kind in (None, s.voice.kind)
    ]


def _apply_imports(
    session: AsyncSession,
    by_name: dict[str, Voice],
    imports: Sequence[VoiceImport],
    report: SyncReport,
) -> None:
    for item in imports:
        existing = by_name.get(item.name)
        if existing is not None and existing.minimax_voice_id != item.voice_id:
            raise AdminError(
                f"a voice named {item.name!r} already exists (MiniMax id "
                f"{existing.minimax_voice_id!r})"
            )
        if existing is not None:
            report.unchanged.append(item.name)
            continue
        voice = Voice(
            name=item.name,
            minimax_voice_id=item.voice_id,
            language=item.language,
            gender=item.gender,
            kind="system",
            active=True,
            created_at=utcnow(),
        )
        session.add(voice)
        by_name[item.name] = voice
        report.imported.append(item.name)


def _check_imports(imports: Sequence[VoiceImport], listed: MiniMaxVoices) -> None:
    names = [item.name for item in imports]
    if len(set(names)) != len(names):
        raise AdminError("the same name is imported twice")
    for item in imports:
        if item.voice_id not in listed.system:
            raise AdminError(f"MiniMax does not list a system voice {item.voice_id!r}")


async def sync_system_voices(
    sessions: Sessions,
    minimax: MiniMaxClient,
    *,
    match: str | None = None,
    imports: Sequence[VoiceImport] = (),
    deactivate_missing: bool = False,
) -> SyncReport:
    """Compare our system voices with MiniMax's: what is new there, what is gone here.

    Imports and deactivations happen in one transaction, and only after every import
    was checked; running the same command again changes nothing.
    """
    listed = await fetch_minimax_voices(minimax)
    _check_imports(imports, listed)
    report = SyncReport()
    try:
        async with sessions() as session, session.begin():
            ours = (await session.execute(select(Voice))).scalars().all()
            _apply_imports(session, {v.name: v for v in ours}, imports, report)
            known = {v.minimax_voice_id for v in ours} | {i.voice_id for i in imports}
            prefix = (match or "").lower()
            report.new = [
                (i, n)
                for i, n in sorted(listed.system.items())
                if i not in known and i.lower().startswith(prefix)
            ]
            report.missing = [
                v
                for v in ours
                if v.kind == "system" and v.active and v.minimax_voice_id not in listed.system
            ]
            for voice in report.missing if deactivate_missing else []:
                voice.active = False
                report.deactivated.append(voice.name)
    except IntegrityError as exc:
        raise AdminError("a voice was added under one of these names meanwhile; run again") from exc
    return report


async def clone_voice(
    sessions: Sessions,
    minimax: MiniMaxClient,
    *,
    name: str,
    sample: Path,
    language: str,
    gender: str,
    voice_id: str | None = None,
    description: str | None = None,
    language_boost: str | None = "English",
    preview_text: str | None = None,
    model: str | None = None,
) -> NewClone:
    """Upload a sample, clone it at MiniMax and register the clone; nothing is kept on failure.

    The clone must be used in one real synthesis within 7 days or MiniMax deletes it.
    """
    _check_name(name)
    _check_fields(language=language, gender=gender, language_boost=language_boost)
    voice_id = voice_id or derive_voice_id(name)
    _check_voice_id(voice_id)
    _check_preview(preview_text, model)
    data = await asyncio.to_thread(read_sample, sample)
    await _ensure_free(sessions, name, voice_id)
    with _asking_minimax("upload of the sample"):
        file_id = await minimax.upload_file(sample.name, data, purpose="voice_clone")
    reply, recovered = await _cloned(
        minimax, file_id=file_id, voice_id=voice_id, preview_text=preview_text, model=model
    )
    if reply is not None and reply.sensitive_type is not None:
        raise AdminError(
            f"voice clone refused: MiniMax flagged the sample as sensitive "
            f"(input_sensitive type {reply.sensitive_type}); {voice_id!r} was "
            "not registered. Use another recording of the speaker."
        )
    billed = reply.billed_characters if reply is not None else None
    voice = await _insert(
        sessions,
        Voice(
            name=name,
            minimax_voice_id=voice_id,
            language=language,
            gender=gender,
            kind="cloned",
            description=description or None,
            language_boost=language_boost or None,
            active=True,
            # After a 2039 the clone came from an earlier attempt's upload, not this one.
            minimax_file_id=None if recovered == _TAKEN else file_id,
            preview_characters=billed,
            preview_model=model if billed is not None else None,
            created_at=utcnow(),
        ),
    )
    demo = reply.demo_audio if reply is not None else None
    note = None if recovered is None else recovered.format(voice_id=voice_id)
    return NewClone(voice=voice, demo_audio=demo, note=note)


_LOST = (
    "MiniMax's reply to voice_clone was lost, but MiniMax lists the clone {voice_id}: "
    "registered (its preview, if any, is billed but not shown)"
)
_TAKEN = (
    "voice id {voice_id} was already in use at MiniMax (2039) and MiniMax lists it as "
    "our clone, made by an earlier attempt whose reply was lost: registered"
)
_UNKNOWN = (
    "clone state unknown: {cause}. MiniMax does not list a clone {voice_id}, but it lists a "
    "new clone only after its first synthesis, so it may exist. Nothing was registered. Run "
    "the same command again with --voice-id {voice_id}: if the clone was never made it is "
    "made now; if it was, MiniMax answers that the id is in use and the command says so"
)
_UNLISTED = (
    "voice clone failed: voice id {voice_id} is already used at MiniMax (2039), which does not "
    "list it as one of our clones. If an earlier `voices clone` with this id ended 'clone "
    "state unknown', that clone may exist unlisted (MiniMax lists a clone only after its "
    "first synthesis; an unused clone costs nothing and is deleted after 7 days). Nothing was "
    "registered: clone again without --voice-id for a new id"
)


async def _cloned(
    minimax: MiniMaxClient,
    *,
    file_id: int,
    voice_id: str,
    preview_text: str | None,
    model: str | None,
) -> tuple[CloneReply | None, str | None]:
    """MiniMax's reply to ONE voice_clone, or (None, ``_LOST`` or ``_TAKEN``) when the
    clone exists although its reply was lost or said 2039.

    voice_clone is never repeated blindly: a repeat can only meet 2039 (id in use) and
    bill the preview again. After a failure that may have made the clone anyway, or a
    2039, get_voice says whether the clone is ours. get_voice lists a clone only after
    its first real synthesis, so "not listed" after a lost reply means "unknown", not
    "failed": the operator is told exactly that, and how to find out.
    """
    try:
        return await minimax.clone_voice(
            file_id=file_id, voice_id=voice_id, preview_text=preview_text, model=model
        ), None
    except CloneUnconfirmed as lost:
        cause = (
            "voice_clone got no clear answer (a timeout, a lost connection, a server "
            f"error or an unreadable reply: {lost.error.code})"
        )
        taken = False
    except OdeaError as exc:
        if exc.details.get("upstream_code") != 2039:
            raise _operator_error(exc, "voice clone") from exc
        cause, taken = "", True
    try:
        listed = voice_id in await _listed_clones(minimax)
    except OdeaError as exc:
        if taken:
            raise _operator_error(exc, "check of the voice id at MiniMax") from exc
        raise UpstreamUnavailable(
            _UNKNOWN.format(
                cause=cause + ", and MiniMax could not be asked whether it exists",
                voice_id=voice_id,
            )
        ) from exc
    if listed:
        return None, _TAKEN if taken else _LOST
    if taken:
        raise AdminError(_UNLISTED.format(voice_id=voice_id))
    raise UpstreamUnavailable(_UNKNOWN.format(cause=cause, voice_id=voice_id))


async def _listed_clones(minimax: MiniMaxClient) -> set[str]:
    """The clones get_voice lists for our account (only those used at least once)."""
    body = await minimax.list_voices("voice_cloning")
    return {e["voice_id"] for e in _ids(body.get("voice_cloning"))}
