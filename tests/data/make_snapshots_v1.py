"""How ``snapshots_v1.pickle.gz`` was made: detector states written by snapshot version 1.

Run with the code of commit 4c694a4 (the last with version 1) importable as ``spendwatch``:

    python tests/data/make_snapshots_v1.py tests/data/snapshots_v1.pickle.gz

``tests/test_engine.py`` loads them with today's engine and checks it pages as if it had
never stopped.
"""
import gzip
import pickle
import sys

import yaml

from spendwatch.config import Settings
from spendwatch.detectors.engine import Engine, SNAPSHOT_VERSION
from spendwatch.traffic import generate, DEMO_CONFIG
assert SNAPSHOT_VERSION == 1
settings = Settings(**yaml.safe_load(DEMO_CONFIG.read_text()))
records = sorted(generate(days=10, seed=1, keys=16, teams=3), key=lambda r: r.event_time)
cut = len(records) * 4 // 5
engine = Engine(settings.detectors)
states = {}
for record in records[:cut]:
    for key in engine.routes(record):
        state = states.get(key) or states.setdefault(key, engine.new_state(key))
        engine.process(state, record)
blobs = {key: engine.dumps(state) for key, state in states.items()}
print(len(records), cut, len(blobs), sum(map(len, blobs.values())), file=sys.stderr)
with gzip.open(sys.argv[1], "wb", 9) as f:
    pickle.dump({"records": len(records), "cut": cut, "states": blobs}, f, protocol=4)
