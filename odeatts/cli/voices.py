"""``admin.py voices``: the voice catalogue (thin commands over ``odeatts.catalogue``).

    voices add          register a MiniMax voice under a friendly name (id checked at MiniMax)
    voices list         the catalogue; clones show whether MiniMax will keep them
    voices update       change a voice in place; callers keep using its name
    voices deactivate   hide a voice from callers (jobs with it get voice_not_found)
    voices activate     show it again
    voices sync         compare with MiniMax's system voices; import, deactivate the gone
    voices clone        upload a sample, clone it at MiniMax, register the clone
    voices alias        another name for a voice (OpenAI's alloy, echo, ...); --remove, --list

``voices clone`` calls voice_clone once, never twice: when MiniMax's answer is lost it
asks get_voice whether the clone exists and registers it if so; MiniMax lists a clone
only after its first synthesis, so otherwise it says "clone state unknown" (exit 3) and
how to find out, rather than that the clone failed.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from odeatts import catalogue
from odeatts.catalogue import NewClone, SyncReport, VoiceStatus
from odeatts.cli.common import (
    JSON,
    OneLineErrors,
    Sessions,
    choice,
    display,
    emit,
    fail,
    language_option,
    minimax,
    run,
    say,
    settings,
    table,
)
from odeatts.models import Voice
from odeatts.schemas import MODELS

__all__ = ["app"]

app = typer.Typer(cls=OneLineErrors, no_args_is_help=True, help="The voice catalogue.")

GENDERS = catalogue.GENDERS
IMPORTS = typer.Option([], "--import", help="ID=NAME:LANGUAGE:GENDER (repeatable).")
SAMPLE = typer.Option(..., "--file", help="mp3, m4a or wav; 10 s to 5 min; at most 20 MB.")
SEVEN_DAYS = (
    "Run one real speech job with it within 7 days of cloning, or MiniMax deletes it "
    "(the preview does not count)."
)


def _show(voice: Voice, title: str, as_json: bool) -> None:
    data = catalogue.voice_details(voice)
    emit(data, as_json, table(title, ["field", "value"], [[k, v] for k, v in data.items()]))


@app.command("add")
def add(
    name: str = typer.Option(..., help="Friendly name callers use, e.g. nigerian-female."),
    minimax_id: str = typer.Option(
        ..., "--minimax-id", help="MiniMax voice_id (must be listed by MiniMax)."
    ),
    language: str = language_option("BCP-47 tag, e.g. en-NG.", ...),
    gender: str = choice("--gender", GENDERS, "The voice's gender.", ...),
    description: str = typer.Option(None, help="Shown to callers."),
    language_boost: str = typer.Option(None, "--language-boost", help="MiniMax language_boost."),
    as_json: bool = JSON,
) -> None:
    """Register a voice MiniMax knows under a friendly name."""

    async def work(sessions: Sessions) -> Voice:
        async with minimax() as client:
            return await catalogue.add_voice(
                sessions,
                client,
                name=name,
                minimax_voice_id=minimax_id,
                language=language,
                gender=gender,
                description=description,
                language_boost=language_boost,
            )

    voice = run(work)
    data = {
        "name": voice.name,
        "minimax_voice_id": voice.minimax_voice_id,
        "language": voice.language,
        "gender": voice.gender,
        "kind": voice.kind,
    }
    emit(data, as_json, table("voice added", list(data), [list(data.values())]))


def _status(status: VoiceStatus) -> str:
    """One short cell: inactive, and for a clone whether MiniMax keeps it."""
    parts = [] if status.voice.active else ["inactive"]
    if status.used:
        parts.append("used")
    elif status.expires_at is not None and status.days_left is not None:
        when = status.expires_at.date().isoformat()
        parts.append(
            f"DELETED {when}, never used"
            if status.expires_at <= status.now
            else f"{'EXPIRING' if status.expiring else 'unused'} until {when} "
            f"({status.days_left} day{'' if status.days_left == 1 else 's'})"
        )
    return ", ".join(parts)


def _list_table(statuses: list[VoiceStatus]) -> Table:
    human = table(
        f"{len(statuses)} voices",
        ["name", "MiniMax id", "language", "gender", "kind", "status"],
        [
            [
                s.voice.name,
                s.voice.minimax_voice_id,
                s.voice.language,
                s.voice.gender,
                s.voice.kind,
                _status(s),
            ]
            for s in statuses
        ],
    )
    human.columns[0].no_wrap = True  # on a terminal: the name is what callers send
    human.columns[1].overflow = "fold"  # and an id folds rather than losing its end
    return human


@app.command("list")
def list_(
    language: str | None = language_option("Only this language, e.g. en-NG."),
    gender: str | None = choice("--gender", GENDERS, "Only voices of this gender."),
    kind: str | None = choice(
        "--kind", catalogue.KINDS, "Only MiniMax's system voices or our clones."
    ),
    include_inactive: bool = typer.Option(False, "--all", help="Include inactive voices."),
    expiring: bool = typer.Option(
        False,
        "--expiring",
        help="Only never-used clones MiniMax deletes within 2 days (or already did).",
    ),
    as_json: bool = JSON,
) -> None:
    """The catalogue; for clones, whether MiniMax keeps them or when it deletes them."""
    statuses = run(
        lambda s: catalogue.voice_statuses(
            s,
            language=language,
            gender=gender,
            kind=kind,
            include_inactive=include_inactive,
            expiring=expiring,
        )
    )
    emit({"voices": [s.to_dict() for s in statuses]}, as_json, _list_table(statuses))


@app.command("update")
def update(
    name: str = typer.Option(..., help="The voice to change (its name stays)."),
    minimax_id: str = typer.Option(
        None,
        "--minimax-id",
        help="A MiniMax voice_id MiniMax lists (a clone is listed after its first real use).",
    ),
    description: str = typer.Option(None, help='Shown to callers; "" clears it.'),
    language: str | None = language_option("BCP-47 tag, e.g. en-NG."),
    gender: str | None = choice("--gender", GENDERS, "The voice's gender."),
    language_boost: str = typer.Option(
        None, "--language-boost", help='MiniMax language_boost; "" clears it.'
    ),
    as_json: bool = JSON,
) -> None:
    """Change a voice in place: callers keep using its name."""

    async def work(sessions: Sessions) -> Voice:
        async with minimax() as client:
            return await catalogue.update_voice(
                sessions,
                client,
                name=name,
                minimax_voice_id=minimax_id,
                description=description,
                language=language,
                gender=gender,
                language_boost=language_boost,
            )

    _show(run(work), "voice updated", as_json)


def _set_active(name: str, active: bool, as_json: bool) -> None:
    voice, changed = run(lambda s: catalogue.set_active(s, name=name, active=active))
    state = "active" if active else "inactive"
    data = {"name": voice.name, "active": voice.active, "changed": changed}
    emit(data, as_json, f"{voice.name} is {state}" + ("" if changed else " (it already was)"))


@app.command("deactivate")
def deactivate(
    name: str = typer.Option(..., help="The voice to hide."), as_json: bool = JSON
) -> None:
    """Hide a voice from callers; jobs naming it get voice_not_found (within a minute)."""
    _set_active(name, False, as_json)


@app.command("activate")
def activate(
    name: str = typer.Option(..., help="The voice to show again."), as_json: bool = JSON
) -> None:
    """Offer a deactivated voice to callers again."""
    _set_active(name, True, as_json)


@app.command("alias")
def alias(
    name: str = typer.Option(None, help="The other name callers may use, e.g. alloy."),
    voice: str = typer.Option(None, help="The voice it names, e.g. british-female."),
    remove: bool = typer.Option(False, "--remove", help="Forget the alias --name."),
    list_all: bool = typer.Option(False, "--list", help="Every alias and its voice."),
    as_json: bool = JSON,
) -> None:
    """Another name for a voice: code written for OpenAI's speech API sends OpenAI's voice
    names (alloy, echo, fable, onyx, nova, shimmer, ...); map the ones you offer."""
    if list_all:
        rows = run(catalogue.aliases)
        shown = table(
            "voice aliases", ["alias", "voice", "active"], [list(r.values()) for r in rows]
        )
        emit({"aliases": rows}, as_json, shown)
        return
    if not name or (voice is None) == (not remove):
        fail("give --name with --voice, or --name with --remove, or --list")
    if remove:
        removed = run(lambda s: catalogue.remove_alias(s, alias=name))
        emit(
            {"alias": name, "removed": removed},
            as_json,
            f"{name} " + ("removed" if removed else "was no alias"),
        )
        return
    data = run(lambda s: catalogue.set_alias(s, alias=name, voice=voice))
    emit(
        data,
        as_json,
        f"{data['alias']} now names {data['voice']}"
        + ("" if data["changed"] else " (it already did)"),
    )


def _print_sync(report: SyncReport) -> None:
    display(
        table(
            f"{len(report.new)} MiniMax system voices not in our catalogue",
            ["MiniMax id", "MiniMax name"],
            [list(pair) for pair in report.new],
        )
    )
    for label, names in (
        ("imported", report.imported),
        ("already there", report.unchanged),
        ("deactivated", report.deactivated),
    ):
        if names:
            say(f"{label}: {', '.join(names)}", markup=False)
    for voice in report.missing:
        action = (
            "deactivated"
            if voice.name in report.deactivated
            else "still active (use --deactivate-missing)"
        )
        say(f"gone from MiniMax: {voice.name} ({voice.minimax_voice_id}), {action}", markup=False)


@app.command("sync")
def sync(
    match: str = typer.Option(None, help="Only MiniMax ids starting with this, e.g. English_."),
    imports: list[str] = IMPORTS,
    deactivate_missing: bool = typer.Option(
        False, "--deactivate-missing", help="Deactivate our system voices MiniMax no longer lists."
    ),
    as_json: bool = JSON,
) -> None:
    """Compare our system voices with MiniMax's; import chosen ones; safe to run twice."""

    async def work(sessions: Sessions) -> SyncReport:
        parsed = [catalogue.parse_import(spec) for spec in imports]
        async with minimax() as client:
            return await catalogue.sync_system_voices(
                sessions, client, match=match, imports=parsed, deactivate_missing=deactivate_missing
            )

    report = run(work)
    if as_json:
        emit(report.to_dict(), True)
    else:
        _print_sync(report)


