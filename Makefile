# regiondb — the README's two commands are `make cluster` and `make test`.
SHELL := /bin/bash
NODE_MODULES_STAMP := node_modules/.package-lock.json
MOCHA := node_modules/.bin/mocha
SEEDS ?= 1000
SEED ?=
RUNS ?= 1
TIME ?= 60
NEMESIS ?=
NODES ?= 3

.PHONY: all deps build test test-sim lint typecheck coverage bench-raft cluster clean bench jepsen failover-bench

all: build

$(NODE_MODULES_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $(NODE_MODULES_STAMP)

deps: $(NODE_MODULES_STAMP)

build: deps
	node_modules/.bin/tsc -p tsconfig.json

typecheck: deps
	node_modules/.bin/tsc -p tsconfig.json --noEmit

lint: deps typecheck
	node_modules/.bin/biome lint src test bench
	node scripts/check-raft-purity.mjs

# The default suite: unit, conformance, raft paper tests, 300 simulator seeds, integration.
test: build
	SIM_SEEDS=300 $(MOCHA) 'test/**/*.test.ts'

# The deterministic simulator alone. SEEDS=10000 for a campaign; SEED=n replays one seed twice
# and prints its trace hash.
test-sim: deps
	SIM_SEEDS=$(SEEDS) SIM_SEED=$(SEED) $(MOCHA) --timeout 0 test/sim/simulator.test.ts

# Line coverage of the data-losing parts (raft core, engine).
coverage: deps
	SIM_SEEDS=100 node_modules/.bin/c8 --include 'src/raft/**' --include 'src/engine/**' --reporter text-summary --reporter text $(MOCHA) 'test/raft/**/*.test.ts' 'test/sim/**/*.test.ts' 'test/conformance/**/*.test.ts' 'test/unit/engine-*.test.ts'

bench-raft: deps
	node --import tsx bench/raft-bench.ts

clean:
	rm -rf dist coverage

# Start metasrv + 3 datanodes on 127.0.0.1 (cluster-configs/local-3node); Ctrl-C stops them.
cluster: build
	node dist/src/cmd/main.js cluster --config-dir cluster-configs/local-3node

# Write throughput/latency of a real 3-node cluster (1 and 64 clients; 1- and 100-row writes).
bench: build
	node --import tsx bench/cluster-bench.ts

# Jepsen-style campaigns against real processes: RUNS=N TIME=S NEMESIS=kill,pause,... SEED=n NODES=3.
# Histories and reports (results.json, timeline.svg) go to store/<run>/.
jepsen: build
	RUNS=$(RUNS) TIME=$(TIME) NEMESIS=$(NEMESIS) SEED=$(SEED) NODES=$(NODES) node --import tsx test/jepsen/cli.ts

# RTO distribution over KILLS leader kills (default 20) and the time to full replica repair.
failover-bench: build
	node --import tsx bench/failover-bench.ts
