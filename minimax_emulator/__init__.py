"""A MiniMax T2A v2 API emulator: real HTTP, real MP3 speech, injectable faults.

Why: the OdeaTTS worker must be tested end to end against something that
speaks MiniMax's wire protocol exactly (HTTP-200 base_resp errors, SSE
streaming, voice cloning rules) and fails on demand, without a network,
an account or a bill. See server.Emulator and faults.py for the rule shapes.
"""

from minimax_emulator.server import Emulator

__all__ = ["Emulator"]
