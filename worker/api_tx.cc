// POST /v1/tx: a batch of dict, counter and list operations applied all or nothing, as one
// shm::Transaction (docs/http-api.md, "Transactions").
//
// Each operation is decoded with the rules of its own endpoint (names, keys, modes, ends, TTLs,
// integers), staged in the transaction in order, and the transaction is committed once every
// operation staged. A failed precondition (`if_version`, `if_absent`) or any refused operation
// answers its error with the operation's position ("index") and applies nothing. A commit that
// conflicts with a concurrent writer stages the batch again (its preconditions are checked
// again then), a bounded number of times.
#include <deque>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "api_util.h"
#include "shm/api.h"
#include "shm/counter.h"
#include "shm/dict.h"
#include "shm/list.h"
#include "shm/transaction.h"
#include "shm/utf8.h"

namespace shm {
namespace {

using api::json::array;
using api::json::object;
using api::json::value;

// Operations in one batch; every one also counts against Transaction::kMaxOps.
constexpr size_t kMaxBatchOps = 1000;
// Commits of one batch that may conflict with concurrent writers before it answers 409.
constexpr int kCommitAttempts = 32;

enum class Kind { kDict, kCounter, kList };

// One decoded operation: everything checked that can be checked before touching state.
struct TxOp {
  std::string op;  // get, set, delete, incr, push, pop, length.
  Kind kind = Kind::kDict;
  std::string name;
  std::string key;    // Dicts.
  std::string bytes;  // A dict value or a list item.
  bool base64 = false;
  int64_t number = 0;  // A counter's value (set), or `by` (incr).
  int64_t init = 0;
  int64_t ttl_ms = 0;
  SetMode mode = SetMode::kSet;
  std::string content_type;
  List::End end = List::End::kRight;
  bool has_precondition = false;
  std::optional<uint64_t> if_version;  // With has_precondition: nullopt = if_absent.
};

// The members each operation takes, besides "op" and its object member.
const std::vector<std::string_view>* AllowedMembers(Kind kind, std::string_view op) {
  static const std::vector<std::string_view> dict_get{"key", "encoding", "if_version", "if_absent"};
  static const std::vector<std::string_view> dict_set{
      "key", "value", "encoding", "ttl", "mode", "content_type", "if_version", "if_absent"};
  static const std::vector<std::string_view> dict_delete{"key", "if_version", "if_absent"};
  static const std::vector<std::string_view> dict_incr{"key", "by",         "init",
                                                       "ttl", "if_version", "if_absent"};
  static const std::vector<std::string_view> counter_get{};
  static const std::vector<std::string_view> counter_set{"value", "ttl"};
  static const std::vector<std::string_view> counter_incr{"by", "init", "ttl"};
  static const std::vector<std::string_view> list_push{"value", "encoding", "end"};
  static const std::vector<std::string_view> list_pop{"end", "encoding"};
  static const std::vector<std::string_view> list_length{};
  switch (kind) {
    case Kind::kDict:
      if (op == "get") return &dict_get;
      if (op == "set") return &dict_set;
      if (op == "delete") return &dict_delete;
      if (op == "incr") return &dict_incr;
      break;
    case Kind::kCounter:
      if (op == "get") return &counter_get;
      if (op == "set") return &counter_set;
      if (op == "incr") return &counter_incr;
      break;
    case Kind::kList:
      if (op == "push") return &list_push;
      if (op == "pop") return &list_pop;
      if (op == "length") return &list_length;
      break;
  }
  return nullptr;
}

Status JsonString(const object& o, std::string_view key, bool required, std::string* out) {
  const value* member = o.if_contains(key);
  if (member == nullptr) {
    if (required) return Status::InvalidArgument("missing member '" + std::string(key) + "'");
    return Status::OK();
  }
  if (!member->is_string())
    return Status::InvalidArgument("'" + std::string(key) + "' must be a string");
  *out = std::string(member->as_string());
  return Status::OK();
}

Status JsonOptionalInt64(const object& o, std::string_view key, int64_t* out) {
  return o.contains(key) ? api::JsonInt64(o, key, out) : Status::OK();
}

// "value" as bytes: the string's UTF-8, or its base64 decoding with "encoding": "base64".
Status DecodeBytes(const object& o, TxOp* op) {
  SHM_RETURN_IF_ERROR(JsonString(o, "value", true, &op->bytes));
  if (!op->base64) return Status::OK();
  std::string text = std::move(op->bytes);
  return api::Base64Decode(text, &op->bytes);
}

Status DecodePrecondition(const object& o, TxOp* op) {
  const value* version = o.if_contains("if_version");
  const value* absent = o.if_contains("if_absent");
  if (version != nullptr && absent != nullptr) {
    return Status::InvalidArgument("give if_version or if_absent, not both");
  }
  if (version != nullptr) {
    if (!version->is_int64() && !version->is_uint64()) {
      return Status::InvalidArgument("if_version must be a version (an integer >= 0)");
    }
    if (version->is_int64() && version->as_int64() < 0) {
      return Status::InvalidArgument("if_version must be a version (an integer >= 0)");
    }
    op->has_precondition = true;
    op->if_version =
        version->is_uint64() ? version->as_uint64() : static_cast<uint64_t>(version->as_int64());
  }
  if (absent != nullptr) {
    if (!absent->is_bool() || !absent->as_bool()) {
      return Status::InvalidArgument("if_absent must be true (or left out)");
    }
    op->has_precondition = true;
  }
  return Status::OK();
}

Status DecodeOp(const value& v, TxOp* op) {
  if (!v.is_object()) return Status::InvalidArgument("an operation must be a JSON object");
  const object& o = v.as_object();
  SHM_RETURN_IF_ERROR(JsonString(o, "op", true, &op->op));
  int targets = 0;
  for (auto [member, kind] : {std::pair{"dict", Kind::kDict}, std::pair{"counter", Kind::kCounter},
                              std::pair{"list", Kind::kList}}) {
    if (!o.contains(member)) continue;
    ++targets;
    op->kind = kind;
    SHM_RETURN_IF_ERROR(JsonString(o, member, true, &op->name));
  }
  if (targets != 1) {
    return Status::InvalidArgument(
        "an operation names one object: \"dict\", \"counter\" or \"list\"");
  }
  SHM_RETURN_IF_ERROR(api::CheckName(op->name));
  const std::vector<std::string_view>* allowed = AllowedMembers(op->kind, op->op);
  if (allowed == nullptr) {
    return Status::InvalidArgument(
        "unknown op '" + op->op.substr(0, 64) +
        "' (dicts: get, set, delete, incr; counters: get, set, incr; lists: push, pop, length)");
  }
  for (const auto& member : o) {
    std::string_view key = member.key();
    if (key == "op" || key == "dict" || key == "counter" || key == "list") continue;
    if (std::find(allowed->begin(), allowed->end(), key) == allowed->end()) {
      return Status::InvalidArgument("unknown member '" + std::string(key.substr(0, 64)) +
                                     "' for " + op->op);
    }
  }
  std::string text;
  SHM_RETURN_IF_ERROR(JsonString(o, "encoding", false, &text));
  if (!text.empty() && text != "utf-8" && text != "base64") {
    return Status::InvalidArgument("encoding must be utf-8 or base64");
  }
  op->base64 = text == "base64";
  SHM_RETURN_IF_ERROR(DecodePrecondition(o, op));
  if (op->kind == Kind::kDict) {
    SHM_RETURN_IF_ERROR(JsonString(o, "key", true, &op->key));
    SHM_RETURN_IF_ERROR(api::CheckDictKey(op->key));
  }
  int64_t max_ttl_ms = op->kind == Kind::kDict ? Dict::kMaxTtlMs : api::kMaxTtlMs;
  SHM_RETURN_IF_ERROR(api::JsonSecondsMs(o, "ttl", max_ttl_ms, &op->ttl_ms));
  if (op->op == "incr") {
    op->number = 1;
    SHM_RETURN_IF_ERROR(JsonOptionalInt64(o, "by", &op->number));
    SHM_RETURN_IF_ERROR(JsonOptionalInt64(o, "init", &op->init));
  } else if (op->op == "set" && op->kind == Kind::kCounter) {
    SHM_RETURN_IF_ERROR(api::JsonInt64(o, "value", &op->number));
  } else if (op->op == "set" || op->op == "push") {
    SHM_RETURN_IF_ERROR(DecodeBytes(o, op));
  }
  text = "set";
  SHM_RETURN_IF_ERROR(JsonString(o, "mode", false, &text));
  SHM_RETURN_IF_ERROR(api::ParseSetMode(text, &op->mode));
  op->content_type = "application/octet-stream";
  SHM_RETURN_IF_ERROR(JsonString(o, "content_type", false, &op->content_type));
  text = op->op == "pop" ? "left" : "right";
  SHM_RETURN_IF_ERROR(JsonString(o, "end", false, &text));
  return api::ParseListEnd(text, &op->end);
}

// Bytes as the JSON string a read answers: as is when UTF-8, or base64 when asked for.
Status EncodeBytes(const TxOp& op, const std::string& bytes, value* out) {
  if (op.base64) {
    *out = api::json::string(api::Base64Encode(bytes));
  } else if (IsUtf8(bytes)) {
    *out = api::json::string(bytes);
  } else {
    return Status::InvalidArgument("the value is not UTF-8; ask for \"encoding\": \"base64\"");
  }
  return Status::OK();
}

// The objects a batch names, opened once per request (the transaction refers to them until it
// commits, so they live in a deque that never moves them).
class Objects {
 public:
  explicit Objects(Segment* segment) : segment_(segment) {}

