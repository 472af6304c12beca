// gguf_dump_cli: test support for tests/python/test_gguf.py. Lists a GGUF file's tensors, its
// derived ModelConfig, and writes one tensor dequantized to raw little-endian fp32.
//
//   gguf_dump_cli FILE list              name<TAB>type<TAB>ne0,ne1,...  (one line per tensor)
//   gguf_dump_cli FILE raw NAME OUT      tensor NAME (GGUF name) as stored, dequantized
//   gguf_dump_cli FILE hf NAME OUT       tensor NAME (HF name) as the model sees it
//   gguf_dump_cli FILE names             HF name<TAB>dtype<TAB>shape of the WeightSource
//   gguf_dump_cli FILE config            the ModelConfig as JSON
//   gguf_dump_cli FILE encode            stdin: JSON array of texts; stdout: JSON array of id
//                                        lists (with BOS as the file asks)
//   gguf_dump_cli FILE decode            stdin: JSON array of id lists; stdout: JSON array of
//                                        texts (special tokens skipped)
//   gguf_dump_cli FILE meta              {"version", "alignment", "kv": {key: {"type", "value"}}}
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "engine/model/gguf_tokenizer.h"
#include "engine/weights/gguf_file.h"
#include "engine/weights/gguf_weights.h"

namespace {

nlohmann::json value_json(const xq::GgufValue& v) {
  using xq::GgufType;
  nlohmann::json j;
  if (v.type == GgufType::Array) {
    j = nlohmann::json::array();
    for (int64_t i : v.ints)
      j.push_back(v.elem_type == GgufType::Bool ? nlohmann::json(i != 0) : nlohmann::json(i));
    for (double f : v.floats) j.push_back(f);
    for (const std::string& s : v.strings) j.push_back(s);
    for (const xq::GgufValue& item : v.items) j.push_back(value_json(item));
  } else if (v.type == GgufType::String) {
    j = v.s;
  } else if (v.is_float()) {
    j = v.f;
  } else if (v.type == GgufType::Bool) {
    j = v.i != 0;
  } else if (v.type == GgufType::UInt64) {
    j = v.u;
  } else {
    j = v.i;
  }
  return j;
}

void write_f32(const std::vector<float>& v, const std::string& out) {
  std::ofstream f(out, std::ios::binary);
  f.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * 4));
  if (!f) throw std::runtime_error("cannot write " + out);
}

int run(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: gguf_dump_cli FILE list|raw NAME OUT|hf NAME OUT|config\n";
    return 2;
  }
  auto file = std::make_shared<xq::GgufFile>(argv[1]);
  const std::string cmd = argv[2];
  if (cmd == "list") {
    for (const xq::GgufTensor& t : file->tensors()) {
      std::cout << t.name << '\t' << xq::ggml_type_name(t.type) << '\t';
      for (size_t i = 0; i < t.ne.size(); ++i) std::cout << (i ? "," : "") << t.ne[i];
      std::cout << '\n';
    }
    return 0;
  }
  if ((cmd == "raw" || cmd == "hf") && argc == 5) {
    xq::TensorInfo info;
    std::unique_ptr<xq::WeightSource> src;  // owns the data of tensors it rewrote
    if (cmd == "raw") {
      const xq::GgufTensor* g = file->find_tensor(argv[3]);
      if (!g) throw xq::WeightError(std::string("no tensor ") + argv[3]);
      auto dt = xq::dtype_from_ggml(g->type);
      if (!dt) throw xq::WeightError("unsupported type " + xq::ggml_type_name(g->type));
      info = {g->name, *dt, g->hf_shape(), g->data, g->nbytes, file->path().string()};
    } else {
      src = xq::open_gguf_weights(file);
      info = src->get(argv[3]);
    }
    std::vector<float> v(static_cast<size_t>(info.numel()));
    xq::convert_to_f32(info, v.data());
    write_f32(v, argv[4]);
    return 0;
  }
  if (cmd == "names") {
    auto src = xq::open_gguf_weights(file);
    for (const std::string& name : src->names()) {
      const xq::TensorInfo& t = src->get(name);
      std::cout << name << '\t' << xq::dtype_name(t.dtype) << '\t';
      for (size_t i = 0; i < t.shape.size(); ++i) std::cout << (i ? "," : "") << t.shape[i];
      std::cout << '\n';
    }
    return 0;
  }
  if (cmd == "encode") {
    auto tok = xq::gguf_tokenizer(*file, xq::gguf_model_config(*file));
    nlohmann::json out = nlohmann::json::array();
    for (const auto& text : nlohmann::json::parse(std::cin)) {
      out.push_back(tok->encode(text.get<std::string>(), true));
    }
    std::cout << out.dump() << '\n';
    return 0;
  }
  if (cmd == "decode") {
    auto tok = xq::gguf_tokenizer(*file, xq::gguf_model_config(*file));
    nlohmann::json out = nlohmann::json::array();
    for (const auto& ids : nlohmann::json::parse(std::cin)) {
      out.push_back(tok->decode(ids.get<std::vector<int>>(), true));
    }
    std::cout << out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
    return 0;
  }
  if (cmd == "meta") {
    nlohmann::json kv = nlohmann::json::object();
    for (const auto& [key, v] : file->metadata()) {
      std::string type = xq::gguf_type_name(v.type);
      if (v.type == xq::GgufType::Array) type += std::string(":") + xq::gguf_type_name(v.elem_type);
      kv[key] = {{"type", type}, {"value", value_json(v)}};
    }
    nlohmann::json j = {{"version", file->version()}, {"alignment", file->alignment()}, {"kv", kv}};
    std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
    return 0;
  }
  if (cmd == "config") {
    xq::ModelConfig c = xq::gguf_model_config(*file);
    nlohmann::json j = {
        {"model_type", c.model_type},
        {"arch", c.arch == xq::Arch::Gemma3 ? "gemma3" : "llama"},
        {"vocab_size", c.vocab_size},
        {"hidden_size", c.hidden_size},
        {"intermediate_size", c.intermediate_size},
        {"num_layers", c.num_layers},
        {"num_heads", c.num_heads},
        {"num_kv_heads", c.num_kv_heads},
        {"head_dim", c.head_dim},
        {"max_position_embeddings", c.max_position_embeddings},
        {"rms_norm_eps", c.rms_norm_eps},
        {"rope_theta", c.rope_theta},
        {"rope_scaling", c.rope_scaling.type},
        {"tie_word_embeddings", c.tie_word_embeddings},
        {"attention_bias", c.attention_bias},
        {"bos_token_id", c.bos_token_id},
        {"eos_token_ids", c.eos_token_ids},
        {"sliding_window", c.sliding_window},
        {"layer_is_sliding", c.layer_is_sliding},
        {"rope_local_theta", c.rope_local_theta},
        {"query_pre_attn_scalar", c.query_pre_attn_scalar},
        {"final_logit_softcap", c.final_logit_softcap},
    };
    std::cout << j.dump() << '\n';
    return 0;
  }
  std::cerr << "gguf_dump_cli: unknown command " << cmd << '\n';
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "gguf_dump_cli: " << e.what() << '\n';
    return 1;
  }
}
