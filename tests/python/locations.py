"""Where the tests find things: the build folder ($XQ_BUILD_DIR, default build/release), the real
GGUF models (each from its environment variable, else the cache folder its scripts/get-*.sh
writes) and WikiText-2 ($XQ_WIKITEXT, else ../shared/data next to the repository)."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("XQ_BUILD_DIR", REPO / "build" / "release"))
if not BUILD.is_absolute():
    BUILD = REPO / BUILD


def _model(env: str, folder: str, name: str) -> Path:
    if os.environ.get(env):
        return Path(os.environ[env])
    cache = os.environ.get("XQ_MODEL_CACHE")
    if cache:  # the scripts' override names the model's own folder
        return Path(cache) / name
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "xquant-server"
    return base / folder / name


def gemma_path() -> Path:
    return _model("XQ_GEMMA_GGUF", "gemma3-270m", "gemma-3-270m-q4_k_m.gguf")


def smollm2_path() -> Path:
    return _model("XQ_SMOLLM2_GGUF", "smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf")


def qwen_coder_path() -> Path:
    return _model("XQ_QWEN_CODER_GGUF", "qwen2.5-coder-0.5b", "qwen2.5-coder-0.5b-instruct.gguf")


def wikitext_path() -> Path:
    if os.environ.get("XQ_WIKITEXT"):
        return Path(os.environ["XQ_WIKITEXT"])
    return REPO.parent / "shared" / "data" / "wikitext-2-raw-test.txt"