  Status OpenDict(const std::string& name, const Dict** dict) {
    return Open<Dict>(name, &dicts_, dict, [&](Segment* seg, std::string_view n, Dict* d) {
      return Dict::Open(seg, n, OpenMode::kCreateIfMissing, DictOptions(), d);
    });
  }
  // A counter is created at `init` (with `ttl_ms`) by the operation that first opens it.
  Status OpenCounter(const std::string& name, bool create, int64_t init, int64_t ttl_ms,
                     const Counter** counter) {
    Counter::Options options{create ? OpenMode::kCreateIfMissing : OpenMode::kOpenExisting, init,
                             ttl_ms};
    return Open<Counter>(name, &counters_, counter,
                         [&](Segment* seg, std::string_view n, Counter* c) {
                           return Counter::Open(seg, n, options, c);
                         });
  }
  Status OpenList(const std::string& name, const List** list) {
    return Open<List>(name, &lists_, list, [&](Segment* seg, std::string_view n, List* l) {
      return List::Open(seg, n, OpenMode::kCreateIfMissing, ListOptions(), l);
    });
  }

 private:
  template <typename Proxy, typename OpenFn>
  Status Open(const std::string& name, std::deque<std::pair<std::string, Proxy>>* opened,
              const Proxy** out, OpenFn&& open) {
    for (const auto& [n, proxy] : *opened) {
      if (n == name) {
        *out = &proxy;
        return Status::OK();
      }
    }
    Proxy proxy;
    SHM_RETURN_IF_ERROR(api::WithNamedObject<Proxy>(segment_, name, open, [&](Proxy& cached) {
      proxy = cached;
      return Status::OK();
    }));
    opened->emplace_back(name, std::move(proxy));
    *out = &opened->back().second;
    return Status::OK();
  }

