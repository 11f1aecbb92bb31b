# pv — the front door. `make` builds build/bin/{pvd,pvctl,pvrender};
# `make test` builds with ASan+UBSan and runs every test; see README.md.
# `make deb` packages it, `make image` (root) makes the appliance's disk and
# `make image-test` boots it; see appliance/README.md.

CC      ?= cc
PKGS    := lmdb libevent libevent_openssl libevent_pthreads msgpack libjwt \
           libsodium jansson libavcodec libavformat libavfilter libswscale \
           libswresample libavutil libheif libexif libjpeg libssl libcrypto libcurl libpq
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lmsgpackc -lpthread -lm

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wno-unused-parameter
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -Isrc -I. $(WARN) -MMD -MP
REL_CFLAGS  := $(BASE_CFLAGS) -O2 -g -fstack-protector-strong -D_FORTIFY_SOURCE=2
TEST_CFLAGS := $(BASE_CFLAGS) -O1 -g -fno-omit-frame-pointer \
               -fsanitize=address,undefined -fno-sanitize-recover=undefined -DPV_TEST_BUILD
TEST_LDFLAGS := -fsanitize=address,undefined

# Every .c in src/ and actors/ is library code, except the programs' mains.
# The failure seam (src/base/fail.c) is test-build code: pv.h compiles
# pv_fail() away elsewhere, and the release and fuzz libraries leave it out.
MAINS   := src/pvd.c
TEST_ONLY_SRC := src/base/fail.c
LIB_SRC := $(filter-out $(MAINS) $(TEST_ONLY_SRC),$(wildcard src/*/*.c actors/*.c actors/*/*.c))
TOOLS   := pvd pvctl pvrender
UNIT_SRC := $(wildcard tests/unit/test_*.c)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)

REL_OBJ  := $(LIB_SRC:%.c=build/rel/%.o)
TEST_OBJ := $(LIB_SRC:%.c=build/test/%.o) $(TEST_ONLY_SRC:%.c=build/test/%.o)

main_src = $(if $(filter pvd,$(1)),src/pvd.c,tools/$(1).c)

.PHONY: all deps test-deps run test check unit fuzz bench fmt lint clean web doc layers \
        install deb image image-test
all: $(TOOLS:%=build/bin/%) build/web/index.html

