"""``admin.py voices``: the voice catalogue."""

from __future__ import annotations

import typer

from odeatts import accounts
from odeatts.cli.common import emit, run, table

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, help="The voice catalogue.")


@app.command("add")
def add(
    name: str = typer.Option(..., help="Friendly name callers use, e.g. nigerian-female."),
    minimax_id: str = typer.Option(..., "--minimax-id", help="MiniMax voice_id."),
    language: str = typer.Option(..., help="BCP-47 tag, e.g. en-NG."),
    gender: str = typer.Option(..., help="male, female or neutral."),
    description: str = typer.Option(None, help="Shown to callers."),
    language_boost: str = typer.Option(None, "--language-boost", help="MiniMax language_boost."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Register a voice under a friendly name."""
    voice = run(lambda s: accounts.add_voice(
        s, name=name, minimax_voice_id=minimax_id, language=language, gender=gender,
        description=description, language_boost=language_boost))
    data = {"name": voice.name, "minimax_voice_id": voice.minimax_voice_id,
            "language": voice.language, "gender": voice.gender, "kind": voice.kind}
    emit(data, as_json, table("voice added", list(data), [list(data.values())]))
