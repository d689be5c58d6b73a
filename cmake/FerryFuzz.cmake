# Fuzz targets: ferry_fuzz_target(NAME <n> SOURCES <files> CORPUS <dir>
#                                 [LIBS <libs>])
#
# A target source defines LLVMFuzzerTestOneInput (and optionally
# LLVMFuzzerInitialize). From it come, always (gcc or clang):
#   <n>_replay    the target plus tests/fuzz/replay_main.c, which feeds it
#                 every file of the corpus; ctest "unit/<n>_corpus" (label
#                 unit), so every build keeps the seeds and past findings
#                 passing;
# and with FERRY_FUZZ=ON (clang; the top-level CMakeLists.txt instruments
# everything with fuzzer-no-link, ASan and UBSan):
#   <n>           the libFuzzer binary; ctest "fuzz/<n>" (label fuzz) fuzzes
#                 for FERRY_FUZZ_SECONDS on a scratch copy of the corpus in
#                 the build tree, reading the in-tree corpus as a second,
#                 read-only directory: a test run never writes to the source
#                 tree. Findings land in <build>/tests/fuzz/<n>_artifacts/.
# Executables go where the unit tests go: <build>/tests.
#
# LIBS defaults to ferry_core. CORPUS is relative to the calling
# CMakeLists.txt.
#
# This file doubles as the script that "fuzz/<n>" runs (cmake -P), so that
# preparing the scratch corpus and fuzzing are one test.

if(CMAKE_SCRIPT_MODE_FILE)
  # Script mode: -DFUZZER= -DSEEDS= -DSCRATCH= -DARTIFACTS= -DSECONDS=
  file(MAKE_DIRECTORY ${SCRATCH} ${ARTIFACTS})
  file(GLOB seeds ${SEEDS}/*)
  if(seeds)
    file(COPY ${seeds} DESTINATION ${SCRATCH})
  endif()
  execute_process(
    COMMAND ${FUZZER} -max_total_time=${SECONDS} -timeout=10
            -print_final_stats=1 -artifact_prefix=${ARTIFACTS}/
            ${SCRATCH} ${SEEDS}
    RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${FUZZER} failed (${rc}); inputs in ${ARTIFACTS}")
  endif()
  return()
endif()

set(FERRY_FUZZ_SECONDS 10 CACHE STRING
    "Seconds each fuzz/<target> ctest test fuzzes for")
get_filename_component(FERRY_FUZZ_REPLAY_MAIN
  ${CMAKE_CURRENT_LIST_DIR}/../tests/fuzz/replay_main.c ABSOLUTE)
set(FERRY_FUZZ_SCRIPT ${CMAKE_CURRENT_LIST_FILE})

function(ferry_fuzz_target)
  cmake_parse_arguments(F "" "NAME;CORPUS" "SOURCES;LIBS" ${ARGN})
  if(NOT F_NAME OR NOT F_SOURCES OR NOT F_CORPUS)
    message(FATAL_ERROR "ferry_fuzz_target needs NAME, SOURCES and CORPUS")
  endif()
  if(NOT F_LIBS)
    set(F_LIBS ferry_core)
  endif()
  get_filename_component(corpus ${F_CORPUS} ABSOLUTE
                         BASE_DIR ${CMAKE_CURRENT_SOURCE_DIR})
  if(NOT IS_DIRECTORY ${corpus})
    message(FATAL_ERROR "fuzz target ${F_NAME}: corpus ${corpus} is missing")
  endif()
  set(outdir ${CMAKE_BINARY_DIR}/tests)

  add_executable(${F_NAME}_replay ${F_SOURCES} ${FERRY_FUZZ_REPLAY_MAIN})
  target_link_libraries(${F_NAME}_replay PRIVATE ${F_LIBS})
  set_target_properties(${F_NAME}_replay PROPERTIES
    RUNTIME_OUTPUT_DIRECTORY ${outdir})
  add_test(NAME unit/${F_NAME}_corpus COMMAND ${F_NAME}_replay ${corpus})
  set_tests_properties(unit/${F_NAME}_corpus PROPERTIES
    LABELS unit TIMEOUT 120)

  if(NOT FERRY_FUZZ)
    return()
  endif()
  add_executable(${F_NAME} ${F_SOURCES})
  target_link_libraries(${F_NAME} PRIVATE ${F_LIBS})
  target_link_options(${F_NAME} PRIVATE -fsanitize=fuzzer)
  set_target_properties(${F_NAME} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${outdir})
  math(EXPR timeout "${FERRY_FUZZ_SECONDS} + 120")
  add_test(NAME fuzz/${F_NAME}
    COMMAND ${CMAKE_COMMAND}
            -DFUZZER=$<TARGET_FILE:${F_NAME}>
            -DSEEDS=${corpus}
            -DSCRATCH=${CMAKE_CURRENT_BINARY_DIR}/${F_NAME}_corpus
            -DARTIFACTS=${CMAKE_CURRENT_BINARY_DIR}/${F_NAME}_artifacts
            -DSECONDS=${FERRY_FUZZ_SECONDS}
            -P ${FERRY_FUZZ_SCRIPT}
    WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
  set_tests_properties(fuzz/${F_NAME} PROPERTIES
    LABELS fuzz TIMEOUT ${timeout})
endfunction()
