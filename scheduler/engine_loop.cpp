#include "scheduler/engine_loop.h"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <ctime>
#include <span>
#include <sstream>

#include "scheduler/batch_planner.h"
#include "scheduler/sequence.h"
#include "scheduler/step_draws.h"

namespace xq {

namespace {
using Clock = std::chrono::steady_clock;

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// The final event of a request the engine thread never took, sent after it has stopped.
void refuse_unstarted(Sequence& s) {
  RequestEvent ev;
  ev.finished = true;
  ev.finish_reason = "error";
  ev.error = "the engine thread has stopped";
  ev.error_status = 503;
  ev.prompt_tokens = s.prompt_len;
  ev.arrival = s.arrival;
  ev.finished_at = Clock::now();
  try {
    if (s.sink) s.sink(std::move(ev));
  } catch (const std::exception& e) {
    spdlog::error("request {}: cannot post its error: {}", s.id, e.what());
  }
}

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

TokenCost token_cost(const CacheFormat& f) {
  return {f.bytes_per_token(), f.sliding_bytes_per_token(), f.sliding_tokens()};
}

std::string token_text(const Tokenizer& tok, int id) {
  return sanitize_utf8(tok.token_bytes(id));
}
}  // namespace

struct EngineLoop::Impl {
  Impl(LoadedModel& m, SchedulerOptions o)
      : model(m),
        opts(o),
        blocks(BlockManager::blocks_for_budget(block_budget(o, m.model->cache_format()),
                                               token_cost(m.model->cache_format()), o.block_size),
               o.block_size, token_cost(m.model->cache_format())),
        planner(o.max_num_seqs, o.max_num_batched_tokens, blocks) {
    if (opts.max_model_len <= 0) opts.max_model_len = m.model->config().max_position_embeddings;
    if (blocks.total() == 0) {
      throw std::invalid_argument("the cache memory budget holds not even one block of " +
                                  std::to_string(o.block_size) + " tokens");
    }
    const CacheFormat& fmt = m.model->cache_format();
    spdlog::info(
        "cache budget {:.1f} MiB: {} at {:.1f} bytes/token, {} blocks of {} tokens, {} tokens "
        "in cache ({:.1f} MiB kept for {} sequences' full-precision windows)",
        o.cache_bytes / (1 << 20), fmt.name(),
        fmt.bytes_per_token() + fmt.sliding_bytes_per_token(), blocks.total(), o.block_size,
        blocks.total() * o.block_size, o.max_num_seqs * fmt.window_bytes_max() / (1 << 20),
        o.max_num_seqs);
    if (fmt.sliding_tokens() > 0 && fmt.bytes_per_token() == 0) {
      spdlog::info(
          "every layer has a sliding window: a sequence holds at most its last {} tokens ({:.1f} "
          "bytes each), however long it grows",
          fmt.sliding_tokens(), fmt.sliding_bytes_per_token());
    } else if (fmt.sliding_tokens() > 0) {
      spdlog::info(
          "sliding-window layers hold a sequence's last {} tokens ({:.1f} bytes/token); past "
          "them a token costs {:.1f} bytes, so one sequence of up to {} tokens fits",
          fmt.sliding_tokens(), fmt.sliding_bytes_per_token(), fmt.bytes_per_token(),
          blocks.max_tokens());
    }
  }

  // Formats with a full-precision window (KIVI, the per-channel XQuant forms) hold a fixed
  // amount per sequence on top of their per-token bytes: that comes off the top.
  static double block_budget(const SchedulerOptions& o, const CacheFormat& fmt) {
    return std::max(0.0, o.cache_bytes - o.max_num_seqs * fmt.window_bytes_max());
  }

  LoadedModel& model;
  SchedulerOptions opts;
  BlockManager blocks;
  BatchPlanner planner;
  std::unordered_map<uint64_t, std::unique_ptr<Sequence>> seqs;  // engine thread only

