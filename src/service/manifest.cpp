#include "service/manifest.hpp"

namespace otter::service {

nlohmann::ordered_json update_claims(const std::string& device, const std::string& from_version,
                                     const std::string& nonce, std::int64_t iat,
                                     const rollout::decision& d, const manifest_settings& s,
                                     const std::optional<std::string>& url) {
  nlohmann::ordered_json c;
  c["sub"] = device;
  c["update"] = true;
  c["model"] = d.rel->model;
  c["version"] = d.rel->version_text;
  c["from"] = from_version;
  c["size"] = d.rel->size;
  c["sha256"] = d.rel->sha256;
  c["nonce"] = nonce;
  c["iat"] = iat;
  c["exp"] = iat + s.ttl.count();
  c["rollout"] = d.chosen->id_text;
  c["chunk"] = {
      {"file", chunk_file_id(d.rel->sha256)}, {"max", s.chunk_max}, {"window", s.chunk_window}};
  if (url) c["url"] = *url;
  if (d.rel->image_sig) c["image_sig"] = *d.rel->image_sig;
  if (d.downgrade) c["downgrade"] = true;
  return c;
}

nlohmann::ordered_json no_update_claims(const std::string& device, const std::string& nonce,
                                        std::int64_t iat, const manifest_settings& s) {
  nlohmann::ordered_json c;
  c["sub"] = device;
  c["update"] = false;
  c["nonce"] = nonce;
  c["iat"] = iat;
  c["exp"] = iat + s.ttl.count();
  c["retry_s"] = s.retry.count();
  return c;
}

}  // namespace otter::service
