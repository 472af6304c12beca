"""Where the tests find things: the build folder ($XQ_BUILD_DIR, default build/release) and the
Gemma 3 270M GGUF ($XQ_GEMMA_GGUF, else scripts/get-gemma3.sh's cache folder)."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("XQ_BUILD_DIR", REPO / "build" / "release"))
if not BUILD.is_absolute():
    BUILD = REPO / BUILD


def gemma_path() -> Path:
    if os.environ.get("XQ_GEMMA_GGUF"):
        return Path(os.environ["XQ_GEMMA_GGUF"])
    cache = os.environ.get("XQ_MODEL_CACHE") or Path(
        os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "xquant-server" / "gemma3-270m"
    return Path(cache) / "gemma-3-270m-q4_k_m.gguf"