  mutable std::mutex mu;  // guards the fields below
  std::condition_variable cv;
  std::deque<std::unique_ptr<Sequence>> incoming;
  std::vector<uint64_t> aborts;
  std::string fail_why;  // fail_pending's, taken by the engine thread
  bool fail_running = false;
  bool stopping = false;
  bool thread_dead = false;         // the step loop ended on an exception
  Clock::time_point last_step_end;  // when the engine thread last finished a step
  // The engine thread holds requests: set when it takes new ones, so that a stall in the first
  // step after idling counts (the published stats lag a step behind).
  bool busy = false;
  uint64_t next_id = 1;
  LoopStats stats;

  std::thread thread;
  // Tokens of the running step not yet in stats (engine thread only).
  int prompt_tokens_this_step = 0;
  int sampled_this_step = 0;
  Clock::time_point step_start;  // when the inbox was taken: the step's work begins
  double step_start_cpu = 0;     // the engine thread's CPU clock then
  // Kept across steps: 64 rows of a 128k vocabulary are 32 MiB, fresh pages (an mmap and a
  // fault per 4 KiB) when allocated anew each step.
  std::vector<float> step_logits;

  void run();
  // The ids a token can be drawn (or listed in logprobs) from: a checkpoint may pad its
  // vocab_size past the tokenizer's (Qwen2.5: 151936 for 151665 tokens), and the ids past it
  // have no text.
  size_t tokenizer_vocab() const {
    return std::min<size_t>(model.model->config().vocab_size, model.tokenizer->vocab_size());
  }
  // forward_s < 0: no model step ran.
  void publish_stats(double forward_s = -1, double forward_cpu_s = 0);
  void publish_gauges();
  void set_gauges_locked();
  bool take_inbox();
  // A new request's cache, sampler, output processor and event batcher.
  void set_up(Sequence& s);
  // Ends the requests not yet started (or all) with an error answered with `status`.
  void fail_sequences(const std::string& why, bool running_too, int status);
  void step();
  std::vector<float> fetched_rows;       // whole rows copied back for draw_from_summaries
  std::vector<RowSummary> step_summaries;  // kept across steps, as step_logits
  void finish(Sequence& s, RequestEvent& ev, const std::string& reason);
  void process_rows(Sequence& s, int start, int n, const float* rows, bool all_rows,
                    const SampleTask* draw, RequestEvent& ev);
  void next_token(Sequence& s, const SampleTask& draw, RequestEvent& ev);
};

EngineLoop::EngineLoop(LoadedModel& model, SchedulerOptions opts)
    : model_(model), impl_(std::make_unique<Impl>(model, opts)) {
  impl_->thread = std::thread([this] { impl_->run(); });
}

EngineLoop::~EngineLoop() { stop(); }

int EngineLoop::max_model_len() const { return impl_->opts.max_model_len; }
int64_t EngineLoop::cache_capacity_tokens() const { return impl_->blocks.max_tokens(); }
int EngineLoop::block_size() const { return impl_->blocks.block_size(); }

uint64_t EngineLoop::submit(Request req, EventSink sink) {
  auto s = std::make_unique<Sequence>();
  s->req = std::move(req);
  s->sink = std::move(sink);
  s->tokens = s->req.prompt;
  s->prompt_len = static_cast<int>(s->tokens.size());
  s->arrival = std::chrono::steady_clock::now();
  {
    std::lock_guard lk(impl_->mu);
    s->id = impl_->next_id++;
    if (!impl_->thread_dead) {
      const uint64_t id = s->id;
      impl_->incoming.push_back(std::move(s));
      impl_->cv.notify_one();
      return id;
    }
  }
  // Nothing would ever take it: answered here, on the caller's thread.
  refuse_unstarted(*s);
  return s->id;
}

void EngineLoop::abort(uint64_t id) {
  std::lock_guard lk(impl_->mu);
  impl_->aborts.push_back(id);
  impl_->cv.notify_one();
}

void EngineLoop::fail_pending(const std::string& why, bool running_too) {
  std::lock_guard lk(impl_->mu);
  impl_->fail_why = why;
  impl_->fail_running = impl_->fail_running || running_too;
  impl_->cv.notify_one();
}

int EngineLoop::queued() const {
  std::lock_guard lk(impl_->mu);
  return impl_->stats.waiting + static_cast<int>(impl_->incoming.size());
}

std::string EngineLoop::health_problem(std::chrono::milliseconds stall) const {
  std::lock_guard lk(impl_->mu);
  if (impl_->thread_dead) return "the engine thread has stopped";
  const bool work = !impl_->incoming.empty() || impl_->busy;
  if (work && Clock::now() - impl_->last_step_end > stall) {
    std::ostringstream seconds;  // "1", "0.5": the limit as the flag gave it
    seconds << std::chrono::duration<double>(stall).count();
    return "the engine has not finished a step for over " + seconds.str() +
           " s with requests waiting";
  }
  return {};
}

void EngineLoop::stop() {
  {
    std::lock_guard lk(impl_->mu);
    impl_->stopping = true;
    impl_->cv.notify_one();
  }
  if (impl_->thread.joinable()) impl_->thread.join();
}

LoopStats EngineLoop::stats() const {
  std::lock_guard lk(impl_->mu);
  return impl_->stats;
}

// Moves new requests and aborts into the engine thread's state. Returns false when stopping.
bool EngineLoop::Impl::take_inbox() {
  std::deque<std::unique_ptr<Sequence>> fresh;
  std::vector<uint64_t> dead;
  std::string fail;
  bool fail_all = false;
  {
    std::unique_lock lk(mu);
    cv.wait(lk, [&] {
      return stopping || !incoming.empty() || !aborts.empty() || !seqs.empty() || !fail_why.empty();
    });
    if (stopping) return false;
    if (seqs.empty()) last_step_end = Clock::now();  // idle until now: no stall to report
    step_start = Clock::now();
    step_start_cpu = thread_cpu_seconds();
    fresh.swap(incoming);
    busy = !seqs.empty() || !fresh.empty();
    dead.swap(aborts);
    fail.swap(fail_why);
    fail_all = fail_running;
  }
  for (auto& s : fresh) {
    Sequence* raw = s.get();
    seqs.emplace(s->id, std::move(s));
    // Held in `seqs` first: a request whose set-up fails (its cache cannot be allocated) gets
    // an error, and the others and the engine thread go on.
    try {
      set_up(*raw);
    } catch (const std::exception& e) {
      RequestEvent ev;
      ev.error = std::string("cannot set up the request: ") + e.what();
      finish(*raw, ev, "error");
      continue;
    }
    const int64_t need = int64_t{raw->prompt_len} + std::max(0, raw->req.max_tokens);
    std::string bad;
    if (raw->prompt_len == 0) bad = "empty prompt";
    if (raw->prompt_len >= opts.max_model_len) bad = "the prompt exceeds the context length";
    if (need > blocks.max_tokens()) {
      bad = "the request needs " + std::to_string(need) + " tokens of cache; the cache holds " +
            std::to_string(blocks.max_tokens());
    }
    if (!bad.empty()) {
      RequestEvent ev;
      ev.error = bad;
      finish(*raw, ev, "error");
      continue;
    }
    planner.add(raw);
  }
  for (uint64_t id : dead) {
    auto it = seqs.find(id);
    if (it == seqs.end()) continue;
    RequestEvent ev;
    finish(*it->second, ev, "abort");
  }
  if (!fail.empty()) fail_sequences(fail, fail_all, 503);
  return true;
}

void EngineLoop::Impl::set_up(Sequence& s) {
  s.cache = model.model->cache_format().new_sequence();
  s.sampler.emplace(s.req.sampling, opts.seed ^ (s.id * 0x9E3779B97F4A7C15ull));
  s.output.emplace(*model.tokenizer, s.req.stop, s.req.skip_special_tokens,
                   s.req.include_stop_str_in_output);
  if (s.req.min_tokens > 0) {
    s.min_tokens_banned = s.req.stop_token_ids;
    if (!s.req.ignore_eos)
      for (int id : model.tokenizer->eos_ids()) s.min_tokens_banned.push_back(id);
  }
  s.batcher = EventBatcher(s.req.stream_interval);
  if (s.req.prompt_logprobs >= 0) s.prompt_logprobs.resize(s.prompt_len);
}

void EngineLoop::Impl::fail_sequences(const std::string& why, bool running_too, int status) {
  std::vector<Sequence*> victims;
  for (auto& [id, s] : seqs) {
    if (running_too || s->num_cached == 0) victims.push_back(s.get());
  }
  for (Sequence* s : victims) {
    RequestEvent ev;
    ev.error = why;
    ev.error_status = status;
    finish(*s, ev, "error");
  }
}

void EngineLoop::Impl::run() {
  pthread_setname_np(pthread_self(), "xq-engine");  // found by name in /proc for CPU accounting
  std::deque<std::unique_ptr<Sequence>> unstarted;
  try {
    while (take_inbox()) {
      try {
        if (seqs.empty()) {
          publish_stats();  // aborts or refusals may have emptied the loop
        } else {
          step();
        }
      } catch (const std::exception& e) {
        // Out of memory in a step (a batch's logits, a detokenized text) fails that step's
        // requests, not the process.
        spdlog::error("engine step failed: {}; failing {} request(s)", e.what(), seqs.size());
        fail_sequences(std::string("engine step failed: ") + e.what(), true, 500);
        publish_stats();
      }
      std::lock_guard lk(mu);
      last_step_end = Clock::now();
      busy = !seqs.empty();
    }
  } catch (const std::exception& e) {
    spdlog::critical("engine thread stopped: {}", e.what());
    std::lock_guard lk(mu);
    thread_dead = true;  // /health fails from now on; the requests held are aborted below
    unstarted.swap(incoming);
  }
  for (auto& s : unstarted) refuse_unstarted(*s);
  // Whatever is left is aborted so that no client waits forever; what killed the thread (a
  // sink that cannot post its event) may fail again here, and must not end the process.
  std::vector<Sequence*> left;
  for (auto& [id, s] : seqs) left.push_back(s.get());
  for (Sequence* s : left) {
    const uint64_t id = s->id;  // `s` is freed once finish() has erased it
    try {
      RequestEvent ev;
      finish(*s, ev, "abort");
    } catch (const std::exception& e) {
      spdlog::error("engine thread: aborting request {} failed: {}", id, e.what());
      if (auto it = seqs.find(id); it != seqs.end()) {
        planner.remove(it->second.get());
        seqs.erase(it);
      }
    }
  }
}

// Sends the last event of a sequence and frees everything it holds.
void EngineLoop::Impl::finish(Sequence& s, RequestEvent& ev, const std::string& reason) {
  ev = s.batcher.flush(std::move(ev));  // tokens held back by the stream interval go first
  if (reason != "abort" && reason != "error" && s.output) ev.text += s.output->finish();
  ev.finished = true;
  ev.finish_reason = reason;
  ev.prompt_tokens = s.prompt_len;
  ev.completion_tokens = std::max(0, s.num_generated());
  ev.arrival = s.arrival;
  ev.first_token = s.first_token;
  ev.finished_at = Clock::now();
  if (s.wants_prompt_logprobs() && reason != "abort" && reason != "error") {
    ev.prompt_logprobs = std::move(s.prompt_logprobs);
    s.prompt_logprobs_sent = true;
  }
  // Free first and publish the gauges, then tell the client: a client that scrapes /metrics
  // right after its response must not still count its own request as running.
  EventSink sink = std::move(s.sink);
  planner.remove(&s);
  seqs.erase(s.id);  // frees the cache
  publish_gauges();
  if (sink) sink(std::move(ev));
}

void EngineLoop::Impl::step() {
  std::vector<PlannedChunk> chunks = planner.plan();
  int prompt_tokens = 0;
  for (const PlannedChunk& c : chunks) {
    if (c.seq->num_cached < c.seq->prompt_len) prompt_tokens += c.n;
  }
  if (chunks.empty()) {
    publish_stats();
    return;
  }

  std::vector<SeqInput> inputs;
  inputs.reserve(chunks.size());
  for (const PlannedChunk& c : chunks) {
    Sequence& s = *c.seq;
    SeqInput in;
    in.cache = s.cache.get();
    in.tokens = std::span<const int>(s.tokens).subspan(s.num_cached, c.n);
    in.start_pos = s.num_cached;
    in.all_logits = s.wants_prompt_logprobs() && s.num_cached < s.prompt_len;
    inputs.push_back(in);
  }

  // Rows whose logits stay on the model's device come back as summaries; the draws' plans
  // (their uniforms) are made before the step.
  const bool summarized =
      model.model->summarizes_logits() &&
      std::none_of(inputs.begin(), inputs.end(), [](const SeqInput& in) { return in.all_logits; });
  std::vector<float>& logits = step_logits;
  const Clock::time_point forward_start = Clock::now();
  const double forward_start_cpu = thread_cpu_seconds();
  try {
    if (summarized) {
      model.model->forward_summarized(inputs, plan_draws(chunks, tokenizer_vocab()),
                                      tokenizer_vocab(), step_summaries);
      logits.clear();
    } else {
      model.model->forward(inputs, logits);
    }
  } catch (const std::exception& e) {
    spdlog::error("engine step failed: {}", e.what());
    for (const PlannedChunk& c : chunks) {
      RequestEvent ev;
      ev.error = e.what();
      finish(*c.seq, ev, "error");
    }
    return;
  }

  const double forward_s = seconds(Clock::now() - forward_start);
  const double forward_cpu_s = thread_cpu_seconds() - forward_start_cpu;
  const size_t vocab = model.model->config().vocab_size;
  prompt_tokens_this_step = prompt_tokens;

  // Every sequence that reaches its end this step draws its next token, all at once; the
  // bookkeeping below (events, stop checks, freeing) then goes sequence by sequence.
  StepDraws d = make_draws(chunks, inputs, logits, vocab, tokenizer_vocab());
  if (summarized) {
    draw_from_summaries(*model.model, tokenizer_vocab(), step_summaries, d.draw_of, d.draws,
                        fetched_rows, opts.threads);
  } else {
    sample_batch(d.draws, opts.threads);
  }

  const float* row = logits.data();
  for (size_t i = 0; i < chunks.size(); ++i) {
    Sequence& s = *chunks[i].seq;
    const int n = chunks[i].n;
    const bool all_rows = inputs[i].all_logits;
    const int start = s.num_cached;
    s.num_cached += n;
    RequestEvent ev;
    const SampleTask* draw = d.draw_of[i] >= 0 ? &d.draws[d.draw_of[i]] : nullptr;
    process_rows(s, start, n, row, all_rows, draw, ev);  // may finish and free s
    if (!summarized) row += (all_rows ? n : 1) * vocab;
  }
  publish_stats(forward_s, forward_cpu_s);
}

void EngineLoop::Impl::publish_stats(double forward_s, double forward_cpu_s) {
  const Clock::time_point end = Clock::now();
  const double end_cpu = forward_s >= 0 ? thread_cpu_seconds() : 0;
  std::lock_guard lk(mu);
  if (forward_s >= 0) {
    ++stats.model_steps;
    stats.forward_seconds += forward_s;
    stats.step_overhead_seconds += std::max(0.0, seconds(end - step_start) - forward_s);
    stats.step_overhead_cpu_seconds += std::max(0.0, end_cpu - step_start_cpu - forward_cpu_s);
  }
  set_gauges_locked();
  ++stats.steps;
}

void EngineLoop::Impl::publish_gauges() {
  std::lock_guard lk(mu);
  set_gauges_locked();
}

void EngineLoop::Impl::set_gauges_locked() {
  stats.running = static_cast<int>(planner.running().size());
  stats.waiting = static_cast<int>(planner.waiting().size());
  stats.blocks_total = blocks.total();
  stats.blocks_free = blocks.free();
  stats.preemptions = planner.preemptions();
  // The tokens of this step so far, so that they are counted before a client hears of them.
  stats.prompt_tokens += prompt_tokens_this_step;
  stats.generation_tokens += sampled_this_step;
  prompt_tokens_this_step = 0;
  sampled_this_step = 0;
}

// Handles the logits rows of one chunk: prompt logprobs, then the next token when the chunk
// reached the end of the sequence.
void EngineLoop::Impl::process_rows(Sequence& s, int start, int n, const float* rows,
                                    bool all_rows, const SampleTask* draw, RequestEvent& ev) {
  const size_t vocab = model.model->config().vocab_size;
  if (all_rows) {
    for (int i = 0; i < n; ++i) {
      const int next = start + i + 1;  // the token this row predicts
      if (next < s.prompt_len) {
        s.prompt_logprobs[next] =
            token_logprob(std::span<const float>(rows + i * vocab, vocab), s.tokens[next],
                          s.req.prompt_logprobs, tokenizer_vocab());
      }
    }
  }
  if (s.pending() > 0) return;  // more of the prompt to prefill
  if (s.wants_prompt_logprobs()) {
    ev.prompt_logprobs = std::move(s.prompt_logprobs);
    s.prompt_logprobs_sent = true;
  }
  if (s.num_generated() >= s.req.max_tokens) {
    finish(s, ev, "length");
    return;
  }
  if (!draw) {  // step() draws for exactly these sequences
    ev.error = "internal error: no token drawn";
    finish(s, ev, "error");
    return;
  }
  next_token(s, *draw, ev);
}

// Appends the token drawn for `s` and sends it on, or finishes the sequence.
void EngineLoop::Impl::next_token(Sequence& s, const SampleTask& draw, RequestEvent& ev) {
  const int tok = draw.token;
  if (s.first_token == Clock::time_point{}) s.first_token = Clock::now();

  GeneratedToken g;
  g.id = tok;
  g.text = token_text(*model.tokenizer, tok);
  g.logprob = draw.logprob;
  s.tokens.push_back(tok);
  ev.tokens.push_back(std::move(g));
  ++sampled_this_step;

  const auto& eos = model.tokenizer->eos_ids();
  const bool may_stop = s.num_generated() >= s.req.min_tokens;
  const bool is_eos =
      may_stop && !s.req.ignore_eos && std::find(eos.begin(), eos.end(), tok) != eos.end();
  const bool is_stop_id =
      may_stop && std::find(s.req.stop_token_ids.begin(), s.req.stop_token_ids.end(), tok) !=
                      s.req.stop_token_ids.end();
  if (is_eos || is_stop_id) {
    if (is_stop_id) {
      ev.stop_token = tok;
      if (s.req.include_stop_str_in_output) ev.text += s.output->push(tok, false);
    }
    finish(s, ev, "stop");
    return;
  }
  ev.text += s.output->push(tok, may_stop);
  if (s.output->stopped()) {
    ev.stop_str = s.output->matched_stop();
    finish(s, ev, "stop");
  } else if (s.num_generated() >= s.req.max_tokens ||
             static_cast<int>(s.tokens.size()) >= opts.max_model_len) {
    finish(s, ev, "length");
  } else {
    ev.prompt_tokens = s.prompt_len;
    ev.completion_tokens = s.num_generated();
    if (std::optional<RequestEvent> out = s.batcher.add(std::move(ev))) s.sink(std::move(*out));
  }
}

}  // namespace xq
