#include "shm/api.h"

namespace shm {

void RegisterApiRoutes(Router* router) {
  RegisterAdminRoutes(router);
  RegisterCounterRoutes(router);
  RegisterDictRoutes(router);
  RegisterListRoutes(router);
  RegisterLockRoutes(router);
  RegisterSessionRoutes(router);
  RegisterArrayRoutes(router);
  RegisterTxRoutes(router);
  RegisterUiRoutes(router);
}

}  // namespace shm
