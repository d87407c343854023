// Helpers shared by the streaming parsers: how much of a buffer's tail could still become a tag,
// so that it is held back instead of being emitted as text.
#pragma once
#include <algorithm>
#include <initializer_list>
#include <string_view>

namespace moeq::text::parsers {

// Length of the longest suffix of `buf` that is a proper prefix of `tag` (0 if none).
inline size_t partial_tag_suffix(std::string_view buf, std::string_view tag) {
  for (size_t n = std::min(buf.size(), tag.size() - 1); n > 0; --n)
    if (buf.substr(buf.size() - n) == tag.substr(0, n)) return n;
  return 0;
}

inline size_t partial_tag_suffix(std::string_view buf, std::initializer_list<std::string_view> tags) {
  size_t n = 0;
  for (auto t : tags) n = std::max(n, partial_tag_suffix(buf, t));
  return n;
}

// The earliest occurrence of any of `tags` in `buf` at or after `from`: {position, tag index}.
struct TagHit {
  size_t pos = std::string_view::npos;
  size_t which = 0;
  bool found() const { return pos != std::string_view::npos; }
};

inline TagHit find_first_tag(std::string_view buf, std::initializer_list<std::string_view> tags, size_t from = 0) {
  TagHit hit;
  size_t i = 0;
  for (auto t : tags) {
    const size_t p = buf.find(t, from);
    if (p < hit.pos) hit = {p, i};
    ++i;
  }
  return hit;
}

}  // namespace moeq::text::parsers
