#include "text/utf8.h"

namespace moeq::text::utf8 {
namespace {

// Allowed range of the second byte for lead byte b (Unicode Table 3-7); the rest are 80..BF.
struct LeadInfo {
  uint8_t len;  // 0: not a lead byte
  uint8_t lo, hi;
};

constexpr LeadInfo lead_info(uint8_t b) {
  if (b < 0x80) return {1, 0, 0};
  if (b < 0xC2) return {0, 0, 0};
  if (b < 0xE0) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};  // no surrogates
  if (b < 0xF0) return {3, 0x80, 0xBF};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b < 0xF4) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};  // nothing above U+10FFFF
  return {0, 0, 0};
}

// How many leading bytes of s agree with a well-formed sequence (up to its full length).
size_t matched_bytes(std::string_view s, LeadInfo li) {
  size_t k = 1;
  while (k < li.len && k < s.size()) {
    const uint8_t c = uint8_t(s[k]);
    const bool ok = k == 1 ? (c >= li.lo && c <= li.hi) : (c >= 0x80 && c <= 0xBF);
    if (!ok) break;
    ++k;
  }
  return k;
}

}  // namespace

size_t decode(std::string_view s, char32_t* cp) {
  if (s.empty()) return 0;
  const uint8_t b = uint8_t(s[0]);
  const LeadInfo li = lead_info(b);
  if (li.len == 0) return 0;
  if (li.len == 1) {
    *cp = b;
    return 1;
  }
  if (matched_bytes(s, li) != li.len) return 0;
  char32_t c = b & (0x7F >> li.len);
  for (size_t k = 1; k < li.len; ++k) c = (c << 6) | (uint8_t(s[k]) & 0x3F);
  *cp = c;
  return li.len;
}

size_t maximal_subpart(std::string_view s) {
  if (s.empty()) return 0;
  const LeadInfo li = lead_info(uint8_t(s[0]));
  if (li.len <= 1) return 1;
  return matched_bytes(s, li);  // < li.len here when called on an ill-formed position
}

void append(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += char(c);
  } else if (c < 0x800) {
    out += char(0xC0 | (c >> 6));
    out += char(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += char(0xE0 | (c >> 12));
    out += char(0x80 | ((c >> 6) & 0x3F));
    out += char(0x80 | (c & 0x3F));
  } else {
    out += char(0xF0 | (c >> 18));
    out += char(0x80 | ((c >> 12) & 0x3F));
    out += char(0x80 | ((c >> 6) & 0x3F));
    out += char(0x80 | (c & 0x3F));
  }
}

void append_lossy(std::string& out, std::string_view bytes) {
  size_t i = 0, run = 0;  // [run, i) is valid and not yet copied
  while (i < bytes.size()) {
    if (uint8_t(bytes[i]) < 0x80) {
      ++i;
      continue;
    }
    char32_t cp;
    const size_t n = decode(bytes.substr(i), &cp);
    if (n) {
      i += n;
      continue;
    }
    out.append(bytes.data() + run, i - run);
    append(out, kReplacement);
    i += maximal_subpart(bytes.substr(i));
    run = i;
  }
  out.append(bytes.data() + run, bytes.size() - run);
}

size_t stable_prefix(std::string_view bytes) {
  // A sequence is at most 4 bytes, so only a lead byte among the last 3 can start an incomplete one.
  const size_t n = bytes.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    const size_t pos = n - back;
    const uint8_t b = uint8_t(bytes[pos]);
    if (b >= 0x80 && b <= 0xBF) continue;  // continuation byte: keep looking for its lead
    const LeadInfo li = lead_info(b);
    if (li.len > back && matched_bytes(bytes.substr(pos), li) == back) return pos;
    return n;
  }
  return n;
}

bool is_valid(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    if (uint8_t(s[i]) < 0x80) {
      ++i;
      continue;
    }
    char32_t cp;
    const size_t n = decode(s.substr(i), &cp);
    if (!n) return false;
    i += n;
  }
  return true;
}

}  // namespace moeq::text::utf8
