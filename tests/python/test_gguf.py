"""GGUF reading and dequantization checked against the `gguf` Python package (llama.cpp's own).

The C++ side is driven through tests/tools/gguf_dump_cli (built with the unit tests; found in
$XQ_BUILD_DIR/tests, default build/release). Synthetic files written with gguf.GGUFWriter always
run; the real Gemma 3 270M checks need scripts/get-gemma3.sh to have run (or $XQ_GEMMA_GGUF).
"""

import json
import os
import subprocess
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as QT

from locations import gemma_path

REPO = Path(__file__).resolve().parents[2]


def cli_path():
    build = Path(os.environ.get("XQ_BUILD_DIR", REPO / "build" / "release"))
    exe = build / "tests" / "gguf_dump_cli"
    if not exe.exists():
        pytest.fail(f"{exe} is missing: build the tests (ninja -C {build} gguf_dump_cli)")
    return exe


def run_cli(*args, check=True):
    p = subprocess.run([str(cli_path()), *map(str, args)], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"gguf_dump_cli {' '.join(map(str, args))} failed: {p.stderr}")
    return p


def dequant_cpp(path, name, tmp_path, view="raw"):
    out = tmp_path / "t.f32"
    run_cli(path, view, name, out)
    data = np.fromfile(out, dtype=np.float32)
    out.unlink()
    return data


def assert_blocks_equal(ours, ref, block, what, exact=False):
    """Equal up to float rounding (bit for bit with `exact`); on failure names the first
    differing block."""
    ours = ours.reshape(-1)
    ref = np.asarray(ref, dtype=np.float32).reshape(-1)
    assert ours.shape == ref.shape, f"{what}: {ours.shape} elements, expected {ref.shape}"
    # Both sides compute d * scale * q - dmin * m in fp32; only FMA contraction may differ.
    tol = 0.0 if exact else 1e-6 * np.maximum(np.abs(ref), 1.0)
    bad = np.nonzero(~(np.abs(ours - ref) <= tol))[0]
    if bad.size:
        b = bad[0] // block
        sl = slice(b * block, (b + 1) * block)
        raise AssertionError(
            f"{what}: {bad.size} values differ, first in block {b}: "
            f"ours {ours[sl][:8]} ref {ref[sl][:8]}"
        )


# ---------------------------------------------------------------------------------------------
# Synthetic files


