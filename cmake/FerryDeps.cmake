# Dependencies come from Debian packages. A missing one stops the configure
# step with the package to install, not with a bare pkg-config failure.
find_package(PkgConfig QUIET)
if(NOT PKG_CONFIG_FOUND)
  message(FATAL_ERROR "pkg-config not found: apt-get install pkg-config")
endif()

function(ferry_require_pkg var module debpkg)
  pkg_check_modules(${var} QUIET IMPORTED_TARGET GLOBAL ${module})
  if(NOT ${var}_FOUND)
    message(FATAL_ERROR
      "Ferry needs ${module} (pkg-config) which is missing: "
      "apt-get install ${debpkg}")
  endif()
  message(STATUS "Found ${module} ${${var}_VERSION}")
endfunction()

ferry_require_pkg(PROTOBUFC  libprotobuf-c  libprotobuf-c-dev)
ferry_require_pkg(CMOCKA     cmocka         libcmocka-dev)
ferry_require_pkg(NL3        libnl-3.0      libnl-3-dev)
ferry_require_pkg(NLROUTE3   libnl-route-3.0 libnl-route-3-dev)
ferry_require_pkg(IBVERBS    libibverbs     libibverbs-dev)
ferry_require_pkg(RDMACM     librdmacm      librdmacm-dev)
ferry_require_pkg(OPENSSL    openssl        libssl-dev)
ferry_require_pkg(XXHASH     libxxhash      libxxhash-dev)
# VM disks: NBD exports through libnbd (no kernel NBD client needed).
ferry_require_pkg(NBD        libnbd         libnbd-dev)
ferry_require_pkg(URING      liburing       liburing-dev)
# The cluster's membership, quorum and ordered messages: corosync.
ferry_require_pkg(CPG        libcpg         libcpg-dev)
ferry_require_pkg(QUORUM     libquorum      libquorum-dev)
ferry_require_pkg(VOTEQUORUM libvotequorum  libvotequorum-dev)

find_program(PROTOC_C NAMES protoc-c)
if(NOT PROTOC_C)
  message(FATAL_ERROR "protoc-c not found: apt-get install protobuf-c-compiler")
endif()

find_package(Threads REQUIRED)

# protobuf-c code generation: ferry_protobuf(<target> <file.proto>...)
# builds a static library of the generated code with its include path.
function(ferry_protobuf target)
  set(srcs)
  foreach(proto ${ARGN})
    get_filename_component(base ${proto} NAME_WE)
    get_filename_component(dir ${proto} DIRECTORY)
    set(out ${CMAKE_CURRENT_BINARY_DIR}/${base}.pb-c.c)
    add_custom_command(
      OUTPUT ${out} ${CMAKE_CURRENT_BINARY_DIR}/${base}.pb-c.h
      COMMAND ${PROTOC_C} --c_out=${CMAKE_CURRENT_BINARY_DIR}
              -I${CMAKE_CURRENT_SOURCE_DIR}/${dir}
              ${CMAKE_CURRENT_SOURCE_DIR}/${proto}
      DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/${proto}
      COMMENT "protoc-c ${proto}")
    list(APPEND srcs ${out})
  endforeach()
  add_library(${target} STATIC ${srcs})
  # Generated code is not ours to warn about.
  target_compile_options(${target} PRIVATE -w)
  target_include_directories(${target} PUBLIC ${CMAKE_CURRENT_BINARY_DIR})
  target_link_libraries(${target} PUBLIC PkgConfig::PROTOBUFC)
endfunction()
