build/dev/test_actor: src/fail.c src/pv.h
src/pv.h:
