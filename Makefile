# dnmbc-adapter - build, test, demo.
#
#   make            build ./dnmbc-adapter (warnings are errors)
#   make test       every test: unit (cmocka), golden cases, integration
#                   against the bundled FHIR server; ends "N passed, N failed"
#   make unit       unit tests only (no Node.js needed); one suite:
#                   make unit T=test_engine, one golden case:
#                   make unit T=test_cases CASE=inflammatory-ct4d
#   make integration T=crash   one Node integration file
#   make mutation   curated mutations, each must be caught (docs/testing.md)
#   make demo       seed synthetic patients into the test FHIR server and sync
#   make CC=clang   clang must build too

CC      ?= cc
PKGS    := libcurl jansson openssl sqlite3 libmicrohttpd gnutls
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS  ?= -O2 -g
PREFIX  ?= /usr/local
# Where the binary looks for mappings when the configuration does not say.
MAPPINGS_DIR ?= mappings
VERSION := 0.1.0
CFLAGS  += -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE \
           -Wall -Wextra -Wpedantic -Werror -Wshadow -Wstrict-prototypes \
           -Wmissing-prototypes -Wformat=2 $(PKG_CFLAGS) \
           -DDNMBC_MAPPINGS_DIR='"$(MAPPINGS_DIR)"' -DDNMBC_VERSION='"$(VERSION)"'
LDLIBS  += $(PKG_LIBS) -lm -pthread

