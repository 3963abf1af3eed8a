import os
from typing import IO

class MPEGFrame:
    frame_offset: int
    version: float  # 1, 2 or 2.5
    layer: int
    mode: int
    channels: int
    protected: bool
    padding: bool
    bitrate: int
    sample_rate: int
    sketchy: bool
    def __init__(self, fileobj: IO[bytes]) -> None: ...

class MPEGInfo:
    length: float
    channels: int
    bitrate: int
    sample_rate: int
    version: float
    layer: int
    mode: int
    protected: bool
    sketchy: bool
    encoder_info: str
    encoder_settings: str
    def __init__(self, fileobj: IO[bytes], offset: int | None = None) -> None: ...

class MP3:
    info: MPEGInfo
    def __init__(self, filething: str | os.PathLike[str] | IO[bytes]) -> None: ...

def skip_id3(fileobj: IO[bytes]) -> None: ...
