#include "eval/model_size.h"

#include <unordered_map>

#include "core/error.h"
#include "io/checkpoint.h"
#include "model/config.h"
#include "model/weights.h"

namespace moeq {

ModelSize model_size(const std::filesystem::path& dir) {
  const ModelConfig c = ModelConfig::load(dir);
  const io::Checkpoint ck = io::Checkpoint::open(dir);
  std::unordered_map<std::string, size_t> module_bytes;  // module name -> bytes of its tensors
  ModelSize s;
  for (const LinearSpec& m : linear_modules(c)) {
    module_bytes.emplace(m.name, 0);
    s.linear_params += m.rows * m.cols;
  }
  for (const std::string& name : ck.names()) {
    const size_t nbytes = ck.info(name).nbytes;
    s.total_bytes += nbytes;
    // A tensor belongs to module M when its name is "M.<part>"; try every dot from the right so
    // that part names with dots would still be found (none today).
    for (size_t dot = name.rfind('.'); dot != std::string::npos && dot > 0; dot = name.rfind('.', dot - 1)) {
      const auto it = module_bytes.find(name.substr(0, dot));
      if (it != module_bytes.end()) {
        it->second += nbytes;
        s.linear_bytes += nbytes;
        break;
      }
    }
  }
  for (const LinearSpec& m : linear_modules(c))
    if (module_bytes.at(m.name) == 0) fail("{}: no tensor for the linear module '{}'", dir.string(), m.name);
  s.bpw = s.linear_params > 0 ? 8.0 * double(s.linear_bytes) / double(s.linear_params) : 0.0;
  return s;
}

}  // namespace moeq
