# Entry points for the longer runs that CI does not do every time.
# Everyday tests: ./scripts/test.sh (or `make test`).

# Fuzzing time per target for `make fuzz`.
FUZZTIME ?= 2m
# Length of the soak for `make soak` (a Go duration).
SOAK ?= 5m

.PHONY: test fuzz soak

# Every test against real servers, then each fuzz target for 5000 executions.
test:
	./scripts/test.sh

# Each fuzz target for FUZZTIME, one after the other:
#   make fuzz FUZZTIME=10m
fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

# Floods the gate with logins for SOAK, with the memory store and with a
# real Redis, and checks heap, goroutines and the memory store's bound
# stay flat (see docs/RELIABILITY.md, "Soak"):
#   make soak SOAK=30m
soak:
	DEFENDER_SOAK=$(SOAK) go test -count=1 -run '^TestSoak' -timeout 0 -v ./pkg/gate/
