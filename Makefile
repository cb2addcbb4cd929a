# wsgate - plain GNU Makefile. One object tree per flavour: build/{release,asan}/.
#   make            release build: build/release/wsgate, build/release/wsgate-certs
#   make run        build, then start the chat example x4 behind wsgate on https://localhost:8443
#   make test       install what is missing, then unit tests -> corpus replay -> end-to-end tests
#                   (and mbedTLS's own test suites against our build of it: tls/mbedtls/test-suites.sh)
#   make asan       the same suite with ASan + UBSan (mbedTLS's suites only in make test: same libraries)
# Each target installs missing Debian/npm packages itself (.ci/deps.sh), and the first build makes
# our own mbedTLS (tls/mbedtls/build.sh, cached under build/deps).

FLAVOUR ?= release
B := build/$(FLAVOUR)
DEPS := build/deps

# mbedTLS 3.6: our own build (tls/mbedtls/build.sh: Debian 13's source package, our configuration
# tls/mbedtls/config.h, the nettle PSA driver tls/psa/ inside libmbedcrypto.a), installed under
# build/deps/mbedtls-<hash of its inputs>; mbedtls-current points at the one in use.
MBEDTLS_DIR := $(DEPS)/mbedtls-current
MBEDTLS_CFLAGS := -isystem $(MBEDTLS_DIR)/include
MBEDTLS_LIBS := $(MBEDTLS_DIR)/lib/libmbedtls.a $(MBEDTLS_DIR)/lib/libmbedx509.a $(MBEDTLS_DIR)/lib/libmbedcrypto.a
# Rebuilds mbedTLS (and everything that links it) when one of its inputs changes.
MBEDTLS_INPUTS := tls/mbedtls/build.sh tls/mbedtls/config.h $(wildcard tls/mbedtls/patches/*.patch) \
                  $(wildcard tls/psa/*.c tls/psa/*.h)
DEPS_STAMP := $(DEPS)/.build-ok

CC ?= gcc
WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 -Wvla
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -g -I. $(MBEDTLS_CFLAGS) $(WARN) -MMD -MP -pthread
ifeq ($(FLAVOUR),asan)
OPT := -O1 -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
else
OPT := -O2
endif
CFLAGS ?=
ALL_CFLAGS := $(CFLAGS_BASE) $(OPT) $(CFLAGS)
LDLIBS := $(MBEDTLS_LIBS) -lhogweed -lnettle -lgmp -lev -lwslay -lhiredis -lz -lpthread -lm

LIB_SRCS := $(filter-out gateway/main.c,$(wildcard gateway/*.c)) $(wildcard tls/*.c) $(wildcard frames/*.c) \
            $(wildcard policies/*.c) $(wildcard policies/base/*.c)
LIB_OBJS := $(LIB_SRCS:%.c=$(B)/%.o)
CERTS_SRCS := $(wildcard certs/*.c)
# wsgate-ctl (issue 15): the admin endpoint's command-line client, on wsgate-certs' admin client
CTL_OBJS := $(B)/certs/ctl/wsgate-ctl.o $(filter-out $(B)/certs/main.o,$(CERTS_SRCS:%.c=$(B)/%.o))
UNIT_SRCS := $(wildcard tests/unit/*_test.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(B)/tests/%)

.PHONY: all run test unit e2e asan deps test-deps clean format format-check bench bench-instructions
all: $(B)/wsgate $(if $(CERTS_SRCS),$(B)/wsgate-certs $(B)/wsgate-ctl)

deps: $(DEPS_STAMP)
$(DEPS_STAMP): .ci/deps.sh $(MBEDTLS_INPUTS)
	@./.ci/deps.sh build
	@mkdir -p $(DEPS) && touch $@

test-deps: $(DEPS_STAMP)
	@./.ci/deps.sh test

$(B)/%.o: %.c $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(B)/libwsgate.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

# The stamp is a prerequisite so that a new mbedTLS build relinks; it is not linked.
$(B)/wsgate: $(B)/gateway/main.o $(B)/libwsgate.a $(DEPS_STAMP)
	$(CC) $(ALL_CFLAGS) -o $@ $(filter-out $(DEPS_STAMP),$^) $(LDLIBS)

$(B)/wsgate-certs: $(CERTS_SRCS:%.c=$(B)/%.o) $(B)/libwsgate.a $(DEPS_STAMP)
	$(CC) $(ALL_CFLAGS) -o $@ $(filter-out $(DEPS_STAMP),$^) $(LDLIBS)

$(B)/wsgate-ctl: $(CTL_OBJS) $(B)/libwsgate.a $(DEPS_STAMP)
	$(CC) $(ALL_CFLAGS) -o $@ $(filter-out $(DEPS_STAMP),$^) $(LDLIBS)

$(B)/tests/%_test: tests/unit/%_test.c $(B)/libwsgate.a $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Wno-missing-prototypes -o $@ $< $(B)/libwsgate.a -lcmocka $(LDLIBS)

run: $(DEPS_STAMP)
	@./.ci/deps.sh run
	@$(MAKE) --no-print-directory all
	@./examples/run.sh $(B)

unit: test-deps $(UNIT_BINS)
	@./tests/run-unit.sh $(UNIT_BINS)

e2e: test-deps all
	@WSGATE_BIN=$(B)/wsgate ./tests/e2e/run.sh

test: test-deps
	@./tests/layering-check.sh
	@$(MAKE) --no-print-directory all $(UNIT_BINS)
	@./tests/run-unit.sh $(UNIT_BINS)
	@$(if $(filter release,$(FLAVOUR)),./tls/mbedtls/test-suites.sh $(MBEDTLS_DIR)/src)
	@$(MAKE) --no-print-directory fuzz-replay
	@./tests/readme-check.sh $(B)/wsgate
	@$(MAKE) --no-print-directory man-check
	@./tests/install-check.sh $(FLAVOUR)
	@./tests/nginx-doc-check.sh $(B)/wsgate $(B)/wsgate-certs
	@./.ci/deb.sh
	@WSGATE_BIN=$(B)/wsgate WSGATE_CERTS_BIN=$(B)/wsgate-certs ./tests/e2e/run.sh

asan:
	@$(MAKE) --no-print-directory FLAVOUR=asan test

bench: all
	@./.ci/deps.sh bench
	@./bench/run.sh $(B)

# instructions per echoed message under callgrind (stable on a noisy machine; see the script)
bench-instructions: all
	@./bench/instructions.sh $(B) $(BENCH_SIZES)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build/release build/asan build/fuzz

include fuzz/fuzz.mk

-include $(shell find build/$(FLAVOUR) -name '*.d' 2>/dev/null)

# ---- packaging (issue 17): man pages and the commented example configuration come from the
# settings table through docs/man/mangen.c, so they cannot drift from the code.
#   make man        build/<flavour>/share/: wsgate.8, wsgate.conf.5, wsgate-certs.8, wsgate.conf
#   make install    PREFIX (/usr/local), DESTDIR, SYSCONFDIR ($(PREFIX)/etc, /etc for /usr),
#                   SBINDIR, BINDIR, MANDIR, UNITDIR, LOGROTATEDIR, DOCDIR; never overwrites an
#                   existing wsgate.conf
#   make man-check  every page rendered with `man --warnings -l`: no warning (part of make test)
PREFIX ?= /usr/local
SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
SBINDIR ?= $(PREFIX)/sbin
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
DOCDIR ?= $(PREFIX)/share/doc/wsgate
UNITDIR ?= $(if $(filter /usr,$(PREFIX)),/lib/systemd/system,$(PREFIX)/lib/systemd/system)
LOGROTATEDIR ?= $(SYSCONFDIR)/logrotate.d
SHARE := $(B)/share
MAN_PAGES := $(SHARE)/wsgate.8 $(SHARE)/wsgate.conf.5 $(SHARE)/wsgate-certs.8 $(SHARE)/wsgate-ctl.8

.PHONY: man man-check install
man: $(MAN_PAGES) $(SHARE)/wsgate.conf

$(B)/mangen: docs/man/mangen.c $(B)/libwsgate.a
	$(CC) $(ALL_CFLAGS) -o $@ $< $(B)/libwsgate.a $(LDLIBS)

$(SHARE)/wsgate.conf.5: docs/man/wsgate.conf.5.in $(B)/mangen
	@mkdir -p $(dir $@)
	$(B)/mangen man >$@.settings
	awk -v f=$@.settings '/^@SETTINGS@$$/ { while ((getline l < f) > 0) print l; next } { print }' $< >$@
	@rm -f $@.settings

$(SHARE)/wsgate.conf: examples/wsgate.conf.in $(B)/mangen
	@mkdir -p $(dir $@)
	{ cat $<; $(B)/mangen example; } >$@

$(SHARE)/%.8: docs/man/%.8
	@mkdir -p $(dir $@)
	cp $< $@

man-check: man
	@WSGATE_BIN=$(B)/wsgate ./tests/man-check.sh $(MAN_PAGES)

install: all man
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 \
	    $(DESTDIR)$(UNITDIR) $(DESTDIR)$(LOGROTATEDIR) $(DESTDIR)$(DOCDIR)/examples/grafana
	install -d -m 0750 $(DESTDIR)$(SYSCONFDIR)/wsgate
	install -m 0755 $(B)/wsgate $(DESTDIR)$(SBINDIR)/wsgate
	install -m 0755 $(B)/wsgate-certs $(DESTDIR)$(BINDIR)/wsgate-certs
	install -m 0755 $(B)/wsgate-ctl $(DESTDIR)$(BINDIR)/wsgate-ctl
	install -m 0644 $(SHARE)/wsgate.8 $(SHARE)/wsgate-certs.8 $(SHARE)/wsgate-ctl.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 $(SHARE)/wsgate.conf.5 $(DESTDIR)$(MANDIR)/man5/
	@# the unit as installed: the binary where SBINDIR put it, the config where SYSCONFDIR did
	sed -e 's|/usr/local/bin/wsgate|$(SBINDIR)/wsgate|g' -e 's|/etc/wsgate/|$(SYSCONFDIR)/wsgate/|g' \
	    -e 's|file:///usr/share/doc/wsgate/|file://$(DOCDIR)/|' examples/systemd/wsgate.service \
	    >$(DESTDIR)$(UNITDIR)/wsgate.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/wsgate.service
	install -m 0644 examples/logrotate/wsgate $(DESTDIR)$(LOGROTATEDIR)/wsgate
	install -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md
	install -m 0644 $(SHARE)/wsgate.conf $(DESTDIR)$(DOCDIR)/examples/wsgate.conf
	$(if $(wildcard examples/grafana/*.json),install -m 0644 $(wildcard examples/grafana/*.json) $(DESTDIR)$(DOCDIR)/examples/grafana/)
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/wsgate/wsgate.conf ]; then \
	    echo "install: $(DESTDIR)$(SYSCONFDIR)/wsgate/wsgate.conf exists, left as it is"; \
	else \
	    install -m 0640 $(SHARE)/wsgate.conf $(DESTDIR)$(SYSCONFDIR)/wsgate/wsgate.conf; \
	fi

# ---- the Debian package (issue 17): dpkg-buildpackage + debhelper on a copy of the tree with
# debian/ from .ci/debian/, lintian (no error), then dpkg -i into a scratch root (.ci/deb.sh).
.PHONY: deb
deb:
	@./.ci/deb.sh
