# Install rules shared by every library target: one line per target,
#   shm_install_library(<target> <export name> [NO_HEADERS])
# installs the static library into the export set `shmstateTargets` as shmstate::<export name>
# (with an alias of that name in the build tree too), and the headers of its public include
# folders. Targets keep plain source-tree include paths; this wraps them for the install tree.
# A library that an installed one links and that has no line of its own (a new shm_<x> target)
# is installed by shm_install_package as shmstate::<x>: the export set must hold every shm_*
# library the installed ones need.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(SHM_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/shmstate CACHE STRING
    "Where the CMake package config (find_package(shmstate)) is installed, relative to the prefix")
set(SHM_INSTALL_PYTHONDIR lib/python3/dist-packages CACHE STRING
    "Where the shmstate Python package is installed, relative to the prefix (Debian's layout)")

function(shm_install_library target export_name)
  cmake_parse_arguments(ARG "NO_HEADERS" "" "" ${ARGN})
  get_target_property(dirs ${target} INTERFACE_INCLUDE_DIRECTORIES)
  if(NOT dirs)  # A library without include folders of its own.
    set(dirs "")
  endif()
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
  set_property(GLOBAL APPEND PROPERTY SHM_INSTALLED_LIBRARIES ${target})
endfunction()

# Installs the shm_* libraries the installed ones link (directly or not) that have no
# shm_install_library line of their own.
function(shm_install_linked_libraries)
  get_property(queue GLOBAL PROPERTY SHM_INSTALLED_LIBRARIES)
  while(queue)
    list(POP_FRONT queue target)
    get_target_property(links ${target} INTERFACE_LINK_LIBRARIES)
    if(NOT links)
      continue()
    endif()
    foreach(link IN LISTS links)
      string(REGEX REPLACE "^\\$<LINK_ONLY:(.*)>$" "\\1" link "${link}")
      if(NOT link MATCHES "^shm_[A-Za-z0-9_]+$" OR NOT TARGET ${link})
        continue()
      endif()
      get_property(installed GLOBAL PROPERTY SHM_INSTALLED_LIBRARIES)
      if(NOT link IN_LIST installed)
        string(REGEX REPLACE "^shm_" "" export_name ${link})
        shm_install_library(${link} ${export_name})
        list(APPEND queue ${link})
      endif()
    endforeach()
  endwhile()
endfunction()

# The package config: shmstateConfig.cmake (finds Boost and Threads, then the targets) and its
# version file. Called once, after every library target exists.
function(shm_install_package)
  shm_install_linked_libraries()
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
