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
NET ?= proxy

.PHONY: all deps build proto-check proto-descriptors test check check-wire-raft check-unit check-sim test-sim test-sim-cluster lint typecheck coverage bench-raft cluster cluster-netns netns-root netns-clean clean bench jepsen failover-bench test-fuzz bench-ingest drill

all: build

$(NODE_MODULES_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $(NODE_MODULES_STAMP)

deps: $(NODE_MODULES_STAMP)

build: deps
	node_modules/.bin/tsc -p tsconfig.json

typecheck: deps
	node_modules/.bin/tsc -p tsconfig.json --noEmit

# proto/: buf lint (rules and exceptions in buf.yaml, explained in docs/clients.md) and buf breaking
# against proto-released/, the last released protos (README, upgrade notes). buf ships in the
# @bufbuild/buf devDependency (a platform binary through an optional dependency).
proto-check: deps
	node_modules/.bin/buf lint
	node_modules/.bin/buf breaking --against proto-released
	@node_modules/.bin/buf build -o proto/.regiondb-v1.binpb.new && if cmp -s proto/.regiondb-v1.binpb.new proto/regiondb-v1.binpb; then rm proto/.regiondb-v1.binpb.new; \
	  else rm proto/.regiondb-v1.binpb.new; echo "proto/regiondb-v1.binpb (served by reflection) is out of date: run make proto-descriptors"; exit 1; fi

# The descriptor set server reflection serves (src/rpc/proto.ts reflectionDefinition), committed.
proto-descriptors: deps
	node_modules/.bin/buf build -o proto/regiondb-v1.binpb

lint: deps typecheck proto-check
	node_modules/.bin/biome lint src test bench
	node scripts/check-raft-purity.mjs
	node scripts/check-layers.mjs
	node scripts/check-citations.mjs

# The default suite: unit, conformance, raft paper tests, 300 simulator seeds, 200 whole-datanode
# simulator seeds and 50 of its engine mode (test/sim/cluster-sim.test.ts's defaults), integration.
test: build proto-check
	SIM_SEEDS=300 $(MOCHA) 'test/**/*.test.ts'

# The fast check before a push (under 2 minutes on this 2-core machine, busy): lint (with the
# typecheck), the unit and raft tests, and 100 simulator seeds, in four processes side by side.
# The wire codecs' fuzz cases are cut to 2000 each (make test runs 20000).
WIRE_TESTS := test/unit/batch-wire.test.ts test/unit/raft-wire.test.ts
check: deps
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory -j4 --output-sync=target lint check-wire-raft check-unit check-sim && \
	echo "make check: passed in $$(( $$(date +%s) - start )) s"

check-wire-raft: deps
	BATCH_WIRE_CASES=2000 RAFT_WIRE_CASES=2000 $(MOCHA) --reporter dot $(WIRE_TESTS) 'test/raft/**/*.test.ts'

check-unit: deps
	$(MOCHA) --reporter dot $(addprefix --ignore ,$(WIRE_TESTS)) 'test/unit/**/*.test.ts'

check-sim: deps
	SIM_SEEDS=100 $(MOCHA) --reporter dot test/sim/simulator.test.ts

# The deterministic simulator alone. SEEDS=10000 for a campaign; SEED=n replays one seed twice
# and prints its trace hash.
test-sim: deps
	SIM_SEEDS=$(SEEDS) SIM_SEED=$(SEED) $(MOCHA) --timeout 0 test/sim/simulator.test.ts

# The whole-datanode simulator (docs/simulation.md): real RegionServers on one seeded scheduler.
# SEEDS=n seeds (make test runs 200); SIM_CLUSTER_SEED=n (or SEED=n) replays one seed twice and
# prints its trace hash; FIRST_SEED=n starts a campaign elsewhere. MODE=engine (or
# SIM_CLUSTER_MODE=engine) runs the campaign or the replay in engine mode: the real RegionState,
# Flusher and SST GC on a simulated object store.
FIRST_SEED ?= 1
test-sim-cluster: deps
	SIM_CLUSTER_MODE=$(or $(MODE),$(SIM_CLUSTER_MODE)) SIM_CLUSTER_SEEDS=$(SEEDS) SIM_CLUSTER_SEED=$(or $(SEED),$(SIM_CLUSTER_SEED)) SIM_CLUSTER_FIRST_SEED=$(FIRST_SEED) $(MOCHA) --timeout 0 test/sim/cluster-sim.test.ts

# Hostile-input fuzzing (issue 10): random and mutated protobuf at every gRPC method of a live
# metasrv + datanode, and at every decoder (WAL, raft, commands, manifests, catalog, SSTs).
# FUZZ_RUNS cases per property (make test runs 300 with a fixed seed); each campaign takes a new
# seed, printed in the test titles: FUZZ_SEED=n replays it.
FUZZ_RUNS ?= 10000
FUZZ_SEED ?= $(shell date +%s)
test-fuzz: deps
	FUZZ_RUNS=$(FUZZ_RUNS) FUZZ_SEED=$(FUZZ_SEED) $(MOCHA) --timeout 0 test/fuzz/fuzz.test.ts

# Line coverage of the data-losing parts (raft core, engine).
coverage: deps
	SIM_SEEDS=100 node_modules/.bin/c8 --include 'src/raft/**' --include 'src/engine/**' --reporter text-summary --reporter text $(MOCHA) 'test/raft/**/*.test.ts' 'test/sim/**/*.test.ts' 'test/conformance/**/*.test.ts' 'test/unit/engine.test.ts' 'test/unit/sst.test.ts'

bench-raft: deps
	node --import tsx bench/raft-bench.ts

clean:
	rm -rf dist coverage

# Start metasrv + 3 datanodes on 127.0.0.1 (cluster-configs/local-3node); Ctrl-C stops them.
cluster: build
	node dist/src/cmd/main.js cluster --config-dir cluster-configs/local-3node

# The same cluster on stand-in hosts (root only): metasrv and 3 datanodes each in its own network
# namespace with its own address on a bridge (10.77.x.0/24), advertising that address; TLS=1 adds
# certificates naming each host's address. Ctrl-C stops the processes and removes every namespace
# and link; `make netns-clean` removes the leftovers of a run that was killed with -9.
cluster-netns: netns-root build
	TLS=$(TLS) node --import tsx test/support/netns-cluster-cli.ts

netns-root:
	@if [ "$$(id -u)" != 0 ]; then echo "network namespaces need root (running as uid $$(id -u)): make cluster runs the same cluster on 127.0.0.1 without root" >&2; exit 2; fi

netns-clean: netns-root
	node --import tsx -e "import('./test/support/netns.ts').then((m) => { const r = m.reapStale(); console.log(r.length ? 'removed runs: ' + r.join(' ') : 'nothing to remove'); })"

# regiondb side by side with etcd 3.4 (3 members), same workloads from one harness: writes at
# 1/16/64 clients, linearizable reads, 100-key batches. etcd comes from Debian's etcd-server
# (installed here if missing; without it the bench runs regiondb alone and says so).
# BENCH_SECONDS (default 10) per workload; results in bench/results/<date>.json.
ETCD_BIN ?= /usr/bin/etcd
bench: build
	@if [ ! -x "$(ETCD_BIN)" ]; then \
	  echo "etcd not found at $(ETCD_BIN): trying apt-get install -y etcd-server ..."; \
	  { export DEBIAN_FRONTEND=noninteractive; apt-get install -y etcd-server || { apt-get update && apt-get install -y etcd-server; }; } >/dev/null 2>&1 \
	    || echo "could not install etcd-server (no root or no network?): the bench will skip etcd"; \
	fi
	ETCD_BIN=$(ETCD_BIN) node --import tsx bench/cluster-bench.ts

# Jepsen-style campaigns against real processes: RUNS=N TIME=S NEMESIS=kill,pause,... SEED=n NODES=3.
# NET=proxy (default): faults on harness TCP proxies, no root needed. NET=netns (root): every
# process in its own network namespace, partitions as blackhole routes at the IP layer; TLS=1
# adds TLS with certificates naming each host's address.
# clock-skew runs the datanodes under libfaketime (Debian's faketime, installed here if missing).
# Histories and reports (results.json, timeline.svg) go to store/<run>/.
LIBFAKETIME := /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
jepsen: build
	@if [ ! -e "$(LIBFAKETIME)" ]; then \
	  echo "libfaketime (for the clock-skew nemesis) not found: trying apt-get install -y faketime ..."; \
	  { export DEBIAN_FRONTEND=noninteractive; apt-get install -y faketime || { apt-get update && apt-get install -y faketime; }; } >/dev/null 2>&1 \
	    || echo "could not install faketime: the clock-skew nemesis will refuse to run"; \
	fi
	RUNS=$(RUNS) TIME=$(TIME) NEMESIS=$(NEMESIS) SEED=$(SEED) NODES=$(NODES) NET=$(NET) TLS=$(TLS) node --import tsx test/jepsen/cli.ts

# RTO distribution over KILLS leader kills (default 20) and the time to full replica repair.
failover-bench: build
	node --import tsx bench/failover-bench.ts

# Disaster-recovery drill (docs/backup.md): RTO and RPO of standalone restart, multi-replica
# failover, replica repair, object-storage recovery and backup & restore, measured on scratch
# clusters (~1.5 min). JSON=1 prints JSON instead of the table.
drill: build
	node dist/src/cmd/main.js drill $(if $(JSON),--json,)

# Sustained ingest (INGEST_SECONDS, default 120): rows/s, flushes, WAL size and RSS over time.
bench-ingest: build
	node --import tsx bench/ingest-bench.ts
