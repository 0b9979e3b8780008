# dnmbc-adapter - build, test, demo.
#
#   make            build ./dnmbc-adapter (warnings are errors)
#   make test       every test: unit (cmocka), golden cases, integration
#                   against the bundled FHIR server; ends "N passed, N failed"
#   make unit       unit tests only (no Node.js needed)
#   make demo       seed synthetic patients into the test FHIR server and sync
#   make CC=clang   clang must build too

CC      ?= cc
PKGS    := libcurl jansson openssl sqlite3
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
LDLIBS  += $(PKG_LIBS) -lm

BUILD   := build
SRCS    := $(wildcard adapter/*.c)
LIBSRCS := $(filter-out adapter/main.c,$(SRCS))
LIBOBJS := $(patsubst adapter/%.c,$(BUILD)/obj/%.o,$(LIBSRCS))
LIB     := $(BUILD)/libadapter.a
UNITSRC := $(wildcard tests/unit/test_*.c)
UNITBIN := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNITSRC))


.PHONY: all deps build-tests unit test demo clean configtest certs check-certs

all: dnmbc-adapter

$(BUILD)/obj/%.o: adapter/%.c $(wildcard adapter/*.h) | $(BUILD)/obj
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/obj $(BUILD)/tests:
	mkdir -p $@

$(LIB): $(LIBOBJS)
	rm -f $@
	ar rcs $@ $^

dnmbc-adapter: $(BUILD)/obj/main.o $(LIB)
	$(CC) $(CFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(LIB) $(wildcard tests/unit/*.h) | $(BUILD)/tests
	$(CC) $(CFLAGS) -Wno-missing-prototypes -iquote adapter -o $@ $< $(LIB) $(LDFLAGS) $(LDLIBS) -lcmocka

# deps installs missing Debian packages (sudo when not root); the recursive
# make re-reads pkg-config after the install.
deps:
	@bash .ci/install-deps

build-tests: $(UNITBIN) dnmbc-adapter $(BUILD)/fhir_client_check

$(BUILD)/fhir_client_check: tests/integration/fhir_client_check.c $(LIB)
	$(CC) $(CFLAGS) -Wno-missing-prototypes -iquote adapter -o $@ $< $(LIB) $(LDFLAGS) $(LDLIBS)

unit: build-tests
	@tests/run-tests.sh --unit-only

test: deps
	@$(MAKE) --no-print-directory build-tests
	@tests/run-tests.sh

demo: deps
	@$(MAKE) --no-print-directory dnmbc-adapter
	@tests/demo.sh

# Development TLS certificates in certs/out (git-ignored); see certs/README.md.
certs:
	@bash certs/make-certs.sh

check-certs: certs
	@bash certs/check-certs.sh

configtest: dnmbc-adapter
	./dnmbc-adapter -n

clean:
	rm -rf $(BUILD) dnmbc-adapter
