#include "engine/cuda/step_layout.h"

#include <algorithm>
#include <cstdint>

namespace xq::cuda {
namespace {

int pages_for(int tokens) { return (tokens + kPageRows - 1) / kPageRows; }

// The ring page that holds position p of a sliding layer.
int ring_page(const StepSeq& s, int p) { return (*s.ring)[(p / kPageRows) % s.ring_pages]; }

void push_seq(std::vector<int>& v, int q_row, int n, int start, int table) {
  v.insert(v.end(), {q_row, n, start, table});
}

void add_group(StepLayout& L, const std::vector<StepSeq>& seqs, int begin, int end, int row_begin,
               int num_heads) {
  std::vector<int>& v = L.ints;
  StepLayout::Group g;
  g.seq_begin = begin;
  g.seq_end = end;
  g.row_begin = row_begin;
  for (int i = begin; i < end; ++i) {
    g.rows += seqs[i].n;
    g.ws_rows += pages_for(seqs[i].start + seqs[i].n) * kPageRows;
  }
  // Attention over the workspace: sequence i's table lists its workspace pages in order.
  std::vector<int> tables, seq_ints, row_seq;
  int ws_page = 0, q_row = 0;
  for (int i = begin; i < end; ++i) {
    const StepSeq& s = seqs[i];
    const int np = pages_for(s.start + s.n);
    seq_ints.insert(seq_ints.end(), {q_row, s.n, s.start, static_cast<int>(tables.size())});
    for (int p = 0; p < np; ++p) tables.push_back(ws_page + p);
    for (int j = 0; j < s.n; ++j) row_seq.push_back(i - begin);
    ws_page += np;
    q_row += s.n;
  }
  g.seqs = v.size();
  v.insert(v.end(), seq_ints.begin(), seq_ints.end());
  g.tables = v.size();
  v.insert(v.end(), tables.begin(), tables.end());
  g.row_seq = v.size();
  v.insert(v.end(), row_seq.begin(), row_seq.end());
  // Per workspace row: its position (-1 for padding), and the cache row a past position is
  // dequantized from (page -1: not from the cache).
  g.ws_pos = v.size();
  v.resize(v.size() + 4 * static_cast<size_t>(g.ws_rows), -1);
  g.src_page = g.ws_pos + g.ws_rows;
  g.src_slot = g.src_page + g.ws_rows;
  g.cache_page = g.src_slot + g.ws_rows;
  if (L.ring) {
    g.ring_src_page = v.size();
    v.resize(v.size() + static_cast<size_t>(g.ws_rows), -1);
  }
  g.new_page = v.size();
  v.resize(v.size() + 2 * static_cast<size_t>(g.rows), -1);
  g.new_slot = g.new_page + g.rows;
  int ws_row = 0, new_row = 0;
  for (int i = begin; i < end; ++i) {
    const StepSeq& s = seqs[i];
    for (int p = 0; p < s.start + s.n; ++p) {
      const size_t r = static_cast<size_t>(ws_row + p);
      v[g.ws_pos + r] = p;
      v[g.src_slot + r] = p % kPageRows;
      v[g.cache_page + r] = (*s.pages)[p / kPageRows];
      if (p < s.start) {
        v[g.src_page + r] = (*s.pages)[p / kPageRows];
        // The oldest row a query of the step sees is start - window + 1; the ring may have
        // overwritten the ones before.
        if (L.ring && p > s.start - s.window) v[g.ring_src_page + r] = ring_page(s, p);
      } else {
        v[g.new_page + new_row] = (ws_row + p) / kPageRows;
        v[g.new_slot + new_row] = p % kPageRows;
        ++new_row;
      }
    }
    ws_row += pages_for(s.start + s.n) * kPageRows;
  }
  // Folded values: where each sequence's X rows start and its weights go.
  g.seq_x_row = v.size();
  for (int i = begin, row = 0; i < end; ++i) {
    v.push_back(row);
    row += pages_for(seqs[i].start + seqs[i].n) * kPageRows;
  }
  g.seq_probs = v.size();
  size_t total = 0;
  for (int i = begin; i < end; ++i) {
    g.max_n = std::max(g.max_n, seqs[i].n);
    v.push_back(static_cast<int>(std::min<size_t>(total, INT32_MAX)));
    total += static_cast<size_t>(seqs[i].n) * num_heads * (seqs[i].start + seqs[i].n);
  }
  g.probs_floats = total < INT32_MAX ? total : SIZE_MAX;
  L.max_ws_rows = std::max(L.max_ws_rows, g.ws_rows);
  L.groups.push_back(g);
}

}  // namespace

StepLayout build_step_layout(const std::vector<StepSeq>& seqs, int ws_rows, int num_heads) {
  StepLayout L;
  std::vector<int>& v = L.ints;
  for (const StepSeq& s : seqs) L.rows += s.n;
  L.tokens = v.size();
  for (const StepSeq& s : seqs) v.insert(v.end(), s.tokens, s.tokens + s.n);
  L.pos = v.size();
  for (const StepSeq& s : seqs)
    for (int j = 0; j < s.n; ++j) v.push_back(s.start + j);
  L.row_seq = v.size();
  for (size_t i = 0; i < seqs.size(); ++i) v.insert(v.end(), seqs[i].n, static_cast<int>(i));
  L.new_page = v.size();
  for (const StepSeq& s : seqs)
    for (int j = 0; j < s.n; ++j) v.push_back((*s.pages)[(s.start + j) / kPageRows]);
  L.new_slot = v.size();
  for (const StepSeq& s : seqs)
    for (int j = 0; j < s.n; ++j) v.push_back((s.start + j) % kPageRows);
  L.ring = !seqs.empty() && seqs[0].ring != nullptr;
  if (L.ring) {
    L.ring_new_page = v.size();
    for (const StepSeq& s : seqs)
      for (int j = 0; j < s.n; ++j) v.push_back(ring_page(s, s.start + j));
  }
  // Attention over the cache's own pages (fp16 K/V).
  L.seqs = v.size();
  std::vector<int> tables;
  int q_row = 0;
  for (const StepSeq& s : seqs) {
    push_seq(v, q_row, s.n, s.start, static_cast<int>(tables.size()));
    const int np = pages_for(s.start + s.n);
    tables.insert(tables.end(), s.pages->begin(), s.pages->begin() + np);
    q_row += s.n;
  }
  if (L.ring) {
    L.ring_seqs = v.size();
    q_row = 0;
    for (const StepSeq& s : seqs) {
      // Only the pages from the oldest position a query of the step sees: the table offset is
      // shifted back by those left out (it stays inside the array, past the global tables).
      const int first = std::max(0, s.start - s.window + 1) / kPageRows;
      push_seq(v, q_row, s.n, s.start, static_cast<int>(tables.size()) - first);
      for (int p = first; p < pages_for(s.start + s.n); ++p)
        tables.push_back(ring_page(s, p * kPageRows));
      q_row += s.n;
    }
  }
  L.tables = v.size();
  v.insert(v.end(), tables.begin(), tables.end());
  if (ws_rows <= 0) return L;
  // Consecutive groups within the workspace; a sequence too big alone gets its own group.
  int begin = 0, used = 0, row_begin = 0, rows = 0;
  for (int i = 0; i < static_cast<int>(seqs.size()); ++i) {
    const int need = pages_for(seqs[i].start + seqs[i].n) * kPageRows;
    if (i > begin && used + need > ws_rows) {
      add_group(L, seqs, begin, i, row_begin, num_heads);
      begin = i;
      used = 0;
      row_begin += rows;
      rows = 0;
    }
    used += need;
    rows += seqs[i].n;
  }
  if (begin < static_cast<int>(seqs.size()))
    add_group(L, seqs, begin, seqs.size(), row_begin, num_heads);
  return L;
}

}  // namespace xq::cuda
