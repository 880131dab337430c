// Clang thread-safety annotations: what a comment would promise about locking, checked by the
// compiler in a Clang build with -Wthread-safety (scripts/thread-safety, run by .ci/run). No-ops
// for other compilers. The names follow Clang's documentation (and leveldb's port/).
//
// They cover process-local locks (shm::Mutex). Locks that live in the segment (robust mutexes
// behind ObjectGuard and RegistryGuard) are taken through Status-returning calls the analysis
// cannot follow; their contract is the `...Locked()` naming and the REQUIRES comments, and the
// crash tests check it (docs/crash-protocol.md).
#ifndef SHM_THREAD_ANNOTATIONS_H_
#define SHM_THREAD_ANNOTATIONS_H_

#if defined(__clang__)
#define SHM_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define SHM_THREAD_ANNOTATION(x)
#endif

#define CAPABILITY(x) SHM_THREAD_ANNOTATION(capability(x))
#define SCOPED_CAPABILITY SHM_THREAD_ANNOTATION(scoped_lockable)
#define GUARDED_BY(x) SHM_THREAD_ANNOTATION(guarded_by(x))
#define PT_GUARDED_BY(x) SHM_THREAD_ANNOTATION(pt_guarded_by(x))
#define REQUIRES(...) SHM_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define EXCLUDES(...) SHM_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define ACQUIRE(...) SHM_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define RELEASE(...) SHM_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define RETURN_CAPABILITY(x) SHM_THREAD_ANNOTATION(lock_returned(x))
#define NO_THREAD_SAFETY_ANALYSIS SHM_THREAD_ANNOTATION(no_thread_safety_analysis)

#endif  // SHM_THREAD_ANNOTATIONS_H_
