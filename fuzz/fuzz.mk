# fuzz/fuzz.mk - libFuzzer targets (issue 5). Included by the top Makefile, after LIB_SRCS,
# DEPS_STAMP, MBEDTLS_CFLAGS, WARN and LDLIBS are defined:  include fuzz/fuzz.mk
#
#   make fuzz-build     build/fuzz/<target>: clang-14, -fsanitize=fuzzer,address,undefined; the
#                       library is rebuilt from LIB_SRCS under build/fuzz/ with the same flags
#   make fuzz           run every target FUZZ_SECONDS on a scratch copy of its corpus with its
#                       dictionary; print executions, exec/s, edges (cov:) and corpus size per
#                       target; fail on a crash and name the reproducer
#   make fuzz-replay    gcc + ASan/UBSan: every file of fuzz/corpus/<target>/ through the target's
#                       LLVMFuzzerTestOneInput via fuzz/replay.c (no clang needed); `make test` runs it
#   make fuzz-clean     remove build/fuzz
#
# Variables (override on the command line):
#   FUZZ_SECONDS   seconds per target for `make fuzz` (default 60)
#   FUZZ_TARGETS   which targets (default: all of them)
#   FUZZ_ARGS      extra libFuzzer flags for `make fuzz` (e.g. -jobs=4 -workers=4, -seed=1)
#   FUZZ_CC        clang used for the fuzz build (default clang-14; Debian clang-14 + libclang-rt-14-dev,
#                  installed by the fuzz targets when missing)
#   FUZZ_SAN       sanitizers of the fuzz build (default fuzzer-no-link,address,undefined)
#   FUZZ_ROOT      where fuzz binaries, logs, scratch corpora and crash files go (default build/fuzz)

FUZZ_SECONDS ?= 60
# Every target links the same library as the gateway (pipeline.c reads struct wsg_conn through the
# private gateway/conn-int.h and calls the connection code in the archive): no per-target library.
FUZZ_TARGETS ?= http1_request http1_response ws_c2u ws_u2c ws_diff tls_server config cert_check pipeline status_json psa_driver proxy_protocol affinity_cookie ws_inflate upstream_admin acme_json acme_http acme_admin
FUZZ_ARGS ?=
FUZZ_CC ?= clang-14
FUZZ_SAN ?= fuzzer-no-link,address,undefined
FUZZ_ROOT ?= build/fuzz

FUZZ_HDRS := $(wildcard fuzz/*.h)
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -I. $(MBEDTLS_CFLAGS) $(WARN) -MMD -MP -pthread -fsanitize=$(FUZZ_SAN) -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_LIB_OBJS := $(LIB_SRCS:%.c=$(FUZZ_ROOT)/%.o)
FUZZ_BINS := $(FUZZ_TARGETS:%=$(FUZZ_ROOT)/%)

# The replay build reuses the asan flavour's library and flags (top Makefile, FLAVOUR=asan).
FUZZ_REPLAY_DIR := build/asan/fuzz
FUZZ_REPLAY_BINS := $(FUZZ_TARGETS:%=$(FUZZ_REPLAY_DIR)/replay-%)
FUZZ_REPLAY_CFLAGS := -std=c11 -D_GNU_SOURCE -g -I. $(MBEDTLS_CFLAGS) $(WARN) -MMD -MP -pthread \
                      -O1 -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

.PHONY: fuzz fuzz-build fuzz-tools fuzz-replay fuzz-replay-bins fuzz-clean

# clang-14 and its runtime (libFuzzer, sanitizers): installed once, quietly, when missing.
fuzz-tools:
	@if ! command -v $(FUZZ_CC) >/dev/null 2>&1 || \
	    ! dpkg-query -W -f='$${Status}' libclang-rt-14-dev 2>/dev/null | grep -q 'install ok installed'; then \
	    echo "fuzz: installing clang-14 libclang-rt-14-dev"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -qq >/dev/null && \
	    apt-get install -y -qq --no-install-recommends clang-14 libclang-rt-14-dev >/dev/null; \
	fi

fuzz-build: $(FUZZ_BINS)

$(FUZZ_ROOT)/%.o: %.c | fuzz-tools $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<

$(FUZZ_ROOT)/libwsgate.a: $(FUZZ_LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(FUZZ_BINS): $(FUZZ_ROOT)/%: $(FUZZ_ROOT)/fuzz/%.o $(FUZZ_ROOT)/libwsgate.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $^ $(LDLIBS)

fuzz: fuzz-build
	@FUZZ_ROOT=$(FUZZ_ROOT) ./fuzz/run.sh $(FUZZ_SECONDS) "$(FUZZ_ARGS)" $(FUZZ_TARGETS)

fuzz-replay: $(DEPS_STAMP)
	@$(MAKE) -f $(firstword $(MAKEFILE_LIST)) --no-print-directory FLAVOUR=asan build/asan/libwsgate.a
	@$(MAKE) -f $(firstword $(MAKEFILE_LIST)) --no-print-directory fuzz-replay-bins
	@./fuzz/replay.sh $(FUZZ_REPLAY_DIR) $(FUZZ_TARGETS)

fuzz-replay-bins: $(FUZZ_REPLAY_BINS)

$(FUZZ_REPLAY_BINS): $(FUZZ_REPLAY_DIR)/replay-%: fuzz/%.c fuzz/replay.c $(FUZZ_HDRS) build/asan/libwsgate.a
	@mkdir -p $(dir $@)
	$(CC) $(FUZZ_REPLAY_CFLAGS) -o $@ fuzz/$*.c fuzz/replay.c build/asan/libwsgate.a $(LDLIBS)

fuzz-clean:
	rm -rf $(FUZZ_ROOT)

# Harness objects and binaries must not be deleted as intermediates.
.SECONDARY: $(FUZZ_TARGETS:%=$(FUZZ_ROOT)/fuzz/%.o)

-include $(shell find $(FUZZ_ROOT) -name '*.d' 2>/dev/null)