BUILD   := build
SRCS    := $(wildcard adapter/*.c)
LIBSRCS := $(filter-out adapter/main.c,$(SRCS))
LIBOBJS := $(patsubst adapter/%.c,$(BUILD)/obj/%.o,$(LIBSRCS))
LIB     := $(BUILD)/libadapter.a
UNITSRC := $(wildcard tests/unit/test_*.c)
UNITBIN := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNITSRC))


.PHONY: all deps build-tests unit test demo clean configtest install certs check-certs bench \
        integration mutation bench-backlog bench-cds bench-bulk

all: dnmbc-adapter

# -MMD: each object (and test binary) also depends on the headers it
# includes, listed by the compiler in a .d file next to it.
$(BUILD)/obj/%.o: adapter/%.c | $(BUILD)/obj
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj $(BUILD)/tests:
	mkdir -p $@

$(LIB): $(LIBOBJS)
	rm -f $@
	ar rcs $@ $^

dnmbc-adapter: $(BUILD)/obj/main.o $(LIB)
	$(CC) $(CFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(LIB) | $(BUILD)/tests
	$(CC) $(CFLAGS) -MMD -MP -MF $@.d -MT $@ -Wno-missing-prototypes -iquote adapter -o $@ $< $(LIB) $(LDFLAGS) $(LDLIBS) -lcmocka

-include $(LIBOBJS:.o=.d) $(BUILD)/obj/main.d $(UNITBIN:=.d)

# deps installs missing Debian packages (sudo when not root); the recursive
# make re-reads pkg-config after the install.
deps:
	@bash .ci/install-deps

build-tests: $(UNITBIN) dnmbc-adapter $(BUILD)/fhir_client_check $(BUILD)/dnmbc-adapter-faults

# The adapter with its write path's fault points compiled in (faultpoint.h):
# DNMBC_FAULT_POINT=<step>[:<n>] kills it at that step, for the crash tests.
# Only the files that have fault points are built again.
FAULTSRCS := sync writepath
FAULTOBJS := $(BUILD)/obj/main.o $(FAULTSRCS:%=$(BUILD)/fobj/%.o) \
             $(filter-out $(FAULTSRCS:%=$(BUILD)/obj/%.o),$(LIBOBJS))

$(BUILD)/fobj/%.o: adapter/%.c $(wildcard adapter/*.h)
	@mkdir -p $(BUILD)/fobj
	$(CC) $(CFLAGS) -DDNMBC_FAULT_POINTS -c $< -o $@

$(BUILD)/dnmbc-adapter-faults: $(FAULTOBJS)
	$(CC) $(CFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)

$(BUILD)/fhir_client_check: tests/integration/fhir_client_check.c $(LIB)
	$(CC) $(CFLAGS) -Wno-missing-prototypes -iquote adapter -o $@ $< $(LIB) $(LDFLAGS) $(LDLIBS)

# T= one unit suite (build/tests/T only); CASE= one golden case, or a
# comma-separated list, of test_cases (read from ADP_CASE); CASE alone
# implies T=test_cases.
T ?= $(if $(CASE),test_cases)
unit: $(if $(T),$(BUILD)/tests/$(T),build-tests)
	@$(if $(T),ADP_CASE='$(CASE)' $(BUILD)/tests/$(T),tests/run-tests.sh --unit-only)

# make integration T=crash: one tests/integration/*.test.js file.
integration: dnmbc-adapter $(BUILD)/fhir_client_check
	@test -n '$(T)' || { echo 'usage: make integration T=<name> (tests/integration/<name>.test.js)'; exit 2; }
	node --test --test-concurrency=1 tests/integration/$(T).test.js

# make mutation [MUTATION=id[,id...]] [MUTATION_SUBSET=k/n]: apply each
# mutation of tests/mutation/mutations.txt in a copy of the tree and run the
# tests that must catch it (docs/testing.md).
mutation:
	@node tests/mutation/run.js

test: deps
	@$(MAKE) --no-print-directory build-tests
	@tests/run-tests.sh

demo: deps
	@$(MAKE) --no-print-directory dnmbc-adapter
	@tests/demo.sh

# Throughput / CPU / memory against the test server, wrk and a Node.js peer
# (docs/benchmarks.md).  Sizes: BENCH_SIZES="1000 10000" (default).
bench: deps
	@$(MAKE) --no-print-directory dnmbc-adapter
	@tests/bench/run.sh
	@tests/bench/bulk.sh

# The bulk path (sync --bulk) beside REST sync on the same server: 10,000
# and 100,000 patients (docs/benchmarks.md).  Sizes: BULK_SIZES="10000 100000".
bench-bulk: deps
	@$(MAKE) --no-print-directory dnmbc-adapter
	@tests/bench/bulk.sh

# Peak RSS of the daemon working off a change backlog of 1,000 and 100,000
# Observations (docs/benchmarks.md).  Sizes: BACKLOG_SIZES="1000 100000".
bench-backlog: deps
	@$(MAKE) --no-print-directory dnmbc-adapter
	@tests/bench/backlog.sh

# CDS Hooks patient-view and $apply under load (wrk): p50 / p99 and req/s.
bench-cds: deps
	@$(MAKE) --no-print-directory dnmbc-adapter
	@tests/bench/cds/run.sh

# Development TLS certificates in certs/out (git-ignored); see certs/README.md.
certs:
	@bash certs/make-certs.sh

check-certs: certs
	@bash certs/check-certs.sh

configtest: dnmbc-adapter
	./dnmbc-adapter -n

# make install [PREFIX=/usr/local] [DESTDIR=]: the binary (built again with
# its mappings default pointing at the installed tables), the man page, the
# mapping tables and the systemd unit (its paths rewritten to PREFIX).
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man
PKGDATADIR ?= $(PREFIX)/share/dnmbc-adapter
UNITDIR    ?= $(PREFIX)/lib/systemd/system

$(BUILD)/install/dnmbc-adapter: MAPPINGS_DIR = $(PKGDATADIR)/mappings
$(BUILD)/install/dnmbc-adapter: $(SRCS) $(wildcard adapter/*.h) Makefile
	mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $(SRCS) $(LDFLAGS) $(LDLIBS)

install: $(BUILD)/install/dnmbc-adapter
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 \
	    $(DESTDIR)$(PKGDATADIR)/mappings $(DESTDIR)$(UNITDIR)
	install -m 0755 $(BUILD)/install/dnmbc-adapter $(DESTDIR)$(BINDIR)/dnmbc-adapter
	install -m 0644 docs/dnmbc-adapter.1 $(DESTDIR)$(MANDIR)/man1/dnmbc-adapter.1
	install -m 0644 mappings/*.json $(DESTDIR)$(PKGDATADIR)/mappings/
	sed -e 's|/usr/local/bin/dnmbc-adapter|$(BINDIR)/dnmbc-adapter|g' \
	    -e 's|/usr/share/dnmbc-adapter/mappings|$(PKGDATADIR)/mappings|g' \
	    docker/dnmbc-adapter.service >$(DESTDIR)$(UNITDIR)/dnmbc-adapter.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/dnmbc-adapter.service

clean:
	rm -rf $(BUILD) dnmbc-adapter

# --- robustness (issue #5): fuzzing, sanitizers, valgrind -------------------
#   make fuzz [FUZZ_SECONDS=60]   each libFuzzer target (clang) for FUZZ_SECONDS
#   make fuzz-replay              replay tests/fuzz/corpus/<target>/ (any compiler;
#                                 part of `make test`)
#   make asan                     the whole test suite under ASan + UBSan (clang)
#   make valgrind                 unit tests and one sync under memcheck
FUZZ_TARGETS := features bundle config mapping jsonread numbers cds
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FUZZ_FLAGS   := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_DEFS    := -DFUZZ_MAPPINGS_DIR='"$(CURDIR)/mappings"'
REPLAYBIN    := $(patsubst %,$(BUILD)/fuzz-replay/%,$(FUZZ_TARGETS))

.PHONY: fuzz fuzz-build fuzz-replay asan valgrind

build-tests: $(REPLAYBIN)

$(BUILD)/fuzz-replay/%: tests/fuzz/fuzz_%.c tests/fuzz/replay_main.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Wno-missing-prototypes -iquote adapter $(FUZZ_DEFS) -o $@ \
	    tests/fuzz/fuzz_$*.c tests/fuzz/replay_main.c $(LIB) $(LDFLAGS) $(LDLIBS)

fuzz-replay: $(REPLAYBIN)
	@for t in $(FUZZ_TARGETS); do $(BUILD)/fuzz-replay/$$t tests/fuzz/corpus/$$t/* || exit 1; done

# libFuzzer builds: the adapter sources compiled again with the fuzzer flags.
$(BUILD)/fuzz/%: tests/fuzz/fuzz_%.c $(LIBSRCS) $(wildcard adapter/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(filter-out -O2 -Werror,$(CFLAGS)) $(FUZZ_FLAGS) -Wno-missing-prototypes \
	    -iquote adapter $(FUZZ_DEFS) -o $@ $< $(LIBSRCS) $(LDFLAGS) $(LDLIBS)

fuzz-build: $(patsubst %,$(BUILD)/fuzz/%,$(FUZZ_TARGETS))

# New interesting inputs go to build/fuzz-corpus/<target>; crashers to
# tests/fuzz/corpus/<target>/ (kept and replayed by `make test`).
fuzz: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
	    mkdir -p $(BUILD)/fuzz-corpus/$$t; \
	    $(BUILD)/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=10 \
	        -artifact_prefix=tests/fuzz/corpus/$$t/crash- -print_final_stats=1 \
	        $(BUILD)/fuzz-corpus/$$t tests/fuzz/corpus/$$t >$(BUILD)/fuzz-$$t.log 2>&1; \
	    s=$$?; grep -E 'stat::number_of_executed_units|ERROR|SUMMARY' $(BUILD)/fuzz-$$t.log; \
	    test $$s -eq 0 || { echo "fuzz $$t failed, see $(BUILD)/fuzz-$$t.log"; exit 1; }; \
	done

# asan: a copy of the tree under build/asan-tree (so the normal build is left
# alone), built with clang and the sanitizers and the arena's escape check
# (jsonarena.h), then the whole test suite.
ASAN_TREE := $(BUILD)/asan-tree
SAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all \
             -DADP_DEBUG_ARENA
asan:
	rm -rf $(ASAN_TREE) && mkdir -p $(ASAN_TREE)
	tar --exclude=./build --exclude=./dnmbc-adapter --exclude='./tests/*/node_modules' -cf - . | \
	    tar -xf - -C $(ASAN_TREE)
	for d in tests/*/node_modules; do [ -d "$$d" ] && ln -s "$(CURDIR)/$$d" "$(ASAN_TREE)/$$d"; done; true
	CFLAGS='$(SAN_FLAGS)' LDFLAGS='-fsanitize=address,undefined' \
	    $(MAKE) --no-print-directory -C $(ASAN_TREE) CC=clang build-tests
	cd $(ASAN_TREE) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 tests/run-tests.sh

valgrind: build-tests
	@tests/valgrind.sh
