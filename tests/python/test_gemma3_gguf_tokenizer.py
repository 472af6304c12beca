"""The Gemma 3 GGUF tokenizer (built by the engine from tokenizer.ggml.*) against SentencePiece
itself, running a model rebuilt from the same GGUF vocabulary (pieces, scores, types) with
Gemma's settings: BPE, byte fallback, no dummy prefix, no whitespace normalization.

Needs scripts/get-gemma3.sh to have run (or $XQ_GEMMA_GGUF) and gguf_dump_cli in
$XQ_BUILD_DIR/tests (default build/release); skips otherwise.
"""

import json
import os
import subprocess
from pathlib import Path

import gguf
import pytest

spm = pytest.importorskip("sentencepiece", reason="scripts/bootstrap.sh installs sentencepiece")
pb = pytest.importorskip("sentencepiece.sentencepiece_model_pb2",
                         reason="scripts/bootstrap.sh installs protobuf")

REPO = Path(__file__).resolve().parents[2]
from locations import BUILD, gemma_path  # noqa: E402
from tokenizer_texts import CURATED, generated_texts  # noqa: E402
DUMP_CLI = BUILD / "tests" / "gguf_dump_cli"


pytestmark = [
    pytest.mark.skipif(not gemma_path().exists(),
                       reason=f"{gemma_path()} is absent: run scripts/get-gemma3.sh"),
    pytest.mark.skipif(not DUMP_CLI.is_file(), reason=f"gguf_dump_cli not built in {BUILD}"),
]

USER_DEFINED, UNKNOWN = 4, 2


@pytest.fixture(scope="module")
def sp(tmp_path_factory):
    fields = gguf.GGUFReader(str(gemma_path())).fields
    tokens, scores, types = (fields[f"tokenizer.ggml.{k}"] for k in ("tokens", "scores",
                                                                       "token_type"))
    m = pb.ModelProto()
    for i in range(len(tokens.data)):
        p = m.pieces.add()
        p.piece = bytes(tokens.parts[tokens.data[i]]).decode("utf-8")
        p.score = float(scores.parts[scores.data[i]][0])
        p.type = int(types.parts[types.data[i]][0])
        if p.type == USER_DEFINED:
            # llama.cpp's converter writes "▁" as " " in user-defined pieces (it matches them in
            # the raw text); SentencePiece matches them after escaping spaces.
            p.piece = p.piece.replace(" ", "\u2581")
    unk = int(fields["tokenizer.ggml.unknown_token_id"].contents())
    m.pieces[unk].type = UNKNOWN  # the GGUF marks <unk> as control
    t = m.trainer_spec
    t.model_type = pb.TrainerSpec.BPE
    t.vocab_size = len(m.pieces)
    t.byte_fallback = True
    t.unk_id, t.bos_id, t.eos_id, t.pad_id = unk, 2, 1, 0
    n = m.normalizer_spec
    n.name = "identity"
    n.add_dummy_prefix = False
    n.remove_extra_whitespaces = False
    n.escape_whitespaces = True
    path = tmp_path_factory.mktemp("sp") / "gemma3.model"
    path.write_bytes(m.SerializeToString())
    return spm.SentencePieceProcessor(model_file=str(path))


def cli(cmd, payload):
    p = subprocess.run([str(DUMP_CLI), str(gemma_path()), cmd], input=json.dumps(payload),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_encode_matches_sentencepiece(sp):
    # A literal "▁" in the text is left out: SentencePiece cannot tell it from an escaped space.
    texts = [t for t in CURATED + generated_texts() if "\u2581" not in t]
    ours = cli("encode", texts)
    bad = [(t, o) for t, o in zip(texts, ours) if o != [2] + sp.encode(t)]
    assert not bad, "\n".join(
        f"{t!r}:\n ours {[sp.id_to_piece(i) for i in o]}\n sp   "
        f"{[sp.id_to_piece(i) for i in [2] + sp.encode(t)]}" for t, o in bad[:5])


def test_decode_matches_sentencepiece(sp):
    texts = [t for t in CURATED if "\u2581" not in t]
    ids = [sp.encode(t) for t in texts]
    assert cli("decode", ids) == [sp.decode(i) for i in ids] == texts


def test_chat_turn_markers_are_single_tokens():
    ids = cli("encode", ["<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"])[0]
    assert ids[:2] == [2, 105] and ids.count(105) == 2 and ids.count(106) == 1
