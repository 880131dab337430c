// /v1/lists: deques of byte items; pop can wait for a push, parked on the worker's event loop.
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "api_util.h"
#include "shm/api.h"
#include "shm/list.h"
#include "shm/utf8.h"

namespace shm {
namespace {

using api::json::array;
using api::json::object;

template <typename Op>
Status WithList(RequestContext& context, bool create, Op&& op) {
  OpenMode mode = create ? OpenMode::kCreateIfMissing : OpenMode::kOpenExisting;
  auto open = [&](Segment* segment, std::string_view name, List* list) {
    return List::Open(segment, name, mode, ListOptions(), list);
  };
  return api::WithObject<List>(context, open, std::forward<Op>(op));
}

Status ParseEnd(const RequestContext& context, std::string_view fallback, List::End* end) {
  return api::ParseListEnd(api::QueryString(context, "end", fallback), end);
}

// The body is one item; pushes at the right by default (a queue with the default pop).
Status Push(RequestContext& context, HttpResponse* response) {
  SHM_RETURN_IF_ERROR(api::CheckQueryKeys(context, {"end"}));
  List::End end = List::End::kRight;
  SHM_RETURN_IF_ERROR(ParseEnd(context, "right", &end));
  uint64_t length = 0;
  const std::string& item = context.request.body();
  SHM_RETURN_IF_ERROR(
      WithList(context, true, [&](List& list) { return list.Push(end, item, &length); }));
  api::SetJson(response, object{{"length", length}});
  return Status::OK();
}

void SetItem(HttpResponse* response, std::string&& item) {
  response->set(http::field::content_type, "application/octet-stream");
  response->body() = std::move(item);
}

// Parked: a waiting pop takes its place in the list's line as it arrives in the worker's queue,
// so it is served in arrival order among every process's waiters (shm/list.h); within this
// worker, the queue keeps it in order with the pops without a place (Redis BLPOP's) too.
Status ParkPop(RequestContext& context, List::End end, int64_t wait_ms) {
  const std::string& name = context.params[0];
  SHM_RETURN_IF_ERROR(api::CheckName(name));
  Segment* segment = context.segment;
  // A consumer may start before its producer: a waiting pop creates the list, as Redis BLPOP
  // waits on a missing key; a non-waiting pop of a missing list is just empty.
  const OpenMode mode = wait_ms > 0 ? OpenMode::kCreateIfMissing : OpenMode::kOpenExisting;
  auto open = [mode](Segment* seg, std::string_view list_name, List* list) {
    return List::Open(seg, list_name, mode, ListOptions(), list);
  };
  ObjectRef object;  // Watched for pushes while the pop waits.
  if (wait_ms > 0) {
    api::WithNamedObject<List>(segment, name, open, [&](List& list) {
      object = list.ref();
      return Status::OK();
    }).ok();  // An error is the attempt's to answer.
  }
  // The place is left when the wait ends: answered, given up or cancelled (its lambdas go).
  auto place = wait_ms > 0 ? std::make_shared<ListPlace>(std::chrono::steady_clock::now() +
                                                         std::chrono::milliseconds(wait_ms))
                           : nullptr;
  std::function<void()> arrive;
  if (place != nullptr) {
    arrive = [segment, name, open, place] {
      api::WithNamedObject<List>(segment, name, open, [&](List& list) {
        return list.Join(place.get());
      }).ok();  // Not in line (the list is gone): the attempt answers.
    };
  }
  auto attempt = [segment, name, end, mode, open, place](HttpResponse* response, Status* status) {
    std::string item;
    bool got = false;
    Status s = api::WithNamedObject<List>(segment, name, open, [&](List& list) {
      return list.Pop(end, std::chrono::milliseconds(0), &item, &got, place.get());
    });
    if (s.IsNotFound() && mode == OpenMode::kOpenExisting) return false;
    if (!s.ok()) {
      *status = s;
      return true;
    }
    if (got) SetItem(response, std::move(item));
    return got;
  };
  auto give_up = [](HttpResponse* response, bool /*stopping*/) {
    response->result(http::status::no_content);  // Empty after the wait, or cut by a stop.
    return Status::OK();
  };
  api::ParkWait(context, "list:" + name, object, wait_ms, std::move(attempt), std::move(give_up),
                std::move(arrive));
  return Status::OK();
}

// 200 with the item as the body, or 204 when the list stayed empty for `wait` seconds.
Status Pop(RequestContext& context, HttpResponse* response) {
  SHM_RETURN_IF_ERROR(api::CheckQueryKeys(context, {"end", "wait"}));
  List::End end = List::End::kLeft;
  SHM_RETURN_IF_ERROR(ParseEnd(context, "left", &end));
  int64_t wait_ms = 0;
  SHM_RETURN_IF_ERROR(api::QuerySecondsMs(context, "wait", 0, api::kMaxWaitMs, &wait_ms));
  if (api::CanPark(context, wait_ms)) return ParkPop(context, end, wait_ms);
  std::string item;
  bool got = false;
  SHM_RETURN_IF_ERROR(
      api::WaitInSlices(context, wait_ms, [&](std::chrono::milliseconds slice, bool* retry) {
        Status s = WithList(context, wait_ms > 0,
                            [&](List& list) { return list.Pop(end, slice, &item, &got); });
        if (s.IsNotFound() && wait_ms == 0) return Status::OK();
        *retry = s.ok() && !got;
        return s;
      }));
  if (!got) {
    response->result(http::status::no_content);
    return Status::OK();
  }
  SetItem(response, std::move(item));
  return Status::OK();
}

Status Length(RequestContext& context, HttpResponse* response) {
  SHM_RETURN_IF_ERROR(api::CheckQueryKeys(context, {}));
  uint64_t length = 0;
  SHM_RETURN_IF_ERROR(WithList(context, false, [&](List& list) { return list.Length(&length); }));
  api::SetJson(response, object{{"length", length}});
  return Status::OK();
}

// start..stop inclusive as LRANGE; utf-8 items as JSON strings, or every item base64.
Status Items(RequestContext& context, HttpResponse* response) {
  SHM_RETURN_IF_ERROR(api::CheckQueryKeys(context, {"start", "stop", "encoding"}));
  int64_t start = 0;
  int64_t stop = -1;
  SHM_RETURN_IF_ERROR(api::QueryInt64(context, "start", 0, &start));
  SHM_RETURN_IF_ERROR(api::QueryInt64(context, "stop", -1, &stop));
  std::string_view encoding = api::QueryString(context, "encoding", "utf-8");
  if (encoding != "utf-8" && encoding != "base64") {
    return Status::InvalidArgument("encoding must be utf-8 or base64");
  }
  std::vector<std::string> items;
  bool truncated = false;
  SHM_RETURN_IF_ERROR(WithList(
      context, false, [&](List& list) { return list.Range(start, stop, &items, &truncated); }));
  array out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (encoding == "base64") {
      out.push_back(api::json::string(api::Base64Encode(items[i])));
    } else if (IsUtf8(items[i])) {
      out.push_back(api::json::string(items[i]));
    } else {
      return Status::InvalidArgument("item " + std::to_string(i) +
                                     " is not UTF-8; ask for encoding=base64");
    }
  }
  api::SetJson(response,
               object{{"items", std::move(out)}, {"encoding", encoding}, {"truncated", truncated}});
  return Status::OK();
}

}  // namespace

void RegisterListRoutes(Router* router) {
  router->Add(http::verb::post, "/v1/lists/{name}/push", Push);
  router->Add(http::verb::post, "/v1/lists/{name}/pop", Pop);
  router->Add(http::verb::get, "/v1/lists/{name}", Length);
  router->Add(http::verb::get, "/v1/lists/{name}/items", Items);
}

}  // namespace shm
