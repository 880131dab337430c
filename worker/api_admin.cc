// /v1/objects, /v1/stats, /metrics, /healthz: the registry and the worker table, read-only except
// DELETE /v1/objects/{name}.
#include <unistd.h>

#include <algorithm>
#include <string>

#include "api_util.h"
#include "shm/api.h"
#include "shm/registry.h"

namespace shm {
namespace {

using api::json::array;
using api::json::object;

constexpr size_t kDefaultListLimit = 100;

Status ListObjects(RequestContext& context, HttpResponse* response) {
  SHM_RETURN_IF_ERROR(api::CheckQueryKeys(context, {"prefix", "kind", "limit", "after"}));
  size_t limit = 0;
  SHM_RETURN_IF_ERROR(
      api::QueryCount(context, "limit", kDefaultListLimit, api::kMaxListLimit, &limit));
  ObjectKind kind = ObjectKind::kNone;
  std::string_view kind_name = api::QueryString(context, "kind");
  if (!kind_name.empty()) SHM_RETURN_IF_ERROR(ParseKind(kind_name, &kind));
  std::vector<ObjectInfo> infos;
  SHM_RETURN_IF_ERROR(context.segment->registry().List(api::QueryString(context, "prefix"), kind,
                                                       limit, api::QueryString(context, "after"),
                                                       &infos));
  int64_t now = WallNowMs();
  array objects;
  for (const ObjectInfo& info : infos) {
    object o{{"name", info.name},
             {"kind", KindName(info.kind)},
             {"created_ms", info.created_ms},
             {"expires_at_ms", info.expires_at_ms},
             {"ttl_ms", nullptr},
             {"size_bytes", info.size_bytes}};
    if (info.expires_at_ms != 0) o["ttl_ms"] = std::max<int64_t>(0, info.expires_at_ms - now);
    if (info.length >= 0) o["length"] = info.length;
    if (info.kind == ObjectKind::kCounter) o["value"] = info.counter_value;
    objects.push_back(std::move(o));
  }
  object body{{"objects", std::move(objects)}};
  // A full page may have a successor: pass "next" as ?after= to continue.
  if (limit > 0 && infos.size() == limit) body["next"] = infos.back().name;
  api::SetJson(response, body);
  return Status::OK();
}

Status DeleteObject(RequestContext& context, HttpResponse* response) {
  return api::DeleteNamedObject(context, ObjectKind::kNone, response);
}

object KindCounts(Segment* segment) {
  std::vector<uint32_t> counts = segment->registry().CountByKind();
  object by_kind;
  for (uint32_t k = 1; k < kObjectKindCount && k < counts.size(); ++k) {
    by_kind[KindName(static_cast<ObjectKind>(k))] = counts[k];
  }
  return by_kind;
}

Status Stats(RequestContext& context, HttpResponse* response) {
  SHM_RETURN_IF_ERROR(api::CheckQueryKeys(context, {}));
  Segment* segment = context.segment;
  int64_t now_wall = WallNowMs();
  int64_t now_steady = SteadyNowMs();
  int64_t earliest_start = now_wall;
  array workers;
  for (const WorkerInfo& w : segment->Workers()) {
    earliest_start = std::min(earliest_start, w.started_ms);
    workers.push_back(object{{"index", w.index},
                             {"pid", w.pid},
                             {"restarts", w.restarts},
                             {"requests", w.requests},
                             {"client_errors", w.client_errors},
                             {"server_errors", w.server_errors},
                             {"uptime_seconds", (now_wall - w.started_ms) / 1000},
                             {"heartbeat_age_ms", now_steady - w.heartbeat_ms}});
  }
  Registry& registry = segment->registry();
  object body{{"segment", object{{"name", segment->shm_name()},
                                 {"generation", segment->generation()},
                                 {"size_bytes", segment->size()},
                                 {"free_bytes", segment->free_bytes()},
                                 // Part of free_bytes: blocks the writers' caches keep.
                                 {"cached_bytes", segment->cached_bytes()},
                                 {"poisoned", segment->poisoned()}}},
              {"objects", object{{"live", registry.live()},
                                 {"capacity", registry.capacity()},
                                 {"by_kind", KindCounts(segment)}}},
              {"workers", std::move(workers)},
              // Processes attached in-process (the Python module), live ones only: a dead
              // client's slots are released by the manager within a second.
              {"clients", segment->LiveClients().size()},
              {"worker_pid", getpid()},
              {"uptime_seconds", (now_wall - earliest_start) / 1000}};
  api::SetJson(response, body);
  return Status::OK();
}

void MetricHeader(std::string* out, std::string_view name, std::string_view type,
                  std::string_view help) {
  *out += "# HELP " + std::string(name) + " " + std::string(help) + "\n";
  *out += "# TYPE " + std::string(name) + " " + std::string(type) + "\n";
}

// Prometheus text format. Reads only atomics of the worker table and the registry: no lock.
Status Metrics(RequestContext& context, HttpResponse* response) {
  SHM_RETURN_IF_ERROR(api::CheckQueryKeys(context, {}));
  Segment* segment = context.segment;
  std::vector<WorkerInfo> workers = segment->Workers();
  std::string out;
  auto per_worker = [&](std::string_view name, std::string_view type, std::string_view help,
                        auto field) {
    MetricHeader(&out, name, type, help);
    for (const WorkerInfo& w : workers) {
      out += std::string(name) + "{worker=\"" + std::to_string(w.index) + "\",pid=\"" +
             std::to_string(w.pid) + "\"} " + std::to_string(field(w)) + "\n";
    }
  };
  per_worker("shmstate_http_responses_total", "counter", "HTTP responses sent by the worker.",
             [](const WorkerInfo& w) { return w.requests; });
  per_worker("shmstate_http_client_errors_total", "counter", "4xx responses sent by the worker.",
             [](const WorkerInfo& w) { return w.client_errors; });
  per_worker("shmstate_http_server_errors_total", "counter", "5xx responses sent by the worker.",
             [](const WorkerInfo& w) { return w.server_errors; });
  // One series per slot, without the pid: a restart changes the pid, and a series per pid
  // would start at the new count and never rise, so rate() would never see a restart.
  MetricHeader(&out, "shmstate_worker_restarts_total", "counter",
               "Times the worker slot was respawned.");
  for (const WorkerInfo& w : workers) {
    out += "shmstate_worker_restarts_total{worker=\"" + std::to_string(w.index) + "\"} " +
           std::to_string(w.restarts) + "\n";
  }
  MetricHeader(&out, "shmstate_segment_size_bytes", "gauge", "Size of the shared segment.");
  out += "shmstate_segment_size_bytes " + std::to_string(segment->size()) + "\n";
  MetricHeader(&out, "shmstate_segment_free_bytes", "gauge", "Free bytes in the shared segment.");
  out += "shmstate_segment_free_bytes " + std::to_string(segment->free_bytes()) + "\n";
  MetricHeader(&out, "shmstate_segment_cached_bytes", "gauge",
               "Part of the free bytes held in the writers' per-thread blob caches.");
  out += "shmstate_segment_cached_bytes " + std::to_string(segment->cached_bytes()) + "\n";
  MetricHeader(&out, "shmstate_attached_clients", "gauge",
               "Live processes attached to the segment besides the workers (e.g. Python apps).");
  out += "shmstate_attached_clients " + std::to_string(segment->LiveClients().size()) + "\n";
  MetricHeader(&out, "shmstate_objects", "gauge", "Live objects by kind.");
  std::vector<uint32_t> counts = segment->registry().CountByKind();
  for (uint32_t k = 1; k < kObjectKindCount && k < counts.size(); ++k) {
    out += "shmstate_objects{kind=\"" + std::string(KindName(static_cast<ObjectKind>(k))) + "\"} " +
           std::to_string(counts[k]) + "\n";
  }
  response->set(http::field::content_type, "text/plain; version=0.0.4");
  response->body() = std::move(out);
  return Status::OK();
}

// Liveness: 503 while the segment is poisoned (the manager is rebuilding it).
Status Health(RequestContext& context, HttpResponse* response) {
  if (context.segment->poisoned()) return Status::Poisoned("segment is being rebuilt");
  api::SetJson(response, object{{"status", "ok"}, {"pid", getpid()}});
  return Status::OK();
}

}  // namespace

void RegisterAdminRoutes(Router* router) {
  router->Add(http::verb::get, "/v1/objects", ListObjects);
  router->Add(http::verb::delete_, "/v1/objects/{name}", DeleteObject);
  router->Add(http::verb::get, "/v1/stats", Stats);
  router->Add(http::verb::get, "/metrics", Metrics);
  router->Add(http::verb::get, "/healthz", Health);
}

}  // namespace shm
