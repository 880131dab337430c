// shmstate: the stock server, the built-in API and nothing else.
#include "shm/server_main.h"

int main(int argc, char** argv) { return shm::ServerMain(argc, argv); }
