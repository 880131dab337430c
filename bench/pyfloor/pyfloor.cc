// pyfloor: the floor the shmstate module's per-call cost is measured against (bench/py_calls.py).
//
// The least a C extension can do for each operation on a shared mapping: one atomic add
// (METH_NOARGS), a 16-byte key looked up in a small open-addressing table returning a 64-byte
// bytes (METH_O), and a 64-byte copy in (METH_FASTCALL). No locks, no validation beyond the
// argument types: what is left above this in shmstate is the price of its guarantees.
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include <string_view>

#include "key_hash.h"

enum { kSlots = 2048, kKey = 16, kValue = 64 };
struct Slot {
  uint64_t used;
  char key[kKey];
  char value[kValue];
};
struct Shared {
  int64_t counter;
  struct Slot slots[kSlots];
};
static struct Shared* g_shared;

// The dict's own key hash (shared/src/key_hash.h), so the floor is not cheaper by its hash.
static uint64_t Hash(const char* key, Py_ssize_t n) {
  return shm::KeyHash(std::string_view(key, static_cast<size_t>(n)));
}

static struct Slot* Find(const char* key, Py_ssize_t n, int insert) {
  if (n != kKey) return nullptr;
  for (uint64_t i = static_cast<uint64_t>(Hash(key, n) % kSlots), probes = 0; probes < kSlots;
       i = (i + 1) % kSlots, ++probes) {
    struct Slot* s = &g_shared->slots[i];
    if (!s->used) {
      if (!insert) return nullptr;
      s->used = 1;
      memcpy(s->key, key, kKey);
      return s;
    }
    if (memcmp(s->key, key, kKey) == 0) return s;
  }
  return nullptr;
}

static PyObject* Incr(PyObject*, PyObject*) {
  return PyLong_FromLongLong(__atomic_add_fetch(&g_shared->counter, 1, __ATOMIC_ACQ_REL));
}

static PyObject* Get(PyObject*, PyObject* key) {
  if (!PyBytes_Check(key)) {
    PyErr_SetString(PyExc_TypeError, "key must be bytes");
    return nullptr;
  }
  struct Slot* s = Find(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key), 0);
  if (s == nullptr) Py_RETURN_NONE;
  return PyBytes_FromStringAndSize(s->value, kValue);
}

static PyObject* Set(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 2 || !PyBytes_Check(args[0]) || !PyBytes_Check(args[1]) ||
      PyBytes_GET_SIZE(args[1]) != kValue) {
    PyErr_SetString(PyExc_TypeError, "set(key: bytes, value: 64 bytes)");
    return nullptr;
  }
  struct Slot* s = Find(PyBytes_AS_STRING(args[0]), PyBytes_GET_SIZE(args[0]), 1);
  if (s == nullptr) {
    PyErr_SetString(PyExc_ValueError, "table full or key not 16 bytes");
    return nullptr;
  }
  memcpy(s->value, PyBytes_AS_STRING(args[1]), kValue);
  Py_RETURN_NONE;
}

static PyMethodDef kMethods[] = {
    {"incr", Incr, METH_NOARGS, "One atomic add on the shared mapping."},
    {"get", Get, METH_O, "The 64-byte value of a 16-byte key, or None."},
    {"set", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(Set)), METH_FASTCALL,
     "Copies a 64-byte value in."},
    {nullptr, nullptr, 0, nullptr}};

static struct PyModuleDef kModule = {
    PyModuleDef_HEAD_INIT, "pyfloor", nullptr, -1, kMethods, nullptr, nullptr, nullptr, nullptr};

PyMODINIT_FUNC PyInit_pyfloor(void) {
  void* p = mmap(nullptr, sizeof(struct Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                 -1, 0);
  if (p == MAP_FAILED) return PyErr_SetFromErrno(PyExc_OSError);
  g_shared = static_cast<struct Shared*>(p);
  return PyModule_Create(&kModule);
}
