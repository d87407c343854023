#include "core/error.h"
#include "text/jinja/builtins.h"

namespace moeq::text::jinja {

Args::Args(std::string_view fn, const CallArgs& args, std::initializer_list<const char*> names)
    : values_(names.size()), given_(names.size(), false) {
  if (args.positional.size() > names.size())
    fail("{}() takes at most {} argument(s) ({} given)", fn, names.size(), args.positional.size());
  for (size_t i = 0; i < args.positional.size(); ++i) {
    values_[i] = args.positional[i];
    given_[i] = true;
  }
  for (const auto& [key, value] : args.keyword) {
    size_t i = 0;
    for (const char* n : names) {
      if (key == n) break;
      ++i;
    }
    if (i == names.size()) fail("{}() got an unexpected keyword argument '{}'", fn, key);
    if (given_[i]) fail("{}() got multiple values for argument '{}'", fn, key);
    values_[i] = value;
    given_[i] = true;
  }
}

}  // namespace moeq::text::jinja
