// Compiles Beast and Asio once for the whole program (BOOST_BEAST_SEPARATE_COMPILATION and
// BOOST_ASIO_SEPARATE_COMPILATION are defined globally by CMake).
#include <boost/asio/impl/src.hpp>
#include <boost/beast/src.hpp>
