// The keyspace mapping of the Redis commands (docs/resp.md): per-thread handles of the strings
// dict and of the lists and hashes, key <-> registry name, and the type of a key.
#include <string>
#include <unordered_map>

#include "internal.h"

namespace shm::resp {
namespace {

// ---------------------------------------------------------------------------------------------
// Per-thread handles (internal.h).

struct NameHash {
  using is_transparent = void;
  size_t operator()(std::string_view name) const { return std::hash<std::string_view>()(name); }
};
template <typename Proxy>
using ProxyMap = std::unordered_map<std::string, Proxy, NameHash, std::equal_to<>>;

// Bounded; reopening is cheap enough.
constexpr size_t kMaxCachedObjects = 8192;

struct ThreadHandles {
  Segment* segment = nullptr;
  std::string shm_name;  // Guards against a new segment where a destroyed one was.
  bool has_strings = false;
  Dict strings;
  ProxyMap<Dict> dicts;
  ProxyMap<List> lists;
};

thread_local ThreadHandles t_handles;

ThreadHandles& HandlesOf(Segment* segment) {
  ThreadHandles& h = t_handles;
  if (h.segment != segment || h.shm_name != segment->shm_name()) {
    h.has_strings = false;
    h.dicts.clear();
    h.lists.clear();
    h.segment = segment;
    h.shm_name = segment->shm_name();
  }
  return h;
}

OpenMode ModeOf(bool create) {
  return create ? OpenMode::kCreateIfMissing : OpenMode::kOpenExisting;
}
Status OpenProxy(Segment* segment, std::string_view name, bool create, Dict* d) {
  return Dict::Open(segment, name, ModeOf(create), DictOptions(), d);
}
// A Redis list has no bound to speak of (2^32 - 1 items): a list made through RESP gets the
// largest a List allows. Lists made through another API keep their own.
ListOptions RespListOptions() {
  ListOptions options;
  options.max_items = List::kMaxItemsLimit;
  options.max_item_bytes = List::kMaxItemBytesLimit;
  return options;
}

Status OpenProxy(Segment* segment, std::string_view name, bool create, List* l) {
  return List::Open(segment, name, ModeOf(create), RespListOptions(), l);
}

ProxyMap<Dict>& MapOf(ThreadHandles& h, Dict*) { return h.dicts; }
ProxyMap<List>& MapOf(ThreadHandles& h, List*) { return h.lists; }

template <typename Proxy>
Status CachedObject(Segment* segment, std::string_view name, bool create, Proxy* proxy,
                    bool* cached) {
  ProxyMap<Proxy>& map = MapOf(HandlesOf(segment), proxy);
  auto it = map.find(name);
  *cached = it != map.end();
  if (*cached) {
    *proxy = it->second;
    return Status::OK();
  }
  SHM_RETURN_IF_ERROR(OpenProxy(segment, name, create, proxy));
  if (map.size() >= kMaxCachedObjects) map.clear();
  map.emplace(std::string(name), *proxy);
  return Status::OK();
}

template <typename Proxy>
Status ReopenObject(Segment* segment, std::string_view name, bool create, Proxy* proxy) {
  ProxyMap<Proxy>& map = MapOf(HandlesOf(segment), proxy);
  if (auto it = map.find(name); it != map.end()) map.erase(it);
  bool cached = false;
  return CachedObject(segment, name, create, proxy, &cached);
}

constexpr char kHex[] = "0123456789abcdef";

}  // namespace

// ---------------------------------------------------------------------------------------------
// The keyspace mapping.

std::optional<std::string> ObjectName(std::string_view key) {
  if (ValidateName(key).ok() && key.substr(0, 6) != "redis:") return std::string(key);
  if (kEncodedPrefix.size() + 2 * key.size() > 200) return std::nullopt;
  std::string name(kEncodedPrefix);
  for (unsigned char ch : key) {
    name.push_back(kHex[ch >> 4]);
    name.push_back(kHex[ch & 15]);
  }
  return name;
}

std::optional<std::string> KeyOfObject(std::string_view name) {
  if (name.substr(0, 6) != "redis:") return std::string(name);
  if (name.substr(0, kEncodedPrefix.size()) != kEncodedPrefix) return std::nullopt;
  std::string_view hex = name.substr(kEncodedPrefix.size());
  if (hex.size() % 2 != 0) return std::nullopt;
  std::string key;
  for (size_t i = 0; i < hex.size(); i += 2) {
    auto digit = [](char ch) { return ch <= '9' ? ch - '0' : ch - 'a' + 10; };
    key.push_back(static_cast<char>(digit(hex[i]) * 16 + digit(hex[i + 1])));
  }
  return key;
}

namespace handles {

Status Strings(Segment* segment, bool create, Dict* proxy, bool* cached) {
  ThreadHandles& h = HandlesOf(segment);
  *cached = h.has_strings;
  if (*cached) {
    *proxy = h.strings;
    return Status::OK();
  }
  SHM_RETURN_IF_ERROR(OpenProxy(segment, kStringsDict, create, proxy));
  h.strings = *proxy;
  h.has_strings = true;
  return Status::OK();
}

Status ReopenStrings(Segment* segment, bool create, Dict* proxy) {
  HandlesOf(segment).has_strings = false;
  bool cached = false;
  return Strings(segment, create, proxy, &cached);
}

Status Object(Segment* segment, std::string_view name, bool create, Dict* proxy, bool* cached) {
  return CachedObject(segment, name, create, proxy, cached);
}
Status Object(Segment* segment, std::string_view name, bool create, List* proxy, bool* cached) {
  return CachedObject(segment, name, create, proxy, cached);
}
Status Reopen(Segment* segment, std::string_view name, bool create, Dict* proxy) {
  return ReopenObject(segment, name, create, proxy);
}
Status Reopen(Segment* segment, std::string_view name, bool create, List* proxy) {
  return ReopenObject(segment, name, create, proxy);
}

}  // namespace handles

void ForgetObject(Segment* segment, std::string_view name) {
  ThreadHandles& h = HandlesOf(segment);
  if (name == kStringsDict) h.has_strings = false;
  if (auto it = h.dicts.find(name); it != h.dicts.end()) h.dicts.erase(it);
  if (auto it = h.lists.find(name); it != h.lists.end()) h.lists.erase(it);
}

ObjectKind ObjectKindOf(Segment* segment, std::string_view key) {
  std::optional<std::string> name = ObjectName(key);
  if (!name) return ObjectKind::kNone;
  ObjectInfo info;
  if (!segment->registry().Lookup(*name, &info).ok()) return ObjectKind::kNone;
  return info.kind;
}

bool StringExists(Segment* segment, std::string_view key) {
  DictValue value;
  return WithStrings(segment, false, [&](Dict& d) { return d.Get(key, &value); }).ok();
}

std::string_view TypeOf(Segment* segment, std::string_view key) {
  if (StringExists(segment, key)) return "string";
  ObjectKind kind = ObjectKindOf(segment, key);
  if (kind == ObjectKind::kList) {
    uint64_t length = 0;
    WithList(segment, key, false, [&](List& l) { return l.Length(&length); });
    return length > 0 ? "list" : "none";
  }
  if (kind == ObjectKind::kDict) {
    DictStats stats;
    WithHash(segment, key, false, [&](Dict& d) { return d.Stats(&stats); });
    return stats.entries > 0 ? "hash" : "none";
  }
  return "none";
}

bool DeleteKey(Segment* segment, std::string_view key) {
  if (WithStrings(segment, false, [&](Dict& d) { return d.Delete(key); }).ok()) return true;
  std::string_view type = TypeOf(segment, key);
  ObjectKind kind = ObjectKindOf(segment, key);
  if (kind != ObjectKind::kList && kind != ObjectKind::kDict) return false;
  std::optional<std::string> name = ObjectName(key);
  if (!segment->registry().Delete(*name, kind).ok()) return false;
  ForgetObject(segment, *name);
  return type != "none";
}

std::vector<std::pair<std::string, std::string_view>> ObjectKeys(Segment* segment) {
  std::vector<std::pair<std::string, std::string_view>> keys;
  for (ObjectKind kind : {ObjectKind::kList, ObjectKind::kDict}) {
    std::string after;
    while (true) {
      std::vector<ObjectInfo> page;
      if (!segment->registry().List("", kind, 1000, after, &page).ok() || page.empty()) break;
      after = page.back().name;
      for (const ObjectInfo& info : page) {
        std::optional<std::string> key = KeyOfObject(info.name);
        if (!key) continue;
        std::string_view type = TypeOf(segment, *key);
        if (type != "none") keys.emplace_back(std::move(*key), type);
      }
    }
  }
  return keys;
}

bool KeyBytes(Segment* segment, std::string_view key, uint64_t* bytes) {
  DictValue value;
  if (WithStrings(segment, false, [&](Dict& d) { return d.Get(key, &value); }).ok()) {
    *bytes = key.size() + value.data.size();
    return true;
  }
  if (TypeOf(segment, key) == "none") return false;
  ObjectInfo info;
  std::optional<std::string> name = ObjectName(key);
  if (!name || !segment->registry().Lookup(*name, &info).ok()) return false;
  *bytes = key.size() + info.size_bytes;
  return true;
}

uint64_t KeyCount(Segment* segment) {
  DictStats stats;
  WithStrings(segment, false, [&](Dict& d) { return d.Stats(&stats); });
  return stats.entries + ObjectKeys(segment).size();
}

}  // namespace shm::resp
