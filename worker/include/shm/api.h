// The built-in REST API (docs/http-api.md), one Register…Routes per object family.
//
// Handlers open objects through a process-local proxy cache, so a request takes the registry lock
// only the first time a worker touches a name (or after the object was deleted). All handlers are
// safe to run from many threads of many workers at once.
#ifndef SHM_API_H_
#define SHM_API_H_

#include <functional>
#include <string>

#include "shm/router.h"
#include "shm/sessions.h"

namespace shm {

// Every family below.
void RegisterApiRoutes(Router* router);

// /v1/counters/{name}[/incr|/cas].
void RegisterCounterRoutes(Router* router);
// /v1/objects, /v1/stats, /metrics, /healthz.
void RegisterAdminRoutes(Router* router);
// /v1/dicts/{dict}[/{key}].
void RegisterDictRoutes(Router* router);
// /v1/lists/{name}[/push|/pop|/items].
void RegisterListRoutes(Router* router);
// /v1/locks/{name}[/acquire|/release|/refresh].
void RegisterLockRoutes(Router* router);
// /v1/session/{key}[/incr], with the shmsid cookie.
void RegisterSessionRoutes(Router* router);
// /v1/arrays/{name}[/data|/ops|/atomic|/reduce] (worker/api_arrays.cc, docs/arrays.md).
void RegisterArrayRoutes(Router* router);
// POST /v1/tx: a batch of dict, counter and list operations applied all or nothing
// (worker/api_tx.cc, shm/transaction.h).
void RegisterTxRoutes(Router* router);
// GET /ui, the status page (docs/ui.md); served without the token, its data calls need it.
void RegisterUiRoutes(Router* router);

// For an application's own routes: runs `fn` on the calling client's server-side session (the
// one /v1/session uses, found by the shmsid cookie). A client without a live session gets a new
// random id (never one it chose) and its cookie (HttpOnly, SameSite=Lax) is set on `response`.
Status WithClientSession(
    RequestContext& context, HttpResponse* response,
    const std::function<Status(Sessions& sessions, const std::string& id)>& fn);

// Called by RunWorker when it is asked to stop (from its signal thread, so even a worker whose
// every io thread is blocked in a wait gets it): handlers blocked in a wait stop at their next
// slice; a pop answers as if the wait ran out, an acquire 503. Process-wide.
void StopBlockingWaits();

}  // namespace shm

#endif  // SHM_API_H_
