// hit_counter: an application built on shmstate's ServerMain.
//
// It is the stock server (same flags, manager, forked workers, built-in /v1 API) plus routes of
// its own:
//  * GET /hits answers {"hits": n} with the next number of a counter kept in the shared segment.
//    However many workers answer, concurrent clients get 1, 2, 3... with no duplicate and no gap.
//  * POST /session-counter/increment, /decrement, /reset change a count kept in the calling
//    client's server-side session (cookie shmsid), whichever worker answers: the per-client state
//    that a global variable in a prefork server cannot hold.
//
//   ./hit_counter serve --workers 4 --listen 127.0.0.1:0
//   curl http://127.0.0.1:PORT/hits
//   curl -c jar -b jar -XPOST http://127.0.0.1:PORT/session-counter/increment
#include <boost/json/object.hpp>
#include <string>

#include "shm/api.h"
#include "shm/counter.h"
#include "shm/router.h"
#include "shm/server_main.h"

namespace {

constexpr char kCounterName[] = "hit_counter.hits";
constexpr char kCountField[] = "count";

void AnswerJson(shm::HttpResponse* response, const std::string& key, int64_t value) {
  response->result(shm::http::status::ok);
  response->set(shm::http::field::content_type, "application/json");
  response->body() = "{\"" + key + "\":" + std::to_string(value) + "}\n";
}

// Runs in any worker, on any of its threads: the Counter is an atomic in the shared segment.
shm::Status NextHit(shm::RequestContext& context, shm::HttpResponse* response) {
  shm::Counter hits;
  shm::Counter::Options create_at_zero{shm::OpenMode::kCreateIfMissing, 0, 0};
  SHM_RETURN_IF_ERROR(shm::Counter::Open(context.segment, kCounterName, create_at_zero, &hits));
  int64_t number = 0;
  SHM_RETURN_IF_ERROR(hits.Add(1, &number));
  AnswerJson(response, "hits", number);
  return shm::Status::OK();
}

// A route that adds `by` to the caller's session count, atomically.
shm::Handler SessionAdd(int64_t by) {
  return [by](shm::RequestContext& context, shm::HttpResponse* response) {
    int64_t count = 0;
    SHM_RETURN_IF_ERROR(shm::WithClientSession(context, response,
                                               [&](shm::Sessions& sessions, const std::string& id) {
                                                 return sessions.Incr(id, kCountField, by, &count);
                                               }));
    AnswerJson(response, kCountField, count);
    return shm::Status::OK();
  };
}

shm::Status SessionReset(shm::RequestContext& context, shm::HttpResponse* response) {
  SHM_RETURN_IF_ERROR(shm::WithClientSession(context, response,
                                             [&](shm::Sessions& sessions, const std::string& id) {
                                               boost::json::object session;
                                               shm::Status s = sessions.Get(id, &session);
                                               if (!s.ok() && !s.IsNotFound()) return s;
                                               session[kCountField] = 0;
                                               return sessions.Put(id, session);
                                             }));
  AnswerJson(response, kCountField, 0);
  return shm::Status::OK();
}

}  // namespace

int main(int argc, char** argv) {
  return shm::ServerMain(argc, argv, [](shm::Router* router) {
    router->Add(shm::http::verb::get, "/hits", NextHit);
    router->Add(shm::http::verb::post, "/session-counter/increment", SessionAdd(1));
    router->Add(shm::http::verb::post, "/session-counter/decrement", SessionAdd(-1));
    router->Add(shm::http::verb::post, "/session-counter/reset", SessionReset);
  });
}