@app.command("clone")
def clone(
    name: str = typer.Option(..., help="Friendly name for the clone, e.g. nigerian-female-ada."),
    sample: Path = SAMPLE,
    language: str = language_option("BCP-47 tag, e.g. en-NG.", ...),
    gender: str = choice("--gender", GENDERS, "The speaker's gender.", ...),
    voice_id: str = typer.Option(
        None,
        "--voice-id",
        help="MiniMax voice_id to create (default: derived from the name, with a random suffix).",
    ),
    description: str = typer.Option(None, help="Shown to callers."),
    language_boost: str = typer.Option(
        "English", "--language-boost", help="MiniMax language_boost for this voice."
    ),
    preview_text: str = typer.Option(
        None,
        "--preview-text",
        help="Ask MiniMax for a demo clip of this text (billed; does not count as use).",
    ),
    model: str | None = choice(
        "--model",
        MODELS,
        f"Model for the preview (default MINIMAX_MODEL): {', '.join(MODELS)}.",
        metavar="MODEL",
    ),
    as_json: bool = JSON,
) -> None:
    """Clone a voice at MiniMax from a recording and register it."""
    preview_model = model or (settings().minimax_model if preview_text is not None else None)

    async def work(sessions: Sessions) -> NewClone:
        async with minimax() as client:
            return await catalogue.clone_voice(
                sessions,
                client,
                name=name,
                sample=sample,
                language=language,
                gender=gender,
                voice_id=voice_id,
                description=description,
                language_boost=language_boost,
                preview_text=preview_text,
                model=preview_model,
            )

    made = run(work)
    data = {
        **catalogue.voice_details(made.voice),
        "demo_audio": made.demo_audio,
        "preview_characters": made.voice.preview_characters,
        "note": made.note,
        "reminder": SEVEN_DAYS,
    }
    emit(
        data,
        as_json,
        table(
            "voice cloned",
            ["field", "value"],
            [[k, v] for k, v in data.items() if k not in ("reminder", "note")],
        ),
    )
    if not as_json:
        if made.note:
            say(f"Note: {made.note}.", markup=False)
        say(f"Reminder: {SEVEN_DAYS}", markup=False)
