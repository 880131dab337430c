// hit_counter: an application built on shmstate's ServerMain.
//
// It is the stock server (same flags, manager, forked workers, built-in /v1 API) plus one route
// of its own, GET /hits, which answers {"hits": n} with the next number of a counter kept in
// the shared segment. However many workers answer, concurrent clients get 1, 2, 3... with no
// duplicate and no gap:
//
//   ./hit_counter serve --workers 4 --listen 127.0.0.1:0
//   curl http://127.0.0.1:PORT/hits
#include <string>

#include "shm/counter.h"
#include "shm/router.h"
#include "shm/server_main.h"

namespace {

constexpr char kCounterName[] = "hit_counter.hits";

// Runs in any worker, on any of its threads: the Counter is an atomic in the shared segment.
shm::Status NextHit(shm::RequestContext& context, shm::HttpResponse* response) {
  shm::Counter hits;
  shm::Counter::Options create_at_zero{shm::OpenMode::kCreateIfMissing, 0, 0};
  SHM_RETURN_IF_ERROR(shm::Counter::Open(context.segment, kCounterName, create_at_zero, &hits));
  int64_t number = 0;
  SHM_RETURN_IF_ERROR(hits.Add(1, &number));
  response->result(shm::http::status::ok);
  response->set(shm::http::field::content_type, "application/json");
  response->body() = "{\"hits\":" + std::to_string(number) + "}\n";
  return shm::Status::OK();
}

}  // namespace

int main(int argc, char** argv) {
  return shm::ServerMain(
      argc, argv, [](shm::Router* router) { router->Add(shm::http::verb::get, "/hits", NextHit); });
}