  Segment* segment_;
  std::deque<std::pair<std::string, Dict>> dicts_;
  std::deque<std::pair<std::string, Counter>> counters_;
  std::deque<std::pair<std::string, List>> lists_;
};

Status StageDictOp(Transaction& tx, const Dict& dict, const TxOp& op, object* result) {
  if (op.has_precondition) {
    Status s = tx.Expect(dict, op.key, op.if_version);
    if (s.IsConflict()) {
      return Status::Conflict(op.if_version ? "precondition failed: the entry is not at version " +
                                                  std::to_string(*op.if_version)
                                            : "precondition failed: the entry exists");
    }
    SHM_RETURN_IF_ERROR(s);
  }
  if (op.op == "get") {
    DictValue current;
    Status s = tx.Get(dict, op.key, &current);
    if (s.IsNotFound()) {
      (*result)["value"] = nullptr;
      return Status::OK();
    }
    SHM_RETURN_IF_ERROR(s);
    value data;
    SHM_RETURN_IF_ERROR(EncodeBytes(op, current.data, &data));
    (*result)["value"] = std::move(data);
    (*result)["version"] = current.version;
    return Status::OK();
  }
  if (op.op == "set") {
    SetOptions options;
    options.mode = op.mode;
    options.ttl_ms = op.ttl_ms;
    options.content_type = op.content_type;
    return tx.Set(dict, op.key, op.bytes, options);
  }
  if (op.op == "delete") return tx.Delete(dict, op.key);
  int64_t sum = 0;
  SHM_RETURN_IF_ERROR(tx.Incr(dict, op.key, op.number, op.init, op.ttl_ms, &sum));
  (*result)["value"] = sum;
  return Status::OK();
}

Status StageOp(Transaction& tx, Objects& objects, const TxOp& op, object* result) {
  if (op.kind == Kind::kDict) {
    const Dict* dict = nullptr;
    SHM_RETURN_IF_ERROR(objects.OpenDict(op.name, &dict));
    return StageDictOp(tx, *dict, op, result);
  }
  if (op.has_precondition) {
    return Status::InvalidArgument("if_version and if_absent apply to dict operations");
  }
  if (op.kind == Kind::kCounter) {
    const Counter* counter = nullptr;
    SHM_RETURN_IF_ERROR(objects.OpenCounter(
        op.name, op.op != "get", op.op == "set" ? op.number : op.init, op.ttl_ms, &counter));
    int64_t number = op.number;
    if (op.op == "get") {
      SHM_RETURN_IF_ERROR(tx.Get(*counter, &number));
    } else if (op.op == "set") {
      SHM_RETURN_IF_ERROR(tx.Set(*counter, number));
    } else {
      SHM_RETURN_IF_ERROR(tx.Add(*counter, op.number, &number));
    }
    (*result)["value"] = number;
    return Status::OK();
  }
  const List* list = nullptr;
  SHM_RETURN_IF_ERROR(objects.OpenList(op.name, &list));
  uint64_t length = 0;
  if (op.op == "push") {
    SHM_RETURN_IF_ERROR(tx.Push(*list, op.end, op.bytes, &length));
  } else if (op.op == "length") {
    SHM_RETURN_IF_ERROR(tx.Length(*list, &length));
  } else {
    std::string item;
    bool got = false;
    SHM_RETURN_IF_ERROR(tx.Pop(*list, op.end, &item, &got));
    value data = nullptr;
    if (got) SHM_RETURN_IF_ERROR(EncodeBytes(op, item, &data));
    (*result)["value"] = std::move(data);
    return Status::OK();
  }
  (*result)["length"] = length;
  return Status::OK();
}

// Stages every operation (their results in `results`); on failure `*failed` is the position of
// the operation that failed.
Status StageBatch(Transaction& tx, Segment* segment, const std::vector<TxOp>& ops, array* results,
                  size_t* failed) {
  Objects objects(segment);
  results->clear();
  for (size_t i = 0; i < ops.size(); ++i) {
    object result;
    Status s = StageOp(tx, objects, ops[i], &result);
    if (!s.ok()) {
      *failed = i;
      return s;
    }
    results->push_back(std::move(result));
  }
  return Status::OK();
}

Status Batch(RequestContext& context, HttpResponse* response) {
  SHM_RETURN_IF_ERROR(api::CheckQueryKeys(context, {}));
  object body;
  SHM_RETURN_IF_ERROR(api::ParseJsonObject(context, {"ops"}, &body));
  const value* ops_value = body.if_contains("ops");
  if (ops_value == nullptr || !ops_value->is_array()) {
    return Status::InvalidArgument("the body is {\"ops\": [operation, ...]}");
  }
  const array& list = ops_value->as_array();
  if (list.size() > kMaxBatchOps) {
    return Status::InvalidArgument("at most " + std::to_string(kMaxBatchOps) +
                                   " operations in one batch");
  }
  std::vector<TxOp> ops(list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    Status s = DecodeOp(list[i], &ops[i]);
    if (!s.ok()) {
      api::SetError(response, s, object{{"index", i}});
      return Status::OK();
    }
  }
  array results;
  Status s;
  for (int attempt = 0; attempt < kCommitAttempts; ++attempt) {
    Transaction tx(context.segment);
    size_t failed = 0;
    s = StageBatch(tx, context.segment, ops, &results, &failed);
    if (!s.ok()) {
      api::SetError(response, s, object{{"index", failed}});
      return Status::OK();
    }
    s = tx.Commit();
    if (!s.IsConflict()) break;
  }
  if (s.IsConflict()) {
    return Status::Conflict("the batch kept conflicting with concurrent writes (" +
                            std::to_string(kCommitAttempts) + " attempts); send it again");
  }
  SHM_RETURN_IF_ERROR(s);
  api::SetJson(response, object{{"results", std::move(results)}});
  return Status::OK();
}

}  // namespace

void RegisterTxRoutes(Router* router) { router->Add(http::verb::post, "/v1/tx", Batch); }

}  // namespace shm
