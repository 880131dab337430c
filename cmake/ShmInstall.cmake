# Install rules shared by every library target: one line per target,
#   shm_install_library(<target> <export name> [NO_HEADERS])
# installs the static library into the export set `shmstateTargets` as shmstate::<export name>
# (with an alias of that name in the build tree too), and the headers of its public include
# folders. Targets keep plain source-tree include paths; this wraps them for the install tree.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(SHM_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/shmstate CACHE STRING
    "Where the CMake package config (find_package(shmstate)) is installed, relative to the prefix")
set(SHM_INSTALL_PYTHONDIR lib/python3/dist-packages CACHE STRING
    "Where the shmstate Python package is installed, relative to the prefix (Debian's layout)")

function(shm_install_library target export_name)
  cmake_parse_arguments(ARG "NO_HEADERS" "" "" ${ARGN})
  get_target_property(dirs ${target} INTERFACE_INCLUDE_DIRECTORIES)
  set(wrapped "")
  foreach(dir IN LISTS dirs)
    if(dir MATCHES "^\\$<")
      list(APPEND wrapped "${dir}")
      continue()
    endif()
    list(APPEND wrapped "$<BUILD_INTERFACE:${dir}>")
    if(NOT ARG_NO_HEADERS)
      install(DIRECTORY ${dir}/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT dev
              FILES_MATCHING PATTERN "*.h")
    endif()
  endforeach()
  if(NOT ARG_NO_HEADERS)
    list(APPEND wrapped "$<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>")
  endif()
  set_target_properties(${target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${wrapped}"
                                             EXPORT_NAME ${export_name})
  # An application compiles the headers with the definitions the library was built with
  # (Beast/Asio separate compilation, Boost.JSON without auto-link) and C++20.
  get_directory_property(defs DIRECTORY ${PROJECT_SOURCE_DIR} COMPILE_DEFINITIONS)
  target_compile_definitions(${target} INTERFACE ${defs})
  target_compile_features(${target} INTERFACE cxx_std_20)
  install(TARGETS ${target} EXPORT shmstateTargets
          ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT dev)
  add_library(shmstate::${export_name} ALIAS ${target})
endfunction()

# The package config: shmstateConfig.cmake (finds Boost and Threads, then the targets) and its
# version file. Called once, after every library target exists.
function(shm_install_package)
  install(EXPORT shmstateTargets NAMESPACE shmstate:: DESTINATION ${SHM_INSTALL_CMAKEDIR}
          COMPONENT dev)
  configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/shmstateConfig.cmake.in
    ${PROJECT_BINARY_DIR}/shmstateConfig.cmake INSTALL_DESTINATION ${SHM_INSTALL_CMAKEDIR})
  # The segment layout may change between minor releases: only the same minor version matches.
  write_basic_package_version_file(${PROJECT_BINARY_DIR}/shmstateConfigVersion.cmake
    COMPATIBILITY SameMinorVersion)
  install(FILES ${PROJECT_BINARY_DIR}/shmstateConfig.cmake
                ${PROJECT_BINARY_DIR}/shmstateConfigVersion.cmake
          DESTINATION ${SHM_INSTALL_CMAKEDIR} COMPONENT dev)
endfunction()
