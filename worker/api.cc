#include "shm/api.h"

namespace shm {

void RegisterApiRoutes(Router* router) {
  RegisterAdminRoutes(router);
  RegisterCounterRoutes(router);
}

}  // namespace shm
