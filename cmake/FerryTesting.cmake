# ctest conventions:
#  - unit tests (cmocka) carry the label "unit";
#  - integration tests carry "integration" and exit 77 (ctest skip) when a
#    resource they need, /dev/kvm above all, is missing: they skip loudly,
#    never pass silently;
#  - integration tests that run a lab of their own (tools/lab: their own
#    namespaces, names, subnet and directory) also carry "lab". They spend
#    most of their time waiting on corosync and fences, so tools/test.sh
#    runs them two at a time; the others time their guests and run alone.
#    COST (seconds, roughly) lets ctest start the longest first.
set(FERRY_SKIP_CODE 77)

function(ferry_unit_test name)
  cmake_parse_arguments(T "" "" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  set_target_properties(${name} PROPERTIES
    RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  target_link_libraries(${name} PRIVATE ${T_LIBS} PkgConfig::CMOCKA)
  add_test(NAME unit/${name} COMMAND ${name})
  set_tests_properties(unit/${name} PROPERTIES LABELS unit TIMEOUT 120)
endfunction()

function(ferry_integration_test name)
  cmake_parse_arguments(T "LAB;PAIR" "TIMEOUT;COST" "COMMAND" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  set(labels integration)
  if(T_LAB)
    list(APPEND labels lab)
  endif()
  if(T_PAIR)
    list(APPEND labels pair)
  endif()
  if(NOT T_COST)
    set(T_COST 0)
  endif()
  add_test(NAME integration/${name} COMMAND ${T_COMMAND})
  set_tests_properties(integration/${name} PROPERTIES
    LABELS "${labels}" TIMEOUT ${T_TIMEOUT} COST ${T_COST}
    SKIP_RETURN_CODE ${FERRY_SKIP_CODE}
    ENVIRONMENT "FERRY_BIN=${FERRY_BIN_DIR};FERRY_GUESTS=${FERRY_GUEST_DIR};FERRY_SRC=${CMAKE_SOURCE_DIR}")
endfunction()
