# mutagen ships py.typed but leaves its API unannotated, so mypy --strict sees untyped
# calls and `FileType.info = None`. These stubs declare only what we use (tests/); widen
# them when a new use needs more. The attributes follow mutagen's docstrings (1.47+).
