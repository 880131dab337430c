// Crash tests of the keyspace: a writer dies at each step of a command that creates, replaces or
// removes a list or hash or a hash's field (crash points), or is SIGKILLed at random moments while
// it runs typed commands (kill loop). Afterwards every key has its old or its new type and value,
// whole (a hash's fields in their insertion order, which a field written next extends); no
// key names a missing aggregate; the keyspace stays usable; at most the one aggregate in flight
// leaks.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/status_assert.h"
#include "common/test_util.h"
#include "crash_point.h"
#include "shm/keyspace.h"
#include "shm/registry.h"

namespace shm {
namespace {

using Access = Keyspace::Access;

// What one key holds, read back whole.
struct KeyState {
  KeyType type = KeyType::kNone;
  std::string string;
  std::vector<std::string> list;
  std::vector<std::pair<std::string, std::string>> hash;  // In insertion order (Dict::Entries).
  bool operator==(const KeyState&) const = default;
};

Status ReadKey(Keyspace& ks, const std::string& key, KeyState* state) {
  *state = KeyState();
  SHM_RETURN_IF_ERROR(ks.Type(key, &state->type));
  switch (state->type) {
    case KeyType::kString:
      return ks.Get(key, &state->string);
    case KeyType::kList:
      return ks.WithList(key, Access::kRead,
                         [&](List& list) { return list.Range(0, -1, &state->list); });
    case KeyType::kHash:
      return ks.WithHash(key, Access::kRead, [&](Dict& hash) {
        std::vector<DictItem> entries;
        SHM_RETURN_IF_ERROR(hash.Entries(true, &entries));
        for (DictItem& entry : entries) state->hash.emplace_back(entry.key, entry.value);
        return Status::OK();
      });
    case KeyType::kNone:
      break;
  }
  return Status::OK();
}

auto FieldOf(KeyState* k, const std::string& field) {
  return std::find_if(k->hash.begin(), k->hash.end(),
                      [&](const auto& entry) { return entry.first == field; });
}

size_t Aggregates(Segment* seg) {
  std::vector<ObjectInfo> objects;
  EXPECT_TRUE(seg->registry().List("redis:0:", ObjectKind::kNone, 1000, "", &objects).ok());
  return objects.size();
}

enum class Op {
  kPushNew,
  kSetOverList,
  kPopLast,
  kDeleteHash,
  kExpireList,
  kHashInsert,  // A new field goes last in the hash's order,
  kHashUpdate,  // a rewritten one keeps its place,
  kHashDelete,  // a deleted one leaves it.
};

Status SetField(Keyspace& ks, std::string_view field, std::string_view value) {
  return ks.WithHash("hash", Access::kCreate,
                     [&](Dict& hash) { return hash.Set(field, value, SetOptions()); });
}

// The keys every case starts from: a list of one item, a hash of three fields.
Status Populate(Keyspace& ks) {
  SHM_RETURN_IF_ERROR(ks.WithList("list", Access::kCreate,
                                  [](List& list) { return list.Push(List::End::kRight, "only"); }));
  for (const char* field : {"f1", "f2", "f3"}) SHM_RETURN_IF_ERROR(SetField(ks, field, "v"));
  return Status::OK();
}

Status RunOp(Keyspace& ks, Op op) {
  switch (op) {
    case Op::kPushNew:
      return ks.WithList("new", Access::kCreate,
                         [](List& list) { return list.Push(List::End::kRight, "x"); });
    case Op::kSetOverList: {
      StringSetResult result;
      return ks.Set("list", "s", StringSet(), &result);
    }
    case Op::kPopLast:
      return ks.WithList("list", Access::kWrite, [](List& list) {
        std::string item;
        bool got = false;
        return list.Pop(List::End::kLeft, std::chrono::milliseconds(0), &item, &got);
      });
    case Op::kDeleteHash: {
      bool existed = false;
      return ks.Delete("hash", &existed);
    }
    case Op::kExpireList: {
      bool applied = false;
      return ks.Expire("list", 1, ExpireIf::kAlways, &applied);  // In the past: deletes.
    }
    case Op::kHashInsert:
      return SetField(ks, "f4", "new");
    case Op::kHashUpdate:
      return SetField(ks, "f1", "rewritten");
    case Op::kHashDelete:
      return ks.WithHash("hash", Access::kWrite, [](Dict& hash) { return hash.Delete("f2"); });
  }
  return Status::Internal("unknown op");
}

struct CrashCase {
  Op op;
  const char* point;
  int hit;
};

class KeyspaceCrashPointTest : public testing::TestWithParam<CrashCase> {};

TEST_P(KeyspaceCrashPointTest, DeathMidCommandLeavesOldOrNewAndAUsableKeyspace) {
  const CrashCase& c = GetParam();
  test::ScopedSegment seg;
  Keyspace ks;
  ASSERT_OK(Keyspace::Open(seg.get(), 0, &ks));
  ASSERT_OK(Populate(ks));
  const std::vector<std::string> keys = {"new", "list", "hash"};
  std::map<std::string, KeyState> before, after;
  for (const std::string& key : keys) ASSERT_OK(ReadKey(ks, key, &before[key]));
  // What the op leaves when it completes, from a run on a copy of the start.
  {
    test::ScopedSegment model_seg;
    Keyspace model;
    ASSERT_OK(Keyspace::Open(model_seg.get(), 0, &model));
    ASSERT_OK(Populate(model));
    ASSERT_OK(RunOp(model, c.op));
    for (const std::string& key : keys) ASSERT_OK(ReadKey(model, key, &after[key]));
  }
  const size_t aggregates_before = Aggregates(seg.get());

  pid_t child = test::ForkChild([&] {
    SetCrashPoint(c.point, c.hit);
    Keyspace mine;
    if (!Keyspace::Open(seg.get(), 0, &mine).ok()) return 2;
    return RunOp(mine, c.op).ok() ? 0 : 3;
  });
  test::ChildExit exit = test::WaitChild(child);
  ASSERT_TRUE(exit.exited);
  ASSERT_EQ(exit.code, kCrashPointExitCode) << "the crash point was never reached";
  ASSERT_OK(seg->RecoverDeadProcess(child, nullptr));
  ASSERT_OK(seg->Probe());

  std::map<std::string, KeyState> now;
  for (const std::string& key : keys) ASSERT_OK(ReadKey(ks, key, &now[key]));
  EXPECT_TRUE(now == before || now == after) << "a key is neither its old nor its new self";
  // Every aggregate a key names exists (ReadKey read it); at most the one in flight leaked.
  size_t named = 0;
  for (const std::string& key : keys) {
    named += now[key].type == KeyType::kList || now[key].type == KeyType::kHash;
  }
  EXPECT_LE(Aggregates(seg.get()), named + 1);
  EXPECT_LE(Aggregates(seg.get()), aggregates_before + 1);
  // The hash's order is whole: a field written now goes last, after the ones it had.
  if (now["hash"].type == KeyType::kHash) {
    ASSERT_OK(SetField(ks, "f9", "last"));
    KeyState hash;
    ASSERT_OK(ReadKey(ks, "hash", &hash));
    std::vector<std::pair<std::string, std::string>> expected = now["hash"].hash;
    expected.emplace_back("f9", "last");
    EXPECT_EQ(hash.hash, expected);
  }
  // The keyspace (and the locks the child died holding) still work.
  for (const std::string& key : keys) {
    StringSetResult result;
    ASSERT_OK(ks.Set(key, "after", StringSet(), &result));
    KeyState state;
    ASSERT_OK(ReadKey(ks, key, &state));
    EXPECT_EQ(state.string, "after");
  }
}

std::string CaseName(const testing::TestParamInfo<CrashCase>& info) {
  static const char* const kOps[] = {"PushNew",    "SetOverList", "PopLast",    "DeleteHash",
                                     "ExpireList", "HashInsert",  "HashUpdate", "HashDelete"};
  return std::string(kOps[static_cast<int>(info.param.op)]) + "_" + info.param.point + "_" +
         std::to_string(info.param.hit);
}

INSTANTIATE_TEST_SUITE_P(
    EveryStep, KeyspaceCrashPointTest,
    testing::Values(
        // A new list: its object is created, the item pushed, then the key's entry published.
        CrashCase{Op::kPushNew, "before_create_commit", 1},
        CrashCase{Op::kPushNew, "keyspace_after_create", 1},
        CrashCase{Op::kPushNew, "after_commit", 1},  // The item's push.
        CrashCase{Op::kPushNew, "after_allocate", 2}, CrashCase{Op::kPushNew, "after_intent", 2},
        CrashCase{Op::kPushNew, "after_commit", 2},  // The key's entry.
        CrashCase{Op::kPushNew, "before_free", 1},
        // SET over a list: the string's entry replaces the list's, then the list is deleted.
        CrashCase{Op::kSetOverList, "after_intent", 1},
        CrashCase{Op::kSetOverList, "after_commit", 1},
        CrashCase{Op::kSetOverList, "keyspace_before_orphan_delete", 1},
        // The last pop: the item goes, the key's entry goes, then the list.
        CrashCase{Op::kPopLast, "after_commit", 1}, CrashCase{Op::kPopLast, "after_commit", 2},
        CrashCase{Op::kPopLast, "keyspace_before_orphan_delete", 1},
        CrashCase{Op::kDeleteHash, "after_commit", 1},
        CrashCase{Op::kDeleteHash, "keyspace_before_orphan_delete", 1},
        CrashCase{Op::kExpireList, "after_commit", 1},
        CrashCase{Op::kExpireList, "keyspace_before_orphan_delete", 1},
        // A hash's fields: the new, rewritten or deleted field's slot is the one commit; its
        // place in the order travels inside the blob.
        CrashCase{Op::kHashInsert, "after_allocate", 1},
        CrashCase{Op::kHashInsert, "after_intent", 1},
        CrashCase{Op::kHashInsert, "after_commit", 1},
        CrashCase{Op::kHashUpdate, "after_allocate", 1},
        CrashCase{Op::kHashUpdate, "after_intent", 1},
        CrashCase{Op::kHashUpdate, "after_commit", 1}, CrashCase{Op::kHashUpdate, "before_free", 1},
        CrashCase{Op::kHashDelete, "after_intent", 1},
        CrashCase{Op::kHashDelete, "after_commit", 1},
        CrashCase{Op::kHashDelete, "before_free", 1}),
    CaseName);

// A child runs random typed commands on a few keys, reporting each before and after; the parent
// SIGKILLs it at a random moment (40 rounds, fixed seed) and, after recovery, checks every key
// against the model (the command in flight may or may not have happened) and that at most the
// aggregates of in-flight commands leaked.
TEST(KeyspaceCrashLoopTest, SigkillAtRandomKeepsEveryKeyWhole) {
  std::mt19937 rng(20261206);
  auto seg = std::make_unique<test::ScopedSegment>(size_t{32} << 20, 1024);
  const std::vector<std::string> keys = {"a", "b", "c", "d"};
  std::map<std::string, KeyState> model;
  for (const std::string& key : keys) model[key] = KeyState();
  // Applies op `op` with tag `tag` on `key` to a model (the same rules as the child's commands).
  auto apply = [](int op, const std::string& tag, KeyState* k) {
    switch (op) {
      case 0:  // SET
        *k = KeyState{KeyType::kString, tag, {}, {}};
        break;
      case 1:  // RPUSH
        if (k->type == KeyType::kNone) *k = KeyState{KeyType::kList, "", {}, {}};
        if (k->type == KeyType::kList) k->list.push_back(tag);
        break;
      case 2:  // LPOP
        if (k->type == KeyType::kList) {
          k->list.erase(k->list.begin());
          if (k->list.empty()) *k = KeyState();
        }
        break;
      case 3:  // HSET field (tag's last digit): a new field goes last, a rewrite keeps its place.
        if (k->type == KeyType::kNone) *k = KeyState{KeyType::kHash, "", {}, {}};
        if (k->type == KeyType::kHash) {
          auto at = FieldOf(k, tag.substr(tag.size() - 1));
          if (at == k->hash.end()) {
            k->hash.emplace_back(tag.substr(tag.size() - 1), tag);
          } else {
            at->second = tag;
          }
        }
        break;
      case 4:  // HDEL field
        if (k->type == KeyType::kHash) {
          auto at = FieldOf(k, tag.substr(tag.size() - 1));
          if (at != k->hash.end()) k->hash.erase(at);
          if (k->hash.empty()) *k = KeyState();
        }
        break;
      case 5:  // DEL
        *k = KeyState();
        break;
    }
  };
  int poisoned = 0;
  constexpr int kRounds = 40;
  for (int round = 0; round < kRounds; ++round) {
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    const uint32_t child_seed = rng();
    Segment* segment = seg->get();
    pid_t child = test::ForkChild([&] {
      close(fds[0]);
      Keyspace ks;
      if (!Keyspace::Open(segment, 0, &ks).ok()) return 2;
      std::mt19937 crng(child_seed);
      for (int n = 0;; ++n) {
        int op = static_cast<int>(crng() % 6);
        const std::string& key = keys[crng() % keys.size()];
        std::string tag = "r" + std::to_string(round) + "n" + std::to_string(n);
        std::string line = std::to_string(op) + key + tag + "\n";
        if (write(fds[1], line.data(), line.size()) < 0) return 1;
        Status s;
        std::string field = tag.substr(tag.size() - 1);
        switch (op) {
          case 0: {
            StringSetResult result;
            s = ks.Set(key, tag, StringSet(), &result);
            break;
          }
          case 1:
            s = ks.WithList(key, Access::kCreate,
                            [&](List& list) { return list.Push(List::End::kRight, tag); });
            break;
          case 2:
            s = ks.WithList(key, Access::kWrite, [](List& list) {
              std::string item;
              bool got = false;
              return list.Pop(List::End::kLeft, std::chrono::milliseconds(0), &item, &got);
            });
            break;
          case 3:
            s = ks.WithHash(key, Access::kCreate,
                            [&](Dict& hash) { return hash.Set(field, tag, SetOptions()); });
            break;
          case 4:
            s = ks.WithHash(key, Access::kWrite, [&](Dict& hash) {
              Status d = hash.Delete(field);
              return d.IsNotFound() ? Status::OK() : d;
            });
            break;
          case 5: {
            bool existed = false;
            s = ks.Delete(key, &existed);
            break;
          }
        }
        if (!s.ok() && !s.IsWrongType() && !s.IsNotFound()) return 3;
        if (write(fds[1], "+\n", 2) < 0) return 1;
      }
    });
    close(fds[1]);
    FILE* in = fdopen(fds[0], "r");
    ASSERT_NE(in, nullptr);
    const int acks_before_kill = 1 + static_cast<int>(rng() % 300);
    int acks = 0, pending_op = -1;
    std::string pending_key, pending_tag;
    bool killed = false;
    char line[128];
    while (fgets(line, sizeof line, in) != nullptr) {
      if (line[0] == '+') {
        apply(pending_op, pending_tag, &model[pending_key]);
        pending_op = -1;
        if (++acks == acks_before_kill && !killed) {
          kill(child, SIGKILL);
          killed = true;
        }
      } else {
        std::string text(line);
        pending_op = text[0] - '0';
        pending_key = text.substr(1, 1);
        pending_tag = text.substr(2, text.size() - 3);
      }
    }
    fclose(in);
    test::ChildExit exit = test::WaitChild(child, 20000);
    ASSERT_TRUE(exit.signaled) << "child exited with " << exit.code;
    Status recovered = (*seg)->RecoverDeadProcess(child, nullptr);
    if (!recovered.ok() || !(*seg)->Probe().ok()) {
      ++poisoned;  // Killed inside the allocator: the manager would rebuild. Start afresh.
      seg = std::make_unique<test::ScopedSegment>(size_t{32} << 20, 1024);
      for (const std::string& key : keys) model[key] = KeyState();
      continue;
    }
    Keyspace ks;
    ASSERT_OK(Keyspace::Open(seg->get(), 0, &ks));
    size_t named = 0;
    for (const std::string& key : keys) {
      KeyState now;
      ASSERT_OK(ReadKey(ks, key, &now));
      KeyState with = model[key];
      if (pending_op >= 0 && key == pending_key) apply(pending_op, pending_tag, &with);
      ASSERT_TRUE(now == model[key] || now == with)
          << "round " << round << " key " << key << " type " << KeyTypeName(now.type);
      model[key] = now;
      named += now.type == KeyType::kList || now.type == KeyType::kHash;
    }
    // Leaks are bounded: at most one aggregate per kill so far.
    EXPECT_LE(Aggregates(seg->get()), named + static_cast<size_t>(round + 1));
  }
  std::cout << "[ keyspace crash loop ] " << kRounds << " kills, " << poisoned
            << " inside the allocator\n";
}

}  // namespace
}  // namespace shm
