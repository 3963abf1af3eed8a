"""``admin.py pronunciations``: saved dictionaries, per user or per voice.

    pronunciations set    --user U | --voice V --entry WORD=PRONUNCIATION [--entry ...]
    pronunciations list   --user U | --voice V
    pronunciations remove --user U | --voice V --word WORD [--word ...] | --all

Every job of that user, or with that voice, gets the entries; a job's own
``pronunciations`` win over the user's, the user's over the voice's. A user's change
applies from their next job; a voice's within a minute (the workers' voice cache).
"""

from __future__ import annotations

import typer
from rich.markup import escape

from odeatts import pronunciations
from odeatts.cli.common import JSON, OneLineErrors, emit, fail, run, table
from odeatts.errors import AdminError

__all__ = ["app"]

app = typer.Typer(
    cls=OneLineErrors,
    no_args_is_help=True,
    help="Saved pronunciation dictionaries of users and voices: set, list, remove.",
)

USER = typer.Option(None, "--user", help="User id or email (this or --voice).")
VOICE = typer.Option(None, "--voice", help="Voice name (this or --user).")
ENTRIES = typer.Option(
    ..., "--entry", metavar="WORD=PRONUNCIATION", help="e.g. Adebayo=a-de-ba-yo (repeatable)."
)
WORDS = typer.Option(None, "--word", metavar="WORD", help="A word to remove (repeatable).")


def _show(found: pronunciations.Dictionary, as_json: bool, note: str = "") -> None:
    rows = [[word, said] for word, said in found.entries.items()]
    title = f"pronunciations of {escape(found.owner)}{note}"
    emit(found.as_dict(), as_json, table(title, ["word", "pronunciation"], rows))


@app.command("set")
def set_(
    entries: list[str] = ENTRIES,
    user: str | None = USER,
    voice: str | None = VOICE,
    as_json: bool = JSON,
) -> None:
    """Add or replace entries, e.g. Adebayo=a-de-ba-yo; the others stay."""
    try:
        parsed = pronunciations.parse_entries(entries)
    except AdminError as exc:
        fail(str(exc))
    found = run(lambda s: pronunciations.set_entries(s, user=user, voice=voice, entries=parsed))
    _show(found, as_json)


@app.command("list")
def list_(user: str | None = USER, voice: str | None = VOICE, as_json: bool = JSON) -> None:
    """A user's or a voice's saved dictionary."""
    _show(run(lambda s: pronunciations.list_entries(s, user=user, voice=voice)), as_json)


@app.command("remove")
def remove(
    words: list[str] | None = WORDS,
    user: str | None = USER,
    voice: str | None = VOICE,
    every: bool = typer.Option(False, "--all", help="Remove every entry."),
    as_json: bool = JSON,
) -> None:
    """Remove entries by word (or --all)."""
    found, gone = run(
        lambda s: pronunciations.remove_entries(
            s, user=user, voice=voice, words=words or [], every=every
        )
    )
    if as_json:
        emit({**found.as_dict(), "removed": gone}, True)
        return
    _show(found, False, f" (removed: {escape(', '.join(gone)) or 'nothing'})")