# The web UI: content-hashed, gzipped copies of web/ (no npm needed).
WEB_SRC := $(wildcard web/*.html web/*.js web/*.css web/*.svg web/assets/*)
build/web/index.html: tools/webbuild.sh $(WEB_SRC)
	sh tools/webbuild.sh web build/web
web: build/web/index.html

deps:
	@sh tools/deps.sh

test-deps:
	@sh tools/deps.sh test

# ---- release build ----
build/rel/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(REL_CFLAGS) $(PKG_CFLAGS) -c $< -o $@

build/rel/libpv.a: $(REL_OBJ)
	@rm -f $@
	ar rcs $@ $^

build/bin/%: build/rel/main/%.o build/rel/libpv.a
	@mkdir -p $(dir $@)
	$(CC) -o $@ $^ $(PKG_LIBS)

build/rel/main/%.o:
	@mkdir -p $(dir $@)
	$(CC) $(REL_CFLAGS) $(PKG_CFLAGS) -c $(call main_src,$*) -o $@

# ---- test build (sanitizers) ----
build/test/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) $(PKG_CFLAGS) -c $< -o $@

build/test/libpv.a: $(TEST_OBJ)
	@rm -f $@
	ar rcs $@ $^

build/test/bin/%: build/test/main/%.o build/test/libpv.a
	@mkdir -p $(dir $@)
	$(CC) $(TEST_LDFLAGS) -o $@ $^ $(PKG_LIBS)

build/test/main/%.o:
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) $(PKG_CFLAGS) -c $(call main_src,$*) -o $@

build/test/unit/%: tests/unit/%.c build/test/libpv.a tests/t.h
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) -Itests $(PKG_CFLAGS) $< -o $@ build/test/libpv.a $(TEST_LDFLAGS) $(PKG_LIBS)

# The PostgreSQL replicator's tables come from schema/records.json
# (tools/pgschema.py); only actors/pg.c includes them.
build/gen/pg_schema.h: tools/pgschema.py schema/records.json
	@mkdir -p $(dir $@)
	python3 tools/pgschema.py schema/records.json $@
build/rel/actors/pg.o build/test/actors/pg.o build/fuzz/actors/pg.o: build/gen/pg_schema.h
build/rel/actors/pg.o: REL_CFLAGS += -Ibuild/gen
build/test/actors/pg.o: TEST_CFLAGS += -Ibuild/gen
build/fuzz/actors/pg.o: FUZZ_CFLAGS += -Ibuild/gen
build/test/unit/test_pg: build/gen/pg_schema.h
build/test/unit/test_pg: TEST_CFLAGS += -Ibuild/gen
# The DynamoDB item shape, from schema/records.json (tools/gen_ddb.py).
build/gen/ddb_schema.h: schema/records.json tools/gen_ddb.py
	@mkdir -p $(dir $@)
	python3 tools/gen_ddb.py $< $@
build/rel/actors/ddb.o build/test/actors/ddb.o build/fuzz/actors/ddb.o: build/gen/ddb_schema.h

# main objects depend on their source file
$(foreach t,$(TOOLS),$(eval build/rel/main/$(t).o: $(call main_src,$(t)))) 
$(foreach t,$(TOOLS),$(eval build/test/main/$(t).o: $(call main_src,$(t))))

UNIT_BINS := $(UNIT_SRC:tests/unit/%.c=build/test/unit/%)
# Drivers that tests run (not suites themselves): sigv4_cli feeds botocore's check.
TEST_DRIVERS := build/test/unit/sigv4_cli

# ---- fuzzing (clang + libFuzzer) ----
FUZZ_CC := clang-14
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -Isrc -I. -g -O1 -DPV_FUZZ -MMD -MP \
               -fsanitize=fuzzer-no-link,address,undefined
FUZZ_OBJ := $(LIB_SRC:%.c=build/fuzz/%.o)
build/fuzz/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(PKG_CFLAGS) -c $< -o $@
build/fuzz/libpv.a: $(FUZZ_OBJ)
	@rm -f $@
	ar rcs $@ $^
build/fuzz/bin/%: tests/fuzz/%.c build/fuzz/libpv.a
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $(PKG_CFLAGS) $< -o $@ build/fuzz/libpv.a $(PKG_LIBS)
FUZZ_BINS := $(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/bin/%)

# ---- front-door targets ----
run: deps all
	./build/bin/pvd

unit: $(UNIT_BINS)

check test: test-deps $(TOOLS:%=build/test/bin/%) $(UNIT_BINS) $(TEST_DRIVERS) $(FUZZ_BINS) all layers
	@sh tests/run.sh

# Includes point only down the layers; no files call each other in a ring
# (tools/layers.py says which layer may use which).
layers: $(REL_OBJ)
	@python3 tools/layers.py build/rel

fuzz: $(FUZZ_BINS)
	@for f in $(FUZZ_BINS); do n=$$(basename $$f); mkdir -p build/fuzz/corpus/$$n; \
	  echo "== $$n"; $$f -max_total_time=$${FUZZ_SECONDS:-60} build/fuzz/corpus/$$n tests/fuzz/corpus/$$n || exit 1; done

bench: deps all
	@sh bench/run.sh

# Man pages come from the config and command tables (tools/mkman.sh).
doc: all
	sh tools/mkman.sh

fmt:
	clang-format -i src/*.c src/*/*.c src/*/*.h actors/*.c actors/*.h actors/*/*.c actors/*/*.h tools/*.c tests/unit/*.c tests/fuzz/*.c 2>/dev/null || true

lint: build/gen/pg_schema.h
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	  --suppress=missingIncludeSystem -Isrc -I. -Ibuild/gen src actors tools
	clang-tidy --quiet $(LIB_SRC) src/pvd.c tools/*.c -- $(BASE_CFLAGS) -Ibuild/gen $(PKG_CFLAGS)

clean:
	rm -rf build

# ---- installing and the appliance (appliance/README.md) ----
# `make install DESTDIR=... PREFIX=/usr`: the programs, the web UI where an
# installed pvd looks for it (PREFIX/share/pv/web), man pages, completion.
PREFIX  ?= /usr/local
VERSION := $(shell sed -n 's/^\#define PV_VERSION "\(.*\)"/\1/p' src/base/pv.h)
DEB     := build/pv_$(VERSION)_amd64.deb
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/pv/web \
	  $(DESTDIR)$(PREFIX)/share/man/man8 $(DESTDIR)$(PREFIX)/share/bash-completion/completions
	install -m 755 $(TOOLS:%=build/bin/%) $(DESTDIR)$(PREFIX)/bin/
	cp -R build/web/. $(DESTDIR)$(PREFIX)/share/pv/web/
	install -m 644 doc/pvd.8 doc/pvctl.8 $(DESTDIR)$(PREFIX)/share/man/man8/
	install -m 644 tools/pvctl.bash-completion $(DESTDIR)$(PREFIX)/share/bash-completion/completions/pvctl

APPLIANCE := $(wildcard appliance/*.sh appliance/*.service appliance/*.conf appliance/firstboot appliance/deb-*)
deb: $(DEB)
$(DEB): all $(APPLIANCE)
	sh appliance/mkdeb.sh $@

# The disk (as root, on Debian 12): built once, booted by image-test.
image: build/image/pv.raw
build/image/pv.raw: $(DEB) $(APPLIANCE)
	sh appliance/mkimage.sh $(DEB) $@

image-test: build/image/pv.raw
	python3 appliance/image_test.py build/image/pv.raw

# Header dependencies (-MMD) of every object, the programs' mains and the
# unit tests included: a changed header must rebuild all that use it.
-include $(REL_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(wildcard build/rel/main/*.d build/test/main/*.d \
         build/test/unit/*.d) $(FUZZ_OBJ:.o=.d)

# ---- development: build one unit test from named sources only, so that a
# half-written file elsewhere does not block you:
#   make dev T=store SRCS="src/store/store.c src/base/records.c src/base/util.c src/base/log.c src/base/fail.c"
#   then ./build/dev/test_store
dev:
	@mkdir -p build/dev
	$(CC) $(TEST_CFLAGS) -Itests $(PKG_CFLAGS) tests/unit/test_$(T).c $(SRCS) -o build/dev/test_$(T) $(TEST_LDFLAGS) $(PKG_LIBS)