def random_blocks(rng, qtype, rows, cols):
    """Random block bytes with finite, moderate f16 scales (all other bits are free)."""
    block, nbytes = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(rows, cols // block, nbytes), dtype=np.uint8)
    scale_offsets = {QT.Q4_0: [0], QT.Q5_0: [0], QT.Q8_0: [0], QT.Q4_K: [0, 2],
                     QT.Q5_K: [0, 2], QT.Q6_K: [208], QT.Q4_1: [0, 2], QT.Q5_1: [0, 2],
                     QT.Q2_K: [80, 82], QT.Q3_K: [108], QT.IQ4_NL: [0],
                     QT.IQ4_XS: [0]}[qtype]
    for off in scale_offsets:
        d = rng.uniform(-0.05, 0.05, size=(rows, cols // block)).astype(np.float16)
        raw[:, :, off:off + 2] = d.view(np.uint8).reshape(rows, cols // block, 2)
    return raw.reshape(rows, -1)


# Every block type the engine decodes; the synthetic file holds a tensor of random blocks of each.
RANDOM_TYPES = (QT.Q8_0, QT.Q4_0, QT.Q4_1, QT.Q5_0, QT.Q5_1, QT.Q2_K, QT.Q3_K, QT.Q4_K, QT.Q5_K,
                QT.Q6_K, QT.IQ4_NL, QT.IQ4_XS)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A llama-arch file with every supported tensor type and every metadata value type."""
    rng = np.random.default_rng(7)
    path = tmp_path_factory.mktemp("gguf") / "synthetic.gguf"
    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_uint64("test.u64", 2**63 + 5)
    w.add_int64("test.i64", -(2**62))
    w.add_float32("test.f32", 1.5)
    w.add_float64("test.f64", 1e-300)
    w.add_bool("test.bool", True)
    w.add_string("test.str", "héllo ▁ world")
    w.add_array("test.arr_str", ["a", "", "▁b", "<0x0A>"])
    w.add_array("test.arr_int", [1, -2, 3])
    w.add_array("test.arr_float", [0.5, -0.25])
    w.add_array("test.arr_nested", [[1, 2], [3]])
    tensors = {}
    dense = rng.standard_normal((8, 64)).astype(np.float32)
    w.add_tensor("dense_f32", dense)
    tensors["dense_f32"] = (QT.F32, dense)
    half = rng.standard_normal((4, 32)).astype(np.float16)
    w.add_tensor("dense_f16", half)
    tensors["dense_f16"] = (QT.F16, half.astype(np.float32))
    for qtype in (QT.Q8_0, QT.Q4_0, QT.Q4_1, QT.Q5_0, QT.Q5_1):
        x = rng.standard_normal((6, 128)).astype(np.float32)
        q = gguf.quants.quantize(x, qtype)
        name = f"quantized_{qtype.name}"
        w.add_tensor(name, q, raw_dtype=qtype)
        tensors[name] = (qtype, q, x)
    for qtype in RANDOM_TYPES:
        cols = 512 if gguf.GGML_QUANT_SIZES[qtype][0] == 256 else 96
        raw = random_blocks(rng, qtype, 5, cols)
        name = f"random_{qtype.name}"
        w.add_tensor(name, raw, raw_dtype=qtype)
        tensors[name] = (qtype, raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path, tensors


def test_synthetic_metadata(synthetic):
    path, _ = synthetic
    meta = json.loads(run_cli(path, "meta").stdout)
    assert meta["version"] == 3 and meta["alignment"] == 32
    kv = meta["kv"]
    expect = {
        "test.u8": ("uint8", 200), "test.i8": ("int8", -100), "test.u16": ("uint16", 60000),
        "test.i16": ("int16", -30000), "test.u32": ("uint32", 4000000000),
        "test.i32": ("int32", -2000000000), "test.u64": ("uint64", 2**63 + 5),
        "test.i64": ("int64", -(2**62)), "test.f32": ("float32", 1.5),
        "test.f64": ("float64", 1e-300), "test.bool": ("bool", True),
        "test.str": ("string", "héllo ▁ world"),
        "test.arr_str": ("array:string", ["a", "", "▁b", "<0x0A>"]),
        "test.arr_float": ("array:float32", [0.5, -0.25]),
        "test.arr_nested": ("array:array", [[1, 2], [3]]),
        "general.architecture": ("string", "llama"),
    }
    for key, (typ, value) in expect.items():
        assert kv[key] == {"type": typ, "value": value}, key
    assert kv["test.arr_int"]["value"] == [1, -2, 3]


def test_synthetic_tensor_list(synthetic):
    path, tensors = synthetic
    reader = gguf.GGUFReader(str(path))
    listed = [line.split("\t") for line in run_cli(path, "list").stdout.splitlines()]
    assert [x[0] for x in listed] == [t.name for t in reader.tensors]
    for (name, typ, ne), t in zip(listed, reader.tensors):
        assert typ == t.tensor_type.name
        assert [int(v) for v in ne.split(",")] == [int(v) for v in t.shape]


def test_synthetic_dequant_matches_gguf_package(synthetic, tmp_path):
    path, tensors = synthetic
    for name, (qtype, data, *orig) in tensors.items():
        ours = dequant_cpp(path, name, tmp_path)
        if qtype in (QT.F32, QT.F16):
            np.testing.assert_array_equal(ours, data.reshape(-1), err_msg=name)
            continue
        ref = gguf.quants.dequantize(data, qtype)
        # Bit for bit: the f16 scale has 11 significant bits and the integers it multiplies at
        # most 12 more (Q6_K: 7-bit scale, 5-bit quant; IQ4_XS: 5-bit scale, 7-bit level; the
        # extremes -128 and -32 are powers of two), so every product is exact in fp32's 24 bits,
        # in any order of the factors. A value is rounded once at most, in the one addition of a
        # min (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K), which a fused multiply-add rounds the same way.
        assert_blocks_equal(ours, ref, gguf.GGML_QUANT_SIZES[qtype][0], name, exact=True)
        if orig:  # quantized from known values: the round trip stays near them
            err = np.abs(ours - orig[0].reshape(-1)).max() / np.abs(orig[0]).max()
            assert err < {QT.Q8_0: 0.01, QT.Q5_0: 0.05, QT.Q4_0: 0.1, QT.Q5_1: 0.05,
                           QT.Q4_1: 0.1}[qtype], (name, err)


def test_truncated_file_is_an_error_naming_the_file(synthetic, tmp_path):
    path, _ = synthetic
    blob = path.read_bytes()
    # The writer pads the last tensor too: cut inside the data, not just the padding.
    data_end = max(t.data_offset + t.n_bytes for t in gguf.GGUFReader(str(path)).tensors)
    for size in (0, 3, 10, 23, 100, 400, len(blob) // 2, data_end - 1):
        cut = tmp_path / f"cut{size}.gguf"
        cut.write_bytes(blob[:size])
        p = run_cli(cut, "list", check=False)
        assert p.returncode == 1, (size, p.stdout[:200])
        assert str(cut) in p.stderr, p.stderr
    bad = tmp_path / "badmagic.gguf"
    bad.write_bytes(b"GGUX" + blob[4:])
    p = run_cli(bad, "list", check=False)
    assert p.returncode == 1 and "magic" in p.stderr


# ---------------------------------------------------------------------------------------------
# Llama-arch Q/K layout and Gemma 3 norms, through the Hugging Face view


def permute_like_llama_cpp(w, n_head):
    """What convert_hf_to_gguf.py does to llama q/k rows (interleaves each head's halves)."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def write_tiny_model(path, arch, tensors, extra_kv):
    w = gguf.GGUFWriter(str(path), arch=arch)
    w.add_context_length(128)
    w.add_embedding_length(64)
    w.add_block_count(1)
    w.add_feed_forward_length(96)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    for k, v in extra_kv.items():
        w.add_uint32(k, v)
    for name, arr in tensors.items():
        if isinstance(arr, tuple):  # (block bytes, quantization type)
            w.add_tensor(name, arr[0], raw_dtype=arr[1])
        else:
            w.add_tensor(name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_llama_qk_rows_come_back_in_hf_order(tmp_path):
    rng = np.random.default_rng(3)
    hf_q = rng.standard_normal((64, 64)).astype(np.float32)  # 4 heads of 16
    hf_k = rng.standard_normal((32, 64)).astype(np.float32)  # 2 kv heads
    hf_v = rng.standard_normal((32, 64)).astype(np.float32)
    norm = rng.standard_normal(64).astype(np.float32)
    path = tmp_path / "llama.gguf"
    write_tiny_model(path, "llama", {
        "token_embd.weight": rng.standard_normal((10, 64)).astype(np.float32),
        "blk.0.attn_q.weight": permute_like_llama_cpp(hf_q, 4),
        # Quantized rows move as whole blocks: K is stored as Q8_0.
        "blk.0.attn_k.weight": (gguf.quants.quantize(permute_like_llama_cpp(hf_k, 2), QT.Q8_0),
                                QT.Q8_0),
        "blk.0.attn_v.weight": hf_v,
        "blk.0.ffn_norm.weight": norm,
    }, {})
    pre = "model.layers.0."
    np.testing.assert_array_equal(
        dequant_cpp(path, pre + "self_attn.q_proj.weight", tmp_path, "hf"), hf_q.reshape(-1))
    k_rounded = gguf.quants.dequantize(gguf.quants.quantize(hf_k, QT.Q8_0), QT.Q8_0)
    assert_blocks_equal(dequant_cpp(path, pre + "self_attn.k_proj.weight", tmp_path, "hf"),
                        k_rounded, 32, "k_proj")
    np.testing.assert_array_equal(
        dequant_cpp(path, pre + "self_attn.v_proj.weight", tmp_path, "hf"), hf_v.reshape(-1))
    # Llama norms are stored as HF has them.
    np.testing.assert_array_equal(
        dequant_cpp(path, pre + "post_attention_layernorm.weight", tmp_path, "hf"), norm)
    cfg = json.loads(run_cli(path, "config").stdout)
    assert (cfg["arch"], cfg["num_heads"], cfg["num_kv_heads"], cfg["head_dim"]) == \
        ("llama", 4, 2, 16)
    assert cfg["vocab_size"] == 10 and cfg["tie_word_embeddings"] is True
    assert cfg["eos_token_ids"] == [2] and cfg["bos_token_id"] == 1


def test_gemma3_norms_lose_the_converters_plus_one(tmp_path):
    rng = np.random.default_rng(4)
    stored = {n: rng.uniform(0.5, 2.0, 64).astype(np.float32) for n in
              ("attn_norm", "post_attention_norm", "ffn_norm", "post_ffw_norm")}
    qnorm = rng.uniform(0.5, 2.0, 16).astype(np.float32)
    proj = rng.standard_normal((64, 64)).astype(np.float32)
    tensors = {f"blk.0.{n}.weight": v for n, v in stored.items()}
    tensors["blk.0.attn_q_norm.weight"] = qnorm
    tensors["blk.0.attn_q.weight"] = proj
    tensors["token_embd.weight"] = rng.standard_normal((10, 64)).astype(np.float32)
    path = tmp_path / "gemma.gguf"
    write_tiny_model(path, "gemma3", tensors, {"gemma3.attention.sliding_window": 32})
    hf = {"attn_norm": "input_layernorm", "post_attention_norm": "post_attention_layernorm",
          "ffn_norm": "pre_feedforward_layernorm",
          "post_ffw_norm": "post_feedforward_layernorm"}
    for n, v in stored.items():
        got = dequant_cpp(path, f"model.layers.0.{hf[n]}.weight", tmp_path, "hf")
        np.testing.assert_array_equal(got, v - np.float32(1), err_msg=n)
    np.testing.assert_array_equal(
        dequant_cpp(path, "model.layers.0.self_attn.q_norm.weight", tmp_path, "hf"), qnorm - 1)
    # Gemma's projections are not permuted.
    np.testing.assert_array_equal(
        dequant_cpp(path, "model.layers.0.self_attn.q_proj.weight", tmp_path, "hf"),
        proj.reshape(-1))


# ---------------------------------------------------------------------------------------------
# The real Gemma 3 270M Q4_K_M file (scripts/get-gemma3.sh)


@pytest.fixture(scope="module")
def gemma():
    path = gemma_path()
    if not path.exists():
        pytest.skip(f"{path} is absent: run scripts/get-gemma3.sh (or set XQ_GEMMA_GGUF)")
    return path, gguf.GGUFReader(str(path))


def test_gemma_metadata_matches_the_gguf_package(gemma):
    path, reader = gemma
    meta = json.loads(run_cli(path, "meta").stdout)
    assert meta["version"] == 3
    kv = meta["kv"]
    assert set(kv) == {k for k in reader.fields if not k.startswith("GGUF.")}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        want = field.contents()
        got = kv[key]["value"]
        if isinstance(want, float):
            assert got == pytest.approx(want, rel=1e-7), key
        elif isinstance(want, list) and want and isinstance(want[0], float):
            np.testing.assert_allclose(got, want, rtol=1e-7, err_msg=key)
        else:
            assert got == want, key


def test_gemma_dequant_matches_the_gguf_package(gemma, tmp_path):
    path, reader = gemma
    chosen = [t for t in reader.tensors
              if not t.name.startswith("blk.") or t.name.split(".")[1] in ("0", "5", "17")]
    types = {t.tensor_type for t in reader.tensors}
    assert {t.tensor_type for t in chosen} == types  # every type of the file is exercised
    for t in chosen:
        ours = dequant_cpp(path, t.name, tmp_path)
        ref = gguf.quants.dequantize(t.data, t.tensor_type)
        assert list(ref.shape[::-1]) == [int(x) for x in t.shape], t.name
        assert_blocks_equal(ours, ref, gguf.GGML_QUANT_SIZES[t.tensor_type][0],
                            f"{t.name} ({t.tensor_type.name})")


def test_gemma_hf_view(gemma, tmp_path):
    path, reader = gemma
    per_layer = ["input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                 "post_feedforward_layernorm", "self_attn.q_proj", "self_attn.k_proj",
                 "self_attn.v_proj", "self_attn.o_proj", "self_attn.q_norm", "self_attn.k_norm",
                 "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
    expect = {"model.embed_tokens.weight", "model.norm.weight"} | {
        f"model.layers.{i}.{n}.weight" for i in range(18) for n in per_layer}
    by_name = {t.name: t for t in reader.tensors}
    pairs = {
        "model.norm.weight": "output_norm.weight",
        "model.layers.3.input_layernorm.weight": "blk.3.attn_norm.weight",
        "model.layers.3.pre_feedforward_layernorm.weight": "blk.3.ffn_norm.weight",
        "model.layers.3.post_feedforward_layernorm.weight": "blk.3.post_ffw_norm.weight",
        "model.layers.3.post_attention_layernorm.weight": "blk.3.post_attention_norm.weight",
        "model.layers.3.self_attn.k_norm.weight": "blk.3.attn_k_norm.weight",
        "model.layers.3.self_attn.q_proj.weight": "blk.3.attn_q.weight",
        "model.layers.3.mlp.down_proj.weight": "blk.3.ffn_down.weight",
    }
    assert len(expect) == len(reader.tensors)
    assert all(by_name.get(g) is not None for g in pairs.values())
    for hf, g in pairs.items():
        ours = dequant_cpp(path, hf, tmp_path, "hf")
        ref = gguf.quants.dequantize(by_name[g].data, by_name[g].tensor_type).reshape(-1)
        if hf.endswith("norm.weight"):
            ref = ref - np.float32(1)  # stored as 1 + w by llama.cpp's converter
        assert_blocks_equal(ours, ref, 32, hf)
    listed = {}
    for line in run_cli(path, "names").stdout.splitlines():
        name, dtype, shape = line.split("\t")
        listed[name] = (dtype, [int(x) for x in shape.split(",")])
    assert set(listed) == expect
    for hf, g in pairs.items():  # HF shapes are the GGUF dims reversed
        assert listed[hf][1] == [int(x) for x in by_name[g].shape[::-1]], hf
    assert listed["model.embed_tokens.weight"] == ("Q8_0", [262144, 640])
    assert listed["model.layers.0.self_attn.q_proj.weight"] == ("Q5_0", [1024, 640])
    assert listed["model.layers.0.self_attn.k_proj.weight"] == ("Q5_0", [256, 640])
    assert listed["model.layers.0.mlp.down_proj.weight"][1] == [640, 2048]
    assert listed["model.layers.0.self_attn.q_norm.weight"] == ("F32", [256])


def test_gemma_config_is_gemma_3_270m(gemma):
    path, _ = gemma
    cfg = json.loads(run_cli(path, "config").stdout)
    # google/gemma-3-270m config.json, as the HF loader reads it.
    assert cfg["model_type"] == "gemma3_text" and cfg["arch"] == "gemma3"
    assert (cfg["vocab_size"], cfg["hidden_size"], cfg["intermediate_size"]) == (262144, 640, 2048)
    assert (cfg["num_layers"], cfg["num_heads"], cfg["num_kv_heads"], cfg["head_dim"]) == \
        (18, 4, 1, 256)
    assert cfg["max_position_embeddings"] == 32768
    assert cfg["rms_norm_eps"] == pytest.approx(1e-6)
    assert (cfg["rope_theta"], cfg["rope_local_theta"]) == (1e6, 1e4)
    assert cfg["rope_scaling"] == "none"
    assert (cfg["sliding_window"], cfg["query_pre_attn_scalar"]) == (512, 256)
    assert cfg["layer_is_sliding"] == [(i + 1) % 6 != 0 for i in range(18)]
    assert cfg["tie_word_embeddings"] is True and cfg["final_logit_softcap"] == 0
    assert cfg["bos_token_id"] == 2 and cfg["eos_token_ids"] == [1, 106]  # <eos>, <end_of_turn>


def test_missing_hyper_parameter_is_named(tmp_path):
    path = tmp_path / "nolayers.gguf"
    w = gguf.GGUFWriter(str(path), arch="gemma3")
    w.add_embedding_length(64)
    w.add_feed_forward_length(96)
    w.add_head_count(4)
    w.add_tensor("token_embd.weight", np.zeros((10, 64), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    p = run_cli(path, "config", check=False)
    assert p.returncode == 1
    assert str(path) in p.stderr and "gemma3.block_count is missing" in p.stderr, p.stderr
